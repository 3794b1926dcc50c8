output "endpoint" {
  description = "Writer endpoint (PgBouncer's database \"staybook\", the migrate Job)."
  value       = aws_rds_cluster.this.endpoint
}

output "reader_endpoint" {
  description = "Reader endpoint, balanced over the readers (PgBouncer's \"staybook_ro\")."
  value       = aws_rds_cluster.this.reader_endpoint
}

output "cluster_identifier" {
  description = "The cluster, for the CloudWatch alarms."
  value       = aws_rds_cluster.this.cluster_identifier
}

output "instance_identifiers" {
  description = "Writer first, then the readers."
  value       = aws_rds_cluster_instance.this[*].identifier
}

output "database_name" {
  description = "The database staybook uses."
  value       = aws_rds_cluster.this.database_name
}
