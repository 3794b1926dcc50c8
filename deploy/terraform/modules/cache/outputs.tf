output "endpoint" {
  description = "Where clients connect (rediss://:<token>@<this>:6379): the configuration endpoint in cluster mode, else the primary's."
  value = (var.cluster_mode_enabled
    ? aws_elasticache_replication_group.this.configuration_endpoint_address
  : aws_elasticache_replication_group.this.primary_endpoint_address)
}

output "replication_group_id" {
  description = "The replication group, for the CloudWatch alarms."
  value       = aws_elasticache_replication_group.this.id
}

output "member_clusters" {
  description = "Every node (3 shards x 3), for per-node alarms."
  value       = aws_elasticache_replication_group.this.member_clusters
}
