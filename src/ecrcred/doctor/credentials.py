"""Which rule and credential source answer for an image, and what they give.

The same ``Router`` and token cache that ``get-credentials`` and ``pull-sandbox`` use, asked to
explain itself (``Router.explain``): every matching rule in precedence order and what it said,
the source that answered (file, account, role), whether a cached token exists and until when.
Then the credentials are resolved for real (a cache miss calls the source, as a pull would), so
the registry check can try them. Never a secret: only the user name and where it came from.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ecrcred.doctor.registry import RegistryLogin
from ecrcred.doctor.report import Check, fail, ok, warn
from ecrcred.errors import EcrcredError
from ecrcred.provider import DIRECT, resolve_lookup

if TYPE_CHECKING:
    from ecrcred.router import Router
    from ecrcred.seams import Clock, Logger, TokenCache


def _when(epoch: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    left = epoch - now
    if left <= 0:
        return f"{stamp}, {int(-left // 60)} min ago"
    return f"{stamp}, in {int(left // 3600)}h{int(left % 3600 // 60):02d}m"


def check_credentials(image: str, router: Router, cache: TokenCache, clock: Clock,
                      log: Logger) -> tuple[list[Check], RegistryLogin | None]:
    """``credentials.rule``, ``credentials.token``; and the credentials, for the registry."""
    try:
        lookup, steps = router.explain(image)
    except EcrcredError as exc:
        return [fail("credentials.rule", f"asking the rules for {image} failed: {exc.message}",
                     exc.hint or "fix the ecrcred config")], None
    details = tuple(steps)
    if lookup is None:
        return [warn("credentials.rule", f"no rule and no built-in source gives credentials for "
                     f"{image}", "fine for a public registry (see registry.auth); otherwise add "
                     "a rule for its host to the ecrcred config", details)], None
    checks = [ok("credentials.rule", f"{lookup.describe} (answer keyed by "
                 f"{'image' if lookup.per_image else 'registry'} {lookup.auth_key})", details)]
    now = clock.time()
    cached_note = ""
    if lookup.cache_key is not None:
        cached = cache.load(lookup.cache_key)
        if cached is None:
            cached_note = "no cached token yet"
        elif cached.is_fresh(now):
            cached_note = (f"cached token fresh until {_when(cached.fresh_until(), now)} "
                           f"(expires {_when(cached.expires_at, now)})")
        else:
            cached_note = f"cached token is stale (expires {_when(cached.expires_at, now)})"
    try:
        resolved = resolve_lookup(lookup, cache, clock, log)
    except EcrcredError as exc:
        message = exc.message + (f" ({cached_note})" if cached_note else "")
        return [*checks, fail("credentials.token", message, exc.hint or "see the message",
                              details)], None
    token = resolved.token
    if resolved.how == DIRECT:
        message = (f"user {token.username} from {lookup.describe}; read at each request, never "
                   "cached by ecrcred")
    else:
        message = (f"user {token.username}, {resolved.how}: {cached_note}; the token now in "
                   f"use expires {_when(token.expires_at, now)}")
    checks.append(ok("credentials.token", message, details))
    return checks, RegistryLogin(token.username, token.password, lookup.describe)
