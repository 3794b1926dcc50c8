variable "namespace" {
  description = "Namespace of the NATS servers (the NetworkPolicy in deploy/k8s/platform names it)."
  type        = string
  default     = "nats"
}

variable "chart_version" {
  description = "Version of the nats Helm chart."
  type        = string
  default     = "1.2.6"
}

variable "replicas" {
  description = "NATS servers in the cluster (JetStream needs 3 for replicated streams)."
  type        = number
  default     = 3
  validation {
    condition     = var.replicas >= 3 && var.replicas % 2 == 1
    error_message = "JetStream's Raft groups need an odd number of at least 3 servers."
  }
}

variable "storage_size" {
  description = "JetStream file store per server (docs/capacity.md: 6.0 TB at 7 days of signals)."
  type        = string
  default     = "6Ti"
}

variable "cpu" {
  description = "CPU per server."
  type        = string
  default     = "2"
}

variable "memory" {
  description = "Memory per server."
  type        = string
  default     = "8Gi"
}

variable "kms_key_arn" {
  description = "KMS key of the JetStream volumes."
  type        = string
}
