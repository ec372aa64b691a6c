"""``get-credentials``: one kubelet request in, one response out.

``run_plugin`` takes the request bytes and its collaborators and returns the response bytes, so it
is tested without a process (as ``runPlugin(ctx, r, w, args)`` in cloud-provider-aws). The answer
uses ``cacheKeyType: Registry``: ECR tokens open a whole registry, so the kubelet may reuse one
answer for every image of that host, and its ``cacheDuration`` ends when our own cache would
refresh the token (``tokens.Token.cache_duration``).
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.cache import LAST_RESORT, get_or_fetch
from ecrcred.errors import NoSourceError
from ecrcred.imageref import registry_host
from ecrcred.kubelet import AuthEntry, Request, Response, parse_request, render_response
from ecrcred.tokens import LAST_RESORT_CACHE_DURATION

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ecrcred.seams import Clock, CredentialSource, Logger, TokenCache
    from ecrcred.sources import Lookup
    from ecrcred.tokens import Token


def run_plugin(raw_request: bytes, sources: Sequence[CredentialSource], cache: TokenCache,
               clock: Clock, log: Logger) -> bytes:
    request = parse_request(raw_request)
    if request.service_account_token:
        log.add_secret(request.service_account_token)
    response = get_credentials(request, sources, cache, clock, log)
    return render_response(response)


class Resolved(Record):
    lookup: Lookup
    token: Token
    how: str  # cache.HIT, MISS or LAST_RESORT


def resolve(image: str, sources: Sequence[CredentialSource], cache: TokenCache, clock: Clock,
            log: Logger) -> Resolved | None:
    """Credentials for an image (``host/repository``) from the first source that claims it,
    through the shared token cache; None when no source knows the registry. ``get-credentials``
    and ``pull-sandbox`` both come through here, so they always agree."""
    for source in sources:
        lookup = source.lookup(image)
        if lookup is not None:
            token, how = get_or_fetch(cache, lookup.cache_key, lookup.fetch, clock, log)
            return Resolved(lookup, token, how)
    return None


def get_credentials(request: Request, sources: Sequence[CredentialSource], cache: TokenCache,
                    clock: Clock, log: Logger) -> Response:
    resolved = resolve(request.image, sources, cache, clock, log)
    if resolved is None:
        raise NoSourceError(
            f"no credential source knows the registry of image {request.image} (host "
            f"{registry_host(request.image)} is not an ECR host)",
            hint="narrow matchImages in the kubelet's credential provider config to ECR hosts",
        )
    lookup, token, how = resolved
    now = clock.time()
    duration = token.cache_duration(now)
    if how == LAST_RESORT:
        # The token is stale but has at least LAST_RESORT_MIN_REMAINING to live: let the kubelet
        # keep it a minute rather than re-exec us for every image while the API is failing.
        duration = LAST_RESORT_CACHE_DURATION
    log.debug(f"{how}: token for {lookup.describe}, kubelet may cache it for {duration}s")
    return Response(
        api_version=request.api_version,
        cache_key_type="Registry",
        cache_duration_seconds=duration,
        auth={lookup.auth_key: AuthEntry(token.username, token.password)},
    )
