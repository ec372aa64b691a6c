"""The Debian package (packaging/deb/build-deb) and packaging/install.sh: what they put on a node.

Both install into throwaway roots: dpkg with ``--root`` and ``--force-script-chrootless`` (its
database then lives in the root, seeded with this machine's entries for the packages ecrcred
depends on, so the Depends line is checked for real), install.sh with ``--root``. Nothing is
installed on this machine's own root, and a test checks that its dpkg database is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrcred import __version__
from ecrcred.config.schema import compile_text
from tests.support.kubelet import check_response, exec_provider, request

ROOT = Path(__file__).resolve().parents[2]
BUILD_DEB = ROOT / "packaging" / "deb" / "build-deb"
INSTALL_SH = ROOT / "packaging" / "install.sh"
KUBELET_BIN_DIR = "usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
UNITS = ("ecrcred-sandbox.service", "ecrcred-sandbox-watch.service")
CONFFILES = ("/etc/ecrcred/config.yaml", "/etc/kubernetes/ecrcred/provider-config.yaml",
             "/etc/kubernetes/ecrcred/provider-config-pod-identity.yaml")
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
MOTO_PASSWORD = "123456789012-auth-token"
MAX_DEB_BYTES = 40 * 1024 * 1024
REAL_STATUS = Path("/var/lib/dpkg/status")


def run(argv: list[str | Path], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def real_status_digest() -> str:
    return digest(REAL_STATUS)


@pytest.fixture(scope="session")
def host_paths_before() -> dict[str, bool]:
    """Whether this machine had ecrcred's own paths before any package step ran."""
    return {p: Path(p).exists() for p in ("/var/lib/ecrcred", "/etc/ecrcred", "/usr/lib/ecrcred")}


@pytest.fixture(scope="session")
def deb(artifact_dir: Path, real_status_digest: str, host_paths_before: dict[str, bool]) -> Path:
    """``dist/ecrcred_<version>_<arch>.deb``, built by packaging/deb/build-deb."""
    result = run([BUILD_DEB], cwd=ROOT, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"build-deb failed (exit {result.returncode}):\n{result.stderr[-4000:]}",
                    pytrace=False)
    path = ROOT / result.stdout.strip().splitlines()[-1]
    assert path.is_file(), result.stdout
    return path


def control(deb: Path) -> dict[str, str]:
    text = run(["dpkg-deb", "--field", deb]).stdout
    return dict(re.findall(r"^([\w-]+): (.*)$", text, re.M))


