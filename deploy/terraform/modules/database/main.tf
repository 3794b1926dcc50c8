# Aurora PostgreSQL 15: one writer and two readers in three zones, 35 days of point-in-time
# recovery, storage, snapshots and Performance Insights encrypted with the database KMS key, TLS
# required. staybook reaches it through PgBouncer (deploy/k8s/base/pgbouncer.yaml): "staybook" is
# the writer endpoint, "staybook_ro" the reader endpoint.

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
  tags = merge(var.tags, { module = "database" })
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = local.tags
}

resource "aws_rds_cluster_parameter_group" "this" {
  name   = "${var.name}-aurora-postgresql15"
  family = "aurora-postgresql15"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }
  tags = local.tags
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-aurora-postgresql15-instance"
  family = "aurora-postgresql15"
  tags   = local.tags
}

resource "aws_iam_role" "monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_rds_cluster" "this" {
  cluster_identifier                  = var.name
  engine                              = "aurora-postgresql"
  engine_version                      = var.engine_version
  database_name                       = var.database_name
  master_username                     = var.master_username
  master_password                     = var.master_password
  db_subnet_group_name                = aws_db_subnet_group.this.name
  vpc_security_group_ids              = var.security_group_ids
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.this.name
  availability_zones                  = var.azs
  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = "02:00-03:00"
  preferred_maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql"]
  tags                                = local.tags

  # The password rotates in Secrets Manager (security module) every 30 days.
  lifecycle {
    ignore_changes = [master_password, availability_zones]
  }
}

# Instance 0 is the first writer; the other two are readers in the other zones. Aurora promotes a
# reader on failover (promotion_tier orders them).
resource "aws_rds_cluster_instance" "this" {
  count                                 = var.instance_count
  identifier                            = "${var.name}-${count.index}"
  cluster_identifier                    = aws_rds_cluster.this.id
  engine                                = aws_rds_cluster.this.engine
  engine_version                        = aws_rds_cluster.this.engine_version
  instance_class                        = var.instance_class
  availability_zone                     = var.azs[count.index % length(var.azs)]
  db_parameter_group_name               = aws_db_parameter_group.this.name
  promotion_tier                        = count.index
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 15
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  copy_tags_to_snapshot                 = true
  tags                                  = local.tags
}

# ------------------------------------------------------------------------- AWS Backup
# Aurora's continuous backup gives the 35-day point-in-time window; AWS Backup adds daily
# snapshots kept a year in a vault of their own (encrypted, deletions need the vault's policy).

resource "aws_backup_vault" "this" {
  name        = "${var.name}-database"
  kms_key_arn = var.kms_key_arn
  tags        = local.tags
}

resource "aws_backup_plan" "this" {
  name = "${var.name}-database"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this.name
    schedule          = "cron(0 3 * * ? *)"
    start_window      = 60
    completion_window = 360
    lifecycle {
      delete_after = var.snapshot_retention_days
    }
  }
  tags = local.tags
}

data "aws_iam_policy_document" "backup_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.name}-database-backup"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_selection" "this" {
  name         = "${var.name}-aurora"
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = [aws_rds_cluster.this.arn]
}
