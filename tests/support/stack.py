"""The end-to-end stack's names: an ECR-looking host mapped (hosts.toml) to a private TLS
registry with htpasswd auth, and the sandbox image under that name. The fixtures that stand the
stack up are in ``tests/conftest.py``."""

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
PAUSE_REPO = "eks/pause"
PAUSE_TAG = "3.9"
SANDBOX_IMAGE = f"{ECR_HOST}/{PAUSE_REPO}:{PAUSE_TAG}"
# The registry stands in for ECR behind a mirror, so it accepts what moto's ECR hands out for
# account 123456789012: user AWS and that account's fixed token.
REGISTRY_USER = "AWS"
REGISTRY_PASSWORD = "123456789012-auth-token"
