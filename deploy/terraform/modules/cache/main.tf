# ElastiCache Redis 7 in cluster mode: 3 shards of 3 nodes (1 primary + 2 replicas, one per
# zone), TLS in transit with an AUTH token, at-rest encryption with the cache KMS key, automatic
# failover. cache.r6g.xlarge holds the 64 GB of profiles, sessions and limits with room
# (docs/capacity.md).

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
  tags = merge(var.tags, { module = "cache" })
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = local.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name   = "${var.name}-redis7"
  family = "redis7"

  parameter {
    name  = "cluster-enabled"
    value = var.cluster_mode_enabled ? "yes" : "no"
  }
  # Keys with a TTL go first when memory runs out (caches, holds, limits all carry one).
  parameter {
    name  = "maxmemory-policy"
    value = "volatile-lru"
  }
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "slow_log" {
  name              = "/elasticache/${var.name}/slow-log"
  retention_in_days = 365
  kms_key_id        = var.logs_kms_key_arn
  tags              = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "staybook cache, sessions, rate limits and profiles"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = var.security_group_ids
  num_node_groups            = var.cluster_mode_enabled ? var.shards : 1
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  transit_encryption_enabled = true
  auth_token                 = var.auth_token
  auth_token_update_strategy = "ROTATE"
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  snapshot_retention_limit   = 7
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = local.tags

  # The token rotates in Secrets Manager (staybook/redis).
  lifecycle {
    ignore_changes = [auth_token]
  }
}
