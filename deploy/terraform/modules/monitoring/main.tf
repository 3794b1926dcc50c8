# Where the metrics and alarms go: an Amazon Managed Service for Prometheus workspace (the
# cluster's Prometheus remote-writes to it; staybook's rules from deploy/prometheus load into it),
# the container log group Fluent Bit writes to, SNS topics by severity (P1 pager, P2 chat, P3
# e-mail), and CloudWatch alarms on what only AWS sees: Aurora, ElastiCache, the Typesense nodes,
# the NAT gateways and the WAF.

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
  tags = merge(var.tags, { module = "monitoring" })
  severities = {
    p1 = "pager"
    p2 = "chat"
    p3 = "email"
  }
}

# ------------------------------------------------------------------------- Prometheus and logs

resource "aws_cloudwatch_log_group" "prometheus" {
  name              = "/aws/prometheus/${var.name}"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_prometheus_workspace" "this" {
  alias = var.name
  logging_configuration {
    log_group_arn = "${aws_cloudwatch_log_group.prometheus.arn}:*"
  }
  tags = local.tags
}

# Rule files (recording and alert rules) by name, e.g. { staybook = file("../../prometheus/rules.yml") }.
resource "aws_prometheus_rule_group_namespace" "this" {
  for_each     = var.prometheus_rule_files
  name         = each.key
  workspace_id = aws_prometheus_workspace.this.id
  data         = each.value
}

resource "aws_cloudwatch_log_group" "containers" {
  name              = "/staybook/${var.cluster_name}/containers"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

# ------------------------------------------------------------------------- notification topics

resource "aws_sns_topic" "severity" {
  for_each          = local.severities
  name              = "${var.name}-${each.key}-${each.value}"
  kms_master_key_id = var.kms_key_arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "pager" {
  for_each  = var.pager_endpoint == null ? toset([]) : toset(["p1", "p2"])
  topic_arn = aws_sns_topic.severity[each.key].arn
  protocol  = "https"
  endpoint  = var.pager_endpoint
}

resource "aws_sns_topic_subscription" "chat" {
  for_each  = var.chat_endpoint == null ? toset([]) : toset(["p2", "p3"])
  topic_arn = aws_sns_topic.severity[each.key].arn
  protocol  = "https"
  endpoint  = var.chat_endpoint
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.severity["p3"].arn
  protocol  = "email"
  endpoint  = each.value
}

# ------------------------------------------------------------------------- alarms

locals {
  # Every entry has the same attributes, so the map has one element type.
  database_alarms = {
    database-cpu = {
      metric      = "CPUUtilization"
      statistic   = "Average"
      threshold   = 80
      comparison  = "GreaterThanThreshold"
      periods     = 5
      severity    = "p2"
      dimensions  = tomap({ DBClusterIdentifier = var.database_cluster_identifier, Role = "WRITER" })
      description = "Aurora writer CPU above 80% for 5 minutes"
    }
    database-replica-lag = {
      metric      = "AuroraReplicaLagMaximum"
      statistic   = "Maximum"
      threshold   = 1000
      comparison  = "GreaterThanThreshold"
      periods     = 3
      severity    = "p2"
      dimensions  = tomap({ DBClusterIdentifier = var.database_cluster_identifier })
      description = "An Aurora reader is more than 1 s behind the writer"
    }
    database-connections = {
      metric      = "DatabaseConnections"
      statistic   = "Maximum"
      threshold   = floor(var.database_max_connections * 0.8)
      comparison  = "GreaterThanThreshold"
      periods     = 5
      severity    = "p2"
      dimensions  = tomap({ DBClusterIdentifier = var.database_cluster_identifier, Role = "WRITER" })
      description = "Aurora writer connections above 80% of max_connections"
    }
    database-free-memory = {
      metric      = "FreeableMemory"
      statistic   = "Minimum"
      threshold   = 2147483648
      comparison  = "LessThanThreshold"
      periods     = 5
      severity    = "p2"
      dimensions  = tomap({ DBClusterIdentifier = var.database_cluster_identifier, Role = "WRITER" })
      description = "Aurora writer below 2 GB of freeable memory"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "database" {
  for_each            = local.database_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "${each.value.description} (${upper(each.value.severity)}; runbook: docs/runbooks/)"
  namespace           = "AWS/RDS"
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  dimensions          = each.value.dimensions
  period              = 60
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.severity[each.value.severity].arn]
  ok_actions          = [aws_sns_topic.severity[each.value.severity].arn]
  tags                = local.tags
}

# Per cache node: the node ids are known only after apply, their count before.
resource "aws_cloudwatch_metric_alarm" "cache_cpu" {
  count               = var.cache_node_count
  alarm_name          = "${var.name}-cache-cpu-${count.index}"
  alarm_description   = "ElastiCache engine CPU above 80% for 5 minutes (P2; runbook: docs/runbooks/)"
  namespace           = "AWS/ElastiCache"
  metric_name         = "EngineCPUUtilization"
  statistic           = "Average"
  dimensions          = { CacheClusterId = element(var.cache_member_clusters, count.index) }
  period              = 60
  evaluation_periods  = 5
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.severity["p2"].arn]
  ok_actions          = [aws_sns_topic.severity["p2"].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "cache_memory" {
  count               = var.cache_node_count
  alarm_name          = "${var.name}-cache-memory-${count.index}"
  alarm_description   = "ElastiCache memory above 85% (P2; runbook: docs/runbooks/)"
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  statistic           = "Maximum"
  dimensions          = { CacheClusterId = element(var.cache_member_clusters, count.index) }
  period              = 60
  evaluation_periods  = 5
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.severity["p2"].arn]
  ok_actions          = [aws_sns_topic.severity["p2"].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "cache_evictions" {
  count               = var.cache_node_count
  alarm_name          = "${var.name}-cache-evictions-${count.index}"
  alarm_description   = "ElastiCache evicting keys for 5 minutes: memory is short (P3; runbook: docs/runbooks/)"
  namespace           = "AWS/ElastiCache"
  metric_name         = "Evictions"
  statistic           = "Sum"
  dimensions          = { CacheClusterId = element(var.cache_member_clusters, count.index) }
  period              = 60
  evaluation_periods  = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.severity["p3"].arn]
  ok_actions          = [aws_sns_topic.severity["p3"].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "search_node" {
  count               = length(var.search_instance_ids)
  alarm_name          = "${var.name}-typesense-${count.index}-status"
  alarm_description   = "A Typesense node fails its EC2 status checks (P2; runbook: docs/runbooks/)"
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  statistic           = "Maximum"
  dimensions          = { InstanceId = var.search_instance_ids[count.index] }
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.severity["p2"].arn]
  ok_actions          = [aws_sns_topic.severity["p2"].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "waf_blocked" {
  alarm_name          = "${var.name}-waf-blocked-surge"
  alarm_description   = "WAF blocking more than 5,000 requests a minute: an attack or a bad rule (P3; runbook: docs/runbooks/)"
  namespace           = "AWS/WAFV2"
  metric_name         = "BlockedRequests"
  statistic           = "Sum"
  dimensions          = { WebACL = var.web_acl_name, Region = var.region, Rule = "ALL" }
  period              = 60
  evaluation_periods  = 3
  threshold           = 5000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.severity["p3"].arn]
  ok_actions          = [aws_sns_topic.severity["p3"].arn]
  tags                = local.tags
}
