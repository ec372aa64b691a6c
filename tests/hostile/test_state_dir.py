"""The state directory, the config file and the files they name, planted or swapped by another
user, against the real binary run as root (and as an unprivileged user where that is the point).

The attacker is uid 65534 (``plant``): it owns a directory on the cache path, plants symlinks,
token files, compiled config copies and lock files, and holds locks. ecrcred must never chmod
what it did not create, never follow a symlink it did not expect, never believe a file someone
else could have written, and still answer the kubelet (without a cache) with one warning.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
import subprocess
import time
from pathlib import Path

from tests.hostile.conftest import NOBODY, as_user, clean_failure, plant, warnings
from tests.support.kubelet import check_response, exec_provider, request
from tests.support.stack import ECR_HOST, REGISTRY_PASSWORD

ECR_IMAGE = f"{ECR_HOST}/app"
HARBOR = "harbor.corp.example"
WEEK = 7 * 24 * 3600.0


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def token_doc(registry: str, identity: str, password: str) -> dict[str, object]:
    now = time.time()
    return {"version": 1, "registry": registry, "identity": identity, "username": "AWS",
            "password": password, "expires_at": now + WEEK - 60, "fetched_at": now}


def answer_ok(ecrcred_bin: str, env: dict[str, str], image: str = ECR_IMAGE,
              args: tuple[str, ...] = ("get-credentials",),
              ) -> tuple[dict[str, object], subprocess.CompletedProcess[bytes]]:
    req = request(image)
    result = exec_provider(ecrcred_bin, req, env, args=args)
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    return check_response(result.stdout, req), result


def cached_key_files(ecrcred_bin: str, env: dict[str, str], cache: Path) -> dict[str, bytes]:
    """Run once with a trusted cache of our own and return its token files: their names and
    envelopes are what an attacker would forge (they are digests of non-secret parts)."""
    answer_ok(ecrcred_bin, {**env, "ECRCRED_CACHE_DIR": str(cache)})
    return {p.name: p.read_bytes() for p in cache.glob("*.json")
            if not p.name.startswith("config-")}


# -- the cache directory itself -------------------------------------------------------------

def test_a_symlink_planted_in_another_users_directory_never_chmods_or_fills_its_target(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    own, victim = shared_dir / "own", shared_dir / "victim"
    own.mkdir()
    victim.mkdir()
    os.chown(own, NOBODY, NOBODY)
    os.chmod(victim, 0o755)
    plant(["ln", "-s", str(victim), str(own / "cache")])

    doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(own / "cache")})

    assert doc["auth"][ECR_HOST]["password"] == REGISTRY_PASSWORD
    assert mode(victim) == 0o755, "the symlink's target lost its mode"
    assert list(victim.iterdir()) == [], "token files were written through the symlink"
    (warning,) = warnings(result, "token cache")
    assert str(own / "cache") in warning and "without a token cache" in warning


def test_a_sticky_shared_directory_is_neither_chmoded_nor_used(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    tmp_like = shared_dir / "tmp"
    tmp_like.mkdir()
    os.chmod(tmp_like, 0o1777)

    doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(tmp_like)})

    assert doc["auth"][ECR_HOST]["password"] == REGISTRY_PASSWORD
    assert mode(tmp_like) == 0o1777
    assert list(tmp_like.iterdir()) == []
    (warning,) = warnings(result, "token cache")
    assert str(tmp_like) in warning and "writable by" in warning


def test_a_root_owned_symlink_as_the_cache_directory_is_not_followed(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    target = shared_dir / "real"
    target.mkdir(mode=0o700)
    (shared_dir / "link").symlink_to(target)

    _doc, result = answer_ok(ecrcred_bin,
                             {**kubelet_env, "ECRCRED_CACHE_DIR": str(shared_dir / "link")})

    assert list(target.iterdir()) == []
    (warning,) = warnings(result, "token cache")
    assert "symlink" in warning


def test_a_token_planted_in_another_users_directory_is_not_served(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    forged = cached_key_files(ecrcred_bin, kubelet_env, shared_dir / "mine")
    theirs = shared_dir / "theirs"
    theirs.mkdir(mode=0o700)
    for name, body in forged.items():
        doc = json.loads(body)
        doc.update(token_doc(doc["registry"], doc["identity"], "planted-password-value"))
        (theirs / name).write_text(json.dumps(doc))
        os.chmod(theirs / name, 0o600)
        os.chown(theirs / name, NOBODY, NOBODY)
    os.chown(theirs, NOBODY, NOBODY)
    aws.reset()

    doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(theirs)})

    assert doc["auth"][ECR_HOST]["password"] == REGISTRY_PASSWORD
    assert aws.calls("GetAuthorizationToken") == 1
    assert "planted-password-value" not in result.stdout.decode()
    (warning,) = warnings(result, "token cache")
    assert f"owned by uid {NOBODY}" in warning


def test_a_group_writable_directory_or_parent_is_not_used(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    open_parent = shared_dir / "open"
    open_parent.mkdir()
    os.chmod(open_parent, 0o777)
    for cache, culprit in ((open_parent / "cache", open_parent),
                           (shared_dir / "group-cache", shared_dir / "group-cache")):
        if culprit != open_parent:
            cache.mkdir()
            os.chmod(cache, 0o770)
        _doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(cache)})
        (warning,) = warnings(result, "token cache")
        assert f"{culprit} is writable by" in warning, warning
        assert not list(cache.glob("*.json")) if cache.exists() else True


def test_our_file_open_to_others_is_ignored_and_replaced_0600(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    cache = tmp_path / "cache"
    for name, body in cached_key_files(ecrcred_bin, kubelet_env, cache).items():
        doc = json.loads(body)
        doc.update(token_doc(doc["registry"], doc["identity"], "world-readable-password"))
        (cache / name).write_text(json.dumps(doc))
        os.chmod(cache / name, 0o644)
    aws.reset()

    doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(cache)})

    assert doc["auth"][ECR_HOST]["password"] == REGISTRY_PASSWORD
    assert aws.calls("GetAuthorizationToken") == 1
    (warning,) = warnings(result, "ignoring cache file")
    assert "mode 0644" in warning
    for path in cache.glob("*.json"):
        assert mode(path) == 0o600
        assert b"world-readable-password" not in path.read_bytes()


def test_a_lock_held_by_another_user_cannot_stall_us(ecrcred_bin, kubelet_env, aws, shared_dir):
    """Another user's directory with a held flock: before, every pull waited for the lock and
    failed with [DEADLINE]; now the directory is refused, so nothing of theirs is waited on."""
    forged = cached_key_files(ecrcred_bin, kubelet_env, shared_dir / "mine")
    theirs = shared_dir / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    lock_name = next(iter(forged)).replace(".json", ".lock")
    holder = subprocess.Popen(  # the attacker holds the lock for a minute
        as_user(["flock", "-x", str(theirs / lock_name), "sleep", "60"]))
    try:
        deadline = time.monotonic() + 10
        while not (theirs / lock_name).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(theirs),
                                "ECRCRED_TIMEOUT": "5"})
        assert time.monotonic() - started < 4
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_swapped_for_a_symlink_is_replaced_with_a_warning_and_locks_again(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    cache = tmp_path / "cache"
    names = cached_key_files(ecrcred_bin, kubelet_env, cache)
    lock = cache / next(iter(names)).replace(".json", ".lock")
    target = tmp_path / "elsewhere"
    target.write_text("not a lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    for path in cache.glob("*.json"):
        if not path.name.startswith("config-"):
            path.unlink()  # a miss, so the lock is taken
    _doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CACHE_DIR": str(cache)})

    (warning,) = warnings(result, "lock file")
    assert str(lock) in warning and "symlink" in warning
    assert target.read_text() == "not a lock"
    assert lock.is_file() and not lock.is_symlink() and mode(lock) == 0o600
    with open(lock, "rb") as held:  # it is the lock ecrcred takes now: held, a miss waits
        fcntl.flock(held, fcntl.LOCK_EX)
        for path in cache.glob("*.json"):
            if not path.name.startswith("config-"):
                path.unlink()
        result = exec_provider(ecrcred_bin, request(ECR_IMAGE),
                               {**kubelet_env, "ECRCRED_CACHE_DIR": str(cache),
                                "ECRCRED_TIMEOUT": "2"})
    clean_failure(result, 5, "[DEADLINE]")


# -- the compiled config copy ---------------------------------------------------------------

def harbor_config(directory: Path, password_file: Path) -> Path:
    path = directory / "ecrcred.json"
    path.write_text(json.dumps({
        "apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
        "registries": [{"match": [HARBOR],
                        "static": {"username": "robot", "passwordFile": str(password_file)}}]}))
    return path


def forge_compiled_copy(real_copy: Path, secret_file: Path) -> bytes:
    """What an attacker who can read the config and stat it would write: the same envelope
    (path, version, digest or stamp), with the password file pointing at root's secret."""
    doc = json.loads(real_copy.read_bytes())
    rule = doc["config"]["registries"][0]
    rule["options"]["password_file"] = str(secret_file)
    return json.dumps(doc).encode()


