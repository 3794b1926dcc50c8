variable "name" {
  description = "Bucket name prefix (globally unique, e.g. staybook-prod)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of SSE-KMS (the storage key)."
  type        = string
}

variable "media_noncurrent_glacier_days" {
  description = "Days before a replaced or deleted photo's old version moves to Glacier."
  type        = number
  default     = 30
}

variable "media_noncurrent_expire_days" {
  description = "Days before a replaced or deleted photo's old version is removed."
  type        = number
  default     = 365
}

variable "backup_glacier_days" {
  description = "Days before a backup moves to Glacier (the 35-day PITR window stays in S3 Standard)."
  type        = number
  default     = 35
}

variable "backup_expire_days" {
  description = "Days a backup is kept."
  type        = number
  default     = 400
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
