"""``ecrcred.errors``: the tree the CLI maps to exit codes, and what stays outside it.

That a role without an STS client raises ``WiringError`` is in test_sources_ecr_identity.py;
that the CLI ends one as exit 70 [INTERNAL] is in test_cli.py.
"""

from __future__ import annotations

import pytest

from ecrcred import errors
from ecrcred.errors import EcrcredError, WiringError


def test_a_wiring_error_is_a_bug_outside_the_user_error_tree():
    # The CLI maps every EcrcredError to its exit code; anything else is its catch-all's 70.
    assert not issubclass(WiringError, EcrcredError)
    assert issubclass(WiringError, RuntimeError)


@pytest.mark.parametrize("name", [n for n in dir(errors)
                                  if isinstance(getattr(errors, n), type)
                                  and issubclass(getattr(errors, n), EcrcredError)])
def test_every_user_error_is_drawn_in_the_docstring_tree(name: str):
    doc = errors.__doc__ or ""
    assert f"── {name} " in doc or f"\n    {name} " in doc
