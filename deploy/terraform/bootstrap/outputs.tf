output "state_bucket" {
  description = "The backend's bucket."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "The backend's DynamoDB lock table."
  value       = aws_dynamodb_table.lock.name
}
