variable "name" {
  description = "Cluster identifier (e.g. staybook-prod)."
  type        = string
}

variable "engine_version" {
  description = "Aurora PostgreSQL version (major 15)."
  type        = string
  default     = "15.8"
  validation {
    condition     = startswith(var.engine_version, "15.")
    error_message = "staybook runs on PostgreSQL 15."
  }
}

variable "instance_class" {
  description = "Instance class of the writer and the readers (docs/capacity.md: db.r6g.4xlarge)."
  type        = string
  default     = "db.r6g.4xlarge"
}

variable "instance_count" {
  description = "1 writer + 2 readers."
  type        = number
  default     = 3
}

variable "azs" {
  description = "The three availability zones, one instance in each."
  type        = list(string)
}

variable "subnet_ids" {
  description = "The data subnets."
  type        = list(string)
}

variable "security_group_ids" {
  description = "The database security group (networking module)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key of storage, snapshots and Performance Insights."
  type        = string
}

variable "database_name" {
  description = "The database staybook uses."
  type        = string
  default     = "staybook"
}

variable "master_username" {
  description = "The cluster's master user (staybook's user)."
  type        = string
  default     = "staybook"
}

variable "master_password" {
  description = "The first master password (security module; rotated in Secrets Manager afterwards)."
  type        = string
  sensitive   = true
}

variable "backup_retention_days" {
  description = "Point-in-time recovery window in days."
  type        = number
  default     = 35
}

variable "snapshot_retention_days" {
  description = "Days AWS Backup keeps each daily snapshot."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
