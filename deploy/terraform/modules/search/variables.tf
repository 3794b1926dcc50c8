variable "name" {
  description = "Name prefix (e.g. staybook-prod)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC (the private zone's)."
  type        = string
}

variable "subnet_ids" {
  description = "The data subnets, one node in each."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) == 3
    error_message = "Typesense runs 3 nodes, one per zone."
  }
}

variable "subnet_cidrs" {
  description = "The data subnets' ranges (each node takes the .10 address of its subnet)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "The search security group (networking module)."
  type        = list(string)
}

variable "instance_type" {
  description = "Node type (docs/capacity.md: r6i.xlarge, 32 GB)."
  type        = string
  default     = "r6i.xlarge"
}

variable "data_volume_gb" {
  description = "Size of each node's index volume."
  type        = number
  default     = 100
}

variable "typesense_version" {
  description = "Typesense server version."
  type        = string
  default     = "27.1"
}

variable "zone_name" {
  description = "Private DNS zone of the nodes' name."
  type        = string
  default     = "staybook.internal"
}

variable "kms_key_arn" {
  description = "KMS key of the nodes' volumes."
  type        = string
}

variable "app_secret_arn" {
  description = "The staybook/app secret, which holds typesense_api_key."
  type        = string
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
