"""The sandbox keeper with fake runtimes: fast path, retries, permanent errors, pinning."""

from __future__ import annotations

import random
import threading

import pytest

from ecrcred.cache import NullCache
from ecrcred.cri.client import PINNED_LABEL, Auth
from ecrcred.errors import DeadlineExceeded, PullError, RuntimeServiceError, ThrottleCoolDown
from ecrcred.fetch import HOLD_MARGIN
from ecrcred.records import Throttled
from ecrcred.sandbox import (
    TRANSIENT,
    Action,
    PullCredentials,
    RetryPolicy,
    SandboxKeeper,
    classify,
    credentials_resolver,
    format_action,
)
from ecrcred.tokens import Token
from tests.unit.fakes import (
    T0,
    CountingFetch,
    DictCache,
    FakeClock,
    FakeImageService,
    FakeSource,
    RecordingLogger,
)

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.9"


class Creds:
    def __init__(self, from_cache: bool = False):
        self.calls: list[bool] = []
        self.from_cache = from_cache

    def __call__(self, name: str, fresh: bool, wait_until=None, sleep=None) -> PullCredentials:
        self.calls.append(fresh)
        return PullCredentials(Auth("AWS", f"password-{len(self.calls)}"), "ECR registry x",
                           from_cache=self.from_cache and not fresh)


def keeper(runtime, creds=None, clock=None, deadline=30.0, pin=True):
    actions: list[Action] = []
    k = SandboxKeeper(IMAGE, runtime, runtime if pin else None, creds or Creds(),
                      clock or FakeClock(), RecordingLogger(), actions.append,
                      RetryPolicy(deadline=deadline), rng=random.Random(7))
    return k, actions


def test_present_image_needs_no_credentials_and_no_pull():
    runtime, creds = FakeImageService(IMAGE, present=True), Creds()
    k, actions = keeper(runtime, creds)
    k.ensure("boot")
    assert creds.calls == [] and runtime.pulls == []
    assert [a.action for a in actions] == ["present", "pinned"]
    assert runtime.image_labels == {PINNED_LABEL: "pinned"}


def test_pinned_image_is_left_alone():
    runtime = FakeImageService(IMAGE, present=True)
    runtime.image_labels[PINNED_LABEL] = "pinned"
    k, actions = keeper(runtime)
    k.ensure("boot")
    assert [a.action for a in actions] == ["present", "already-pinned"]


def test_an_image_the_cri_still_lists_but_containerd_has_no_record_of_is_pulled_back():
    # Seen against containerd 1.6.20: right after `ctr images rm`, ImageStatus still answered
    # with the image while its record was gone, and the watch waited for its next safety net.
    runtime = FakeImageService(IMAGE, present=True)
    runtime.labels = lambda name: None  # type: ignore[method-assign]
    creds = Creds()
    k, actions = keeper(runtime, creds)
    k.ensure("image deleted")
    assert actions[0].action == "pulled"
    assert len(runtime.pulls) == 1 and creds.calls == [False]


def test_no_pin_skips_containerd_entirely():
    runtime = FakeImageService(IMAGE, present=False)
    k, actions = keeper(runtime, pin=False)
    k.ensure("boot")
    assert [a.action for a in actions] == ["pulled"]
    assert runtime.image_labels == {}


def test_transient_failures_are_retried_with_growing_jittered_delays():
    transient = PullError("… failed with status code 503 Service Unavailable")
    runtime = FakeImageService(IMAGE, outcomes=[transient, transient, transient, None])
    clock = FakeClock()
    k, actions = keeper(runtime, clock=clock)
    k.ensure("boot")
    assert len(runtime.pulls) == 4
    assert actions[0].action == "pulled"
    assert len(clock.sleeps) == 3
    # full jitter: each sleep lies in [0, cap) with the cap doubling from 0.5 s
    for sleep, cap in zip(clock.sleeps, (0.5, 1.0, 2.0), strict=True):
        assert 0 <= sleep <= cap


def test_unreachable_runtime_is_retried_too():
    down = RuntimeServiceError("cannot reach", code="RUNTIME_UNREACHABLE")
    runtime = FakeImageService(IMAGE, outcomes=[down, None])
    k, _ = keeper(runtime)
    k.ensure("boot")
    assert len(runtime.pulls) == 2


@pytest.mark.parametrize("message", ["401 Unauthorized", "403 Forbidden",
                                     "manifests 3.9: 404 Not Found"])
