variable "name" {
  description = "Name prefix (e.g. staybook-prod)."
  type        = string
}

variable "region" {
  description = "The region (WAF metrics' dimension)."
  type        = string
}

variable "cluster_name" {
  description = "The EKS cluster, whose containers' logs the log group holds."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the log groups and topics (the logs key)."
  type        = string
}

variable "log_retention_days" {
  description = "How long container logs are kept."
  type        = number
  default     = 365
}

variable "prometheus_rule_files" {
  description = "Prometheus rule files (YAML text) to load into the managed workspace, by name."
  type        = map(string)
  default     = {}
}

variable "pager_endpoint" {
  description = "HTTPS endpoint of the pager (P1, P2); placeholder until the on-call tool is chosen."
  type        = string
  default     = null
}

variable "chat_endpoint" {
  description = "HTTPS endpoint of the team chat's webhook (P2, P3); placeholder."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "Addresses that get P3 alerts by e-mail; placeholders."
  type        = list(string)
  default     = []
}

variable "database_cluster_identifier" {
  description = "The Aurora cluster (database module)."
  type        = string
}

variable "database_max_connections" {
  description = "max_connections of the Aurora writer (db.r6g.4xlarge: 5000)."
  type        = number
  default     = 5000
}

variable "cache_node_count" {
  description = "Number of cache nodes (shards x (1 + replicas))."
  type        = number
}

variable "cache_member_clusters" {
  description = "The cache nodes' ids (cache module)."
  type        = list(string)
}

variable "search_instance_ids" {
  description = "The Typesense nodes (search module)."
  type        = list(string)
}

variable "web_acl_name" {
  description = "The WAF web ACL's name."
  type        = string
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
