"""``resolve`` and ``get_credentials`` with sources that are not token APIs, answers scoped to an
image, per-rule durations, and the pod's service-account token."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ecrcred.errors import NoSourceError, SourceError
from ecrcred.fetch import HIT, MISS
from ecrcred.kubelet import API_VERSIONS, Request
from ecrcred.provider import DIRECT, get_credentials, resolve, run_plugin
from ecrcred.records import CacheKey, Lookup, Pod
from ecrcred.sources import DEFAULT_UNCACHED_DURATION
from ecrcred.tokens import LAST_RESORT_CACHE_DURATION, Token
from tests.support.kubelet import check_response
from tests.support.kubelet import request as kubelet_request
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, RecordingLogger

HOUR = 3600.0
HOST = "harbor.example.com"
IMAGE = f"{HOST}/team/app"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.service-account-signature"
ANNOTATIONS = {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/puller"}
KEY = CacheKey(registry=f"fake:{HOST}", identity="test-identity")


def token(password: str = "registry-password-value",  # noqa: S107
          fetched_at: float = T0, life: float = 12 * HOUR) -> Token:
    return Token("robot", password, expires_at=fetched_at + life, fetched_at=fetched_at)


class ScriptedSource:
    """A credential source answering every image with a Lookup built from its arguments, and
    remembering each (image, pod) it was asked about."""

    def __init__(self, fetch: Callable[[], Token] | None, *, cache_key: CacheKey | None = None,
                 cache_duration: int | None = None, per_image: bool = False,
                 auth_key: str | None = None, name: str = "scripted") -> None:
        self.name = name
        self._fetch = fetch
        self._cache_key = cache_key
        self._duration = cache_duration
        self._per_image = per_image
        self._auth_key = auth_key
        self.asked: list[tuple[str, Pod | None]] = []

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        self.asked.append((image, pod))
        if self._fetch is None:
            return None
        return Lookup(
            auth_key=self._auth_key or image.split("/", 1)[0],
            cache_key=self._cache_key,
            fetch=self._fetch,
            describe=f"{self.name} credentials for {image.split('/', 1)[0]}",
            cache_duration=self._duration,
            per_image=self._per_image,
        )


def direct(*tokens: Token | Exception, cache_duration: int | None = None,
           per_image: bool = False) -> ScriptedSource:
    return ScriptedSource(CountingFetch(*tokens), cache_duration=cache_duration,
                          per_image=per_image)


def cached(*tokens: Token | Exception, cache_duration: int | None = None) -> ScriptedSource:
    return ScriptedSource(CountingFetch(*tokens), cache_key=KEY, cache_duration=cache_duration)


def ask(source: ScriptedSource, image: str = IMAGE, cache: DictCache | None = None,
        clock: FakeClock | None = None, log: RecordingLogger | None = None,
        **extra: object) -> dict[str, object]:
    """Run the plugin on one request as the kubelet sends it; check the answer by the kubelet's
    rules and return it decoded."""
    req = kubelet_request(image, **extra)
    raw = run_plugin(json.dumps(req).encode() + b"\n", source, cache or DictCache(),
                     clock or FakeClock(), log or RecordingLogger())
    return check_response(raw, req)


# -- DIRECT: sources whose secret lives elsewhere ----------------------------------------------

def test_a_lookup_without_cache_key_is_fetched_directly_and_never_touches_the_cache():
    cache = DictCache()
    fetch = CountingFetch(token("first-password-value"), token("second-password-value"))
    source = ScriptedSource(fetch)
    first = resolve(IMAGE, source, cache, FakeClock(), RecordingLogger())
    second = resolve(IMAGE, source, cache, FakeClock(), RecordingLogger())
    assert first is not None
    assert second is not None
    assert (first.how, second.how) == (DIRECT, DIRECT)
    assert (first.token.password, second.token.password) == ("first-password-value",
                                                             "second-password-value")
    assert fetch.calls == 2, "every resolution fetches again"
    assert (cache.loads, cache.stores, cache.locks, cache.tokens) == (0, [], 0, {})


def test_a_lookup_with_a_cache_key_goes_through_the_cache():
    cache = DictCache()
    source = cached(token())
    first = resolve(IMAGE, source, cache, FakeClock(), RecordingLogger())
    second = resolve(IMAGE, source, cache, FakeClock(), RecordingLogger())
    assert first is not None
    assert second is not None
    assert (first.how, second.how) == (MISS, HIT)
    assert [key for key, _token in cache.stores] == [KEY]


def test_a_direct_answer_is_never_stored_even_through_get_credentials():
    cache = DictCache()
    doc = ask(direct(token()), cache=cache)
    assert doc["auth"] == {HOST: {"username": "robot", "password": "registry-password-value"}}
    assert (cache.loads, cache.stores, cache.locks) == (0, [], 0)


@pytest.mark.parametrize(("cache_duration", "go"), [
    pytest.param(None, "5m0s", id="unset-is-the-default"),
    pytest.param(90, "1m30s", id="configured"),
    pytest.param(2 * 3600, "2h0m0s", id="longer-than-the-default"),
    pytest.param(0, "0s", id="zero-means-do-not-cache"),
])
def test_a_direct_answer_lasts_the_lookup_cache_duration(cache_duration: int | None, go: str):
    # The token's own expiry plays no part: the file or helper behind it is the truth.
    fetched = token(life=30.0)
    doc = ask(direct(fetched, cache_duration=cache_duration))
    assert doc["cacheDuration"] == go
    assert doc["cacheKeyType"] == "Registry"


def test_the_default_direct_duration_is_the_documented_constant():
    assert DEFAULT_UNCACHED_DURATION == 300
    response = get_credentials(Request(API_VERSIONS[0], IMAGE), direct(token()), DictCache(),
                               FakeClock(), RecordingLogger())
    assert response.cache_duration_seconds == DEFAULT_UNCACHED_DURATION


# -- per-image answers ------------------------------------------------------------------------

@pytest.mark.parametrize("image", [
    IMAGE,
    f"{HOST}/team/app/nested",
    "registry.local:5000/team/app",
    "localhost/app",
])
def test_a_per_image_lookup_is_answered_keyed_by_the_image(image: str):
    doc = ask(direct(token(), per_image=True), image=image)
    assert doc["cacheKeyType"] == "Image"
    assert doc["auth"] == {image: {"username": "robot",
                                   "password": "registry-password-value"}}


def test_a_per_image_lookup_uses_the_image_even_when_the_source_names_another_key():
    source = ScriptedSource(CountingFetch(token()), per_image=True, auth_key="docker.io")
    doc = ask(source, image="docker.io/library/alpine")
    assert doc["cacheKeyType"] == "Image"
    assert list(doc["auth"]) == ["docker.io/library/alpine"]


def test_a_per_image_answer_does_not_open_a_sibling_path():
    doc = ask(direct(token(), per_image=True), image=f"{HOST}/team/app")
    (key,) = doc["auth"]
    sibling = kubelet_request(f"{HOST}/other/app")
    raw = json.dumps(doc).encode()
    with pytest.raises(AssertionError, match="does not match image"):
        check_response(raw, sibling)
    assert key == f"{HOST}/team/app"


def test_a_registry_lookup_is_answered_keyed_by_its_auth_key():
    source = ScriptedSource(CountingFetch(token()), auth_key="docker.io")
    doc = ask(source, image="docker.io/library/alpine")
    assert doc["cacheKeyType"] == "Registry"
    assert list(doc["auth"]) == ["docker.io"]


def test_a_cached_per_image_lookup_is_keyed_by_the_image_too():
    source = ScriptedSource(CountingFetch(token()), cache_key=KEY, per_image=True)
    doc = ask(source)
    assert doc["cacheKeyType"] == "Image"
    assert list(doc["auth"]) == [IMAGE]
    assert doc["cacheDuration"] == "11h0m0s"


# -- token sources with a rule duration -------------------------------------------------------

@pytest.mark.parametrize(("cache_duration", "go"), [
    pytest.param(None, "11h0m0s", id="token-decides"),
    pytest.param(600, "10m0s", id="rule-shorter"),
    pytest.param(20 * 3600, "11h0m0s", id="token-shorter"),
    pytest.param(11 * 3600, "11h0m0s", id="equal"),
    pytest.param(0, "0s", id="rule-zero"),
])
def test_a_token_answer_lasts_the_shorter_of_token_and_rule_durations(
        cache_duration: int | None, go: str):
    cache = DictCache()
    doc = ask(cached(token(), cache_duration=cache_duration), cache=cache)
    assert doc["cacheDuration"] == go
    assert len(cache.stores) == 1, "a token source is still cached by us"


def test_a_cached_token_answer_counts_the_token_duration_from_now():
    cache = DictCache()
    cache.tokens[KEY] = token()
    doc = ask(cached(cache_duration=8 * 3600), cache=cache,
              clock=FakeClock(now=T0 + 5 * HOUR))
    assert doc["cacheDuration"] == "6h0m0s"


def test_a_last_resort_answer_lasts_one_minute_whatever_the_rule_says():
    cache = DictCache()
    stale = token("stale-password-value")
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - 30 * 60)
    doc = ask(cached(SourceError("the token API is down"), cache_duration=600), cache=cache,
              clock=clock)
    assert doc["cacheDuration"] == f"{LAST_RESORT_CACHE_DURATION // 60}m0s"


# -- the pod's service-account token -----------------------------------------------------------

def test_the_source_receives_the_pod_token_and_annotations():
    source = direct(token())
    log = RecordingLogger()
    ask(source, log=log, serviceAccountToken=SA_TOKEN, serviceAccountAnnotations=ANNOTATIONS)
    ((image, pod),) = source.asked
    assert image == IMAGE
    assert pod == Pod(SA_TOKEN, ANNOTATIONS)
    assert SA_TOKEN in log.secrets
    assert all(SA_TOKEN not in message for _level, message in log.lines)


def test_a_pod_token_without_annotations_gives_an_empty_annotation_map():
    source = direct(token())
    ask(source, serviceAccountToken=SA_TOKEN)
    ((_image, pod),) = source.asked
    assert pod == Pod(SA_TOKEN, {})


@pytest.mark.parametrize("extra", [
    pytest.param({}, id="nothing"),
    pytest.param({"serviceAccountAnnotations": ANNOTATIONS}, id="annotations-only"),
    pytest.param({"serviceAccountToken": ""}, id="empty-token"),
])
def test_without_a_pod_token_the_source_receives_no_pod(extra: dict[str, object]):
    source = direct(token())
    log = RecordingLogger()
    ask(source, log=log, **extra)
    assert source.asked == [(IMAGE, None)]
    assert log.secrets == [token().password]  # the answer's own, and no pod token


def test_resolve_hands_the_pod_to_its_source():
    # Every rule the router asks receives the same pod: test_router.py.
    answers = direct(token())
    pod = Pod(SA_TOKEN, ANNOTATIONS)
    resolved = resolve(IMAGE, answers, DictCache(), FakeClock(), RecordingLogger(), pod)
    assert resolved is not None
    assert answers.asked == [(IMAGE, pod)]


def test_the_pod_repr_hides_the_token():
    text = repr(Pod(SA_TOKEN, ANNOTATIONS))
    assert SA_TOKEN not in text
    assert "<redacted>" in text
    assert "eks.amazonaws.com/ecr-role-arn" in text


@pytest.mark.parametrize("make", [
    pytest.param(direct, id="direct"),
    pytest.param(cached, id="cached"),
])
def test_a_password_equal_to_the_pod_token_is_refused(make: Callable[[Token], ScriptedSource]):
    log = RecordingLogger()
    request = Request(API_VERSIONS[-1], IMAGE, SA_TOKEN, ANNOTATIONS)
    with pytest.raises(NoSourceError) as caught:
        get_credentials(request, make(token(password=SA_TOKEN)), DictCache(), FakeClock(),
                        log)
    error = caught.value
    assert error.code == "TOKEN_ECHO"
    assert f"scripted credentials for {HOST}" in error.message
    assert SA_TOKEN not in error.one_line()
    assert all(SA_TOKEN not in message for _level, message in log.lines)


def test_a_password_that_only_contains_the_pod_token_is_not_an_echo():
    request = Request(API_VERSIONS[-1], IMAGE, SA_TOKEN, None)
    response = get_credentials(request, direct(token(password=f"{SA_TOKEN}-suffix")),
                               DictCache(), FakeClock(), RecordingLogger())
    assert response.auth[HOST].password == f"{SA_TOKEN}-suffix"


def test_without_a_pod_any_password_is_answered():
    response = get_credentials(Request(API_VERSIONS[-1], IMAGE),
                               direct(token(password=SA_TOKEN)), DictCache(), FakeClock(),
                               RecordingLogger())
    assert response.auth[HOST].password == SA_TOKEN