def test_permanent_failures_fail_at_once_naming_the_credentials(message):
    runtime = FakeImageService(
        IMAGE, outcomes=[PullError(f"failed: {message}", detail=message)] * 5)
    clock = FakeClock()
    k, _ = keeper(runtime, clock=clock)
    with pytest.raises(PullError) as err:
        k.ensure("boot")
    assert len(runtime.pulls) == 1 and clock.sleeps == []
    assert "credentials: ECR registry x" in err.value.message
    assert "password-1" not in err.value.one_line()


@pytest.mark.parametrize(("detail", "hint"), [
    ("failed to resolve reference: not found", "check that the image name and tag exist"),
    ("unexpected status: 403 Forbidden", "not allowed to pull this repository"),
    ("pull access denied", "not allowed to pull this repository"),
    ("unexpected status: 401 Unauthorized", "the registry refused these credentials"),
])
def test_the_hint_reads_the_runtimes_words_not_our_socket_path_or_the_image_name(detail, hint):
    # CI met this: a temp dir named /tmp/ecd-buip403j read as "403" and a plain 404 was
    # reported as a repository policy refusal. An image called denied-app must not either.
    image = "x.dkr.ecr.us-west-2.amazonaws.com/team/denied-app:403"
    message = f"the runtime at unix:///tmp/ecd-buip403j/c.sock could not pull {image}: {detail}"
    runtime = FakeImageService(
        IMAGE, outcomes=[PullError(message, detail=f'"{image}": {detail}')] * 5)
    k = SandboxKeeper(image, runtime, None, Creds(), FakeClock(), RecordingLogger(),
                      lambda _: None, RetryPolicy(), rng=random.Random(1))
    with pytest.raises(PullError) as err:
        k.ensure("boot")
    assert hint in err.value.hint, err.value.hint
    assert len(runtime.pulls) == 1


DENIED_APP = "x.dkr.ecr.us-west-2.amazonaws.com/team/denied-app:403"


@pytest.mark.parametrize(("detail", "permanent"), [
    # containerd 1.6's own shapes: URLs and "[manifests <tag>]" carry the path and the tag
    ('failed to copy: httpReadSeeker: failed open: unexpected status code '
     'https://x.dkr.ecr.us-west-2.amazonaws.com/v2/team/denied-app/blobs/sha256:0123: '
     '500 Internal Server Error', False),
    (f'failed to resolve reference "{DENIED_APP}": unexpected status from HEAD request to '
     'https://x.dkr.ecr.us-west-2.amazonaws.com/v2/team/denied-app/manifests/403: '
     '503 Service Unavailable', False),
    (f'failed to resolve reference "{DENIED_APP}": pulling from host '
     'x.dkr.ecr.us-west-2.amazonaws.com failed with status code [manifests 403]: '
     '503 Service Unavailable', False),
    ("", False),  # the runtime said nothing: retried, never judged by our own message
    (f'failed to resolve reference "{DENIED_APP}": pulling from host '
     'x.dkr.ecr.us-west-2.amazonaws.com failed with status code [manifests 403]: '
     '403 Forbidden', True),
    (f'failed to resolve reference "{DENIED_APP}": {DENIED_APP}: not found', True),
])
def test_only_the_runtimes_status_words_decide_not_names_in_urls_or_references(
        detail: str, permanent: bool):
    error = PullError(f"the runtime at unix:///tmp/ecd-403/c.sock could not pull {DENIED_APP}: "
                      f"{detail}", detail=detail)
    assert (classify(error, DENIED_APP) != TRANSIENT) is permanent


def test_a_transient_failure_for_an_image_named_like_a_refusal_is_still_retried():
    image = "x.dkr.ecr.us-west-2.amazonaws.com/unauthorized/not-found:401"
    transient = PullError(f"could not pull {image}: 503 Service Unavailable",
                          detail=f'"{image}": 503 Service Unavailable')
    runtime = FakeImageService(IMAGE, outcomes=[transient, None])
    k = SandboxKeeper(image, runtime, None, Creds(), FakeClock(), RecordingLogger(),
                      lambda _: None, RetryPolicy(), rng=random.Random(1))
    k.ensure("boot")
    assert len(runtime.pulls) == 2


def test_a_cached_token_the_registry_refuses_is_replaced_once_by_a_fresh_one():
    runtime = FakeImageService(
        IMAGE, outcomes=[PullError("401 Unauthorized", detail="401 Unauthorized"), None])
    creds = Creds(from_cache=True)
    k, actions = keeper(runtime, creds)
    k.ensure("boot")
    assert creds.calls == [False, True]
    assert [a.password for a in runtime.pulls if a] == ["password-1", "password-2"]
    assert actions[0].action == "pulled"


