# A VPC of 10.0.0.0/16 over three availability zones: public subnets (NAT gateways, the load
# balancer), app subnets (EKS nodes and pods) and data subnets (Aurora, ElastiCache, Typesense)
# without a route to the internet. Security groups say who may talk to whom; the Kubernetes
# NetworkPolicies (deploy/k8s/base/network-policies.yaml) say the same inside the cluster.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.54, < 6"
    }
  }
}

locals {
  tags = merge(var.tags, { module = "networking" })
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = var.name })
}

# Nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count                   = length(var.azs)
  vpc_id                  = aws_vpc.this.id
  availability_zone       = var.azs[count.index]
  cidr_block              = var.public_subnet_cidrs[count.index]
  map_public_ip_on_launch = false
  tags = merge(local.tags, {
    Name                     = "${var.name}-public-${var.azs[count.index]}"
    tier                     = "public"
    "kubernetes.io/role/elb" = "1"
  })
}

resource "aws_subnet" "app" {
  count             = length(var.azs)
  vpc_id            = aws_vpc.this.id
  availability_zone = var.azs[count.index]
  cidr_block        = var.app_subnet_cidrs[count.index]
  tags = merge(local.tags, {
    Name                              = "${var.name}-app-${var.azs[count.index]}"
    tier                              = "app"
    "kubernetes.io/role/internal-elb" = "1"
  })
}

resource "aws_subnet" "data" {
  count             = length(var.azs)
  vpc_id            = aws_vpc.this.id
  availability_zone = var.azs[count.index]
  cidr_block        = var.data_subnet_cidrs[count.index]
  tags = merge(local.tags, {
    Name = "${var.name}-data-${var.azs[count.index]}"
    tier = "data"
  })
}

# One NAT gateway per zone: losing a zone does not cut the others off the internet.
resource "aws_eip" "nat" {
  count  = length(var.azs)
  domain = "vpc"
  tags   = merge(local.tags, { Name = "${var.name}-nat-${var.azs[count.index]}" })
}

resource "aws_nat_gateway" "this" {
  count         = length(var.azs)
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(local.tags, { Name = "${var.name}-${var.azs[count.index]}" })
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count          = length(var.azs)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "app" {
  count  = length(var.azs)
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${var.name}-app-${var.azs[count.index]}" })
}

resource "aws_route" "app_nat" {
  count                  = length(var.azs)
  route_table_id         = aws_route_table.app[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[count.index].id
}

resource "aws_route_table_association" "app" {
  count          = length(var.azs)
  subnet_id      = aws_subnet.app[count.index].id
  route_table_id = aws_route_table.app[count.index].id
}

# The data tier has no route out: only the VPC's own addresses and the S3 gateway endpoint.
resource "aws_route_table" "data" {
  vpc_id = aws_vpc.this.id
  tags   = merge(local.tags, { Name = "${var.name}-data" })
}

resource "aws_route_table_association" "data" {
  count          = length(var.azs)
  subnet_id      = aws_subnet.data[count.index].id
  route_table_id = aws_route_table.data.id
}

data "aws_region" "current" {}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = concat(aws_route_table.app[*].id, [aws_route_table.data.id])
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}

# ------------------------------------------------------------------------- flow logs

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/vpc/${var.name}/flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = local.tags
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "flow_logs_write" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs_write.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn    = aws_iam_role.flow_logs.arn
  tags            = local.tags
}

# ------------------------------------------------------------------------- security groups
# app: EKS nodes and pods. database, cache, search: reached from app only, on their port.

resource "aws_security_group" "app" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module (compute, database, cache, search modules take it as an input)
  name        = "${var.name}-app"
  description = "EKS nodes and the staybook pods"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${var.name}-app" })
}

resource "aws_vpc_security_group_ingress_rule" "app_from_itself" {
  security_group_id            = aws_security_group.app.id
  referenced_security_group_id = aws_security_group.app.id
  ip_protocol                  = "-1"
  description                  = "Nodes and pods talk to each other (kubelet, pod network, NATS routes)"
}

resource "aws_vpc_security_group_ingress_rule" "app_from_load_balancer" {
  count             = length(var.public_subnet_cidrs)
  security_group_id = aws_security_group.app.id
  cidr_ipv4         = var.public_subnet_cidrs[count.index]
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "The load balancer in the public subnets reaches the ingress controller"
}

resource "aws_vpc_security_group_egress_rule" "app_https_out" {
  security_group_id = aws_security_group.app.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "AWS APIs, the image registry, the payment provider, webhooks"
}

resource "aws_vpc_security_group_egress_rule" "app_smtp_out" {
  security_group_id = aws_security_group.app.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 587
  to_port           = 587
  description       = "Mail submission (SES SMTP)"
}

resource "aws_vpc_security_group_egress_rule" "app_within_vpc" {
  security_group_id = aws_security_group.app.id
  cidr_ipv4         = var.cidr_block
  ip_protocol       = "-1"
  description       = "Everything inside the VPC (the data tier's own groups admit only their port)"
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module (compute, database, cache, search modules take it as an input)
  name        = "${var.name}-database"
  description = "Aurora PostgreSQL: PgBouncer and the migrate Job only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${var.name}-database" })
}

resource "aws_vpc_security_group_ingress_rule" "database_from_app" {
  security_group_id            = aws_security_group.database.id
  referenced_security_group_id = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the app tier"
}

resource "aws_security_group" "cache" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module (compute, database, cache, search modules take it as an input)
  name        = "${var.name}-cache"
  description = "ElastiCache Redis: the app tier only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${var.name}-cache" })
}

resource "aws_vpc_security_group_ingress_rule" "cache_from_app" {
  security_group_id            = aws_security_group.cache.id
  referenced_security_group_id = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Redis (TLS) from the app tier"
}

resource "aws_security_group" "search" {
  #checkov:skip=CKV2_AWS_5:Attached outside this module (compute, database, cache, search modules take it as an input)
  name        = "${var.name}-search"
  description = "Typesense nodes: the API from the app tier, Raft among themselves"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags, { Name = "${var.name}-search" })
}

resource "aws_vpc_security_group_ingress_rule" "search_from_app" {
  security_group_id            = aws_security_group.search.id
  referenced_security_group_id = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = 8108
  to_port                      = 8108
  description                  = "Typesense API from the app tier"
}

resource "aws_vpc_security_group_ingress_rule" "search_peering" {
  security_group_id            = aws_security_group.search.id
  referenced_security_group_id = aws_security_group.search.id
  ip_protocol                  = "tcp"
  from_port                    = 8107
  to_port                      = 8108
  description                  = "Typesense Raft peering and forwarding between nodes"
}

resource "aws_vpc_security_group_egress_rule" "search_peering" {
  security_group_id            = aws_security_group.search.id
  referenced_security_group_id = aws_security_group.search.id
  ip_protocol                  = "tcp"
  from_port                    = 8107
  to_port                      = 8108
  description                  = "Typesense Raft peering and forwarding between nodes"
}

resource "aws_vpc_security_group_egress_rule" "search_https_out" {
  security_group_id = aws_security_group.search.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "Secrets Manager, SSM and package downloads through the VPC endpoints and NAT"
}
