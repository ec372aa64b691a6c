"""A simulation (not a measurement) of ECR GetAuthorizationToken calls at fleet scale.

Rerun with ``bench/run fleet`` (``--seed`` makes it repeatable; the defaults give the figures in
BENCHMARKS.md). Pure Python, no network, a few seconds.

1. Calls per node per day. Each node pulls from ``--registries`` ECR registries; pulls arrive
   at random (Poisson) at a given rate per registry, the kubelet restarts about once a day (its
   in-memory cache is lost), and at boot ``--images`` images per registry are pulled at once.
   The kubelet execs the plugin for a pull only when its own cache has no live entry for the
   registry (``cacheKeyType: Registry``), and concurrent pulls of different images each exec.
   - ecrcred: the real ``ecrcred.fetch.get_or_fetch`` over an in-memory token cache, the real
     ``tokens.token_expiry`` and ``Token.cache_duration`` (refresh an hour before expiry; the
     kubelet is told to keep the answer until then). The file cache's lock makes a burst one
     call, which running the bursts one exec after the other reproduces.
   - incumbent (cloud-provider-aws ``ecr-credential-provider``): no cache of its own, one call
     per exec; ``cacheDuration`` = half the token's remaining life (6 h for a 12 h token). At
     boot EKS's ``sandbox-image.service`` makes one more call (``aws ecr get-login-password``).
   Tokens live 12 hours, as real ECR's do.
2. A thousand nodes booting together, against ECR's GetAuthorizationToken rate limit, modelled
   as a token bucket shared by the account and region: docs/ecr.md says about 20 requests per
   second sustained, with bursts; the bucket size (``--bucket``, default 20,
   i.e. no burst beyond one second's worth) is our assumption. A throttled call is retried by
   the client's SDK: botocore's standard mode for ecrcred (4 attempts, backoff
   ``rand() * 2**(n-1)`` s), awscli v1's legacy mode for the sandbox unit (5 attempts, the same
   backoff), aws-sdk-go-v2's standard retryer for the incumbent plugin (3 attempts, ``rand() *
   2**n`` s); "no jitter" replaces ``rand()`` with 1. An exec that fails makes the kubelet retry
   that image's pull after its back-off (10 s, doubling, at most 300 s). ecrcred's execs for one
   registry wait on the cache lock (at most 24 s, 0.8 x the 30 s timeout), so a node makes one
   call at a time per registry; the incumbent's execs all call at once. Each ecrcred exec that
   holds the lock runs the real ``get_or_fetch`` on the simulated clock, over the node's token
   cache: a hit, a hold after throttling, or a fetch. A hold is waited out (the lock held) when
   it ends within the first half of the exec's 30 s timeout, as ``get-credentials`` does: the
   real code calls ``clock.sleep``, which here ends the step and resumes the same exec when the
   hold is over (``_Sleeping``); otherwise the exec fails at once, with no call. The
   fetch pauses where the real one calls AWS (``_Fetching``); when the simulated SDK call ends,
   the same exec's ``get_or_fetch`` is run again, to the end, with that call's outcome (the
   lock is still held, so nothing else can have changed the cache), and so stores the token
   or remembers the throttling exactly as the real one does. EKS's sandbox unit is
   required by the kubelet: when its ``get-login-password`` fails the node never starts its
   kubelet; ecrcred's boot unit is wanted, not required, so the kubelet starts anyway.

Prints a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from functools import partial
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ecrcred.errors import AwsThrottled, ThrottleCoolDown  # noqa: E402
from ecrcred.fetch import get_or_fetch  # noqa: E402
from ecrcred.records import CacheKey, Throttled  # noqa: E402
from ecrcred.tokens import Token, token_expiry  # noqa: E402

HOUR = 3600.0
DAY = 24 * HOUR
ECR_TOKEN_LIFE = 12 * HOUR


# -- 1. calls per node per day ----------------------------------------------------------------

class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class MemoryTokens:
    """The node's token cache (``TokenCache``): a dict; the lock is the burst's serial order."""

    def __init__(self) -> None:
        self.tokens: dict[CacheKey, Token] = {}
        self.throttled: dict[CacheKey, Throttled] = {}

    def load(self, key: CacheKey) -> Token | None:
        return self.tokens.get(key)

    def store(self, key: CacheKey, token: Token) -> None:
        self.tokens[key] = token

    def lock(self, key: CacheKey) -> AbstractContextManager[None]:
        return nullcontext()

    def load_throttled(self, key: CacheKey) -> Throttled | None:
        return self.throttled.get(key)

    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        if throttled is None:
            self.throttled.pop(key, None)
        else:
            self.throttled[key] = throttled


class QuietLog:
    def debug(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...
    def add_secret(self, secret: str | None) -> None: ...


def ecr_token(clock: SimClock) -> Token:
    """What GetAuthorizationToken gives: 12 h of life on AWS's clock (here, the same clock)."""
    fetched = clock.time()
    expires, _trusted = token_expiry(fetched, fetched + ECR_TOKEN_LIFE, server_time=fetched)
    return Token("AWS", "password", expires, fetched)


