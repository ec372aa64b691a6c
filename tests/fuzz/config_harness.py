"""The config loader's fuzz target: ``config.schema.compile_text`` on any text, and its contract.

``compile_text`` is what validates an ecrcred config file (YAML, or JSON, which PyYAML reads
too) whenever it changed; ``config.load`` hands it the file's text once it is known to be at
most 1 MiB of UTF-8. ``check(text)`` runs it and asserts:

- it returns, or raises ``ConfigError`` (exit 4): never another exception (a RecursionError
  from "[[[[…", a ValueError from a date or a number PyYAML cannot convert, a TypeError from a
  list as a key were all exit 70);
- an error names the file (``config <path>...``) and is one line of printable characters: the
  file's own text is shown escaped (repr, or ``quote_untrusted``), never raw;
- what compiles is plain JSON (it is kept as such in the state directory) and loads
  (``rules.from_compiled``) as the next execution would load it.

Used by ``fuzz_config.py`` (atheris) and ``test_fuzz_config.py`` (hypothesis, and a short
atheris run).
"""

from __future__ import annotations

import json
from typing import Any

from ecrcred.config.rules import from_compiled
from ecrcred.config.schema import compile_text
from ecrcred.errors import ConfigError

PATH = "/etc/ecrcred/config.yaml"


def check(text: str) -> dict[str, Any] | ConfigError:
    """Assert the contract (module docstring); return what ``compile_text`` gave or raised."""
    try:
        compiled = compile_text(text, PATH)
    except ConfigError as exc:
        line = exc.one_line()
        assert exc.exit_code == 4, exc
        assert exc.message.startswith(f"config {PATH}"), line
        assert line.isprintable(), f"raw text in the error line: {line[:500]!r}"
        return exc
    assert json.loads(json.dumps(compiled)) == compiled, "not plain JSON"
    from_compiled(compiled, PATH, "flag --config")
    return compiled
