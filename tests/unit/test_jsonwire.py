"""ecrcred.jsonwire against json itself: the same values, the same output and the same errors
(type, message, position) on generated documents, texts and bytes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrcred import jsonwire

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def outcome(parse: Any, raw: bytes | str) -> tuple[str, Any]:
    try:
        value = parse(raw)
    except (ValueError, RecursionError) as exc:
        position = getattr(exc, "pos", None)
        return type(exc).__name__, (str(exc), position)
    # NaN is not equal to itself: compare what json writes for the value
    return "ok", json.dumps(value, sort_keys=False)


def same(raw: bytes | str) -> None:
    assert outcome(jsonwire.loads, raw) == outcome(json.loads, raw), raw


@settings(max_examples=400)
@given(VALUES)
def test_a_document_json_writes_reads_back_the_same(value: Any):
    text = json.dumps(value)
    same(text)
    same(text.encode())
    same(f" \r\n\t{text}\n ")


@settings(max_examples=400)
@given(VALUES)
def test_dumps_writes_what_json_dumps_writes_compactly(value: Any):
    assert jsonwire.dumps(value) == json.dumps(value, separators=(",", ":"))


@settings(max_examples=600)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfrunalsNIiy \t\n\r\\/u\x00\x1f\ud800é',
               max_size=40))
def test_any_text_is_read_or_refused_as_json_does(text: str):
    same(text)
    same(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=400)
@given(st.binary(max_size=24))
def test_any_bytes_are_read_or_refused_as_json_does(raw: bytes):
    same(raw)


@pytest.mark.parametrize("raw", [
    b"", b" ", b"{}", b"{} {}", b'{"a":1}x', b"\xef\xbb\xbf{}", "\ufeff{}", b"\xff\xfe{\x00}\x00",
    '{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32-le"), b"NaN", b"-Infinity",
    b"1" * 5000, b"[" * 100_000, b'"\\ud800"', b'"\x01"', b"\x80",
], ids=repr)
def test_edge_inputs_match_json(raw: bytes | str):
    same(raw)


def test_nan_and_infinity_are_written_as_json_writes_them():
    assert jsonwire.dumps([math.nan, math.inf, -math.inf]) == "[NaN,Infinity,-Infinity]"


def test_what_json_cannot_write_is_refused_with_its_words():
    with pytest.raises(TypeError, match="Object of type bytes is not JSON serializable"):
        jsonwire.dumps({"a": b"x"})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        jsonwire.dumps(loop)


def test_reading_and_writing_import_neither_json_nor_re():
    # The point of the module: a cache hit's JSON without the cost of importing json (and re).
    code = ("import sys; sys.path[:0] = [sys.argv[1]]\n"
            "from ecrcred import jsonwire\n"
            "assert jsonwire.loads(b'{\"a\": [1, 2.5, null, \"\\\\u00e9\"]}') == "
            "{'a': [1, 2.5, None, 'é']}\n"
            "assert jsonwire.dumps({'a': 'é'}) == '{\"a\":\"\\\\u00e9\"}'\n"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))\n"
            # before json is imported, a malformed document still gets json's own error
            "for bad in (b'{', b'{\"a\": tru', b'[1,]', b'\"\\\\x\"', b'{\"a\" 1}'):\n"
            "    try:\n"
            "        jsonwire.loads(bad)\n"
            "    except ValueError as exc:\n"
            "        print(type(exc).__name__, exc)\n")
    src = str(__import__("pathlib").Path(jsonwire.__file__).parents[1])
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, src], capture_output=True,
                         text=True, check=True)
    first, *errors = out.stdout.strip().splitlines()
    assert first == "[]"
    expected = []
    for bad in (b"{", b'{"a": tru', b"[1,]", b'"\\x"', b'{"a" 1}'):
        with pytest.raises(json.JSONDecodeError) as caught:
            json.loads(bad)
        expected.append(f"JSONDecodeError {caught.value}")
    assert errors == expected
