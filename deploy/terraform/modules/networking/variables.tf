variable "name" {
  description = "Name prefix of every resource (e.g. staybook-prod)."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's address range."
  type        = string
  default     = "10.0.0.0/16"
}

variable "azs" {
  description = "Three availability zones."
  type        = list(string)
  validation {
    condition     = length(var.azs) == 3
    error_message = "staybook spreads over exactly three availability zones."
  }
}

variable "public_subnet_cidrs" {
  description = "One public subnet per zone: NAT gateways and the load balancer."
  type        = list(string)
  default     = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
}

variable "app_subnet_cidrs" {
  description = "One app subnet per zone: EKS nodes and pods (VPC CNI gives pods VPC addresses, hence /19)."
  type        = list(string)
  default     = ["10.0.32.0/19", "10.0.64.0/19", "10.0.96.0/19"]
}

variable "data_subnet_cidrs" {
  description = "One data subnet per zone: Aurora, ElastiCache, Typesense (inside 10.0.200.0/22, as the NetworkPolicies say)."
  type        = list(string)
  default     = ["10.0.200.0/24", "10.0.201.0/24", "10.0.202.0/24"]
}

variable "flow_log_retention_days" {
  description = "How long VPC flow logs are kept."
  type        = number
  default     = 365
}

variable "logs_kms_key_arn" {
  description = "KMS key that encrypts the flow logs (security module)."
  type        = string
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
