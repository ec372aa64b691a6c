"""The sandbox keeper: the sandbox (pause) image stays on the node, pinned, at boot and after GC.

The container runtime pulls the sandbox image itself, with no credentials from the kubelet; once
image garbage collection removes it from a node whose registry needs credentials, every new pod
fails with 401 until someone intervenes. The keeper closes that gap:

- ``ensure``: if the runtime already has the image, nothing to do and no credentials needed.
  Otherwise resolve credentials exactly as ``get-credentials`` does (same sources, same token
  cache) and pull *through the CRI*, which also applies containerd's mirror config. Transient
  failures are retried with exponential backoff and full jitter under a deadline. What no retry
  fixes fails at once, naming the credentials used (never the secret) and what to do
  (``classify``): a refusal (401/403; a cached token refused is first replaced once by a fresh
  one), an image the registry does not have (404: no new token, it would not help), content that
  does not match its digest, a runtime that rejects the pull itself (gRPC InvalidArgument or
  FailedPrecondition, e.g. containerd 2.x without an unpack config for its snapshotter). Then
  pin it with containerd's label so the kubelet's GC skips it.
- ``archive`` (``--archive``): an image whose registry is ``localhost`` (EKS AL2023 bakes
  ``localhost/kubernetes/pause:latest`` into the machine image; no registry is behind it) is
  imported from a copy on the node instead of pulled, through containerd's own API
  (``cri.containerd_api``). Any other image is pulled once, and imported when that attempt
  fails (a registry that does not answer, refuses, has no such image): with a copy at hand,
  retrying a registry for minutes while pods wait helps no one.
- ``watch``: stay subscribed to containerd's ``/images/delete`` events and put the image back
  within moments of its removal; reconcile on a period as a safety net; reconnect when the
  runtime restarts.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ecrcred.cache import Unread
from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE, Auth
from ecrcred.errors import (
    ConfigError,
    DeadlineExceeded,
    EcrcredError,
    PullError,
    RuntimeServiceError,
)
from ecrcred.fetch import HIT
from ecrcred.imageref import parse_reference, registry_host
from ecrcred.provider import resolve

if TYPE_CHECKING:
    from ecrcred.seams import (
        Clock,
        ContainerdImages,
        CredentialSource,
        EventStream,
        ImageImporter,
        ImageService,
        Logger,
        TokenCache,
    )

# Words in a runtime's pull error that no retry will fix, as whole words, read only in the
# runtime's own text with names taken out (``_runtime_words``): a temp dir named /tmp/ecd-x403y,
# an image called team/denied-app or tagged 403 must not read as a refusal.
_REFUSED = re.compile(r"\b(401|unauthorized)\b")
_FORBIDDEN = re.compile(r"\b(403|forbidden|denied)\b")
_MISSING = re.compile(r"\b(404|not found|manifest unknown|name unknown)\b")
# containerd's content store checks every blob against its digest and size as it commits it
# (ErrFailedPrecondition): a registry, mirror or proxy serving other bytes does so every time.
_CORRUPT = re.compile(r"\bunexpected commit (digest|size)\b")
# containerd 2.x's transfer service, when no unpack_config fits its snapshotter.
_UNPACK = re.compile(r"\bno unpack platforms defined\b")
# An image containerd fetched but cannot unpack: 1.6.20 and 1.7.24 say "failed to extract
# layer ... content digest ... not found" for an application/octet-stream config (Docker <
# 1.10 images); the "not found" in it is not a missing image.
_EXTRACT = re.compile(r"\bfailed to extract layer\b")
_REJECTED = re.compile(r"\b(invalid argument|failed precondition|invalid reference)\b")
# gRPC status codes by which a runtime says the request itself cannot succeed as it stands
# (containerd's errdefs map ErrInvalidArgument and ErrFailedPrecondition to them).
_REJECTED_STATUS = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION"})

# What a runtime's pull error means for the keeper (``classify``).
TRANSIENT = "transient"  # retried until the deadline
REFUSED = "refused"  # the registry refused the credentials: one retry with a fresh token
MISSING = "missing"  # the registry has no such repository or tag
CORRUPT = "corrupt"  # content that does not match its digest
UNPACK = "unpack"  # containerd cannot unpack for its snapshotter
REJECTED = "rejected"  # the runtime refused the request itself


class PullCredentials(NamedTuple):
    """What a pull is given: the registry auth for the runtime (None: pull anonymously), where
    it came from, and whether our token cache had it."""

    auth: Auth | None
    describe: str  # which source, registry, account (never the secret)
    from_cache: bool


class Action(NamedTuple):
    """One thing the keeper did or found, reported as a line (or a JSON object)."""

    action: str  # present | pulled | imported | pinned | already-pinned | pin-skipped | failed
    image: str
    reason: str
    seconds: float
    detail: str = ""


def format_action(action: Action, output: str) -> str:
    """One report line: ``pulled: <image> (<reason>, 0.123s) <detail>`` or a JSON object."""
    if output == "json":
        return json.dumps(action._asdict())
    line = f"{action.action}: {action.image} ({action.reason}, {action.seconds:.3f}s)"
    return f"{line} {action.detail}" if action.detail else line


# Credentials for an image name: (name, fresh, wait_until, sleep); see credentials_resolver.
PullCredentialsFor = Callable[[str, bool, float | None, Callable[[float], object] | None],
                              PullCredentials]


def credentials_resolver(source: CredentialSource, cache: TokenCache, clock: Clock,
                         log: Logger) -> PullCredentialsFor:
    """Credentials for an image name exactly as get-credentials finds them; ``fresh`` bypasses
    the cache for the read (the lock, a throttling hold and the store still apply). A throttling
    hold ending before ``wait_until`` (monotonic; None: never wait) is waited out by the token
    cache's own wait (``fetch.get_or_fetch``), in ``sleep`` (None: the clock's), which may end
    early: a stop request."""

    def credentials(name: str, fresh: bool, wait_until: float | None = None,
                    sleep: Callable[[float], object] | None = None) -> PullCredentials:
        waiting = clock if sleep is None else _SleepingIn(clock, sleep)
        resolved = resolve(name, source, Unread(cache) if fresh else cache, waiting, log,
                           wait_until=wait_until)
        if resolved is None:
            return PullCredentials(None,
                                   f"none: no credential source knows {registry_host(name)}",
                                   from_cache=False)
        return PullCredentials(Auth(resolved.token.username, resolved.token.password),
                               resolved.lookup.describe, from_cache=resolved.how == HIT)

    return credentials


class _SleepingIn:
    """``clock``, sleeping in ``sleep`` instead (the keeper's stop-aware wait)."""

    def __init__(self, clock: Clock, sleep: Callable[[float], object]) -> None:
        self._clock = clock
        self._sleep = sleep

    def time(self) -> float:
        return self._clock.time()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


# What in containerd's pull errors names things rather than says what happened: URLs (they carry
# the repository path and the tag or digest), quoted references, and "[manifests <tag>]".
_NAMES = re.compile(r'\S+://\S+|"[^"]*"|\[(?:manifests|blobs) [^\]]*\]')


def _runtime_words(error: PullError, image: str) -> str:
    """The runtime's own words (never our message: it names socket paths) without the names
    they quote: the image, its repository path and tag, URLs and quoted references."""
    words = _NAMES.sub(" ", error.detail)
    _host, _, path = image.partition("/")
    repository = path.rsplit("@", 1)[0]
    for name in (image, path, repository, repository.rsplit(":", 1)[0]):
        if name:
            words = words.replace(name, " ")
    return words.lower()


def classify(error: PullError, image: str) -> str:
    """What ``error`` means, from the runtime's words and its gRPC status code; the most
    specific reading first (a digest mismatch also says "failed precondition")."""
    words = _runtime_words(error, image)
    if _CORRUPT.search(words):
        return CORRUPT
    if _UNPACK.search(words) or _EXTRACT.search(words):
        return UNPACK
    if _REFUSED.search(words) or _FORBIDDEN.search(words):
        return REFUSED
    if _MISSING.search(words):
        return MISSING
    if error.status in _REJECTED_STATUS or _REJECTED.search(words):
        return REJECTED
    return TRANSIENT


class RetryPolicy(NamedTuple):
    deadline: float = 120.0  # seconds for the whole pull, retries included
    first_delay: float = 0.5
    max_delay: float = 10.0
    attempt_timeout: float = 60.0
    # the one pull attempt made before importing from an archive
    archive_attempt_timeout: float = 10.0


class SandboxKeeper:
    def __init__(
        self,
        image: str,
        runtime: ImageService,
        containerd: ContainerdImages | None,
        credentials: PullCredentialsFor,
        clock: Clock,
        log: Logger,
        report: Callable[[Action], None],
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        rng: random.Random | None = None,
        stop: threading.Event | None = None,
        archive: ImageImporter | None = None,
    ) -> None:
        try:
            self.reference = parse_reference(image)
        except ValueError:
            raise ConfigError(f"sandbox image {image!r} is not a valid image reference",
                              hint="check --image or the sandbox image in containerd's config"
                              ) from None
        self._stop = stop  # set by SIGTERM under --watch: retries end at once
        self._archive = archive
        self.image = self.reference.stored
        self._runtime = runtime
        self._containerd = containerd
        self._credentials = credentials
        self._clock = clock
        self._log = log
        self._report = report
        self._retry = retry
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._lock = threading.Lock()
        self._current_stream: EventStream | None = None

    # -- one pass ----------------------------------------------------------------------------

    def ensure(self, reason: str) -> list[Action]:
        """The image present (and pinned, given containerd); raises when it cannot be."""
        with self._lock:
            started = self._clock.monotonic()
            actions = []
            info = self._runtime.image_status(self.image)
            labels = None
            if info is not None and self._containerd is not None:
                labels = self._containerd.labels(self.image)
                if labels is None:
                    # Just after a deletion the CRI's image list can still show the image for a
                    # moment, while containerd's record (which GC counts and the pin lives on)
                    # is gone: the image is gone, and waiting for the next check would leave
                    # pods without it until then.
                    self._log.debug(f"{self.image}: the CRI still lists it but containerd has "
                                    "no record of it; pulling")
                    info = None
            if info is not None:
                actions.append(self._act("present", reason, started, info.id))
            elif self._archive is not None:
                actions.append(self._restore(self._archive, reason, started))
            else:
                ref = self._pull(reason)
                actions.append(self._act("pulled", reason, started, ref))
            if self._containerd is not None:
                actions.append(self._pin(reason, labels))
            return actions

    def _restore(self, archive: ImageImporter, reason: str, started: float) -> Action:
        """The image pulled, or imported from ``archive``: at once for a ``localhost`` image,
        else when one pull attempt fails."""
        if self.reference.host != "localhost":
            try:
                ref = self._pull(reason, once=True)
                return self._act("pulled", reason, started, ref)
            except EcrcredError as exc:
                if exc.code in ("STOPPED", "RUNTIME_UNREACHABLE"):
                    raise
                self._log.info(f"pull of {self.image} failed ({exc.one_line()}); importing it "
                               f"from {archive.describe()}")
        ref = archive.import_image(self.image)
        return self._act("imported", reason, started, f"{ref} from {archive.describe()}")

    def _act(self, action: str, reason: str, started: float, detail: str = "") -> Action:
        done = Action(action, self.image, reason, round(self._clock.monotonic() - started, 3),
                      detail)
        self._report(done)
        return done

    def _pull(self, reason: str, *, once: bool = False) -> str:
        """``once``: one attempt, its error raised as it is (an archive is the fallback)."""
        give_up = self._clock.monotonic() + self._retry.deadline
        attempt_timeout = (self._retry.archive_attempt_timeout if once
                           else self._retry.attempt_timeout)
        creds = self._credentials_by(give_up, fresh=False)
        delay = self._retry.first_delay
        attempt = 0
        refreshed = False
        last: RuntimeServiceError
        while True:
            if self._stop is not None and self._stop.is_set():
                raise RuntimeServiceError(f"stopped while pulling {self.image}", code="STOPPED")
            attempt += 1
            remaining = give_up - self._clock.monotonic()
            try:
                return self._runtime.pull_image(
                    self.image, creds.auth, timeout=max(1.0, min(attempt_timeout, remaining)))
            except PullError as exc:
                kind = classify(exc, self.image)
                if kind == REFUSED and creds.from_cache and not refreshed:
                    # A cached token the registry refuses (revoked, or rotated keys): one more
                    # try with a token fetched now, bypassing the cache. Only for a refusal: a
                    # new token cannot create a missing tag, and under --watch every check
                    # would fetch one.
                    refreshed = True
                    creds = self._credentials_by(give_up, fresh=True)
                    self._log.info(f"pull of {self.image} refused with a cached token; "
                                   "retrying once with a fresh one")
                    continue
                if kind != TRANSIENT:
                    raise PullError(
                        f"{exc.message} (credentials: {creds.describe})",
                        detail=exc.detail, hint=_pull_hint(kind, exc, creds, self.image),
                        code=exc.code, status=exc.status) from None
                last = exc
            except RuntimeServiceError as exc:
                if exc.code != "RUNTIME_UNREACHABLE":
                    raise
                last = exc
            if once:
                raise last
            remaining = give_up - self._clock.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"pulling {self.image} ({reason}) did not succeed within "
                    f"{self._retry.deadline:g}s after {attempt} attempts; last error: "
                    f"{last.message}", hint=last.hint or _transient_hint(last, self.image))
            sleep = min(remaining, self._rng.uniform(0, delay))
            self._log.info(f"pull of {self.image} failed (attempt {attempt}, "
                           f"{last.message}); retrying in {sleep:.1f}s")
            self._sleep(sleep)
            delay = min(delay * 2, self._retry.max_delay)

    def _credentials_by(self, give_up: float, *, fresh: bool) -> PullCredentials:
        """The credentials. A throttling hold that ends before ``give_up`` (monotonic) is waited
        out by the token cache, in a sleep a stop request ends: another execution was throttled
        moments ago, and our deadline is long enough to ask again once the hold is over, as we
        would have asked before it existed."""
        return self._credentials(self.reference.name, fresh, give_up, self._sleep)

    def _sleep(self, seconds: float) -> None:
        """Sleep, ending at once on a stop request (SIGTERM under --watch)."""
        if self._stop is not None:
            self._stop.wait(seconds)
        else:
            self._clock.sleep(seconds)

    def _pin(self, reason: str, labels: dict[str, str] | None = None) -> Action:
        """Pin the image; ``labels`` are its labels when the caller has just read them."""
        assert self._containerd is not None  # noqa: S101 - checked by the caller
        started = self._clock.monotonic()
        if labels is None:
            labels = self._containerd.labels(self.image)
        if labels is None:
            return self._act("pin-skipped", reason, started,
                             "containerd has no image record of that name")
        if labels.get(PINNED_LABEL) == PINNED_VALUE:
            return self._act("already-pinned", reason, started)
        self._containerd.set_label(self.image, PINNED_LABEL, PINNED_VALUE)
        return self._act("pinned", reason, started, f"{PINNED_LABEL}={PINNED_VALUE}")

    # -- watching ----------------------------------------------------------------------------

    def watch(self, stop: threading.Event, interval: float) -> None:
        """Keep the image until ``stop`` is set: on delete events, and every ``interval``."""
        if self._containerd is None:
            raise RuntimeServiceError("--watch needs containerd's event API",
                                      hint="drop --no-pin/--watch or use containerd",
                                      code="RUNTIME_UNSUPPORTED")
        reconciler = threading.Thread(target=self._reconcile_loop, args=(stop, interval),
                                      name="reconcile", daemon=True)
        reconciler.start()
        backoff = 0.2
        while not stop.is_set():
            try:
                stream = self._containerd.image_events()
                self._current_stream = stream
                if stop.is_set():
                    break
                # (Re)subscribed: the image may have gone while we were not listening.
                self._ensure_logged("subscribed")
                backoff = 0.2
                for name in stream:
                    if stop.is_set():
                        break
                    self._log.debug(f"event /images/delete {name}")
                    # Any delete in k8s.io may be ours under another name (tag, digest, id):
                    # a status check is cheap and exact.
                    self._ensure_logged("image deleted")
                if not stop.is_set():
                    raise RuntimeServiceError("the runtime closed the event stream")
            except EcrcredError as exc:
                if stop.is_set():
                    break
                self._log.warning(f"{exc.one_line()}; reconnecting in {backoff:.1f}s")
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        reconciler.join(timeout=5)

    def stop_watching(self) -> None:
        if self._current_stream is not None:
            self._current_stream.cancel()

    def _reconcile_loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            self._ensure_logged("periodic check")

    def _ensure_logged(self, reason: str) -> None:
        """One watch pass; whatever fails is reported and the watch goes on."""
        try:
            self.ensure(reason)
        except EcrcredError as exc:
            self._report(Action("failed", self.image, reason, 0.0, exc.one_line()))
        except Exception as exc:  # noqa: BLE001 - a bug must not end the safety net silently
            import traceback

            # The type only, as cli.main says an internal error: the exception's text may quote
            # a secret never registered with the logger (a response body, a key), and this line
            # goes to stdout. The traceback goes to the debug log, which scrubs what it knows.
            self._log.debug(traceback.format_exc())
            self._report(Action("failed", self.image, reason, 0.0,
                                f"internal error: {type(exc).__name__} [INTERNAL]"))


