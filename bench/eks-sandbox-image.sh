#!/usr/bin/env bash
# The incumbent, for bench/sandbox.py: how EKS's AL2 node image keeps the sandbox image
# (sandbox-image.service, a Type=oneshot unit after containerd that the kubelet requires; see
# docs/containerd.md, "How EKS node images keep the sandbox image"), step for step:
#   1. read sandbox_image from containerd's config with grep (so a version 3 config is missed);
#   2. skip if `ctr -n k8s.io image ls` already lists it;
#   3. get a password with `aws ecr get-login-password --region <4th label of the host>`;
#   4. pull it with the password, 4 tries with 10/20/40 s backoff plus jitter. EKS pulls with
#      `crictl pull --creds` today and with `ctr --user` before that; Debian has no crictl, so
#      this is the ctr version (which never gets the CRI's pinned label either).
# Runs at boot only: nothing puts the image back after garbage collection.
#
# Differences from the unit, so that it runs against the loopback stack instead of a node:
# the paths come from the environment (CONTAINERD_CONFIG, CONTAINERD_ADDRESS, CTR_HOSTS_DIR:
# ctr ignores the CRI's registry config_path and needs the hosts.toml directory to reach the
# mirror), no sudo, and the AWS endpoint comes from AWS_ENDPOINT_URL_ECR as for ecrcred.
set -euo pipefail

config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
address=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
hosts_dir=${CTR_HOSTS_DIR:-/etc/containerd/certs.d}
ctr=(ctr --address "$address" --namespace k8s.io)

sandbox_image=""
source <(grep "sandbox_image" "$config" | tr -d ' ')
if [[ -z $sandbox_image ]]; then
  echo >&2 "no sandbox_image in $config"
  exit 1
fi

### Short-circuit fetching sandbox image if it's already present
if "${ctr[@]}" image ls | grep -qF "$sandbox_image"; then
  echo "sandbox image already present, skipping pull"
  exit 0
fi

ecr_password=$(aws ecr get-login-password --region "$(echo "$sandbox_image" | cut -d. -f4)")
if [[ -z ${ecr_password} ]]; then
  echo >&2 "Unable to retrieve the password for ECR"
  exit 1
fi

MAX_RETRIES=3
### Pull image with retries
for attempt in $(seq 0 $MAX_RETRIES); do
  rc=0
  if [[ $attempt -gt 0 ]]; then
    echo "Attempt $attempt of $MAX_RETRIES"
  fi
  "${ctr[@]}" images pull --hosts-dir "$hosts_dir" --user "AWS:${ecr_password}" \
    "$sandbox_image" >/dev/null || rc=$?
  if [[ $rc -eq 0 ]]; then
    break
  fi
  if [[ $attempt -eq $MAX_RETRIES ]]; then
    echo "Max retries reached, exiting with error"
    exit $rc
  fi
  jitter=$((1 + RANDOM % 10))
  backoff=$((2 ** attempt))
  sleep_sec=$((backoff * 10 + jitter))
  echo "Pull image failed, retrying in $sleep_sec seconds"
  sleep $sleep_sec
done
