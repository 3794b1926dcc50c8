output "cluster_name" {
  description = "The EKS cluster (aws eks update-kubeconfig --name <this>)."
  value       = module.compute.cluster_name
}

output "workload_role_arns" {
  description = "IRSA roles for the ServiceAccount annotations in deploy/k8s/overlays."
  value       = module.compute.workload_role_arns
}

output "database_endpoint" {
  description = "Aurora writer endpoint."
  value       = module.database.endpoint
}

output "database_reader_endpoint" {
  description = "Aurora reader endpoint."
  value       = module.database.reader_endpoint
}

output "redis_endpoint" {
  description = "ElastiCache endpoint."
  value       = module.cache.endpoint
}

output "nats_url" {
  description = "STAYBOOK_NATS_URL."
  value       = module.messaging.url
}

output "typesense_url" {
  description = "STAYBOOK_TYPESENSE_URL."
  value       = module.search.url
}

output "media_bucket" {
  description = "STAYBOOK_CATALOG__S3_BUCKET."
  value       = module.storage.media_bucket
}

output "backups_bucket" {
  description = "STAYBOOK_BACKUP__S3_BUCKET."
  value       = module.storage.backups_bucket
}

output "prometheus_remote_write_url" {
  description = "Where the cluster's Prometheus remote-writes."
  value       = module.monitoring.prometheus_remote_write_url
}

output "alert_topic_arns" {
  description = "SNS topics by severity."
  value       = module.monitoring.alert_topic_arns
}
