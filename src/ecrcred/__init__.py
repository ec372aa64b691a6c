"""ecrcred: image-pull credentials for Kubernetes nodes (ECR and private registries)."""

__version__ = "0.1.0"