def test_retries_stop_at_the_deadline_with_the_last_error():
    runtime = FakeImageService(IMAGE, outcomes=[PullError("503 Service Unavailable")] * 1000)
    clock = FakeClock()
    k, _ = keeper(runtime, clock=clock, deadline=20.0)
    with pytest.raises(DeadlineExceeded) as err:
        k.ensure("boot")
    assert "503" in err.value.message and "within 20s" in err.value.message
    assert clock.mono - 1000.0 <= 20.0 + 1e-6


def test_other_runtime_errors_are_not_retried():
    runtime = FakeImageService(IMAGE, outcomes=[RuntimeServiceError("boom")])
    k, _ = keeper(runtime)
    with pytest.raises(RuntimeServiceError):
        k.ensure("boot")
    assert len(runtime.pulls) == 1


class FakeStream:
    def __init__(self, names, runtime, stop):
        self.names, self.runtime, self.stop, self.cancelled = names, runtime, stop, False

    def __iter__(self):
        for name in self.names:
            self.runtime.present = False  # the deletion the event reports
            yield name
        self.stop.set()  # end the test after the scripted events

    def cancel(self):
        self.cancelled = True


def test_watch_restores_the_image_on_a_delete_event():
    runtime = FakeImageService(IMAGE, present=True)
    stop = threading.Event()
    runtime.image_events = lambda: FakeStream([IMAGE], runtime, stop)  # type: ignore[method-assign]
    k, actions = keeper(runtime)
    k.watch(stop, interval=3600)
    assert [a.action for a in actions] == ["present", "pinned", "pulled", "already-pinned"]
    assert [a.reason for a in actions] == ["subscribed", "subscribed", "image deleted",
                                           "image deleted"]


def test_format_action_text_and_json():
    action = Action("pulled", IMAGE, "boot", 0.25, "sha256:abc")
    assert format_action(action, "text") == f"pulled: {IMAGE} (boot, 0.250s) sha256:abc"
    assert '"action": "pulled"' in format_action(action, "json")


def test_a_stop_request_ends_pull_retries_at_once():
    runtime = FakeImageService(IMAGE, outcomes=[PullError("503 Service Unavailable")] * 100)
    stop = threading.Event()
    actions: list[Action] = []
    k = SandboxKeeper(IMAGE, runtime, None, Creds(), FakeClock(), RecordingLogger(),
                      actions.append, RetryPolicy(deadline=300), rng=random.Random(1), stop=stop)
    stop.set()
    with pytest.raises(RuntimeServiceError) as err:
        k.ensure("periodic check")
    assert err.value.code == "STOPPED" and runtime.pulls == []


def test_an_unexpected_error_in_a_watch_pass_is_reported_and_the_watch_goes_on():
    class Broken(FakeImageService):
        def image_status(self, image):
            raise KeyError("authorizationData")

    k, actions = keeper(Broken(IMAGE))
    k._ensure_logged("periodic check")
    assert actions[0].action == "failed" and "INTERNAL" in actions[0].detail


def test_an_unexpected_errors_text_is_not_reported_only_its_type():
    class Broken(FakeImageService):
        def image_status(self, image):
            raise ValueError("unregistered-secret-in-a-response-body")

    k, actions = keeper(Broken(IMAGE))
    k._ensure_logged("periodic check")
    assert actions[0].detail == "internal error: ValueError [INTERNAL]"


# -- a throttling hold on the registry's token ---------------------------------------------------

HOST = IMAGE.split("/", 1)[0]


def held_back_resolver(clock: FakeClock, hold: float, cache=None):
    """The real resolver and token cache, with the registry's token API held back for ``hold``
    seconds because another execution was throttled a second ago."""
    fetch = CountingFetch(Token("AWS", "fetched-password", T0 + 12 * 3600, T0))
    source = FakeSource({HOST}, fetch)
    cache = DictCache() if cache is None else cache
    key = source.lookup(IMAGE, None).cache_key  # type: ignore[union-attr]
    if isinstance(cache, DictCache):
        cache.throttled[key] = Throttled(clock.now - 1, clock.now + hold)
    return credentials_resolver(source, cache, clock, RecordingLogger()), fetch


def test_a_throttling_hold_is_waited_out_within_the_deadline_and_the_pull_goes_ahead():
    clock = FakeClock()
    creds, fetch = held_back_resolver(clock, hold=4.0)
    runtime = FakeImageService(IMAGE)
    k, actions = keeper(runtime, creds, clock=clock, deadline=30.0)
    k.ensure("boot")
    assert actions[0].action == "pulled"
    assert fetch.calls == 1, "asked once, after the hold"
    assert clock.sleeps == [pytest.approx(4.0 + HOLD_MARGIN)], "the token cache's one wait"
    assert runtime.pulls == [Auth("AWS", "fetched-password")]


