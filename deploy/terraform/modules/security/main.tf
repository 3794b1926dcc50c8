# KMS keys (one per kind of data, rotated yearly), the secrets staybook reads through the External
# Secrets Operator (rotated every 30 days), and the WAF in front of the load balancer.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.54, < 6"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags       = merge(var.tags, { module = "security" })
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  key_purposes = {
    eks      = "EKS secrets envelope encryption"
    database = "Aurora storage, snapshots and Performance Insights"
    cache    = "ElastiCache at-rest encryption"
    storage  = "S3 media and backups (SSE-KMS)"
    secrets  = "Secrets Manager secrets"
    logs     = "CloudWatch Logs and SNS topics"
    search   = "Typesense nodes' volumes"
    nats     = "NATS JetStream volumes"
  }
}

# ------------------------------------------------------------------------- KMS

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:A key policy's "*" resource is the key itself; the account root administers it (AWS's default key policy)
  #checkov:skip=CKV_AWS_356:A key policy's "*" resource is the key itself, not every resource
  #checkov:skip=CKV_AWS_109:The account root administers its own keys (AWS's default key policy); IAM policies narrow who may
  for_each = local.key_purposes

  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "CloudWatchLogsAndAlarmsUseTheKey"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["logs.${local.region}.amazonaws.com", "cloudwatch.amazonaws.com"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each                = local.key_purposes
  description             = "${var.name}: ${each.value}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key[each.key].json
  tags                    = merge(local.tags, { purpose = each.key })
}

resource "aws_kms_alias" "this" {
  for_each      = local.key_purposes
  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}

# ------------------------------------------------------------------------- generated secrets

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "random_password" "jwt_key" {
  length  = 64
  special = false
}

resource "random_password" "payments_webhook_secret" {
  length  = 48
  special = false
}

resource "random_password" "metrics_token" {
  length  = 48
  special = false
}

resource "random_password" "typesense_api_key" {
  length  = 48
  special = false
}

resource "random_password" "email_hash_key" {
  length  = 64
  special = false
}

resource "random_password" "audit_anchor_key" {
  length  = 64
  special = false
}

# identity.pii_master_key: 32 random bytes, urlsafe base64.
resource "random_bytes" "pii_master_key" {
  length = 32
}

resource "random_password" "database" {
  length  = 40
  special = false
}

resource "random_password" "redis_auth_token" {
  # ElastiCache AUTH tokens: 16-128 printable characters, no @ " /.
  length  = 64
  special = false
}

# ------------------------------------------------------------------------- Secrets Manager

resource "aws_secretsmanager_secret" "app" {
  name                    = "staybook/app"
  description             = "staybook's keys and tokens (STAYBOOK_* settings), read by the ExternalSecret staybook-app"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id = aws_secretsmanager_secret.app.id
  secret_string = jsonencode({
    secret_key              = random_password.secret_key.result
    jwt_keys                = jsonencode({ k1 = random_password.jwt_key.result })
    jwt_active_key_id       = "k1"
    payments_webhook_secret = random_password.payments_webhook_secret.result
    metrics_token           = random_password.metrics_token.result
    pii_master_key          = replace(replace(random_bytes.pii_master_key.base64, "+", "-"), "/", "_")
    email_hash_key          = random_password.email_hash_key.result
    audit_anchor_key        = random_password.audit_anchor_key.result
    typesense_api_key       = random_password.typesense_api_key.result
    smtp_username           = var.smtp_username
    smtp_password           = var.smtp_password
  })
  # Rotation writes new versions; Terraform does not put the first one back.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_secretsmanager_secret" "database" {
  name                    = "staybook/database"
  description             = "Aurora endpoints and staybook's database credentials (PgBouncer, migrate)"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  # The shape AWS's PostgreSQL rotation function expects, plus the reader endpoint.
  secret_string = jsonencode({
    engine      = "postgres"
    host        = var.database_endpoint
    reader_host = var.database_reader_endpoint
    port        = 5432
    dbname      = var.database_name
    username    = var.database_username
    password    = random_password.database.result
  })
  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_secretsmanager_secret" "redis" {
  name                    = "staybook/redis"
  description             = "ElastiCache configuration endpoint and AUTH token"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "redis" {
  secret_id = aws_secretsmanager_secret.redis.id
  secret_string = jsonencode({
    host       = var.redis_endpoint
    auth_token = random_password.redis_auth_token.result
  })
  lifecycle {
    ignore_changes = [secret_string]
  }
}

# The database password rotates with AWS's own single-user PostgreSQL rotation function, deployed
# from the Serverless Application Repository into the data subnets.
resource "aws_serverlessapplicationrepository_cloudformation_stack" "postgres_rotation" {
  name           = "${var.name}-postgres-rotation"
  application_id = "arn:aws:serverlessrepo:us-east-1:297356227824:applications/SecretsManagerRDSPostgreSQLRotationSingleUser"
  capabilities   = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]
  parameters = {
    endpoint            = "https://secretsmanager.${local.region}.amazonaws.com"
    functionName        = "${var.name}-postgres-rotation"
    vpcSubnetIds        = join(",", var.rotation_subnet_ids)
    vpcSecurityGroupIds = join(",", var.rotation_security_group_ids)
    kmsKeyArn           = aws_kms_key.this["secrets"].arn
  }
  tags = local.tags
}

resource "aws_secretsmanager_secret_rotation" "database" {
  secret_id           = aws_secretsmanager_secret.database.id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.postgres_rotation.outputs["RotationLambdaARN"]
  rotation_rules {
    automatically_after_days = 30
  }
}

# The app's keys and the Redis token rotate with staybook's own function (var.rotation_lambda_arn):
# it adds a JWT key id and a PII master key id beside the old ones (both keep verifying and
# unwrapping during the rotation), and sets a new AUTH token with ElastiCache's ROTATE strategy.
resource "aws_secretsmanager_secret_rotation" "app" {
  secret_id           = aws_secretsmanager_secret.app.id
  rotation_lambda_arn = var.rotation_lambda_arn
  rotation_rules {
    automatically_after_days = 30
  }
}

resource "aws_secretsmanager_secret_rotation" "redis" {
  secret_id           = aws_secretsmanager_secret.redis.id
  rotation_lambda_arn = var.rotation_lambda_arn
  rotation_rules {
    automatically_after_days = 30
  }
}

# ------------------------------------------------------------------------- WAF

resource "aws_wafv2_web_acl" "this" {
  name        = var.name
  description = "staybook: OWASP-style managed rules and 2,000 requests per 5 minutes per address"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  # 2,000 requests in any 5-minute window from one address: blocked until it falls below.
  rule {
    name     = "rate-limit-per-ip"
    priority = 0
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit                 = var.rate_limit_per_5_minutes
        aggregate_key_type    = "IP"
        evaluation_window_sec = 300
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-common"
    priority = 1
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        # Photo uploads (15 MB) and signal batches are larger than the rule's 8 KB: the ingress
        # caps bodies per route instead (deploy/k8s/base/ingress.yaml).
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-sqli"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesSQLiRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-sqli"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = local.tags
}

# WAF log groups must be named aws-waf-logs-*.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.this["logs"].arn
  tags              = local.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    single_header {
      name = "cookie"
    }
  }
}

# The load balancer in front of ingress-nginx (an ALB made by the AWS Load Balancer Controller);
# set once it exists.
resource "aws_wafv2_web_acl_association" "load_balancer" {
  count        = var.load_balancer_arn == null ? 0 : 1
  resource_arn = var.load_balancer_arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}