def test_a_planted_compiled_config_never_makes_root_read_another_file(
        ecrcred_bin, kubelet_env, aws, shared_dir, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root-only-secret-value\n")
    os.chmod(shadow, 0o600)
    password = tmp_path / "harbor-password"
    password.write_text("harbor-password-value\n")
    os.chmod(password, 0o600)
    config = harbor_config(tmp_path, password)
    env = {**kubelet_env, "ECRCRED_CONFIG": str(config)}
    mine = shared_dir / "mine"
    answer_ok(ecrcred_bin, {**env, "ECRCRED_CACHE_DIR": str(mine)}, image=f"{HARBOR}/app")
    (real_copy,) = mine.glob("config-*.json")
    forged = forge_compiled_copy(real_copy, shadow)

    # 1. In a directory another user owns (the attacker's own --cache-dir).
    theirs = shared_dir / "theirs"
    theirs.mkdir(mode=0o700)
    (theirs / real_copy.name).write_bytes(forged)
    os.chmod(theirs / real_copy.name, 0o600)
    os.chown(theirs / real_copy.name, NOBODY, NOBODY)
    os.chown(theirs, NOBODY, NOBODY)
    # 2. In root's own directory, but a file another user owns (left there when the directory
    #    was shared, say): its envelope is right (anyone can read the config and hash it), so
    #    only its owner tells it from ecrcred's own.
    real_copy.write_bytes(forged)
    os.chmod(real_copy, 0o600)
    os.chown(real_copy, NOBODY, NOBODY)
    for cache in (theirs, mine):
        doc, result = answer_ok(ecrcred_bin, {**env, "ECRCRED_CACHE_DIR": str(cache)},
                                image=f"{HARBOR}/app")
        assert doc["auth"][HARBOR]["password"] == "harbor-password-value", cache
        assert b"root-only-secret-value" not in result.stdout + result.stderr


def test_an_edited_config_with_the_same_size_and_times_is_validated_again(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    password = tmp_path / "harbor-password"
    password.write_text("harbor-password-value\n")
    os.chmod(password, 0o600)
    other = tmp_path / "other-passwor"  # same length as "harbor-password"
    other.write_text("other-password-value\n")
    os.chmod(other, 0o600)
    config = harbor_config(tmp_path, password)
    env = {**kubelet_env, "ECRCRED_CONFIG": str(config)}
    answer_ok(ecrcred_bin, env, image=f"{HARBOR}/app")
    st = config.stat()
    config.write_text(config.read_text().replace("harbor-password", "other-passwor"))
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))

    doc, _ = answer_ok(ecrcred_bin, env, image=f"{HARBOR}/app")
    assert doc["auth"][HARBOR]["password"] == "other-password-value"


