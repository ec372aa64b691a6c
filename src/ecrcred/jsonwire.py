"""JSON in and out on the cache-hit path, with ``json``'s own C scanner and encoder but without
importing ``json``.

Why: importing ``json`` imports ``re``, and ``re`` imports ``enum``; together they cost a cache
hit about 30 million instructions, more than half of what a hit costs beyond the interpreter's
own start (callgrind counts; BENCHMARKS.md, "The cache hit, counted"). CPython's ``json`` is two
layers: the C accelerator ``_json`` (the scanner, the string escaper, the encoder) and the Python
package around it, whose import compiles regular expressions that only its pure-Python fallback
and its whitespace skipping use. This module drives the same C scanner and encoder with the
settings ``json.loads`` and ``json.dumps`` use by default, so what is accepted, produced and
refused is the same (``tests/unit/test_jsonwire.py`` compares the two on generated documents);
errors are ``json``'s own ``JSONDecodeError``, and a malformed document is handed to ``json``
to say what is wrong (``_json`` finds that exception only once ``json`` is imported). Whatever
this fast path does not cover (no ``_json``, bytes that are not plain UTF-8 by
``json.detect_encoding``'s rules, a leading byte-order mark) is handed to ``json`` itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE: the only whitespace JSON has


class _Settings:
    """The attributes ``_json.make_scanner`` reads: ``json.JSONDecoder()``'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _not_serializable(value: object) -> object:
    # json.JSONEncoder.default's own words
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _accelerators() -> tuple[Callable[[str, int], tuple[Any, int]] | None,
                             Callable[[], Callable[[Any, int], Any]] | None]:
    try:
        import _json  # optional: a CPython built without it gets json's fallback
    except ImportError:
        return None, None

    def encoder() -> Callable[[Any, int], Any]:
        # json.JSONEncoder(separators=(",", ":")).iterencode(_one_shot=True): a fresh markers
        # dict per document (check_circular), ensure_ascii, allow_nan, no sort, no skipkeys
        return _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii,
                                  None, ":", ",", False, False, True)

    try:
        scan = _json.make_scanner(_Settings())  # type: ignore[arg-type]  # reads attributes
        encoder()
    except (TypeError, AttributeError):  # another interpreter's private signature
        return None, None
    return scan, encoder


_scan, _encoder = _accelerators()


def _plain_utf8(raw: bytes) -> bool:
    """Whether ``json.detect_encoding`` would call ``raw`` UTF-8 without a byte-order mark:
    no NUL in its first two bytes, and no first byte that may begin a BOM."""
    if raw[:1] in (b"\x00", b"\xef", b"\xfe", b"\xff"):
        return False
    return len(raw) < 2 or raw[1] != 0


def loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``, with the same result and the same errors."""
    if _scan is None or (isinstance(raw, bytes) and not _plain_utf8(raw)) or (
            isinstance(raw, str) and raw.startswith("\ufeff")):
        import json  # the uncommon input: json's own handling of it

        return json.loads(raw)
    # json.loads decodes bytes with "surrogatepass"; a UnicodeDecodeError is a ValueError, as
    # json's is.
    text = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    except SystemError:
        # _json raises a malformed document's error as json.decoder.JSONDecodeError, which it
        # looks up in sys.modules without importing it: before json is imported that lookup
        # fails and the C code returns with no exception set. json itself then says what is
        # wrong (a bad document is rare: a corrupt cache file, a kubelet bug).
        import json

        return json.loads(raw)
    rest = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if rest != len(text):
        raise _error("Extra data", text, rest)
    return value


def dumps(value: object) -> str:
    """``json.dumps(value, separators=(",", ":"))``: compact, ASCII, keys in insertion order."""
    if _encoder is None:
        import json

        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        import _json  # present: _encoder was made from it

        return str(_json.encode_basestring_ascii(value))
    return "".join(_encoder()(value, 0))


def _error(message: str, text: str, position: int) -> ValueError:
    from json import JSONDecodeError  # on errors only

    return JSONDecodeError(message, text, position)