def node_day_calls(plugin: str, rng: random.Random, days: int, registries: int,
                   pulls_per_hour: float, images_at_boot: int,
                   restarts_per_day: float) -> list[int]:
    """API calls of one node on each simulated day (day 0 includes the boot)."""
    clock = SimClock()
    disk = MemoryTokens()
    log = QuietLog()
    calls = [0] * days
    kubelet_until = [0.0] * registries  # the kubelet's cache entry per registry

    def count() -> None:
        calls[min(int(clock.now // DAY), days - 1)] += 1

    def fetch() -> Token:
        count()
        return ecr_token(clock)

    def exec_plugin(registry: int) -> None:
        if plugin == "ecrcred":
            key = CacheKey(f"ecr:registry-{registry}", "node")
            token, _how = get_or_fetch(disk, key, fetch, clock, log)
            duration = float(token.cache_duration(clock.now))
        else:
            token = fetch()
            duration = float(int((token.expires_at - clock.now) / 2))
        kubelet_until[registry] = clock.now + duration if duration > 0 else 0.0

    def pull(registry: int) -> None:
        if clock.now >= kubelet_until[registry]:
            exec_plugin(registry)

    # Boot: the sandbox image first (EKS's unit, or ecrcred pull-sandbox filling the shared
    # cache for registry 0), then every image of the burst execs before any answer is cached.
    if plugin == "incumbent":
        count()
    else:
        get_or_fetch(disk, CacheKey("ecr:registry-0", "node"), fetch, clock, log)
    for registry in range(registries):
        for _ in range(images_at_boot):
            exec_plugin(registry)

    events: list[tuple[float, str, int]] = []
    for registry in range(registries):
        t = rng.expovariate(pulls_per_hour / HOUR)
        while t < days * DAY:
            events.append((t, "pull", registry))
            t += rng.expovariate(pulls_per_hour / HOUR)
    t = rng.expovariate(restarts_per_day / DAY)
    while t < days * DAY:
        events.append((t, "restart", -1))
        t += rng.expovariate(restarts_per_day / DAY)
    for t, what, registry in sorted(events):
        clock.now = t
        if what == "restart":
            kubelet_until = [0.0] * registries
        else:
            pull(registry)
    return calls


def per_day_table(args: argparse.Namespace) -> None:
    print(f"Per node: {args.registries} ECR registries, {args.images} images of each pulled at "
          f"boot, the kubelet restarting {args.restarts:g}x a day on average (Poisson), "
          f"{args.nodes} nodes x {args.days} days, seed {args.seed}.\n")
    print("| pulls per registry | plugin | boot day: calls per node | later days: calls per "
          "node per day | later days: calls per registry per day |")
    print("|---|---|---|---|---|")
    for rate in args.pull_rates:
        for plugin in ("ecrcred", "incumbent"):
            rng = random.Random(f"{args.seed}-{rate}")  # same pulls for both plugins
            boot, later = [], []
            for _ in range(args.nodes):
                days = node_day_calls(plugin, rng, args.days, args.registries, rate,
                                      args.images, args.restarts)
                boot.append(days[0])
                later.extend(days[1:])
            per_day = statistics.mean(later)
            name = "ecrcred" if plugin == "ecrcred" else "incumbent (plugin + sandbox unit)"
            print(f"| {rate:g} an hour | {name} | {statistics.mean(boot):.1f} | {per_day:.2f} | "
                  f"{per_day / args.registries:.2f} |")


# -- 2. a thousand nodes booting together -----------------------------------------------------

class Retry(NamedTuple):
    name: str
    attempts: int
    exponent_offset: int  # delay after failed attempt n: rand() * 2**(n - 1 + offset)


BOTOCORE_STANDARD = Retry("botocore standard", 4, 0)
AWSCLI_LEGACY = Retry("awscli v1 legacy", 5, 0)
GO_V2_STANDARD = Retry("aws-sdk-go-v2 standard", 3, 1)
MAX_SDK_BACKOFF = 20.0
CALL_LATENCY = 0.1
SANDBOX_PULL = 1.0  # from the token to the image present (bench/sandbox.py: under a second)
PLUGIN_TIMEOUT = 30.0  # get-credentials' default --timeout
LOCK_WAIT = 0.8 * PLUGIN_TIMEOUT  # its cache lock wait (cli.py)
SANDBOX_TIMEOUT = 300.0  # ecrcred-sandbox.service's --timeout: pull-sandbox waits holds out in it
KUBELET_BACKOFF, KUBELET_MAX_BACKOFF = 10.0, 300.0


class _Sleeping(BaseException):
    """Raised by the herd's clock where the real code sleeps (waiting out a throttling hold,
    the lock held): the simulation resumes the same execution ``seconds`` later."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class HerdClock(SimClock):
    def sleep(self, seconds: float) -> None:
        raise _Sleeping(seconds)


class _Fetching(BaseException):
    """Raised by the simulated fetch where the real one would call AWS: ``get_or_fetch`` lets it
    through untouched (it is no SourceError), and the simulation starts the SDK call."""


class Herd:
    """A discrete-event simulation of N nodes booting, sharing one ECR rate limit."""

    def __init__(self, plugin: str, nodes: int, registries: int, images: int, spread: float,
                 jitter: bool, rate: float, bucket: float, horizon: float, seed: int) -> None:
        self.plugin = plugin
        self.rng = random.Random(seed)
        self.jitter = jitter
        self.rate, self.capacity = rate, bucket
        self.tokens, self.refilled = bucket, 0.0
        self.horizon = horizon
        self.queue: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = 0
        self.calls: list[float] = []
        self.throttled = 0
        self.registries, self.images = registries, images
        self.ready: dict[int, float] = {}
        self.left_out = 0  # incumbent: sandbox unit failed, kubelet never started
        self.images_done: Counter[int] = Counter()
        self.kubelet_has: set[tuple[int, int]] = set()  # (node, registry): answer cached
        self.clock, self.log = HerdClock(), QuietLog()
        self.disks: dict[int, MemoryTokens] = {}  # each node's ecrcred token cache
        self.held_back = 0  # ecrcred execs that failed at once during a throttling hold
        self.waited = 0  # ecrcred execs that waited a hold out, then fetched
        self.lock_busy: set[tuple[int, int]] = set()
        self.waiting: dict[tuple[int, int], list[tuple[float, float]]] = {}
        for node in range(nodes):
            self.at(self.rng.uniform(0, spread), partial(self.boot, node))

    # the machinery
    def at(self, t: float, fn: Callable[[float], None]) -> None:
        if t <= self.horizon:
            self.seq += 1
            heapq.heappush(self.queue, (t, self.seq, fn))

    def run(self) -> Herd:
        while self.queue:
            t, _, fn = heapq.heappop(self.queue)
            fn(t)
        return self

    def allowed(self, t: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (t - self.refilled) * self.rate)
        self.refilled = t
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.throttled += 1
        return False

    def job(self, t: float, retry: Retry, done: Callable[[float, bool], None],
            attempt: int = 1) -> None:
        """One client call with its SDK's retries; ``done(t, ok)`` at the end."""
        self.calls.append(t)
        if self.allowed(t):
            self.at(t + CALL_LATENCY, lambda t2: done(t2, True))
        elif attempt < retry.attempts:
            factor = self.rng.random() if self.jitter else 1.0
            delay = min(MAX_SDK_BACKOFF, factor * 2 ** (attempt - 1 + retry.exponent_offset))
            self.at(t + CALL_LATENCY + delay,
                    lambda t2: self.job(t2, retry, done, attempt + 1))
        else:
            self.at(t + CALL_LATENCY, lambda t2: done(t2, False))

    # ecrcred: one execution holding its node's lock for a registry
    def ecrcred_exec(self, node: int, registry: int, t: float,
                     done: Callable[[float, bool], None], wait_until: float,
                     resumed: bool = False) -> None:
        """The real ``get_or_fetch`` at ``t``: ``done(t, ok)`` at once for a hit or a hold it
        cannot wait out, later for a hold it waits out, or when the fetch it starts has ended."""
        disk = self.disks.setdefault(node, MemoryTokens())
        key = CacheKey(f"ecr:registry-{registry}", "node")

        def start_fetch() -> Token:
            raise _Fetching

        self.clock.now = t
        try:
            get_or_fetch(disk, key, start_fetch, self.clock, self.log, rand=self.rng.random,
                         wait_until=wait_until)
        except _Sleeping as sleeping:  # the hold is waited out, the lock held
            self.waited += 0 if resumed else 1
            self.at(t + sleeping.seconds, lambda t2: self.ecrcred_exec(
                node, registry, t2, done, wait_until, resumed=True))
            return
        except _Fetching:
            self.job(t, BOTOCORE_STANDARD,
                     lambda t2, ok: self.ecrcred_fetched(disk, key, t2, ok, done))
            return
        except ThrottleCoolDown:
            self.held_back += 1
            done(t, False)
            return
        done(t, True)

    def ecrcred_fetched(self, disk: MemoryTokens, key: CacheKey, t: float, ok: bool,
                        done: Callable[[float, bool], None]) -> None:
        """The same execution's ``get_or_fetch`` run to its end with the SDK call's outcome."""
        asked = []

        def outcome() -> Token:
            asked.append(True)
            if ok:
                return ecr_token(self.clock)
            raise AwsThrottled("ecr:GetAuthorizationToken failed: ThrottlingException",
                               code="AWS_THROTTLING")

        self.clock.now = t
        with suppress(AwsThrottled):
            get_or_fetch(disk, key, outcome, self.clock, self.log, rand=self.rng.random)
        assert asked, "nothing may change a cache whose lock is held"
        done(t, ok)

    # a node
    def boot(self, node: int, t: float) -> None:
        retry = AWSCLI_LEGACY if self.plugin == "incumbent" else BOTOCORE_STANDARD

        def sandbox_done(t2: float, ok: bool) -> None:
            if ok:
                self.at(t2 + SANDBOX_PULL, lambda t3: self.kubelet_start(node, t3))
            elif self.plugin == "ecrcred":
                self.kubelet_start(node, t2)  # wanted, not required: the kubelet starts anyway
            else:
                self.left_out += 1  # required by the kubelet: the node never joins

        if self.plugin == "ecrcred":  # pull-sandbox fills the cache for registry 0
            self.ecrcred_exec(node, 0, t, sandbox_done, wait_until=t + SANDBOX_TIMEOUT)
        else:
            self.job(t, retry, sandbox_done)

    def kubelet_start(self, node: int, t: float) -> None:
        for registry in range(self.registries):
            for _ in range(self.images):
                self.pull(node, registry, t, KUBELET_BACKOFF)

    def image_ok(self, node: int, registry: int, t: float) -> None:
        self.kubelet_has.add((node, registry))
        self.images_done[node] += 1
        if self.images_done[node] == self.registries * self.images:
            self.ready[node] = t

    def image_failed(self, node: int, registry: int, t: float, backoff: float) -> None:
        self.at(t + backoff, lambda t2: self.pull(node, registry, t2,
                                                  min(2 * backoff, KUBELET_MAX_BACKOFF)))

    def pull(self, node: int, registry: int, t: float, backoff: float) -> None:
        key = (node, registry)
        if key in self.kubelet_has:
            self.image_ok(node, registry, t)
        elif self.plugin == "incumbent":
            self.job(t, GO_V2_STANDARD, lambda t2, ok: (
                self.image_ok(node, registry, t2) if ok
                else self.image_failed(node, registry, t2, backoff)))
        else:  # a fresh token is a hit as soon as the lock is free, and it is free then
            self.waiting.setdefault(key, []).append((t, backoff))
            self.at(t + LOCK_WAIT, partial(self.lock_timeout, key, t))
            self.pump(key, t)

    def lock_timeout(self, key: tuple[int, int], since: float, t: float) -> None:
        queue = self.waiting.get(key, [])
        for entry in queue:
            if entry[0] == since:
                queue.remove(entry)
                self.image_failed(*key, t, entry[1])
                return

    def pump(self, key: tuple[int, int], t: float) -> None:
        """The next execution waiting on the node's lock for a registry takes it."""
        queue = self.waiting.get(key)
        if key in self.lock_busy or not queue:
            return
        since, backoff = queue.pop(0)
        self.lock_busy.add(key)

        def done(t2: float, ok: bool) -> None:
            self.lock_busy.discard(key)
            if ok:
                self.image_ok(*key, t2)
            else:
                self.image_failed(*key, t2, backoff)
            self.pump(key, t2)

        self.ecrcred_exec(*key, t, done, wait_until=since + PLUGIN_TIMEOUT / 2)


def herd_table(args: argparse.Namespace) -> None:
    print(f"\n{args.herd_nodes} nodes, {args.registries} registries x {args.images} images "
          f"each at boot, boot times uniform over the spread; ECR modelled as a token bucket of "
          f"{args.rate:g} calls/s refill and {args.bucket:g} capacity (assumed), simulated for "
          f"{args.horizon:g} s, seed {args.seed}.\n")
    print("| plugin | boot spread | retry jitter | calls | throttled | calls per token | "
          "holds waited out / failed at once | peak calls in 1 s | nodes ready: p50 s | p99 s | "
          "last s | not ready | left out (unit failed) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for plugin in ("ecrcred", "incumbent"):
        for spread in args.spreads:
            for jitter in (True, False):
                h = Herd(plugin, args.herd_nodes, args.registries, args.images, spread,
                         jitter, args.rate, args.bucket, args.horizon, args.seed).run()
                per_second = Counter(int(t) for t in h.calls)
                ready = sorted(h.ready.values())

                def q(p: float, ready: list[float] = ready) -> str:
                    return f"{ready[int(p * (len(ready) - 1))]:.0f}" if ready else "-"

                name = "ecrcred" if plugin == "ecrcred" else "incumbent"
                tokens = len(h.calls) - h.throttled
                held = f"{h.waited} / {h.held_back}" if plugin == "ecrcred" else "-"
                print(f"| {name} | {spread:g} s | {'full' if jitter else 'none'} | "
                      f"{len(h.calls)} | {h.throttled} | {len(h.calls) / tokens:.1f} | {held} | "
                      f"{max(per_second.values())} | "
                      f"{q(0.5)} | {q(0.99)} | {q(1.0)} | "
                      f"{args.herd_nodes - len(h.ready) - h.left_out} | {h.left_out} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--registries", type=int, default=2)
    parser.add_argument("--images", type=int, default=5, help="images per registry at boot")
    parser.add_argument("--nodes", type=int, default=200, help="nodes for the per-day table")
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--restarts", type=float, default=1.0, help="kubelet restarts a day")
    parser.add_argument("--pull-rates", type=float, nargs="+", default=[0.5, 6.0, 60.0],
                        help="pulls per registry per hour")
    parser.add_argument("--herd-nodes", type=int, default=1000)
    parser.add_argument("--spreads", type=float, nargs="+", default=[1.0, 60.0],
                        help="seconds over which the herd's boots are spread")
    parser.add_argument("--rate", type=float, default=20.0, help="ECR calls/s refill")
    parser.add_argument("--bucket", type=float, default=20.0, help="ECR burst capacity")
    parser.add_argument("--horizon", type=float, default=900.0)
    args = parser.parse_args()
    print("A simulation, not a measurement: the model is in bench/fleet.py's docstring.\n")
    per_day_table(args)
    herd_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