# -- the config file and what it names ---------------------------------------------------------

def test_a_config_another_user_could_write_is_refused_naming_it(
        ecrcred_bin, kubelet_env, aws, shared_dir, tmp_path):
    password = tmp_path / "harbor-password"
    password.write_text("harbor-password-value\n")
    os.chmod(password, 0o600)
    writable = harbor_config(tmp_path, password)
    os.chmod(writable, 0o666)
    theirs = shared_dir / "theirs"
    theirs.mkdir()
    owned = harbor_config(theirs, password)
    os.chown(owned, NOBODY, NOBODY)
    open_dir = shared_dir / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    in_open_dir = harbor_config(open_dir, password)
    for config, culprit, why in ((writable, writable, "writable by"),
                                 (owned, owned, f"owned by uid {NOBODY}"),
                                 (in_open_dir, open_dir, "writable by")):
        result = exec_provider(ecrcred_bin, request(f"{HARBOR}/app"),
                               {**kubelet_env, "ECRCRED_CONFIG": str(config)})
        line = clean_failure(result, 4, "[BAD_CONFIG]", str(config), f"{culprit} is {why}")
        assert "harbor-password-value" not in line


def test_a_password_file_another_user_could_replace_is_warned_about(
        ecrcred_bin, kubelet_env, aws, shared_dir, tmp_path):
    open_dir = shared_dir / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    password = open_dir / "harbor-password"
    password.write_text("harbor-password-value\n")
    os.chmod(password, 0o600)
    env = {**kubelet_env, "ECRCRED_CONFIG": str(harbor_config(tmp_path, password))}

    _doc, result = answer_ok(ecrcred_bin, env, image=f"{HARBOR}/app")

    (warning,) = warnings(result, "password file")
    assert str(password) in warning and f"{open_dir} is writable by" in warning


