"""Fuzzing the config loader in CI: hypothesis, then a short atheris run.

Both feed texts to ``config.schema.compile_text`` and assert ``config_harness.check``: a compiled
config or a ``ConfigError`` naming the file in one printable line, never another exception. The
hypothesis test writes configs shaped like real ones (every source kind, pod identity, hostile
values, an inline password) as YAML block or flow style or as JSON, then damages some of them:
cut short, bytes inserted, nested hundreds deep, numbers past Python's digit limit, tags PyYAML
converts (dates, floats, sets), lists as keys, aliases. atheris mutates text, guided by coverage
of ecrcred's and PyYAML's code. A few seconds in all; longer runs:

    ECRCRED_FUZZ_EXAMPLES=20000 ECRCRED_FUZZ_SECONDS=600 .venv/bin/python -m pytest \\
        tests/fuzz/test_fuzz_config.py

(or atheris alone with the command in fuzz_config.py's docstring).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecrcred.errors import ConfigError
from tests.fuzz.atheris_run import run_atheris
from tests.fuzz.config_harness import check

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = int(os.environ.get("ECRCRED_FUZZ_EXAMPLES", "400"))
SECONDS = int(os.environ.get("ECRCRED_FUZZ_SECONDS", "5"))
SECRET = "inline-password-5a0c7e91"  # only ever written as an inline password
OUTCOMES: Counter[str] = Counter()

hostile = st.text(max_size=20) | st.sampled_from(
    ["", " ", "\n", "\t", "\x00", "\x1b[2J", "\u202e", "\ud800", "é", "*", "?", "[", "#",
     "://", "a" * 300, "2024-02-30", "1e999", "0x1F", "null", "~", "yes", "on", "9" * 5000])
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
hosts = st.sampled_from(["a.example", "*.corp.example", "mirror.example:5000", "docker.io",
                         "scoped.example/team-a", "123456789012.dkr.ecr.us-west-2.amazonaws.com",
                         "public.ecr.aws"]) | words.map(lambda w: f"{w}.example")
durations = st.sampled_from(["5m", "90s", "1h30m", "500ms", "0", "-1s", "3000000h", "5", 5,
                             "\u0661h", "1\u03bcs"])  # an Arabic-Indic digit; the Greek mu
scalars = st.none() | st.booleans() | st.integers() | hostile | durations


def anything(leaf: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(leaf, lambda x: st.lists(x, max_size=3)
                        | st.dictionaries(words, x, max_size=3), max_leaves=6)


def maybe(fields: dict[str, st.SearchStrategy[object]]) -> st.SearchStrategy[dict[str, object]]:
    """A mapping holding some of ``fields``, now and then one more unknown field."""
    return st.fixed_dictionaries({}, optional={**fields, "unknownField": scalars})


sources = {
    "ecr": maybe({"region": st.sampled_from(["us-west-2", "eu-west-1", "xx"]) | hostile,
                  "account": st.sampled_from(["123456789012", 123456789012]) | hostile,
                  "roleArn": st.just("arn:aws:iam::123456789012:role/pull") | hostile,
                  "externalId": hostile, "sessionName": hostile,
                  "fips": st.booleans() | scalars, "dualstack": st.booleans()}),
    "static": maybe({"username": words | scalars, "passwordFile": st.just("/etc/p") | hostile,
                     "passwordEnv": st.just("PW") | hostile, "password": st.just(SECRET)}),
    "dockerConfig": maybe({"paths": st.lists(st.just("/d.json") | hostile, max_size=2),
                           "kubeletRootDir": hostile}),
    "credentialHelper": maybe({"name": st.just("gcloud") | hostile, "timeout": durations}),
    "mirrorOf": st.just("123456789012.dkr.ecr.us-west-2.amazonaws.com/hub") | hostile,
}


@st.composite
def rules(draw: st.DrawFn) -> dict[str, object]:
    rule: dict[str, object] = {"match": draw(st.lists(hosts | hostile, max_size=3))}
    for name in draw(st.lists(st.sampled_from(sorted(sources)), min_size=0, max_size=2,
                              unique=True)):
        rule[name] = draw(sources[name])
    if draw(st.booleans()):
        rule["cacheDuration"] = draw(durations)
    return rule


@st.composite
def documents(draw: st.DrawFn) -> object:
    doc: dict[str, object] = {
        "apiVersion": draw(st.sampled_from(["ecrcred.io/v1alpha1"] * 6 + ["v1", ""])),
        "kind": draw(st.sampled_from(["EcrcredConfig"] * 6 + ["Config"])),
        "registries": draw(st.lists(rules(), max_size=4)),
    }
    if draw(st.booleans()):
        doc["podIdentity"] = draw(maybe({
            "roleAnnotations": st.lists(hostile, max_size=2),
            "roleArn": st.just("arn:aws:iam::123456789012:role/p") | hostile,
            "fallback": st.sampled_from(["node", "deny", "other"]), "sessionName": hostile}))
    if draw(st.integers(0, 9)) == 9:
        return draw(anything(scalars))
    return doc


def serialize(draw: st.DrawFn, doc: object) -> str:
    how = draw(st.sampled_from(["block", "flow", "json", "json-ascii"]))
    try:
        if how.startswith("json"):
            return json.dumps(doc, ensure_ascii=how == "json-ascii")
        return yaml.safe_dump(doc, default_flow_style=how == "flow", allow_unicode=True)
    except (UnicodeEncodeError, ValueError):  # a lone surrogate; an int past the digit limit
        return json.dumps(doc)


INSERTS = ["!!timestamp 2024-02-30", "!!timestamp y", "!!bool x", "!!float x", "!!int ''",
           "!!binary '!!'", "!!set {a}",
           "!!python/object:os.system x", "&a [*a]", "*undefined", "? [a, b]\n: c",
           "? {a: b}\n: c", "9" * 5000, "1_" + "1" * 5000, "0x" + "f" * 5000, "\t", "\ufeff",
           "registries: x\nregistries: y", "{", "]", "'", '"', "\\", "%YAML 1.1\n---", "<<: *a"]


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    text = serialize(draw, draw(documents()))
    damage = draw(st.integers(0, 9))  # 0 to 3: none
    if damage == 4:
        text = text[:draw(st.integers(0, len(text)))]
    elif damage == 5:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(INSERTS) | st.text(max_size=4)) + text[i:]
    elif damage == 6:
        text += "\n" + draw(st.sampled_from(INSERTS))
    elif damage == 7:
        depth = draw(st.integers(10, 2000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ('{"a": ', "}"),
                                               ("- ", "")]))
        text = f"registries: {opener * depth}x{closer * depth}\n"
    elif damage == 8:
        text = text.replace(": ", ": " + draw(st.sampled_from(["!!str ", "&x ", "!!int "])), 1)
    elif damage == 9:
        text = text.replace("\n", draw(st.sampled_from(["\r\n", "\r", "\n\t", "\x85"])))
    return text


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config_texts())
@example("registries: " + "[" * 500 + "]" * 500)  # were exit 70: RecursionError in PyYAML
@example('{"registries": ' + '{"a": ' * 500 + "}" * 500 + "}")
@example("registries:\n  " + "- " * 500 + "x")
@example("registries: " + "7" * 5000)  # were exit 70: ValueError, Python's digit limit
@example("registries: 2024-02-30")  # were exit 70: ValueError from datetime()
@example("registries: !!float x")
@example("? [a, b]\n: c")  # were exit 70: TypeError, a list as a key
@example("registries: !!int ''")  # was exit 70: IndexError in PyYAML's int constructor
@example("-\u05cf\ufffd\ufffdIdentity:")  # atheris: an unknown field's name was shown raw
@example(" !!timestamp y")  # atheris, was exit 70: AttributeError in PyYAML's constructor
@example("a: !!bool x")  # was exit 70: KeyError in PyYAML's constructor
def test_the_config_loader_keeps_its_contract_on_generated_configs(text: str):
    outcome = check(text)
    if isinstance(outcome, ConfigError):
        OUTCOMES["refused"] += 1
        assert SECRET not in outcome.one_line(), "an inline password was echoed"
    else:
        OUTCOMES["compiled"] += 1


def test_the_generated_configs_were_both_compiled_and_refused():
    # A generator that only ever produces broken files (or only good ones) no longer tests the
    # other half. When the hypothesis test has not run in this session (this test run alone, by
    # -k, or first in another order), it runs here: no dependence on order.
    if not OUTCOMES:
        test_the_config_loader_keeps_its_contract_on_generated_configs()
    assert OUTCOMES["compiled"] > EXAMPLES // 40 and OUTCOMES["refused"] > EXAMPLES // 4, OUTCOMES
    print(f"\noutcomes of {sum(OUTCOMES.values())} generated configs: {dict(OUTCOMES)}")


def test_a_short_atheris_run_of_the_config_loader_finds_no_contract_breach(tmp_path: Path):
    runs = run_atheris("fuzz_config.py", "corpus_config", "config.dict", tmp_path, SECONDS,
                       min_per_second=50, options=["-max_len=8192"])
    print(f"\natheris: {runs} inputs in {SECONDS} s")
