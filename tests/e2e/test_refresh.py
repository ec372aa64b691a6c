"""The node agent's refresh ahead, end to end: the real executable running ``pull-sandbox
--watch`` against a real containerd, moto's server as ECR with tokens that live two minutes
(``token_seconds``), and kubelet-like executions of ``get-credentials`` sharing its cache and
its AWS environment. While the agent runs, every execution after boot is a cache hit, through
a normal refresh, a refresh that ECR throttles (the hold is waited out, as every process does)
and an ECR outage shorter than the token's remaining fresh life."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from ecrcred.kubelet import parse_go_duration
from tests.support.aws import AwsStandIn
from tests.support.kubelet import check_response, exec_provider, request
from tests.support.processes import Process
from tests.support.sandbox import pull_sandbox

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{ECR_HOST}/team/app:1"
LIFETIME = 120  # seconds: fresh for 60, refreshed ahead between 40 and 50 after each fetch


class Executions:
    """The kubelet's executions of the provider: each checked as the kubelet would, and counted
    as a hit or not from its debug line."""

    def __init__(self, binary: str, env: dict[str, str]) -> None:
        self.binary = binary
        self.env = dict(env, ECRCRED_LOG_LEVEL="debug")
        self.results: list[tuple[float, str, str]] = []  # (when, how, cacheDuration)

    def run(self) -> None:
        req = request(IMAGE)
        result = exec_provider(self.binary, req, self.env)
        assert result.returncode == 0, result.stderr.decode()
        doc = check_response(result.stdout, req)
        found = re.search(r"debug: (hit|miss|last-resort): token for", result.stderr.decode())
        assert found, result.stderr.decode()
        self.results.append((time.time(), found[1], doc["cacheDuration"]))

    def run_until(self, done: object, timeout: float, every: float = 1.0) -> None:
        give_up = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            assert time.monotonic() < give_up, "timed out"
            self.run()
            time.sleep(every)

    def not_hits(self) -> list[tuple[float, str, str]]:
        return [r for r in self.results if r[1] != "hit"]


def test_while_the_agent_runs_every_execution_is_a_hit_through_throttling_and_an_outage(
        ecrcred_bin, containerd, node_env, kubelet_env, aws: AwsStandIn, tmp_path: Path):
    # The sandbox image in place first, pulled with moto's usual token (which the test registry
    # takes); then a fresh cache and two-minute tokens for the agent and the executions.
    assert pull_sandbox(ecrcred_bin, containerd, node_env).returncode == 0
    aws.reset()
    aws.token_lifetime(LIFETIME)
    cache = str(tmp_path / "shared-cache")
    one_try = {"AWS_MAX_ATTEMPTS": "1", "ECRCRED_CACHE_DIR": cache}  # no botocore retries
    agent_env = dict(node_env, **one_try, ECRCRED_LOG_LEVEL="debug")
    executions = Executions(ecrcred_bin, dict(kubelet_env, **one_try))
    log = tmp_path / "agent.log"
    agent = Process([ecrcred_bin, "pull-sandbox", "--watch", "--interval", "30",
                     "--containerd-config", containerd.config_path,
                     "--runtime-endpoint", containerd.endpoint], str(log), env=agent_env)

    def refreshed() -> int:
        return log.read_text().count("refreshed ahead the token")

    try:
        agent.wait_for(lambda: "prefetch " in log.read_text(), 60, "the agent's prefetch")
        assert aws.calls("GetAuthorizationToken") == 1
        booted = time.time()
        # A normal refresh.
        executions.run_until(lambda: refreshed() >= 1, LIFETIME)
        # A refresh that ECR throttles: the agent waits the hold out, then refreshes.
        aws.fault(code="ThrottlingException", times=1)
        executions.run_until(lambda: refreshed() >= 2, LIFETIME)
        times = aws.call_times("GetAuthorizationToken")
        assert times[-1] - times[-2] >= 5.0, times  # the hold (5 to 7.5 s) was kept
        assert log.read_text().count("refreshing ahead the token") == 1  # the throttled one
        # An outage of 17 s that begins 35 s after the last refresh and covers the whole window
        # of the next (40 to 50 s): about 24 s of fresh life were left when it began.
        calls_before_outage = aws.calls("GetAuthorizationToken")
        last = time.time()
        executions.run_until(lambda: time.time() > last + 35, LIFETIME)
        aws.fault(status=503, code="ServiceUnavailableException", times=100_000)
        executions.run_until(lambda: time.time() > last + 52, LIFETIME)
        failed_calls = aws.calls("GetAuthorizationToken") - calls_before_outage
        aws.reset()  # the outage ends (reset also ends the short tokens: set them again)
        aws.token_lifetime(LIFETIME)
        executions.run_until(lambda: refreshed() >= 3, LIFETIME)
        executions.run_until(lambda: time.time() > last + 75, LIFETIME)  # past the old token
        elapsed = time.time() - booted

        assert executions.not_hits() == [], executions.not_hits()
        assert len(executions.results) > 40
        # No cacheDuration past the token's fresh life (60 s): the kubelet asks again after
        # the agent's refresh.
        assert all(0 < parse_go_duration(d) <= 60 for _, _, d in executions.results)
        assert log.read_text().count("refreshing ahead the token") >= 2  # + the outage's
        assert failed_calls >= 1
        # Bounded calls: one per refresh, plus the throttled and the failed attempts.
        assert refreshed() <= elapsed / 40 + 1
        os.kill(agent.pid, signal.SIGTERM)
        assert agent.popen.wait(15) == 0
    finally:
        agent.stop()


def test_without_the_agent_the_executions_fetch_for_themselves_as_before(
        ecrcred_bin, kubelet_env, aws: AwsStandIn, tmp_path: Path):
    aws.token_lifetime(LIFETIME)
    executions = Executions(ecrcred_bin, dict(kubelet_env,
                                              ECRCRED_CACHE_DIR=str(tmp_path / "c")))
    executions.run()
    executions.run()
    assert [how for _, how, _ in executions.results] == ["miss", "hit"]
    assert aws.calls("GetAuthorizationToken") == 1
