# S3 buckets: media (photos and the signal archive) and backups (pgBackRest, exports), each
# versioned, SSE-KMS with the storage key, public access blocked, TLS required, access-logged to a
# log bucket; older versions and old backups move to Glacier.

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
  tags = merge(var.tags, { module = "storage" })
  buckets = {
    media   = "${var.name}-media"
    backups = "${var.name}-backups"
    logs    = "${var.name}-access-logs"
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events: staybook writes and reads its objects itself
  #checkov:skip=CKV_AWS_144:One region is the failure domain here; cross-region copies of backups are the DR plan's next step (deploy/README.md)
  #checkov:skip=CKV_AWS_18:The log bucket does not log into itself; media and backups log into it (checkov does not follow for_each keys)
  for_each = local.buckets
  bucket   = each.value
  tags     = merge(local.tags, { purpose = each.key })
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = local.buckets
  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

# Access logs of media and backups go to the log bucket.
resource "aws_s3_bucket_logging" "media" {
  bucket        = aws_s3_bucket.this["media"].id
  target_bucket = aws_s3_bucket.this["logs"].id
  target_prefix = "media/"
}

resource "aws_s3_bucket_logging" "backups" {
  bucket        = aws_s3_bucket.this["backups"].id
  target_bucket = aws_s3_bucket.this["logs"].id
  target_prefix = "backups/"
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets
  statement {
    sid     = "DenyPlainHttp"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this[each.key].arn,
      "${aws_s3_bucket.this[each.key].arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # S3 server access logging delivers into the log bucket.
  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "S3ServerAccessLogs"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this[each.key].arn}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each   = local.buckets
  bucket     = aws_s3_bucket.this[each.key].id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "media" {
  bucket = aws_s3_bucket.this["media"].id

  rule {
    id     = "old-versions-to-glacier"
    status = "Enabled"
    filter {}
    noncurrent_version_transition {
      noncurrent_days = var.media_noncurrent_glacier_days
      storage_class   = "GLACIER"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.media_noncurrent_expire_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # The signal archive (Parquet day partitions) is read by retraining for a few weeks, then kept cold.
  rule {
    id     = "signals-to-glacier"
    status = "Enabled"
    filter {
      prefix = "signals/"
    }
    transition {
      days          = 90
      storage_class = "GLACIER"
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.this["backups"].id

  rule {
    id     = "backups-to-glacier"
    status = "Enabled"
    filter {}
    transition {
      days          = var.backup_glacier_days
      storage_class = "GLACIER"
    }
    expiration {
      days = var.backup_expire_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.this["logs"].id

  rule {
    id     = "logs-to-glacier"
    status = "Enabled"
    filter {}
    transition {
      days          = 90
      storage_class = "GLACIER"
    }
    expiration {
      days = 400
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}
