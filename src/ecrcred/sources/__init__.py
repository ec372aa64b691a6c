"""Credential sources: each knows one kind of registry and how to get credentials for it.

A source answers ``lookup(image, pod)`` with ``None`` ("not mine / nothing found") or a
``Lookup``: the auth key the response should carry, the cache key, and a ``fetch`` that raises a
named ``SourceError`` on failure. Which source is asked for an image is decided by the config's
rules (``ecrcred.config.rules``); with no config file only the ECR source is asked.

The sources, one module each: ``ecr`` (ECR and ECR Public, optionally through an assumed role or
the pod's own identity), ``static`` (a username and a password from a file or the environment),
``dockerconfig`` (docker ``config.json`` / ``.dockercfg`` files, in the kubelet's search order),
``helper`` (``docker-credential-<name>`` programs). The ``CredentialSource`` Protocol is in
``seams.py``; the records a source answers with (``Lookup``) and is asked with (``Pod``) are in
``records.py``, below the seams.
"""

from __future__ import annotations

from ecrcred.records import Lookup
from ecrcred.tokens import LAST_RESORT_CACHE_DURATION, Token

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from ecrcred.seams import Clock

# How long the kubelet may keep an answer that did not come from a token API (static passwords,
# docker config files, credential helpers): short, so that a rotated secret is picked up soon,
# and long enough that a burst of pulls costs one execution.
DEFAULT_UNCACHED_DURATION = 300


def fixed_lookup(auth_key: str, username: str, password: str, *, describe: str, duration: int,
                 clock: Clock) -> Lookup:
    """The answer of a source whose secret is not a token (static, docker config, helper): never
    stored in our token cache (``cache_key`` None: the secret already lives somewhere), kept by
    the kubelet for ``duration`` seconds. The caller registers the password with the logger."""
    now = clock.time()
    token = Token(username, password, now + duration, now)

    def fetch() -> Token:  # a closure, not a partial: a partial's repr would show the secret
        return token

    return Lookup(auth_key, None, fetch, describe, duration)


def kubelet_cache_duration(configured: int | None, *, fresh_for: int | None = None,
                           last_resort: bool = False) -> int:
    """How long the kubelet may keep an answer: decided here, and only here.

    ``configured`` is the rule's ``cacheDuration`` (None: the file sets none), which the router
    puts on the answer as ``Lookup.cache_duration``. ``fresh_for`` is, for a token we cache, the
    seconds until our cache would refresh it (None: a secret that is not a token). The source
    factory asks this for the lifetime of a static, docker config or helper answer, and
    ``provider.get_credentials`` for the number it tells the kubelet, so the two agree.
    """
    if last_resort:
        # A stale token with at least LAST_RESORT_MIN_REMAINING to live: let the kubelet keep
        # it a minute rather than re-exec us for every image while the API is failing.
        return LAST_RESORT_CACHE_DURATION
    if fresh_for is None:
        # 0 is kept: it tells the kubelet not to cache the answer at all.
        return DEFAULT_UNCACHED_DURATION if configured is None else configured
    return fresh_for if configured is None else min(fresh_for, configured)
