output "url" {
  description = "STAYBOOK_TYPESENSE_URL."
  value       = "http://${aws_route53_record.typesense.fqdn}:8108"
}

output "node_ips" {
  description = "The nodes' private addresses."
  value       = aws_instance.node[*].private_ip
}

output "instance_ids" {
  description = "The nodes, for the CloudWatch alarms."
  value       = aws_instance.node[*].id
}
