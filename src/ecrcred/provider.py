"""``get-credentials``: one kubelet request in, one response out.

``run_plugin`` takes the request bytes and its collaborators and returns the response bytes, so it
is tested without a process (as ``runPlugin(ctx, r, w, args)`` in cloud-provider-aws).

The answer is keyed by registry (``cacheKeyType: Registry``): a token opens a whole registry, so
the kubelet may reuse one answer for every image of that host. Only when a path-scoped rule or
docker config key could give another image of the host other credentials is it keyed by image,
with the image itself as the auth key. Its ``cacheDuration`` ends when our own cache would
refresh the token (``tokens.Token.cache_duration``), or, for secrets that are not tokens (static,
docker config, helpers), after the rule's ``cacheDuration``; ``sources.kubelet_cache_duration``
is the one place that decides.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.errors import NoSourceError
from ecrcred.fetch import LAST_RESORT, get_or_fetch
from ecrcred.imageref import registry_host
from ecrcred.kubelet import AuthEntry, Request, Response, parse_request, render_response
from ecrcred.log import quote_untrusted
from ecrcred.records import Pod
from ecrcred.sources import kubelet_cache_duration

DIRECT = "direct"  # a source whose answer is never cached by us (static, docker config, helper)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecrcred.records import Lookup
    from ecrcred.seams import Clock, CredentialSource, Logger, TokenCache
    from ecrcred.tokens import Token


def run_plugin(raw_request: bytes, source: CredentialSource, cache: TokenCache,
               clock: Clock, log: Logger, wait_until: float | None = None) -> bytes:
    """``source`` is the one asked (the ``Router``, in the program). ``wait_until``
    (monotonic): until when a throttling hold may be waited out (see ``fetch.get_or_fetch``);
    None never waits."""
    request = parse_request(raw_request)
    response = get_credentials(request, source, cache, clock, log, wait_until)
    return render_response(response)


class Resolved(Record):
    lookup: Lookup
    token: Token
    how: str  # fetch.HIT, MISS, LAST_RESORT or DIRECT


def resolve(image: str, source: CredentialSource, cache: TokenCache, clock: Clock,
            log: Logger, pod: Pod | None = None,
            wait_until: float | None = None) -> Resolved | None:
    """Credentials for an image (``host/repository``) from ``source``, through the shared
    token cache; None when it does not know the registry. ``get-credentials`` and
    ``pull-sandbox`` both come through here, so they always agree."""
    lookup = source.lookup(image, pod)
    if lookup is None:
        return None
    return resolve_lookup(lookup, cache, clock, log, pod, wait_until)


def resolve_lookup(lookup: Lookup, cache: TokenCache, clock: Clock, log: Logger,
                   pod: Pod | None = None, wait_until: float | None = None) -> Resolved:
    """The credentials of a source's answer, through the shared token cache (``resolve``'s
    second half; ``doctor`` calls it with the lookup ``Router.explain`` already made)."""
    fetch = lookup.fetch if pod is None else _refusing_echo(lookup, pod)
    if lookup.cache_key is None:
        token, how = fetch(), DIRECT
    else:
        token, how = get_or_fetch(cache, lookup.cache_key, fetch, clock, log,
                                  wait_until=wait_until)
    # Every answer's password, a cache hit's and a last resort's too (no fetch registered
    # those): whatever is logged after this may quote it. A set insert, cheap on a hit.
    log.add_secret(token.password)
    return Resolved(lookup, token, how)


def _refusing_echo(lookup: Lookup, pod: Pod) -> Callable[[], Token]:
    """``lookup.fetch``, refusing (before anything is cached) a password that is the pod's own
    service-account token: the kubelet rejects such an answer (1.34+), and it must never be
    handed back or stored."""

    def fetch() -> Token:
        token = lookup.fetch()
        if token.password == pod.token:
            raise NoSourceError(f"the credentials for {lookup.describe} are the pod's own "
                                "service-account token", hint="check the rule's source",
                                code="TOKEN_ECHO")
        return token

    return fetch


def get_credentials(request: Request, source: CredentialSource, cache: TokenCache,
                    clock: Clock, log: Logger, wait_until: float | None = None) -> Response:
    pod = None
    if request.service_account_token:
        log.add_secret(request.service_account_token)
        pod = Pod(request.service_account_token, request.service_account_annotations or {})
    resolved = resolve(request.image, source, cache, clock, log, pod, wait_until)
    if resolved is None:
        # The image is the request's text, anything up to a megabyte: shown bounded and escaped.
        raise NoSourceError(
            f"no credential source knows the registry of image {quote_untrusted(request.image)} "
            f"(host {quote_untrusted(registry_host(request.image))} is not an ECR host and no "
            "rule of the ecrcred config matches it)",
            hint="add a rule for it to the ecrcred config, or narrow matchImages in the "
            "kubelet's credential provider config",
        )
    lookup, token, how = resolved
    fresh_for = None if lookup.cache_key is None else token.cache_duration(clock.time())
    duration = kubelet_cache_duration(lookup.cache_duration, fresh_for=fresh_for,
                                      last_resort=how == LAST_RESORT)
    log.debug(f"{how}: token for {lookup.describe}, kubelet may cache it for {duration}s")
    # Keyed by image, the auth key is the image itself: it matches by path prefix, and nothing
    # wider can leak to a sibling path.
    key_type, auth_key = ("Image", request.image) if lookup.per_image else ("Registry",
                                                                          lookup.auth_key)
    return Response(
        api_version=request.api_version,
        cache_key_type=key_type,
        cache_duration_seconds=duration,
        auth={auth_key: AuthEntry(token.username, token.password)},
    )
