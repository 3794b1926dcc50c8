output "prometheus_workspace_id" {
  description = "The managed Prometheus workspace."
  value       = aws_prometheus_workspace.this.id
}

output "prometheus_remote_write_url" {
  description = "Where the cluster's Prometheus remote-writes."
  value       = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
}

output "container_log_group_arn" {
  description = "The log group Fluent Bit writes to (/staybook/<cluster>/containers)."
  value       = aws_cloudwatch_log_group.containers.arn
}

output "alert_topic_arns" {
  description = "SNS topic ARN by severity (p1 pager, p2 chat, p3 e-mail)."
  value       = { for severity, topic in aws_sns_topic.severity : severity => topic.arn }
}
