variable "account_id" {
  description = "The staging AWS account (placeholder)."
  type        = string
  default     = "111111111111"
}

variable "region" {
  description = "The region staybook staging runs in."
  type        = string
  default     = "eu-west-1"
}

variable "azs" {
  description = "Three availability zones of the region."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "eks_public_access_cidrs" {
  description = "Addresses allowed to the cluster's public API endpoint (empty: private only)."
  type        = list(string)
  default     = []
}

variable "rotation_lambda_arn" {
  description = "staybook's rotation function for the app keys and the Redis token (placeholder)."
  type        = string
  default     = "arn:aws:lambda:eu-west-1:111111111111:function:staybook-staging-rotate-secrets"
}

variable "load_balancer_arn" {
  description = "The ALB in front of ingress-nginx, for the WAF; null until it exists."
  type        = string
  default     = null
}

variable "pager_endpoint" {
  description = "Pager HTTPS endpoint for P1/P2 (placeholder)."
  type        = string
  default     = null
}

variable "chat_endpoint" {
  description = "Chat webhook for P2/P3 (placeholder)."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "P3 e-mail recipients (placeholders)."
  type        = list(string)
  default     = ["oncall@staybook.example.com"]
}
