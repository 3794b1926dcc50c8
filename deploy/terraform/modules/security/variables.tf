variable "name" {
  description = "Name prefix (e.g. staybook-prod)."
  type        = string
}

variable "database_endpoint" {
  description = "Aurora writer endpoint (database module)."
  type        = string
}

variable "database_reader_endpoint" {
  description = "Aurora reader endpoint (database module)."
  type        = string
}

variable "database_name" {
  description = "The database staybook uses."
  type        = string
  default     = "staybook"
}

variable "database_username" {
  description = "staybook's database user."
  type        = string
  default     = "staybook"
}

variable "redis_endpoint" {
  description = "ElastiCache configuration endpoint (cache module)."
  type        = string
}

variable "smtp_username" {
  description = "SES SMTP user name (placeholder until SES is set up)."
  type        = string
  default     = "set-me"
  sensitive   = true
}

variable "smtp_password" {
  description = "SES SMTP password (placeholder until SES is set up)."
  type        = string
  default     = "set-me"
  sensitive   = true
}

variable "rotation_subnet_ids" {
  description = "Subnets of the database rotation function (the data subnets)."
  type        = list(string)
}

variable "rotation_security_group_ids" {
  description = "Security groups of the database rotation function (one admitted by the database's)."
  type        = list(string)
}

variable "rotation_lambda_arn" {
  description = "staybook's rotation function for the app keys and the Redis token."
  type        = string
}

variable "rate_limit_per_5_minutes" {
  description = "Requests one address may send in 5 minutes before WAF blocks it."
  type        = number
  default     = 2000
}

variable "load_balancer_arn" {
  description = "The ALB in front of ingress-nginx, to attach the web ACL to; null until it exists."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
