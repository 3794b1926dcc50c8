# Typesense: 3 EC2 nodes (one per zone) in one Raft cluster, chosen over a Helm release because
# the index is memory-bound (16.4 GB at 5 million properties, docs/capacity.md) and a node of its
# own, r6i.xlarge, keeps it away from the pods' memory pressure and evictions. Each node has a
# fixed private address in its data subnet, so the peers list is known before the nodes exist.
# The app reaches the cluster at typesense.<zone_name> (one A record per node).

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.54, < 6"
    }
  }
}

data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags       = merge(var.tags, { module = "search" })
  node_ips   = [for cidr in var.subnet_cidrs : cidrhost(cidr, 10)]
  peers      = join(",", [for ip in local.node_ips : "${ip}:8107:8108"])
  data_mount = "/var/lib/typesense"
}

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian's cloud team
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-typesense"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# The node reads its API key from staybook/app at boot.
data "aws_iam_policy_document" "api_key" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.app_secret_arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
  }
}

resource "aws_iam_role_policy" "api_key" {
  name   = "typesense-api-key"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.api_key.json
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name}-typesense"
  role = aws_iam_role.node.name
  tags = local.tags
}

resource "aws_instance" "node" {
  count                  = length(var.subnet_ids)
  ami                    = data.aws_ami.debian.id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index]
  private_ip             = local.node_ips[count.index]
  vpc_security_group_ids = var.security_group_ids
  iam_instance_profile   = aws_iam_instance_profile.node.name
  ebs_optimized          = true
  monitoring             = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 20
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  # The index on its own volume: it survives replacing the instance.
  ebs_block_device {
    device_name           = "/dev/sdf"
    volume_type           = "gp3"
    volume_size           = var.data_volume_gb
    encrypted             = true
    kms_key_id            = var.kms_key_arn
    delete_on_termination = false
  }

  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    typesense_version = var.typesense_version
    peers             = local.peers
    node_ip           = local.node_ips[count.index]
    data_mount        = local.data_mount
    region            = data.aws_region.current.name
    app_secret_arn    = var.app_secret_arn
  })
  user_data_replace_on_change = false

  tags = merge(local.tags, { Name = "${var.name}-typesense-${count.index}" })

  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_route53_zone" "internal" {
  name    = var.zone_name
  comment = "staybook's private names"
  vpc {
    vpc_id = var.vpc_id
  }
  tags = local.tags
}

resource "aws_route53_record" "typesense" {
  zone_id = aws_route53_zone.internal.zone_id
  name    = "typesense.${var.zone_name}"
  type    = "A"
  ttl     = 30
  records = aws_instance.node[*].private_ip
}