def test_a_throttling_hold_longer_than_the_deadline_fails_at_once_with_its_own_error():
    clock = FakeClock()
    creds, fetch = held_back_resolver(clock, hold=6.0)
    runtime = FakeImageService(IMAGE)
    k, _ = keeper(runtime, creds, clock=clock, deadline=5.0)
    with pytest.raises(ThrottleCoolDown) as caught:
        k.ensure("boot")
    assert (fetch.calls, clock.sleeps, runtime.pulls) == (0, [], [])
    assert caught.value.one_line().endswith("[AWS_THROTTLED_RECENTLY]")


def test_a_stop_request_ends_the_wait_for_a_throttling_hold_at_once():
    clock = FakeClock()
    creds, fetch = held_back_resolver(clock, hold=4.0)
    runtime, stop = FakeImageService(IMAGE), threading.Event()
    stop.set()  # SIGTERM under --watch: the hold's wait is the stop event's
    k = SandboxKeeper(IMAGE, runtime, None, creds, clock, RecordingLogger(), lambda _: None,
                      RetryPolicy(deadline=30.0), rng=random.Random(1), stop=stop)
    with pytest.raises(ThrottleCoolDown):
        k.ensure("periodic check")
    assert (fetch.calls, clock.sleeps, runtime.pulls) == (0, [], [])


def test_without_a_cache_there_is_no_hold_to_wait_for():
    clock = FakeClock()
    creds, fetch = held_back_resolver(clock, hold=4.0, cache=NullCache())
    k, actions = keeper(FakeImageService(IMAGE), creds, clock=clock)
    k.ensure("boot")
    assert (actions[0].action, fetch.calls, clock.sleeps) == ("pulled", 1, [])


def test_a_fresh_fetch_bypasses_the_cached_token_but_not_the_hold_the_lock_or_the_store():
    clock = FakeClock()
    creds, fetch = held_back_resolver(clock, hold=4.0)
    with pytest.raises(ThrottleCoolDown):
        creds(IMAGE, True)  # the refusal-driven refresh still honours another's throttling
    assert fetch.calls == 0
    clock.advance(5.0)
    got = creds(IMAGE, True)
    assert fetch.calls == 1 and got.auth == Auth("AWS", "fetched-password")
    assert got.from_cache is False
    # what it fetched is stored: the next ordinary read is a hit without a call
    assert creds(IMAGE, False).from_cache is True and fetch.calls == 1


# -- what the runtime's error means --------------------------------------------------------------

NOT_FOUND_DETAILS = [
    f'failed to resolve reference "{IMAGE}": {IMAGE}: not found',
    "unexpected status: 404 Not Found",
    "manifest unknown: manifest unknown",
]


@pytest.mark.parametrize("detail", NOT_FOUND_DETAILS)
def test_an_image_the_registry_does_not_have_fails_at_once_without_a_fresh_token(detail):
    runtime = FakeImageService(IMAGE, outcomes=[PullError(
        f"could not pull: {detail}", detail=detail, code="PULL_NOT_FOUND", status="NOT_FOUND")] * 5)
    creds, clock, log = Creds(from_cache=True), FakeClock(), RecordingLogger()
    k = SandboxKeeper(IMAGE, runtime, runtime, creds, clock, log, lambda _: None,
                      RetryPolicy(deadline=300), rng=random.Random(1))
    with pytest.raises(PullError) as err:
        k.ensure("boot")
    assert creds.calls == [False], "a new token cannot create a missing tag"
    assert len(runtime.pulls) == 1 and clock.sleeps == []
    assert f"the registry has no {IMAGE}: its repository or tag does not exist there" in \
        err.value.hint
    assert "check that the image name and tag exist in the registry" in err.value.hint
    assert err.value.code == "PULL_NOT_FOUND" and err.value.exit_code == 7
    assert not [line for _, line in log.lines if "cached token" in line]


def test_a_forbidden_pull_with_a_cached_token_is_still_retried_once_with_a_fresh_one():
    forbidden = PullError("403 Forbidden", detail="unexpected status: 403 Forbidden")
    runtime = FakeImageService(IMAGE, outcomes=[forbidden, forbidden])
    creds = Creds(from_cache=True)
    k, _ = keeper(runtime, creds)
    with pytest.raises(PullError) as err:
        k.ensure("boot")
    assert creds.calls == [False, True] and len(runtime.pulls) == 2
    assert "not allowed to pull this repository" in err.value.hint


