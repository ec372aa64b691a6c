"""Settings that remember where they came from: a flag, the environment, or the default.

The kubelet runs us with its own environment plus the provider config's ``env`` entries, so every
flag has an ``ECRCRED_*`` variable too. ``doctor`` reports the origin of each value, because "why
is it using that directory" is the first question after an incident.
"""

from __future__ import annotations

from ecrcred._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping


class Setting(Record):
    value: str
    origin: str  # "flag --cache-dir", "env ECRCRED_CACHE_DIR" or "default"


def pick(flag: str, flag_value: str | None, env: Mapping[str, str], env_name: str,
         default: str) -> Setting:
    if flag_value is not None:
        return Setting(flag_value, f"flag {flag}")
    if env.get(env_name):
        return Setting(env[env_name], f"env {env_name}")
    return Setting(default, "default")
