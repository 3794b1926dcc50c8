# staybook prod: every module composed in one AWS account (222222222222 is a placeholder) and region.
# State in S3 with DynamoDB locking (made once by deploy/terraform/bootstrap).

terraform {
  required_version = ">= 1.6"

  backend "s3" {
    bucket         = "staybook-prod-terraform-state"
    key            = "prod/terraform.tfstate"
    region         = "eu-west-1"
    dynamodb_table = "staybook-prod-terraform-locks"
    encrypt        = true
  }

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.54, < 6"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0, < 5"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12, < 3"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.25, < 3"
    }
  }
}

locals {
  name = "staybook-prod"
  tags = {
    project     = "staybook"
    environment = "prod"
    managed-by  = "terraform"
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]
  default_tags {
    tags = local.tags
  }
}

# The cluster's API, with a token from the caller's AWS credentials (NATS is a Helm release).
provider "kubernetes" {
  host                   = module.compute.cluster_endpoint
  cluster_ca_certificate = base64decode(module.compute.cluster_certificate_authority)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.compute.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.compute.cluster_endpoint
    cluster_ca_certificate = base64decode(module.compute.cluster_certificate_authority)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.compute.cluster_name, "--region", var.region]
    }
  }
}

module "security" {
  source                      = "../../modules/security"
  name                        = local.name
  database_endpoint           = module.database.endpoint
  database_reader_endpoint    = module.database.reader_endpoint
  redis_endpoint              = module.cache.endpoint
  rotation_subnet_ids         = module.networking.data_subnet_ids
  rotation_security_group_ids = [module.networking.app_security_group_id]
  rotation_lambda_arn         = var.rotation_lambda_arn
  load_balancer_arn           = var.load_balancer_arn
  tags                        = local.tags
}

module "networking" {
  source           = "../../modules/networking"
  name             = local.name
  azs              = var.azs
  logs_kms_key_arn = module.security.kms_key_arns["logs"]
  tags             = local.tags
}

module "compute" {
  source                 = "../../modules/compute"
  name                   = local.name
  kubernetes_version     = "1.28"
  subnet_ids             = module.networking.app_subnet_ids
  node_security_group_id = module.networking.app_security_group_id
  public_access_cidrs    = var.eks_public_access_cidrs
  node_groups = {
    system = { instance_types = ["m6i.large"], min_size = 3, max_size = 6 }
    app    = { instance_types = ["m6i.2xlarge"], min_size = 30, max_size = 260 }
  }
  kms_key_arn             = module.security.kms_key_arns["eks"]
  logs_kms_key_arn        = module.security.kms_key_arns["logs"]
  media_bucket_arn        = module.storage.media_bucket_arn
  storage_kms_key_arn     = module.security.kms_key_arns["storage"]
  container_log_group_arn = module.monitoring.container_log_group_arn
  secret_arns             = values(module.security.secret_arns)
  secrets_kms_key_arn     = module.security.kms_key_arns["secrets"]
  tags                    = local.tags
}

module "database" {
  source             = "../../modules/database"
  name               = local.name
  instance_class     = "db.r6g.4xlarge"
  instance_count     = 3
  azs                = var.azs
  subnet_ids         = module.networking.data_subnet_ids
  security_group_ids = [module.networking.database_security_group_id]
  kms_key_arn        = module.security.kms_key_arns["database"]
  master_username    = module.security.database_username
  master_password    = module.security.database_password
  tags               = local.tags
}

module "cache" {
  source             = "../../modules/cache"
  name               = local.name
  node_type          = "cache.r6g.xlarge"
  shards             = 3
  replicas_per_shard = 2
  subnet_ids         = module.networking.data_subnet_ids
  security_group_ids = [module.networking.cache_security_group_id]
  kms_key_arn        = module.security.kms_key_arns["cache"]
  logs_kms_key_arn   = module.security.kms_key_arns["logs"]
  auth_token         = module.security.redis_auth_token
  tags               = local.tags
}

module "messaging" {
  source       = "../../modules/messaging"
  replicas     = 3
  storage_size = "6Ti"
  cpu          = "4"
  memory       = "16Gi"
  kms_key_arn  = module.security.kms_key_arns["nats"]
  depends_on   = [module.compute]
}

module "search" {
  source              = "../../modules/search"
  name                = local.name
  vpc_id              = module.networking.vpc_id
  subnet_ids          = module.networking.data_subnet_ids
  subnet_cidrs        = module.networking.data_subnet_cidrs
  security_group_ids  = [module.networking.search_security_group_id]
  instance_type       = "r6i.xlarge"
  kms_key_arn         = module.security.kms_key_arns["search"]
  app_secret_arn      = module.security.secret_arns["app"]
  secrets_kms_key_arn = module.security.kms_key_arns["secrets"]
  tags                = local.tags
}

module "storage" {
  source      = "../../modules/storage"
  name        = local.name
  kms_key_arn = module.security.kms_key_arns["storage"]
  tags        = local.tags
}

module "monitoring" {
  source                      = "../../modules/monitoring"
  name                        = local.name
  region                      = var.region
  cluster_name                = local.name
  kms_key_arn                 = module.security.kms_key_arns["logs"]
  pager_endpoint              = var.pager_endpoint
  chat_endpoint               = var.chat_endpoint
  alert_emails                = var.alert_emails
  database_cluster_identifier = module.database.cluster_identifier
  cache_node_count            = 9
  cache_member_clusters       = module.cache.member_clusters
  search_instance_ids         = module.search.instance_ids
  web_acl_name                = local.name
  tags                        = local.tags
}
