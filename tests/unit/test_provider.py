"""``run_plugin``: request bytes in, response bytes out, with a fake source and cache."""

from __future__ import annotations

import io
import json

import pytest

from ecrcred.errors import NoSourceError, RequestError, SourceError
from ecrcred.kubelet import API_VERSIONS
from ecrcred.log import DEBUG, StderrLogger
from ecrcred.provider import run_plugin
from ecrcred.records import CacheKey
from ecrcred.tokens import Token
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, FakeSource, RecordingLogger

HOUR = 3600.0
HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{HOST}/team/app"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account.signature"


def request(image: str = IMAGE, api_version: str = API_VERSIONS[0], **extra: object) -> bytes:
    doc = {"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image,
           **extra}
    return json.dumps(doc).encode() + b"\n"


def token(password: str = "registry-password-value", fetched_at: float = T0) -> Token:  # noqa: S107
    return Token("AWS", password, expires_at=fetched_at + 12 * HOUR, fetched_at=fetched_at)


def source_key(host: str = HOST) -> CacheKey:
    return CacheKey(registry=f"fake:{host}", identity="test-identity")


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_run_plugin_answers_with_a_valid_registry_response(api_version: str):
    fetch = CountingFetch(token())
    raw = run_plugin(request(api_version=api_version), FakeSource({HOST}, fetch), DictCache(),
                     FakeClock(), RecordingLogger())
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    assert json.loads(raw) == {
        "kind": "CredentialProviderResponse",
        "apiVersion": api_version,
        "cacheKeyType": "Registry",
        "cacheDuration": "11h0m0s",
        "auth": {HOST: {"username": "AWS", "password": "registry-password-value"}},
    }
    assert fetch.calls == 1


def test_run_plugin_tells_the_kubelet_to_cache_until_our_own_refresh():
    cache = DictCache()
    cache.tokens[source_key()] = token()
    clock = FakeClock(now=T0 + 5 * HOUR)
    raw = run_plugin(request(), FakeSource({HOST}, CountingFetch()), cache, clock,
                     RecordingLogger())
    assert json.loads(raw)["cacheDuration"] == "6h0m0s"


def test_run_plugin_asks_its_one_source_once_for_the_image():
    # The router is the one source; which rule answers is its business (test_router.py).
    source = FakeSource({HOST}, CountingFetch(token("source-password-value")))
    raw = run_plugin(request(), source, DictCache(), FakeClock(), RecordingLogger())
    assert json.loads(raw)["auth"][HOST]["password"] == "source-password-value"
    assert source.asked == [IMAGE]


def test_run_plugin_raises_no_source_error_when_no_source_claims_the_image():
    source = FakeSource({HOST}, CountingFetch())
    with pytest.raises(NoSourceError) as caught:
        run_plugin(request("registry.io/app"), source, DictCache(), FakeClock(),
                   RecordingLogger())
    assert "registry.io/app" in caught.value.message
    assert "matchImages" in caught.value.hint


def test_run_plugin_rejects_a_bad_request_before_asking_any_source():
    source = FakeSource({HOST}, CountingFetch())
    with pytest.raises(RequestError):
        run_plugin(b"{}", source, DictCache(), FakeClock(), RecordingLogger())
    assert source.asked == []


def test_run_plugin_serves_a_last_resort_token_for_one_minute():
    cache = DictCache()
    stale = token("stale-password-value")
    cache.tokens[source_key()] = stale
    clock = FakeClock(now=stale.expires_at - 30 * 60)
    log = RecordingLogger()
    fetch = CountingFetch(SourceError("the token API is down"))
    raw = run_plugin(request(), FakeSource({HOST}, fetch), cache, clock, log)
    doc = json.loads(raw)
    assert doc["cacheDuration"] == "1m0s"
    assert doc["auth"][HOST]["password"] == "stale-password-value"
    assert len(log.at("warning")) == 1


def test_run_plugin_fails_when_the_source_fails_and_nothing_is_servable():
    fetch = CountingFetch(SourceError("the token API is down"))
    with pytest.raises(SourceError):
        run_plugin(request(), FakeSource({HOST}, fetch), DictCache(), FakeClock(),
                   RecordingLogger())


def test_run_plugin_registers_the_service_account_token_as_a_secret():
    log = RecordingLogger()
    run_plugin(request(serviceAccountToken=SA_TOKEN), FakeSource({HOST}, CountingFetch(token())),
               DictCache(), FakeClock(), log)
    assert SA_TOKEN in log.secrets
    assert all(SA_TOKEN not in message for _level, message in log.lines)


def test_run_plugin_never_logs_the_registry_password():
    log = RecordingLogger()
    run_plugin(request(), FakeSource({HOST}, CountingFetch(token())), DictCache(), FakeClock(),
               log)
    assert log.lines, "a debug line says how the token was obtained"
    assert all("registry-password-value" not in message for _level, message in log.lines)


@pytest.mark.parametrize("how", ["hit", "last resort"])
def test_a_cached_answers_password_is_scrubbed_from_later_messages(how: str):
    # No fetch ran, so no source registered it: resolving the answer must.
    cache = DictCache()
    cached = token("cached-password-value")
    cache.tokens[source_key()] = cached
    clock = FakeClock(now=T0 if how == "hit" else cached.expires_at - 30 * 60)
    stream = io.StringIO()
    log = StderrLogger(stream, level=DEBUG)
    fetch = CountingFetch(SourceError("the token API is down"))
    raw = run_plugin(request(), FakeSource({HOST}, fetch), cache, clock, log)
    assert json.loads(raw)["auth"][HOST]["password"] == "cached-password-value"
    log.error("a later failure quoting cached-password-value")
    assert "cached-password-value" not in stream.getvalue()


@pytest.mark.parametrize(("image", "shown"), [
    pytest.param("a" * 300_000 + "/app", "a" * 100, id="300-KB-host"),
    pytest.param("evil\x1b[2J\nfake.io/app", "evil\\x1b[2J\\nfake.io/app", id="escapes"),
])
def test_an_unknown_registry_shows_the_requests_image_bounded_and_escaped(image: str,
                                                                          shown: str):
    # The image is the request's text: a megabyte of it, or a terminal escape, must reach the
    # kubelet's log neither whole nor raw.
    with pytest.raises(NoSourceError) as caught:
        run_plugin(request(image), FakeSource({HOST}, CountingFetch()), DictCache(),
                   FakeClock(), RecordingLogger())
    line = caught.value.one_line()
    assert shown in line
    assert len(line) < 1000
    assert "\x1b" not in line
    assert "\n" not in caught.value.message
