output "kms_key_arns" {
  description = "KMS key ARN by purpose: eks, database, cache, storage, secrets, logs, search, nats."
  value       = { for purpose, key in aws_kms_key.this : purpose => key.arn }
}

output "secret_arns" {
  description = "The Secrets Manager secrets (app, database, redis)."
  value = {
    app      = aws_secretsmanager_secret.app.arn
    database = aws_secretsmanager_secret.database.arn
    redis    = aws_secretsmanager_secret.redis.arn
  }
}

output "database_username" {
  description = "staybook's database user."
  value       = var.database_username
}

output "database_password" {
  description = "The first database password (rotated every 30 days afterwards)."
  value       = random_password.database.result
  sensitive   = true
}

output "redis_auth_token" {
  description = "The first ElastiCache AUTH token (rotated every 30 days afterwards)."
  value       = random_password.redis_auth_token.result
  sensitive   = true
}

output "web_acl_arn" {
  description = "The WAF web ACL."
  value       = aws_wafv2_web_acl.this.arn
}
