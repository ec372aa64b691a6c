"""Coverage-guided fuzzing (atheris, libFuzzer) of the config loader: YAML and JSON texts.

Each input, decoded as UTF-8 (``config.load`` refuses a file that is not, before this step;
undecodable bytes become U+FFFD), is handed to ``config.schema.compile_text`` and
``config_harness.check`` asserts the contract: a compiled config or a ``ConfigError``, nothing
else. ecrcred's modules and PyYAML's (the parser, pure Python here) are instrumented for
coverage; pydantic's core is compiled and is not.

CI runs it for a few seconds (tests/fuzz/test_fuzz_config.py). A longer run, from the
repository root, with new inputs kept in a scratch corpus beside the checked-in seeds:

    mkdir -p /tmp/ecrcred-config-corpus
    PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_config.py /tmp/ecrcred-config-corpus \\
        tests/fuzz/corpus_config -dict=tests/fuzz/config.dict -max_len=8192 \\
        -max_total_time=1800 -artifact_prefix=/tmp/ecrcred-config-corpus/ -print_final_stats=1

Replay one input with ``... fuzz_config.py FILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["ecrcred", "yaml"]):
    import yaml  # noqa: F401 - instrumented here, used by the schema

    import ecrcred.config.rules
    import ecrcred.config.schema
    import ecrcred.kubeletconfig  # noqa: F401 - its StrictLoader parses the file

from tests.fuzz.config_harness import check


def test_one_input(data: bytes) -> None:
    check(data.decode("utf-8", "replace"))


def main() -> int:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits


if __name__ == "__main__":
    sys.exit(main())
