"""Plain records that several rooms pass between them: the token cache's key, a throttled
fetch remembered, what the kubelet tells of a pod, and a source's answer.

They sit below every other module (they import only ``_record``) so that the sources, the
seams, the token storage (``cache.py``) and the fetch policy (``fetch.py``) can all name them
without importing one another: a record belongs to no room that uses it.
"""

from __future__ import annotations

from ecrcred._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ecrcred.tokens import Token


class CacheKey(Record):
    """What a cached token opens (``registry``) and for whom (``identity``); no secret in either.

    ``registry`` is the source's own string (the ECR source writes ``ecr:<host>``); nothing
    outside that source reads its parts. ``label`` is how messages name the registry (the ECR
    source gives its host; empty: ``registry`` is shown). It is not part of the key: two keys
    differing only in their label are equal and open the same cache entry.
    """

    registry: str
    identity: str
    label: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheKey):
            return NotImplemented
        return self.registry == other.registry and self.identity == other.identity

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.registry, self.identity))

    @property
    def named(self) -> str:
        """The registry as messages name it."""
        return self.label or self.registry


class Throttled(Record):
    """A throttled fetch, remembered: when it failed (``at``) and until when calls are held
    back (``until``), both epoch seconds on this node's clock."""

    at: float
    until: float

    def holds(self, now: float, longest: float) -> bool:
        """Whether calls are held back at ``now``. A hold ending more than ``longest`` from now
        is not believed (the clock went back, or the file is garbage): ignoring it costs one
        call, believing it could block fetches for as long as the clock jumped."""
        return now < self.until <= now + longest


class Pod(Record):
    """What the kubelet tells us of the pod (KEP-4412): its service-account token and the
    annotations the provider config asked for. The token is a secret: never logged, never
    written to disk, never answered as a password."""

    token: str
    annotations: Mapping[str, str]

    def __repr__(self) -> str:
        return f"Pod(token=<redacted>, annotations={dict(self.annotations)!r})"


class Lookup(Record):
    auth_key: str  # the key in the response's auth map (a registry host, or a mirror's)
    cache_key: CacheKey | None  # None: never stored in the token cache (the secret lives elsewhere)
    fetch: Callable[[], Token]
    describe: str  # for messages: which registry, account, role, file (never a secret)
    # The rule's (or the source's) cacheDuration in seconds; None: the token's own freshness
    # decides. ``kubelet_cache_duration`` turns it into the number the kubelet is told.
    cache_duration: int | None = None
    # True when the answer holds only for images under a path of the host (a rule or a docker
    # config key with a path): the response is then keyed by image, not by registry.
    per_image: bool = False