def test_watch_checks_of_an_image_the_registry_does_not_have_fetch_no_fresh_token():
    # Under --watch a 404 used to fetch a new token at every check: N checks, N fetches.
    clock = FakeClock()
    fetch = CountingFetch(*[Token("AWS", f"token-{i}", T0 + 12 * 3600, T0) for i in range(20)])
    creds = credentials_resolver(FakeSource({HOST}, fetch), DictCache(), clock,
                                 RecordingLogger())
    missing = PullError("not found", detail=f'"{IMAGE}": not found', status="NOT_FOUND")
    runtime = FakeImageService(IMAGE, outcomes=[missing] * 20)
    k, actions = keeper(runtime, creds, clock=clock)
    for _ in range(5):
        k._ensure_logged("periodic check")
        clock.advance(60)
    assert [a.action for a in actions] == ["failed"] * 5
    assert "the registry has no" in actions[0].detail
    assert len(runtime.pulls) == 5
    assert fetch.calls == 1, "one token for the first check, from the cache afterwards"


DIGEST_MISMATCH = ('failed to pull and unpack image "x": failed to copy: failed commit on ref '
                   '"layer-sha256:0123": unexpected commit digest sha256:aaaa, expected '
                   "sha256:bbbb: failed precondition")
UNPACK_PLATFORMS = ('failed to pull and unpack image "x": no unpack platforms defined: '
                    "invalid argument")


@pytest.mark.parametrize(("status", "detail", "hint"), [
    ("FAILED_PRECONDITION", DIGEST_MISMATCH, "served content that does not match its digest"),
    ("UNKNOWN", DIGEST_MISMATCH, "served content that does not match its digest"),
    ("UNKNOWN", "failed commit on ref: unexpected commit size 10, expected 20",
     "served content that does not match its digest"),
    ("INVALID_ARGUMENT", UNPACK_PLATFORMS,
     '[[plugins."io.containerd.transfer.v1.local".unpack_config]] with platform and '
     "snapshotter"),
    ("UNKNOWN", UNPACK_PLATFORMS, "io.containerd.transfer.v1.local"),
    ("INVALID_ARGUMENT", "the runtime's own words, whatever they are",
     "the runtime rejected the pull itself"),
    ("FAILED_PRECONDITION", "some precondition of the runtime's",
     "the runtime rejected the pull itself"),
    ("UNKNOWN", "parse x: invalid argument", "the runtime rejected the pull itself"),
])
def test_errors_no_retry_can_fix_fail_at_the_first_attempt_with_a_hint(status, detail, hint):
    error = PullError(f"could not pull: {detail}", detail=detail, code=f"PULL_{status}",
                      status=status)
    runtime = FakeImageService(IMAGE, outcomes=[error] * 50)
    creds, clock = Creds(from_cache=True), FakeClock()
    k, _ = keeper(runtime, creds, clock=clock, deadline=300)
    with pytest.raises(PullError) as err:
        k.ensure("boot")
    assert len(runtime.pulls) == 1 and clock.sleeps == []
    assert creds.calls == [False], "no fresh token: the credentials are not the problem"
    assert hint in err.value.hint, err.value.hint
    assert (err.value.code, err.value.status) == (f"PULL_{status}", status)
    assert "credentials: ECR registry x" in err.value.message


@pytest.mark.parametrize(("status", "detail", "kind"), [
    ("UNKNOWN", "unexpected status: 401 Unauthorized", "refused"),
    ("UNKNOWN", "pull access denied", "refused"),
    ("NOT_FOUND", "x: not found", "missing"),
    ("FAILED_PRECONDITION", DIGEST_MISMATCH, "corrupt"),
    ("INVALID_ARGUMENT", UNPACK_PLATFORMS, "unpack"),
    # 1.6.20 and 1.7.24 on an application/octet-stream config: its "not found" is no 404
    ("UNKNOWN", "failed to extract layer sha256:abc: failed to get reader from content store: "
     "content digest sha256:abc: not found", "unpack"),
    ("UNKNOWN", "503 Service Unavailable", "transient"),
    ("DEADLINE_EXCEEDED", "context deadline exceeded", "transient"),
    ("", "", "transient"),
])
def test_classify_reads_the_status_code_and_the_runtimes_words(status, detail, kind):
    assert classify(PullError("x", detail=detail, status=status), IMAGE) == kind