def contents(deb: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (mode, owner, symlink target or '') from ``dpkg-deb --contents``."""
    result = run(["dpkg-deb", "--contents", deb])
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        mode, owner, _size, _day, _time, rest = line.split(None, 5)
        path, _, target = rest.partition(" -> ")
        found[path.removeprefix(".").rstrip("/") or "/"] = (mode, owner, target)
    return found


def listing(root: Path) -> list[str]:
    """Every entry under root (but dpkg's own database): type and mode, owner, path, and the
    symlink target or a digest of the file's bytes."""
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == "var/lib/dpkg" or rel.startswith("var/lib/dpkg/"):
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = digest(path)[:16]
        else:
            what = ""
        entries.append(f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {rel} {what}")
    return entries


def files_under(root: Path) -> list[str]:
    """Everything but directories (and dpkg's database)."""
    return [line for line in listing(root) if not line.startswith("d")]


# ---- dpkg in a throwaway root ---------------------------------------------------------------

def dpkg(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(["dpkg", f"--root={root}", "--log=/dev/null", "--force-script-chrootless",
                *args])


@pytest.fixture
def dpkg_root(tmp_path: Path, deb: Path) -> Path:
    """An empty root whose dpkg database knows this machine's packages that ecrcred depends on
    (copied from the real database, read-only), so dpkg checks Depends instead of being forced."""
    root = tmp_path / "dpkg-root"
    info = root / "var" / "lib" / "dpkg" / "info"
    info.mkdir(parents=True)
    names = [d.split()[0] for d in control(deb)["Depends"].split(", ")]
    query = run(["dpkg-query", "--status", *names])
    assert query.returncode == 0, f"this machine lacks a dependency: {query.stderr}"
    (root / "var" / "lib" / "dpkg" / "status").write_text(query.stdout)
    for stanza in query.stdout.strip().split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        same = fields.get("Multi-Arch") == "same"
        (info / f"{fields['Package']}{':' + fields['Architecture'] if same else ''}.list").touch()
    return root


@pytest.fixture
def installed(dpkg_root: Path, deb: Path) -> Path:
    result = dpkg(dpkg_root, "--install", deb)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert "--image-credential-provider-bin-dir=/" + KUBELET_BIN_DIR in result.stdout
    return dpkg_root


def kubelet_plugin(root: Path) -> Path:
    return root / KUBELET_BIN_DIR / "ecrcred"


# ---- the package file -----------------------------------------------------------------------

def test_deb_is_named_and_described_for_this_machine(deb: Path):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    fields = control(deb)
    assert deb.name == f"ecrcred_{__version__}_{arch}.deb"
    assert fields["Package"] == "ecrcred"
    assert fields["Version"] == __version__
    assert fields["Architecture"] == arch
    assert re.fullmatch(r".+ <[^@\s]+@[^>\s]+>", fields["Maintainer"])
    assert int(fields["Installed-Size"]) > 1000
    # the artifact bundles Python and its libraries: only the C library (and the zlib its
    # bootloader links before it knows about _internal/) come from the system
    depends = fields["Depends"].split(", ")
    assert any(d.startswith("libc6 (>= 2.") for d in depends), depends
    assert not [d for d in depends if "python" in d or "ssl" in d], depends
    assert deb.stat().st_size < MAX_DEB_BYTES, f"{deb.stat().st_size} bytes"


def test_deb_declares_conffiles_and_executable_maintainer_scripts(deb: Path, tmp_path: Path):
    result = run(["dpkg-deb", "--control", deb, tmp_path / "DEBIAN"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "DEBIAN" / "conffiles").read_text().split() == list(CONFFILES)
    for script in ("postinst", "prerm", "postrm"):
        path = tmp_path / "DEBIAN" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert run(["sh", "-n", path]).returncode == 0, f"{script}: syntax error"
        assert "DPKG_ROOT" in path.read_text()
    assert "--image-credential-provider-bin-dir" in (tmp_path / "DEBIAN" / "postinst").read_text()


def test_deb_contents_are_root_owned_with_the_node_layout(deb: Path):
    entries = contents(deb)
    assert {owner for _, owner, _ in entries.values()} == {"root/root"}
    assert entries["/usr/lib/ecrcred/ecrcred"][0] == "-rwxr-xr-x"
    assert entries["/usr/lib/ecrcred/_internal"][0] == "drwxr-xr-x"
    # relative links (Debian policy within /usr) resolve inside a --root install as on a node
    assert entries["/usr/bin/ecrcred"] == ("lrwxrwxrwx", "root/root", "../lib/ecrcred/ecrcred")
    link = "/" + KUBELET_BIN_DIR + "/ecrcred"
    assert entries[link][2] == "../../../../../lib/ecrcred/ecrcred"
    assert os.path.normpath(os.path.join(os.path.dirname(link), entries[link][2])) \
        == "/usr/lib/ecrcred/ecrcred"
    for path in (*CONFFILES, *(f"/lib/systemd/system/{u}" for u in UNITS)):
        assert entries[path][0] == "-rw-r--r--", path
    for path, (mode, _, _) in entries.items():
        if mode[0] == "d":
            assert mode == "drwxr-xr-x", f"{path} is {mode}"
        elif mode[0] == "-":
            assert mode in ("-rwxr-xr-x", "-rw-r--r--"), f"{path} is {mode}"
    # made by postinst (0700), never shipped: dpkg would reset its mode at each upgrade
    assert not [p for p in entries if p.startswith("/var")]
    assert not [p for p in entries if p.endswith(".stamp")]


def test_deb_units_run_the_installed_executable(deb: Path, tmp_path: Path):
    run(["dpkg-deb", "--extract", deb, tmp_path])
    for unit in UNITS:
        text = (tmp_path / "lib" / "systemd" / "system" / unit).read_text()
        assert (ROOT / "packaging" / "systemd" / unit).read_text() == text
        assert re.search(r"^ExecStart=/usr/bin/ecrcred pull-sandbox", text, re.M)


# ---- installed with dpkg --root -------------------------------------------------------------

def test_dpkg_install_puts_the_artifact_links_configs_and_units_in_place(installed: Path):
    root = installed
    assert (root / "usr/lib/ecrcred/ecrcred").is_file()
    assert (root / "usr/lib/ecrcred/_internal").is_dir()
    for link in (root / "usr/bin/ecrcred", kubelet_plugin(root)):
        assert link.is_symlink()
        assert link.resolve() == (root / "usr/lib/ecrcred/ecrcred").resolve()
    for conffile in CONFFILES:
        assert (root / conffile.lstrip("/")).is_file(), conffile
    assert (root / "etc/kubernetes/ecrcred/provider-config.yaml").read_text() \
        == (ROOT / "provider-config.yaml").read_text()
    assert (root / "etc/kubernetes/ecrcred/provider-config-pod-identity.yaml").read_text() \
        == (ROOT / "provider-config-pod-identity.yaml").read_text()
    for unit in UNITS:
        assert (root / "lib/systemd/system" / unit).is_file()
    status = run(["dpkg-query", f"--root={root}", "--show", "--showformat=${Status}",
                  "ecrcred"])
    assert status.stdout == "install ok installed"
    # every shipped file matches the package's md5sums
    verify = dpkg(root, "--verify", "ecrcred")
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")


def test_dpkg_postinst_makes_the_cache_dir_0700_inside_the_root_only(
        installed: Path, real_status_digest: str, host_paths_before: dict[str, bool]):
    for directory in ("var/lib/ecrcred", "var/lib/ecrcred/cache"):
        st = (installed / directory).stat()
        assert stat.S_IMODE(st.st_mode) == 0o700, directory
        assert (st.st_uid, st.st_gid) == (0, 0)
    # $DPKG_ROOT was honoured: nothing landed on this machine's own root
    assert {p: Path(p).exists() for p in host_paths_before} == host_paths_before
    assert digest(REAL_STATUS) == real_status_digest, "the machine's dpkg database changed"


def test_kubelet_plugin_link_runs_version(installed: Path):
    result = run([kubelet_plugin(installed), "version"], env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ecrcred {__version__} (pyinstaller onedir")


def test_kubelet_plugin_link_answers_get_credentials_with_the_shipped_config(
        installed: Path, kubelet_env: dict[str, str], aws):
    cache = installed / "var/lib/ecrcred/cache"
    env = {**kubelet_env, "ECRCRED_CACHE_DIR": str(cache),
           "ECRCRED_CONFIG": str(installed / "etc/ecrcred/config.yaml")}
    req = request(f"{ECR}/team/app")
    result = exec_provider(str(kubelet_plugin(installed)), req, env)
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, req)
    assert doc["auth"] == {ECR: {"username": "AWS", "password": MOTO_PASSWORD}}
    assert aws.calls("GetAuthorizationToken") == 1
    tokens = [p for p in cache.iterdir() if p.suffix == ".json"]
    assert tokens, list(cache.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tokens)
    # the same through /usr/bin/ecrcred, from the cache postinst made
    again = exec_provider(str(installed / "usr/bin/ecrcred"), req, env)
    assert again.returncode == 0, again.stderr.decode()
    assert json.loads(again.stdout)["auth"] == doc["auth"]
    assert aws.calls("GetAuthorizationToken") == 1


def uncommented_examples(text: str) -> str:
    """The shipped config with its commented ``registries:`` and ``podIdentity:`` examples
    switched on."""
    lines, taking = [], False
    for line in text.splitlines():
        if line in ("# registries:", "# podIdentity:"):
            taking = True
        elif line == "#":
            taking = False
        if taking:
            lines.append(line.removeprefix("# "))
    base = text.replace("registries: []\n", "")
    return base + "\n" + "\n".join(lines) + "\n"


def test_shipped_config_is_valid_ecr_only_and_its_examples_are_valid_too(installed: Path):
    path = installed / "etc/ecrcred/config.yaml"
    text = path.read_text()
    compiled = compile_text(text, str(path))
    assert compiled["registries"] == []
    example = compile_text(uncommented_examples(text), "examples")
    sources = [rule["source"] for rule in example["registries"]]
    assert sources == ["static", "mirrorOf", "ecr", "dockerConfig", "credentialHelper"]
    assert example["podIdentity"]["fallback"] == "node"


def test_installed_units_pass_systemd_analyze_verify_inside_the_root(installed: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found; ./scripts/test installs it (Debian systemd)")
    # systemd's own units (sysinit.target, ...) for the root; ours are in its /lib/systemd/system
    host_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                      if (p / "sysinit.target").exists())
    shutil.copytree(host_units, installed / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        result = run([analyze, "verify", f"--root={installed}", unit])
        assert result.returncode == 0, result.stderr
        assert unit not in result.stderr, result.stderr
    # it does look at ExecStart inside the root: without the executable the check fails
    (installed / "usr/bin/ecrcred").unlink()
    result = run([analyze, "verify", f"--root={installed}", UNITS[0]])
    assert result.returncode != 0
    assert "/usr/bin/ecrcred is not executable" in result.stderr


def test_dpkg_reinstall_keeps_an_edited_config(installed: Path, deb: Path):
    config = installed / "etc/ecrcred/config.yaml"
    edited = config.read_text() + "# edited on this node\n"
    config.write_text(edited)
    result = dpkg(installed, "--install", deb)
    assert result.returncode == 0, result.stderr
    assert config.read_text() == edited


def test_dpkg_remove_keeps_conffiles_and_the_cache_and_removes_the_rest(installed: Path):
    enable = run(["systemctl", f"--root={installed}", "enable", *UNITS])
    assert enable.returncode == 0, enable.stderr
    (installed / "var/lib/ecrcred/cache/token.json").write_text("{}")
    result = dpkg(installed, "--remove", "ecrcred")
    assert result.returncode == 0, result.stderr
    for conffile in CONFFILES:
        assert (installed / conffile.lstrip("/")).is_file(), conffile
    assert (installed / "var/lib/ecrcred/cache/token.json").exists()
    assert not (installed / "usr/lib/ecrcred").exists()
    assert not (installed / "usr/bin/ecrcred").is_symlink()
    assert not kubelet_plugin(installed).is_symlink()
    for unit in UNITS:
        assert not (installed / "lib/systemd/system" / unit).exists()
    status = run(["dpkg-query", f"--root={installed}", "--show", "--showformat=${Status}",
                  "ecrcred"])
    assert status.stdout == "deinstall ok config-files"


def test_dpkg_purge_removes_configuration_cache_and_enablement(installed: Path):
    enable = run(["systemctl", f"--root={installed}", "enable", *UNITS])
    assert enable.returncode == 0, enable.stderr
    assert list((installed / "etc/systemd/system").rglob("ecrcred-*.service"))
    (installed / "etc/ecrcred/secrets").mkdir()
    (installed / "etc/ecrcred/secrets/harbor").write_text("robot-password")
    (installed / "var/lib/ecrcred/cache/token.json").write_text("{}")
    result = dpkg(installed, "--purge", "ecrcred")
    assert result.returncode == 0, result.stderr
    assert not (installed / "etc/ecrcred").exists()
    assert not (installed / "etc/kubernetes/ecrcred").exists()
    assert not (installed / "var/lib/ecrcred").exists()
    assert not list((installed / "etc/systemd/system").rglob("ecrcred-*.service"))
    assert files_under(installed) == [], "left behind"


# ---- packaging/install.sh -------------------------------------------------------------------

def install_sh(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([INSTALL_SH, "--root", root, *args], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.fixture
def script_root(tmp_path: Path, artifact_tarball: Path) -> Iterator[Path]:
    root = tmp_path / "script-root"
    root.mkdir()
    result = install_sh(root, artifact_tarball)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    yield root


def test_install_sh_gives_the_same_tree_as_the_deb(script_root: Path, installed: Path):
    tree = listing(script_root)
    assert tree == listing(installed)
    assert any(f" {KUBELET_BIN_DIR}/ecrcred -> " in line for line in tree)
    assert any(line.startswith("drwx------ 0:0 var/lib/ecrcred/cache") for line in tree)
    assert len(tree) > 100  # the artifact's files are compared one by one, with digests


def test_install_sh_from_the_unpacked_dir_gives_the_same_tree(
        script_root: Path, artifact_dir: Path, tmp_path: Path):
    other = tmp_path / "from-dir"
    other.mkdir()
    result = install_sh(other, artifact_dir)
    assert result.returncode == 0, result.stderr
    assert listing(other) == listing(script_root)


def test_the_tarball_carries_its_install_script_units_and_provider_configs(artifact_tarball: Path):
    with tarfile.open(artifact_tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        shipped = {"ecrcred/install.sh": INSTALL_SH,
                   **{f"ecrcred/share/{u}": ROOT / "packaging" / "systemd" / u for u in UNITS},
                   **{f"ecrcred/share/{c}": ROOT / c
                      for c in ("provider-config.yaml", "provider-config-pod-identity.yaml")}}
        for name, source in shipped.items():
            assert name in members, f"{name} missing from {artifact_tarball.name}"
            extracted = tar.extractfile(members[name])
            assert extracted is not None and extracted.read() == source.read_bytes(), name
        assert members["ecrcred/install.sh"].mode & 0o111 == 0o111
        assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
        assert "ecrcred/.stamp" not in members


def test_the_tarball_alone_installs_the_same_tree_as_the_deb(tmp_path: Path,
                                                            artifact_tarball: Path,
                                                            installed: Path):
    # What a user of another distribution does: download, unpack, run the script inside. No
    # repository anywhere near: the tarball is unpacked into a directory of its own.
    download = tmp_path / "download"
    download.mkdir()
    shutil.copy(artifact_tarball, download)
    unpacked = run(["tar", "-xzf", artifact_tarball.name], cwd=download)
    assert unpacked.returncode == 0, unpacked.stderr
    root = tmp_path / "bundle-root"
    root.mkdir()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    result = run(["sh", "ecrcred/install.sh", "--root", root], cwd=download, env=env)
    assert result.returncode == 0, result.stderr
    assert listing(root) == listing(installed)
    assert not (root / "usr/lib/ecrcred/install.sh").exists()
    assert not (root / "usr/lib/ecrcred/share").exists()
    again = run([download / "ecrcred" / "install.sh", "--root", root, "--uninstall"], env=env)
    assert again.returncode == 0, again.stderr
    assert not (root / "usr/lib/ecrcred").exists()


def test_an_artifact_folder_without_share_names_what_is_missing(tmp_path: Path,
                                                               artifact_dir: Path):
    # An artifact folder from an older build, and the script copied away from the repository.
    bare = tmp_path / "bare" / "ecrcred"
    shutil.copytree(artifact_dir, bare, symlinks=True,
                    ignore=shutil.ignore_patterns("share", "install.sh"))
    lone = tmp_path / "elsewhere" / "install.sh"
    lone.parent.mkdir()
    shutil.copy(INSTALL_SH, lone)
    root = tmp_path / "r"
    root.mkdir()
    result = run(["sh", lone, "--root", root, bare], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "install.sh: error: cannot find provider-config.yaml" in result.stderr
    assert "use the whole release tarball" in result.stderr
    assert list(root.iterdir()) == [], "nothing is installed when a file is missing"


def test_install_sh_twice_gives_an_identical_tree(script_root: Path, artifact_tarball: Path):
    before = listing(script_root)
    result = install_sh(script_root, artifact_tarball)
    assert result.returncode == 0, result.stderr
    assert ".new" not in result.stderr
    assert listing(script_root) == before
    assert stat.S_IMODE((script_root / "var/lib/ecrcred/cache").stat().st_mode) == 0o700
    version = run([kubelet_plugin(script_root), "version"])
    assert version.stdout.startswith(f"ecrcred {__version__} ")


def test_install_sh_keeps_edited_configs_and_writes_the_shipped_ones_beside(
        script_root: Path, artifact_tarball: Path):
    config = script_root / "etc/ecrcred/config.yaml"
    provider = script_root / "etc/kubernetes/ecrcred/provider-config.yaml"
    shipped_config, shipped_provider = config.read_text(), provider.read_text()
    config.write_text(shipped_config.replace("registries: []", "registries: []  # mine"))
    provider.write_text(shipped_provider + "# mine\n")
    edited = listing(script_root)
    result = install_sh(script_root, artifact_tarball)
    assert result.returncode == 0, result.stderr
    assert "kept your /etc/ecrcred/config.yaml" in result.stderr
    assert "# mine" in config.read_text()
    assert "# mine" in provider.read_text()
    assert Path(f"{config}.new").read_text() == shipped_config
    assert Path(f"{provider}.new").read_text() == shipped_provider
    assert not (script_root / "etc/kubernetes/ecrcred/provider-config-pod-identity.yaml.new") \
        .exists()
    # and again: still the same tree, the .new files included
    with_new = listing(script_root)
    assert len(with_new) == len(edited) + 2
    assert install_sh(script_root, artifact_tarball).returncode == 0
    assert listing(script_root) == with_new
    # the admin takes the shipped text: the .new files go at the next run
    config.write_text(shipped_config)
    provider.write_text(shipped_provider)
    assert install_sh(script_root, artifact_tarball).returncode == 0
    assert not Path(f"{config}.new").exists()
    assert not Path(f"{provider}.new").exists()


def test_install_sh_uninstall_keeps_configuration_and_purge_removes_it(script_root: Path):
    (script_root / "var/lib/ecrcred/cache/token.json").write_text("{}")
    result = install_sh(script_root, "--uninstall")
    assert result.returncode == 0, result.stderr
    left = [line.split()[2] for line in files_under(script_root)]
    assert sorted(left) == sorted([c.lstrip("/") for c in CONFFILES]
                                  + ["var/lib/ecrcred/cache/token.json"])
    assert not (script_root / KUBELET_BIN_DIR).exists()
    result = install_sh(script_root, "--purge")
    assert result.returncode == 0, result.stderr
    assert files_under(script_root) == []
    assert not (script_root / "etc/ecrcred").exists()
    assert not (script_root / "var/lib/ecrcred").exists()


def test_install_sh_with_another_prefix_points_the_units_at_it(
        tmp_path: Path, artifact_tarball: Path):
    root = tmp_path / "prefixed"
    root.mkdir()
    result = install_sh(root, "--prefix", "/usr/local", artifact_tarball)
    assert result.returncode == 0, result.stderr
    bin_dir = "/usr/local/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
    assert f"--image-credential-provider-bin-dir={bin_dir}" in result.stderr
    assert run([root / bin_dir.lstrip("/") / "ecrcred", "version"]).returncode == 0
    assert (root / "usr/local/bin/ecrcred").resolve() == \
        (root / "usr/local/lib/ecrcred/ecrcred").resolve()
    for unit in UNITS:
        text = (root / "etc/systemd/system" / unit).read_text()
        assert "ExecStart=/usr/local/bin/ecrcred pull-sandbox" in text
        assert "/usr/bin/ecrcred" not in text
    assert not (root / "lib").exists()
    assert install_sh(root, "--prefix", "/usr/local", "--purge").returncode == 0
    assert files_under(root) == []


def test_install_sh_refuses_a_root_where_the_deb_is_installed(
        installed: Path, artifact_tarball: Path):
    before = listing(installed)
    result = install_sh(installed, artifact_tarball)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"install.sh: error: ecrcred is installed as a Debian package in {installed}; "
        "use dpkg or apt to change it"]
    assert listing(installed) == before


def make_bad_artifacts(tmp_path: Path) -> dict[str, Path]:
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        (tmp_path / "README").write_text("not ecrcred")
        tar.add(tmp_path / "README", arcname="something/README")
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not gzip data\n" * 10)
    half = tmp_path / "half" / "ecrcred"
    half.mkdir(parents=True)
    (half / "ecrcred").write_text("#!/bin/sh\n")
    (half / "ecrcred").chmod(0o755)
    not_elf = tmp_path / "not-elf" / "ecrcred"
    (not_elf / "_internal").mkdir(parents=True)
    (not_elf / "ecrcred").write_text("#!/bin/sh\necho ecrcred 9\n")
    (not_elf / "ecrcred").chmod(0o755)
    return {"missing": tmp_path / "nothing-here.tar.gz", "foreign": foreign,
            "garbage": garbage, "no _internal": half, "not a program": not_elf}


@pytest.mark.parametrize(("case", "needle"), [
    ("missing", "does not exist"),
    ("foreign", "is not an ecrcred artifact"),
    ("garbage", "is not a readable .tar.gz"),
    ("no _internal", "is not an ecrcred artifact"),
    ("not a program", "is not an executable program"),
])
def test_install_sh_rejects_a_bad_artifact_with_one_line(tmp_path: Path, case: str,
                                                         needle: str):
    artifact = make_bad_artifacts(tmp_path)[case]
    root = tmp_path / "root"
    root.mkdir()
    result = install_sh(root, artifact)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("install.sh: error: ")
    assert needle in lines[0]
    assert list(root.iterdir()) == [], "a rejected artifact must install nothing"


@pytest.mark.parametrize("args", [[], ["--bogus", "x.tar.gz"], ["a.tar.gz", "b.tar.gz"],
                                  ["--prefix", "usr", "a.tar.gz"]])
def test_install_sh_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str]):
    result = install_sh(tmp_path, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("install.sh: error: ")
    assert "usage: install.sh" in lines[0]


def test_no_package_step_touched_this_machine(real_status_digest: str,
                                              host_paths_before: dict[str, bool]):
    # runs last in this file (pytest keeps definition order), after every dpkg --root call
    assert digest(REAL_STATUS) == real_status_digest
    assert {p: Path(p).exists() for p in host_paths_before} == host_paths_before
    assert run(["dpkg-query", "--show", "--showformat=${Status}", "ecrcred"]).stdout \
        != "install ok installed"
