"""Faults of the token cache on disk, for ``ecrcred get-credentials`` exec'd as the kubelet execs
it (issue 7): bad files, file systems that refuse writes for real (a full tmpfs, a read-only
one, no inodes left, RLIMIT_FSIZE), a burst of 100 executions, and SIGKILL mid-write.

Already covered in ``tests/integration`` and not repeated: garbage, empty, binary, another
format version and non-object files; a cache directory under a regular file; 24 concurrent
executions for one registry. The table of all of them is ``tests/faults/README.md``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ecrcred.kubelet import parse_go_duration
from tests.faults.conftest import (
    ECR,
    MOTO_PASSWORD,
    cache_files,
    clean_failure,
    temp_files,
    warnings,
)
from tests.support.aws import wait_until
from tests.support.inotify import DirectoryWatch
from tests.support.kubelet import check_response, exec_provider, request
from tests.support.mounts import Tmpfs

TAMPERED = "tampered-password-must-not-be-served"


def answer_ok(result, image: str = f"{ECR}/app", password: str = MOTO_PASSWORD) -> dict:
    """Exit 0 and the kubelet accepts the answer, which carries ``password``."""
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, request(image))
    host = image.split("/", 1)[0]
    assert doc["auth"][host]["password"] == password
    assert "Traceback" not in result.stderr.decode()
    return doc


def first_file(env: dict[str, str], ecrcred_bin: str, password: str = MOTO_PASSWORD) -> Path:
    """Run once so that the cache holds one token file; return it."""
    answer_ok(exec_provider(ecrcred_bin, request(f"{ECR}/app"), env), password=password)
    (path,) = Path(env["ECRCRED_CACHE_DIR"]).glob("*.json")
    return path


def make_stale(path: Path) -> bytes:
    """Rewrite a cache file so that its token must be refreshed (but is still valid); return
    the bytes written."""
    doc = json.loads(path.read_text())
    now = time.time()
    doc.update(fetched_at=now - 7200, expires_at=now + 600)
    body = json.dumps(doc).encode()
    path.write_bytes(body)
    return body


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    try:
        fs = Tmpfs(tmp_path / "mnt", size="64k")
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield fs
    finally:
        fs.unmount()


# -- files that are not what we wrote -----------------------------------------------------------

def test_a_cache_file_truncated_anywhere_is_ignored_and_rewritten_whole(ecrcred_bin,
                                                                         kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    whole = path.read_bytes()
    for cut in sorted({1, 10, len(whole) // 2, len(whole) - 2, len(whole) - 1}):
        path.write_bytes(whole[:cut])
        aws.reset()
        answer_ok(exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env))
        assert aws.calls("GetAuthorizationToken") == 1, f"cut at {cut}"
        assert cache_files(path.parent)[path.name]["password"] == MOTO_PASSWORD


@pytest.mark.parametrize("change", [
    {"expires_at": float("inf")},
    {"expires_at": float("nan")},
    {"expires_at": 1e308},
    {"fetched_at": float("-inf")},
    {"expires_at_offset": -100000.0},
    {"expires_at_offset": 400 * 86400.0},
    {"expires_at": "tomorrow"},
    {"expires_at": True},
    {"password": None},
    {"password": ""},
    {"username": 42},
    {"version": "1"},
    {"identity": "another-identity"},
    {"registry": "ecr:210987654321.dkr.ecr.us-west-2.amazonaws.com"},
], ids=["expiry-infinity", "expiry-nan", "expiry-1e308", "fetched-minus-infinity",
        "expired-before-fetched", "lifetime-400-days", "expiry-string", "expiry-bool",
        "password-null", "password-empty", "username-number", "version-string",
        "other-identity", "other-registry"])
def test_a_cache_file_with_impossible_values_is_neither_served_nor_a_crash(
        ecrcred_bin, kubelet_env, aws, change):
    path = first_file(kubelet_env, ecrcred_bin)
    doc = json.loads(path.read_text())
    doc["password"] = TAMPERED
    offset = change.pop("expires_at_offset", None)
    if offset is not None:
        doc["expires_at"] = doc["fetched_at"] + offset
    doc.update(change)
    path.write_text(json.dumps(doc))  # json writes Infinity and NaN, and reads them back
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    # Before the fix: Infinity was exit 70 (OverflowError), 1e308 a cacheDuration of 10^304
    # hours that the kubelet cannot parse, and a 400-day lifetime was served for 400 days.
    answer_ok(result)
    assert parse_go_duration(json.loads(result.stdout)["cacheDuration"]) <= 1800
    assert aws.calls("GetAuthorizationToken") == 1
    assert cache_files(path.parent)[path.name]["password"] == MOTO_PASSWORD


def test_a_cache_file_copied_from_another_identity_is_not_served(ecrcred_bin, kubelet_env, aws):
    aws.tokens_per_caller()
    a_path = first_file(kubelet_env, ecrcred_bin, f"token-for-{kubelet_env['AWS_ACCESS_KEY_ID']}")
    other = dict(kubelet_env, AWS_ACCESS_KEY_ID="AKIDOTHERIDENTITY000")
    answer_ok(exec_provider(ecrcred_bin, request(f"{ECR}/app"), other),
              password="token-for-AKIDOTHERIDENTITY000")
    (b_path,) = (p for p in a_path.parent.glob("*.json") if p != a_path)
    b_path.write_bytes(a_path.read_bytes())  # identity A's token under identity B's name
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), other)
    answer_ok(result, password="token-for-AKIDOTHERIDENTITY000")
    assert aws.calls("GetAuthorizationToken") == 3


def test_an_oversized_cache_file_is_ignored_and_rewritten(ecrcred_bin, kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    doc = json.loads(path.read_text())
    doc.update(password=TAMPERED, padding="x" * (65 * 1024))
    path.write_text(json.dumps(doc))
    aws.reset()
    answer_ok(exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env))
    assert aws.calls("GetAuthorizationToken") == 1
    assert "padding" not in cache_files(path.parent)[path.name]


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_non_file_at_the_cache_path_neither_hangs_nor_crashes(ecrcred_bin, kubelet_env, aws,
                                                                tmp_path, kind):
    path = first_file(kubelet_env, ecrcred_bin)
    good = json.loads(path.read_text())
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path, 0o600)  # before the fix: open() blocked until the deadline, exit 5
    elif kind == "directory":
        path.mkdir()
    else:
        decoy = tmp_path / "decoy.json"
        decoy.write_text(json.dumps({**good, "password": TAMPERED}))
        path.symlink_to(decoy)
    aws.reset()
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"),
                           dict(kubelet_env, ECRCRED_TIMEOUT="10"))
    answer_ok(result)
    assert time.monotonic() - started < 8
    assert aws.calls("GetAuthorizationToken") == 1
    if kind == "directory":  # cannot be replaced by a file: one warning, no cache, an answer
        assert len(warnings(result, "cannot write token cache file")) == 1
    else:  # replaced by a real file
        assert path.is_file() and not path.is_symlink()
        assert cache_files(path.parent)[path.name]["password"] == MOTO_PASSWORD


# -- file systems that refuse ---------------------------------------------------------------------

def test_a_full_disk_degrades_to_no_cache_with_one_warning_and_no_partial_file(
        ecrcred_bin, kubelet_env, aws, tmpfs):
    cache = tmpfs.path / "cache"
    cache.mkdir(mode=0o700)
    assert tmpfs.fill() > 0
    env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(cache))
    for _ in range(2):
        result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
        answer_ok(result)
        (warning,) = warnings(result, "token cache")
        assert "No space left on device" in warning
        assert cache_files(cache) == {} and temp_files(cache) == []
    assert aws.calls("GetAuthorizationToken") == 2


def test_a_full_disk_keeps_the_previous_cache_file_whole(ecrcred_bin, kubelet_env, aws, tmpfs):
    cache = tmpfs.path / "cache"
    env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(cache))
    path = first_file(env, ecrcred_bin)
    before = make_stale(path)
    tmpfs.fill()
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    answer_ok(result)
    assert aws.calls("GetAuthorizationToken") == 1
    assert len(warnings(result, "No space left on device")) == 1
    assert path.read_bytes() == before, "a failed rewrite must leave the old file as it was"
    assert temp_files(cache) == []


def test_no_inode_left_means_no_lock_and_no_cache_but_an_answer(ecrcred_bin, kubelet_env, aws,
                                                                tmp_path):
    try:
        fs = Tmpfs(tmp_path / "mnt", size="1m", nr_inodes=16)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        cache = fs.path / "cache"
        cache.mkdir(mode=0o700)
        assert fs.use_up_inodes() > 0
        env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(cache), ECRCRED_LOG_LEVEL="debug")
        result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
        answer_ok(result)
        assert "going unlocked" in result.stderr.decode()
        assert len(warnings(result, "token cache")) == 1
        assert list(cache.iterdir()) == []
    finally:
        fs.unmount()


def test_a_read_only_cache_still_serves_its_fresh_tokens_silently(ecrcred_bin, kubelet_env,
                                                                  aws, tmpfs):
    env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(tmpfs.path / "cache"))
    first_file(env, ecrcred_bin)
    tmpfs.read_only()
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    answer_ok(result)
    assert result.stderr == b""
    assert aws.calls("GetAuthorizationToken") == 0


def test_a_read_only_cache_with_a_stale_token_refreshes_and_warns_once(ecrcred_bin, kubelet_env,
                                                                       aws, tmpfs):
    env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(tmpfs.path / "cache"))
    path = first_file(env, ecrcred_bin)
    before = make_stale(path)
    tmpfs.read_only()
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    answer_ok(result)
    (warning,) = warnings(result, "token cache")
    assert "continuing without a token cache" in warning
    assert aws.calls("GetAuthorizationToken") == 1
    assert path.read_bytes() == before


@pytest.mark.parametrize("limit", [0, 100], ids=["no-byte", "100-bytes-then-EFBIG"])
def test_a_file_size_limit_makes_writes_fail_and_ecrcred_degrades_instead_of_dying(
        ecrcred_bin, kubelet_env, aws, tmp_path, limit):
    # RLIMIT_FSIZE (ulimit -f): a write past it fails with EFBIG, and SIGXFSZ would kill a
    # process that does not ignore it. 100 bytes is less than a cache file: the first write is
    # cut short, the second fails, so the temp file holds part of a password until removed.
    config = tmp_path / "ecrcred.json"
    config.write_text('{"apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig"}')
    cache = Path(kubelet_env["ECRCRED_CACHE_DIR"])
    env = dict(kubelet_env, ECRCRED_CONFIG=str(config))  # its compiled copy cannot be kept

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([ecrcred_bin, "get-credentials"], env=env, capture_output=True,
                            input=json.dumps(request(f"{ECR}/app")).encode(), timeout=60,
                            preexec_fn=limited, check=False)
    assert result.returncode != -signal.SIGXFSZ, "killed by SIGXFSZ"
    answer_ok(result)
    (warning,) = warnings(result, "token cache")
    assert "File too large" in warning
    assert cache_files(cache) == {} and temp_files(cache) == []
    assert not list(cache.glob("config-*.json"))


# -- many at once ----------------------------------------------------------------------------------

REGISTRIES = {f"{account}.dkr.ecr.{region}.amazonaws.com": f"{account}-auth-token"
              for account, region in [("123456789012", "us-west-2"), ("210987654321", "eu-west-1"),
                                      ("111122223333", "ap-southeast-2"),
                                      ("444455556666", "us-east-1")]}


def test_100_concurrent_executions_make_one_api_call_per_registry_and_all_answer_right(
        ecrcred_bin, kubelet_env, aws):
    # The first call for each registry is slow, so the other 24 executions of that registry
    # really pile up behind its lock instead of arriving after the file is written.
    aws.fault(status=0, delay_ms=1500, times=len(REGISTRIES))
    images = [f"{host}/team/app-{i}" for i in range(25) for host in REGISTRIES]
    random.Random(7).shuffle(images)
    started = time.monotonic()
    with ThreadPoolExecutor(len(images)) as pool:
        results = list(pool.map(lambda image: exec_provider(ecrcred_bin, request(image),
                                                            kubelet_env), images))
    elapsed = time.monotonic() - started
    print(f"100 executions over {len(REGISTRIES)} registries in {elapsed:.1f}s")
    for image, result in zip(images, results, strict=True):
        answer_ok(result, image, REGISTRIES[image.split("/", 1)[0]])
        assert not [line for line in result.stderr.decode().splitlines()
                    if not line.startswith("ecrcred: warning: ecr returned a token")], \
            result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == len(REGISTRIES)
    cache = Path(kubelet_env["ECRCRED_CACHE_DIR"])
    assert sorted(d["password"] for d in cache_files(cache).values()) == sorted(
        REGISTRIES.values())
    assert temp_files(cache) == []


# -- SIGKILL --------------------------------------------------------------------------------------

def start(ecrcred_bin: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([ecrcred_bin, "get-credentials"], env=env, cwd="/",
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(request(f"{ECR}/app")).encode() + b"\n")
    proc.stdin.close()
    return proc


def test_sigkill_in_the_middle_of_a_cache_write_leaves_the_previous_file_whole(
        ecrcred_bin, kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    cache = path.parent
    mid_write = 0
    for _ in range(10):
        before = make_stale(path)
        with DirectoryWatch(str(cache)) as watch:
            proc = start(ecrcred_bin, kubelet_env)
            try:
                # The writer's temp file appears: kill it before its fsync and rename.
                created = watch.wait_created(lambda name: name.endswith(".tmp"), 30)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        assert created is not None, "the execution never wrote its cache file"
        leftovers = temp_files(cache)
        mid_write += bool(leftovers)
        body = path.read_bytes()
        assert body == before or cache_files(cache)[path.name]["password"] == MOTO_PASSWORD
        assert cache_files(cache)  # whole JSON, whichever it is
        for name in leftovers:  # a killed writer's temp file is never read as the cache
            assert oct((cache / name).stat().st_mode & 0o777) == "0o600"
    assert mid_write >= 1, "no kill landed between the temp file's creation and its rename"
    # A minute later (aged by hand), the next write sweeps what the killed writers left.
    past = time.time() - 120
    for name in temp_files(cache):
        os.utime(cache / name, (past, past))
    make_stale(path)
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    answer_ok(result)
    assert aws.calls("GetAuthorizationToken") == 1
    assert cache_files(cache)[path.name]["password"] == MOTO_PASSWORD
    assert temp_files(cache) == [], "no copy of a password is left behind for good"


def test_sigkill_at_random_moments_never_leaves_a_partial_file_or_a_stuck_lock(
        ecrcred_bin, kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    cache = path.parent
    make_stale(path)
    started = time.monotonic()
    answer_ok(exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env))
    typical = time.monotonic() - started  # a whole refresh: start-up, lock, fetch, write
    rng = random.Random(11)
    for _ in range(25):
        make_stale(path)
        proc = start(ecrcred_bin, kubelet_env)
        time.sleep(rng.uniform(0, 1.2 * typical))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert path.name in cache_files(cache)  # whole and valid after every kill
    # No lock survives its holder: the next execution refreshes at once.
    make_stale(path)
    started = time.monotonic()
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), dict(kubelet_env,
                                                                    ECRCRED_TIMEOUT="10"))
    answer_ok(result)
    assert aws.calls("GetAuthorizationToken") == 1
    assert time.monotonic() - started < 8
    clean = [line for line in result.stderr.decode().splitlines() if "error" in line]
    assert clean == []


def test_a_process_killed_while_holding_the_lock_does_not_block_the_next_one(
        ecrcred_bin, kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    make_stale(path)
    aws.reset()
    aws.fault(status=0, delay_ms=20000, times=1)  # the holder hangs inside the API call
    holder = start(ecrcred_bin, kubelet_env)
    try:
        wait_until(lambda: aws.calls("GetAuthorizationToken") > 0, 20)
        assert aws.calls("GetAuthorizationToken") == 1, "the holder never reached the API"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), dict(kubelet_env,
                                                                    ECRCRED_TIMEOUT="10"))
    answer_ok(result)
    assert time.monotonic() - started < 8
    assert cache_files(path.parent)[path.name]["password"] == MOTO_PASSWORD


def test_a_hung_lock_holder_makes_others_fail_by_the_deadline_naming_the_lock(
        ecrcred_bin, kubelet_env, aws):
    path = first_file(kubelet_env, ecrcred_bin)
    # Expired, so no last-resort answer is possible while another process holds the lock.
    doc = json.loads(path.read_text())
    doc.update(fetched_at=time.time() - 50000, expires_at=time.time() - 10)
    path.write_text(json.dumps(doc))
    aws.reset()
    aws.fault(status=0, delay_ms=20000, times=1)
    holder = start(ecrcred_bin, dict(kubelet_env, ECRCRED_TIMEOUT="15"))
    try:
        wait_until(lambda: aws.calls("GetAuthorizationToken") > 0, 20)
        assert aws.calls("GetAuthorizationToken") == 1, "the holder never reached the API"
        result = exec_provider(ecrcred_bin, request(f"{ECR}/app"),
                               dict(kubelet_env, ECRCRED_TIMEOUT="2"))
        clean_failure(result, 5, "another ecrcred process", ".lock", "[DEADLINE]")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)


# -- the clock ------------------------------------------------------------------------------------

def test_a_token_fetched_before_the_clock_stepped_back_is_fetched_again(
        ecrcred_bin, kubelet_env, aws):
    # The node's clock ran an hour ahead when the token was fetched (a wrong RTC at boot), then
    # NTP stepped it back: on today's clock the file says "fetched an hour from now, fresh for
    # 12 more hours", an hour longer than the real token lives. Not served: fetched again.
    path = first_file(kubelet_env, ecrcred_bin)
    doc = json.loads(path.read_text())
    now = time.time()
    doc.update(password="ahead-of-time-Secret", fetched_at=now + 3600,
               expires_at=now + 13 * 3600)
    path.write_text(json.dumps(doc))
    aws.reset()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    answer_ok(result)
    assert aws.calls("GetAuthorizationToken") == 1
    written = cache_files(path.parent)[path.name]
    assert written["password"] == MOTO_PASSWORD
    assert abs(written["fetched_at"] - time.time()) < 60
    assert b"ahead-of-time-Secret" not in result.stdout + result.stderr
