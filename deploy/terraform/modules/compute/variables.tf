variable "name" {
  description = "Cluster name (e.g. staybook-prod)."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS version."
  type        = string
  default     = "1.28"
}

variable "subnet_ids" {
  description = "The app subnets (three zones)."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "The app security group (networking module)."
  type        = string
}

variable "public_access_cidrs" {
  description = "Addresses allowed to the public API endpoint; empty keeps the endpoint private."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "Managed node groups: instance types and size bounds."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
  }))
  default = {
    system = { instance_types = ["m6i.large"], min_size = 3, max_size = 6 }
    app    = { instance_types = ["m6i.2xlarge"], min_size = 6, max_size = 260 }
  }
}

variable "kms_key_arn" {
  description = "KMS key of Kubernetes secrets and node volumes."
  type        = string
}

variable "logs_kms_key_arn" {
  description = "KMS key of the control-plane log group."
  type        = string
}

variable "media_bucket_arn" {
  description = "The media bucket (storage module), for the api and worker roles."
  type        = string
}

variable "storage_kms_key_arn" {
  description = "The media bucket's KMS key."
  type        = string
}

variable "container_log_group_arn" {
  description = "The log group Fluent Bit writes to (monitoring module)."
  type        = string
}

variable "secret_arns" {
  description = "The secrets External Secrets may read (security module)."
  type        = list(string)
}

variable "secrets_kms_key_arn" {
  description = "The secrets' KMS key."
  type        = string
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
