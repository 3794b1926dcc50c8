# NATS JetStream on EKS (the official Helm chart): 3 servers in a cluster, one per zone, file
# storage on encrypted gp3 volumes. Streams are created by staybook with 3 replicas, so losing a
# zone loses no acknowledged event.

terraform {
  required_version = ">= 1.6"
  required_providers {
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

# gp3 volumes encrypted with the nats KMS key, bound in the zone the pod lands in.
resource "kubernetes_storage_class_v1" "jetstream" {
  metadata {
    name = "nats-jetstream"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
    kmsKeyId  = var.kms_key_arn
  }
}

resource "helm_release" "nats" {
  name             = "nats"
  namespace        = var.namespace
  create_namespace = true
  repository       = "https://nats-io.github.io/k8s/helm/charts/"
  chart            = "nats"
  version          = var.chart_version
  atomic           = true
  timeout          = 900

  values = [yamlencode({
    config = {
      cluster = {
        enabled  = true
        replicas = var.replicas
      }
      jetstream = {
        enabled = true
        fileStore = {
          pvc = {
            size             = var.storage_size
            storageClassName = kubernetes_storage_class_v1.jetstream.metadata[0].name
          }
        }
        memoryStore = { enabled = false }
      }
      monitor = { enabled = true }
    }
    podTemplate = {
      topologySpreadConstraints = {
        "topology.kubernetes.io/zone" = {
          maxSkew           = 1
          whenUnsatisfiable = "DoNotSchedule"
        }
      }
    }
    container = {
      merge = {
        resources = {
          requests = { cpu = var.cpu, memory = var.memory }
          limits   = { cpu = var.cpu, memory = var.memory }
        }
      }
    }
    # Prometheus exporter beside each server (gnatsd_varz_* and JetStream metrics).
    promExporter = {
      enabled     = true
      podMonitor = { enabled = true }
    }
    podDisruptionBudget = { enabled = true }
  })]
}
