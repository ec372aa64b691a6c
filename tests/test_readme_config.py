"""The README's config examples are valid, and its precedence table is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecrcred.config.rules import candidates, from_compiled
from ecrcred.config.schema import compile_text

README = Path(__file__).parents[1] / "README.md"


def config_blocks() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [b for b in blocks if "ecrcred.io/v1alpha1" in b]


def test_the_readme_has_a_config_example():
    assert config_blocks()


@pytest.mark.parametrize("block", config_blocks())
def test_every_readme_config_example_validates(block: str):
    compiled = compile_text(block, "README.md")
    assert compiled["registries"]


def _table_rows() -> list[tuple[str, list[str], str | None]]:
    text = README.read_text()
    table = text[text.index("| image | rules | winner |"):].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        image, rules, winner = (cell.strip() for cell in line.strip("|").split("|"))
        # Every backticked pattern is a rule, including one the table says is not a candidate:
        # the code must agree that it is not.
        patterns = re.findall(r"`([^`]+)`", rules)
        expected = re.findall(r"`([^`]+)`", winner)
        rows.append((image.strip("`"), patterns, expected[0] if expected else None))
    return rows


@pytest.mark.parametrize(("image", "patterns", "winner"), _table_rows())
def test_the_readme_precedence_table_is_what_the_rules_do(image, patterns, winner):
    static = {"username": "robot", "password_file": None, "password_env": "PASSWORD"}
    compiled = {"registries": [{"index": i, "match": [p], "source": "static", "options": static,
                                "cacheDuration": None} for i, p in enumerate(patterns)],
                "podIdentity": {"role_annotations": [], "role_arn": None, "fallback": "node",
                                "session_name": "ecrcred"}}
    ranked = candidates(from_compiled(compiled, "README", "test"), image)
    assert (ranked[0].match[0] if ranked else None) == winner
