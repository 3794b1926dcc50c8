output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone."
  value       = aws_subnet.public[*].id
}

output "app_subnet_ids" {
  description = "App subnets (EKS), one per zone."
  value       = aws_subnet.app[*].id
}

output "data_subnet_ids" {
  description = "Data subnets (Aurora, ElastiCache, Typesense), one per zone."
  value       = aws_subnet.data[*].id
}

output "data_subnet_cidrs" {
  description = "The data subnets' ranges."
  value       = aws_subnet.data[*].cidr_block
}

output "app_security_group_id" {
  description = "Security group of the EKS nodes and pods."
  value       = aws_security_group.app.id
}

output "database_security_group_id" {
  description = "Security group of Aurora."
  value       = aws_security_group.database.id
}

output "cache_security_group_id" {
  description = "Security group of ElastiCache."
  value       = aws_security_group.cache.id
}

output "search_security_group_id" {
  description = "Security group of the Typesense nodes."
  value       = aws_security_group.search.id
}

output "nat_public_ips" {
  description = "The addresses staybook's outbound traffic comes from (for the payment provider's allow list)."
  value       = aws_eip.nat[*].public_ip
}