def test_a_docker_config_another_user_could_write_is_warned_about(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    docker = tmp_path / "docker.json"
    login = base64.b64encode(b"robot:quay-password-value").decode()
    docker.write_text(json.dumps({"auths": {"quay.io": {"auth": login}}}))
    os.chmod(docker, 0o622)
    config = tmp_path / "ecrcred.json"
    config.write_text(json.dumps({
        "apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
        "registries": [{"match": ["quay.io"], "dockerConfig": {"paths": [str(docker)]}}]}))

    _doc, result = answer_ok(ecrcred_bin, {**kubelet_env, "ECRCRED_CONFIG": str(config)},
                             image="quay.io/team/app")

    (warning,) = warnings(result, "could have been written by another user")
    assert str(docker) in warning and "writable by" in warning


# -- as an unprivileged user -------------------------------------------------------------------

def test_as_an_unprivileged_user_its_own_cache_works_and_roots_is_left_alone(
        ecrcred_bin, kubelet_env, aws, shared_dir):
    own = shared_dir / "nobody-cache"
    roots = shared_dir / "root-cache"
    roots.mkdir(mode=0o755)
    own.mkdir(mode=0o700)
    os.chown(own, NOBODY, NOBODY)

    def run(cache: Path) -> subprocess.CompletedProcess[bytes]:
        req = json.dumps(request(ECR_IMAGE)).encode()
        return subprocess.run(as_user([ecrcred_bin, "get-credentials"], reach=True), input=req,
                              env={**kubelet_env, "ECRCRED_CACHE_DIR": str(cache)},
                              capture_output=True, timeout=60, cwd="/", check=False)

    aws.reset()
    for _ in range(2):
        result = run(own)
        assert result.returncode == 0, result.stderr.decode()
        assert warnings(result, "cache") == [], result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 1, "the second run is a cache hit"
    assert all(p.stat().st_uid == NOBODY for p in own.iterdir())

    result = run(roots)
    assert result.returncode == 0, result.stderr.decode()
    check_response(result.stdout, request(ECR_IMAGE))
    (warning,) = warnings(result, "token cache")
    assert str(roots) in warning and "not writable" in warning
    assert list(roots.iterdir()) == []
    assert mode(roots) == 0o755



def test_a_config_reached_through_a_symlink_into_another_users_directory_is_refused(
        ecrcred_bin, kubelet_env, aws, shared_dir, tmp_path):
    # root's /etc-like directory holds a symlink (root's own) to a file in a directory another
    # user owns: that user could swap the file for one naming any root-only file as a password.
    password = tmp_path / "harbor-password"
    password.write_text("harbor-password-value\n")
    os.chmod(password, 0o600)
    theirs = shared_dir / "theirs"
    theirs.mkdir()
    target = harbor_config(theirs, password)
    os.chown(theirs, NOBODY, NOBODY)
    etc = shared_dir / "etc"
    etc.mkdir()
    (etc / "ecrcred.json").symlink_to(target)

    result = exec_provider(ecrcred_bin, request(f"{HARBOR}/app"),
                           {**kubelet_env, "ECRCRED_CONFIG": str(etc / "ecrcred.json")})

    clean_failure(result, 4, "[BAD_CONFIG]", f"{theirs} is owned by uid {NOBODY}")


def test_a_password_file_symlinked_through_another_users_directory_is_warned_about(
        ecrcred_bin, kubelet_env, aws, shared_dir, tmp_path):
    theirs = shared_dir / "theirs"
    theirs.mkdir()
    real = theirs / "harbor-password"
    real.write_text("harbor-password-value\n")
    os.chmod(real, 0o600)
    os.chown(theirs, NOBODY, NOBODY)
    link = tmp_path / "harbor-password"
    link.symlink_to(real)
    env = {**kubelet_env, "ECRCRED_CONFIG": str(harbor_config(tmp_path, link))}

    _doc, result = answer_ok(ecrcred_bin, env, image=f"{HARBOR}/app")

    (warning,) = warnings(result, "password file")
    assert str(link) in warning and f"{theirs} is owned by uid {NOBODY}" in warning
