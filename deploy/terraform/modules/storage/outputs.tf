output "media_bucket" {
  description = "STAYBOOK_CATALOG__S3_BUCKET."
  value       = aws_s3_bucket.this["media"].id
}

output "media_bucket_arn" {
  description = "The media bucket, for the api and worker IRSA roles."
  value       = aws_s3_bucket.this["media"].arn
}

output "backups_bucket" {
  description = "STAYBOOK_BACKUP__S3_BUCKET."
  value       = aws_s3_bucket.this["backups"].id
}

output "backups_bucket_arn" {
  description = "The backups bucket."
  value       = aws_s3_bucket.this["backups"].arn
}
