variable "name" {
  description = "Replication group id (e.g. staybook-prod)."
  type        = string
}

variable "engine_version" {
  description = "Redis version (7.x)."
  type        = string
  default     = "7.1"
  validation {
    condition     = startswith(var.engine_version, "7")
    error_message = "staybook's cache is Redis 7."
  }
}

variable "node_type" {
  description = "Node type (docs/capacity.md: cache.r6g.xlarge)."
  type        = string
  default     = "cache.r6g.xlarge"
}

variable "cluster_mode_enabled" {
  description = "Cluster mode (3 shards). Off: one primary and its replicas, for a client that is not cluster-aware."
  type        = bool
  default     = true
}

variable "shards" {
  description = "Shards (node groups) in cluster mode."
  type        = number
  default     = 3
}

variable "replicas_per_shard" {
  description = "Replicas of each shard's primary (2: three nodes per shard, one per zone)."
  type        = number
  default     = 2
}

variable "subnet_ids" {
  description = "The data subnets."
  type        = list(string)
}

variable "security_group_ids" {
  description = "The cache security group (networking module)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key of at-rest encryption."
  type        = string
}

variable "logs_kms_key_arn" {
  description = "KMS key of the slow log's log group."
  type        = string
}

variable "auth_token" {
  description = "The first AUTH token (security module; rotated in Secrets Manager afterwards)."
  type        = string
  sensitive   = true
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
