"""Fuzzing ``ecrcred get-credentials``' stdin in CI: hypothesis, then a short atheris run.

Both drive the real entry point in-process (``harness.Stand``) and assert the same contract
(``harness.check``): a documented exit code, never 70; no traceback; stdout empty or one
response the kubelet accepts. The hypothesis test generates requests shaped like the kubelet's,
aimed at every rule of the stand's config, with hostile images, versions, tokens and
annotations, and then damages some of them; atheris mutates bytes, guided by coverage of
ecrcred's code. About 30 s in all; longer runs of the same tests:

    ECRCRED_FUZZ_EXAMPLES=20000 ECRCRED_FUZZ_SECONDS=600 .venv/bin/python -m pytest tests/fuzz

(or atheris alone with the command in fuzz_stdin.py's docstring). Counts of what was tried are
in tests/fuzz/README.md.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.atheris_run import run_atheris
from tests.fuzz.harness import ECR_HOST, Stand, check, request_bytes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
API = "credentialprovider.kubelet.k8s.io"
ROLE = "arn:aws:iam::123456789012:role/pull"
ROLE_ANNOTATION = "eks.amazonaws.com/ecr-role-arn"
OUTCOMES: Counter[int] = Counter()
EXAMPLES = int(os.environ.get("ECRCRED_FUZZ_EXAMPLES", "1000"))
SECONDS = int(os.environ.get("ECRCRED_FUZZ_SECONDS", "15"))


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand()
    try:
        yield s
    finally:
        s.close()


def jwt(claims: object) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{part(b'{}')}.{part(json.dumps(claims).encode())}.{part(b'sig')}"


hostile_text = st.text(max_size=40) | st.sampled_from(
    ["", " ", "\n", "\x00", "\ud800", "\udfff", "é", "\u202e", "%00", "../..", "*", "?", "#",
     "@", ":", "[::1]", "a" * 300])
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
paths = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1,
                         max_size=8), max_size=3).map("/".join)

# Hosts of each rule of the stand's config (fast paths), weighted so that the slow paths
# (an ECR or STS call that reaches the refusing endpoint through boto3, ~100 ms) stay rare.
fast_hosts = st.sampled_from([
    ECR_HOST, "static.example", "scoped.example", "mirror.example:5000", "docker.io",
    "corp.example", "dockercfg.example", "helper.example", "registry.io", "public.ecr.aws.evil",
    "a[b.static.example", "*.static.example", "x\\y.static.example",
    f"{ECR_HOST}.evil.example", "STATIC.EXAMPLE", "static.example:443", "[::1]:5000",
]) | labels.map(lambda w: f"{w}.static.example")
slow_hosts = st.sampled_from(["public.ecr.aws", "999999999999.dkr.ecr.us-west-2.amazonaws.com",
                              "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"])
hosts = st.one_of(*[fast_hosts] * 19, slow_hosts)


@st.composite
def images(draw: st.DrawFn) -> str:
    host = draw(hosts)
    kind = draw(st.integers(0, 9))  # 0 (hypothesis' simplest) is the plain image
    if kind == 9:
        return draw(hostile_text)
    path = draw(paths)
    if host == "scoped.example" and draw(st.booleans()):
        path = "team-a" + draw(st.sampled_from(["", "/", "b/app", "/app"])) + path
    image = f"{host}/{path}" if path else host
    if kind == 8:
        image += draw(hostile_text)
    elif kind == 7:
        image = draw(st.sampled_from([" ", "\t", "\n"])) + image + " "
    return image


tokens = st.one_of(
    st.none(), st.just(""),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=32).map(lambda h: f"sa-{h}"),
    st.builds(jwt, st.fixed_dictionaries({"iss": hostile_text, "sub": hostile_text})),
    st.builds(jwt, st.recursive(st.none() | st.text(max_size=5),
                                lambda x: st.lists(x, max_size=3), max_leaves=5)),
    hostile_text,
)
annotations = st.one_of(
    st.none(), st.just({}),
    st.fixed_dictionaries({ROLE_ANNOTATION: hostile_text}),
    st.dictionaries(hostile_text, hostile_text, max_size=3),
)


@st.composite
def stdin_bytes(draw: st.DrawFn) -> bytes:
    doc: dict[str, object] = {
        "kind": draw(st.sampled_from(["CredentialProviderRequest"] * 8 + ["", "Other"])),
        "apiVersion": draw(st.sampled_from([f"{API}/v1", f"{API}/v1beta1", f"{API}/v1alpha1"] * 3
                                           + [f"{API}/v2", "v1", ""])),
        "image": draw(images()),
    }
    token, notes = draw(tokens), draw(annotations)
    # A valid role with a token goes to STS (slow): only now and then.
    if token and draw(st.integers(0, 29)) == 29:
        notes = {ROLE_ANNOTATION: ROLE}
    if token is not None:
        doc["serviceAccountToken"] = token
    if notes is not None:
        doc["serviceAccountAnnotations"] = notes
    for name in draw(st.sets(st.sampled_from(sorted(doc)), max_size=1)) if draw(
            st.integers(0, 9)) == 9 else ():
        doc[name] = draw(st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=2)
                         | st.dictionaries(st.text(max_size=3), st.text(max_size=3),
                                           max_size=2))
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode(
        "utf-8", "surrogatepass")
    damage = draw(st.integers(0, 9))  # 0 to 5: none
    if damage == 6:
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif damage == 7:
        raw = raw + draw(st.binary(max_size=8))
    elif damage == 8:
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.binary(min_size=1, max_size=4)) + raw[i:]
    elif damage == 9:
        raw = b"[" + raw + b"]"
    return raw + draw(st.sampled_from([b"\n", b"", b"\r\n", b"\n\n"]))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(stdin_bytes())
@example(request_bytes("![corth-1.static.example/x", f"{API}/v1beta1"))  # atheris: glob chars
@example(b"[" * 200_000)  # was exit 70: RecursionError in the JSON parser
@example(request_bytes(f"{ECR_HOST}/app", serviceAccountToken="abc\ud800def",
                       serviceAccountAnnotations={ROLE_ANNOTATION: ROLE}))  # was exit 70
@example(request_bytes(f"{ECR_HOST}/app", serviceAccountToken=jwt({"iss": "i", "sub": "\ud800"}),
                       serviceAccountAnnotations={ROLE_ANNOTATION: ROLE}))  # was exit 70
def test_get_credentials_keeps_its_contract_on_generated_requests(stand: Stand, raw: bytes):
    outcome = stand.run(raw)
    OUTCOMES[outcome.code] += 1
    check(raw, outcome, stand.secrets)


def test_the_generated_requests_reached_every_kind_of_outcome(stand: Stand):
    # The hypothesis test's requests must have been answered, refused as bad requests and failed
    # as unanswerable, or the generator has gone blind. When it has not run in this session (this
    # test run alone, by -k, or first in another order), it runs here: no dependence on order.
    if not OUTCOMES:
        test_get_credentials_keeps_its_contract_on_generated_requests(stand)
    assert OUTCOMES[0] > 50 and OUTCOMES[1] > 50 and OUTCOMES[3] > 50, OUTCOMES
    print(f"\nexit codes of {sum(OUTCOMES.values())} generated requests: {dict(OUTCOMES)}")


@pytest.mark.parametrize("raw", [
    pytest.param(b"[" * 200_000, id="nested-lists"),
    pytest.param(b'{"image":' * 100_000, id="nested-objects"),
])
def test_deeply_nested_stdin_is_a_bad_request_not_an_internal_error(stand: Stand, raw: bytes):
    # Regression (found by the properties): exit 70 "internal error: RecursionError".
    outcome = stand.run(raw)
    assert outcome.code == 3, outcome.stderr
    assert "nested too deeply" in outcome.stderr
    check(raw, outcome, stand.secrets)


@pytest.mark.parametrize("token", [
    pytest.param("abc\ud800def", id="lone-surrogate"),
    pytest.param(jwt({"iss": "https://oidc.example", "sub": "system:sa:\ud800"}),
                 id="surrogate-in-claims"),
    pytest.param("h." + base64.urlsafe_b64encode(b"[" * 50_000).decode() + ".s",
                 id="nested-claims"),
])
def test_an_odd_service_account_token_with_a_role_is_an_aws_error_not_a_crash(
        stand: Stand, token: str):
    # Regression: token_subject and identity_digest encoded the token and its claims as UTF-8
    # (a lone surrogate, valid as a JSON escape, raised UnicodeEncodeError) and parsed the
    # claims without catching RecursionError: exit 70. Now the role is asked for, and STS (here
    # a port that refuses) answers.
    raw = request_bytes(f"{ECR_HOST}/app", serviceAccountToken=token,
                        serviceAccountAnnotations={ROLE_ANNOTATION: ROLE})
    outcome = stand.run(raw)
    assert outcome.code == 1, outcome.stderr
    assert "sts:AssumeRoleWithWebIdentity" in outcome.stderr
    check(raw, outcome, stand.secrets)


def test_a_short_atheris_run_finds_no_contract_breach(tmp_path: Path):
    runs = run_atheris("fuzz_stdin.py", "corpus", "stdin.dict", tmp_path, SECONDS,
                       min_per_second=100, options=["-timeout=0", "-max_len=4096"])
    print(f"\natheris: {runs} inputs in {SECONDS} s")
