"""Credential sources: each knows one kind of registry and how to get a token for it.

A source answers ``lookup(image)`` with ``None`` ("not mine") or a ``Lookup``: the auth key the
response should carry, the cache key, and a ``fetch`` that raises a named ``SourceError`` on
failure. Sources are tried in order; the first that claims an image answers for it. (The
``CredentialSource`` Protocol is in ``seams.py``.)
"""

from __future__ import annotations

from ecrcred._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecrcred.cache import CacheKey
    from ecrcred.tokens import Token


class Lookup(Record):
    auth_key: str  # the key in the response's auth map (a registry host, or a mirror's)
    cache_key: CacheKey
    fetch: Callable[[], Token]
    describe: str  # for messages: which registry, account, role (never a secret)

