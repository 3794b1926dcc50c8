output "cluster_name" {
  description = "The EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "The Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "The cluster's CA certificate (base64)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "The IRSA identity provider."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "workload_role_arns" {
  description = "IRSA role ARN by workload (the ServiceAccount annotations in deploy/k8s/overlays)."
  value       = { for name, role in aws_iam_role.workload : name => role.arn }
}
