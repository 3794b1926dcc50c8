output "url" {
  description = "STAYBOOK_NATS_URL."
  value       = "nats://${helm_release.nats.name}.${var.namespace}.svc.cluster.local:4222"
}

output "namespace" {
  description = "Namespace of the NATS servers."
  value       = var.namespace
}