def _transient_hint(error: RuntimeServiceError, image: str) -> str:
    """What to check when retries ran out. A certificate containerd does not trust is retried
    (at boot a CA may be written after containerd starts) but is most often configuration."""
    words = _runtime_words(error, image) if isinstance(error, PullError) else ""
    if registry_host(image) == "localhost":
        return ("no registry serves localhost/ images (EKS AL2023 bakes its sandbox image in as "
                "localhost/kubernetes/pause): pass --archive with a copy of the image, e.g. "
                "/etc/eks/pause.tar, to import it instead")
    if "x509:" in words:
        return ("containerd does not trust the registry's certificate: set `ca` for this host in "
                "its hosts.toml (config_path) or add the CA to the node's trust store; "
                "`ecrcred doctor` shows which CA files containerd uses")
    return "check the registry and the runtime"


def _pull_hint(kind: str, error: PullError, creds: PullCredentials, image: str) -> str:
    if kind == CORRUPT:
        return ("the registry, or a mirror or proxy in between, served content that does not "
                "match its digest, and would again on every retry: check the mirrors in "
                "containerd's hosts.toml for this host and any proxy on the way")
    if kind == UNPACK and _EXTRACT.search(_runtime_words(error, image)):
        return (f"containerd fetched {image} but cannot unpack its layers (an "
                "application/octet-stream config, from Docker before 1.10, is one cause: "
                f"ecrcred doctor --image {image} says): rebuild the image, or convert it with "
                "skopeo copy --format oci")
    if kind == UNPACK:
        return ("containerd's transfer service has no unpack configuration for its snapshotter: "
                "add [[plugins.\"io.containerd.transfer.v1.local\".unpack_config]] with platform "
                "and snapshotter to containerd's config and restart it")
    if kind == REJECTED:
        return ("the runtime rejected the pull itself, not the registry: check the image "
                "reference and the runtime's config and logs (journalctl -u containerd)")
    if kind == MISSING:
        anonymous = (" (the pull was anonymous: no credential source knows this registry)"
                     if creds.auth is None else "")
        return (f"the registry has no {image}: its repository or tag does not exist there"
                f"{anonymous}; check that the image name and tag exist in the registry")
    text = _runtime_words(error, image)
    if creds.auth is None:
        return ("no credential source knows this registry, so the pull was anonymous; "
                "add credentials for it")
    if _REFUSED.search(text):
        return "the registry refused these credentials: check the node's AWS identity or the " \
               "registry's password"
    return "the credentials are valid but not allowed to pull this repository: check its " \
           "repository policy"
