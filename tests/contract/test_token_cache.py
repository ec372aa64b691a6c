"""The ``TokenCache`` contract, run against every implementation.

The fetch policy (``ecrcred.fetch.get_or_fetch``) relies on exactly these properties and on no
other: what one implementation does beyond them (files, modes, warnings) is tested in
``tests/unit/test_cache.py``. Each implementation declares what it keeps: tokens (``NullCache``
and the ``Unread`` layer keep none: a load is always None) and throttling holds (``NullCache``
keeps none; layers keep them in their inner cache). Everything else holds for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from ecrcred.cache import FileCache, MemoryCache, NullCache, Unread
from ecrcred.records import CacheKey, Throttled
from ecrcred.seams import TokenCache
from ecrcred.tokens import Token
from tests.unit.fakes import T0, DictCache, FakeClock, RecordingLogger

KEY = CacheKey("ecr:123456789012.dkr.ecr.us-west-2.amazonaws.com", "identity-digest-1",
               label="123456789012.dkr.ecr.us-west-2.amazonaws.com")
OTHER_REGISTRY = CacheKey("ecr:210987654321.dkr.ecr.eu-west-1.amazonaws.com", "identity-digest-1")
OTHER_IDENTITY = CacheKey(KEY.registry, "identity-digest-2")
TOKEN = Token("AWS", "first-password-value", expires_at=T0 + 12 * 3600, fetched_at=T0)
NEWER = Token("AWS", "second-password-value", expires_at=T0 + 13 * 3600, fetched_at=T0 + 3600)
HOLD = Throttled(at=T0 - 1, until=T0 + 5)


class Subject(NamedTuple):
    cache: TokenCache
    keeps_tokens: bool  # False: every load is None, whatever was stored
    keeps_holds: bool  # False: every load_throttled is None, whatever was stored
    log: RecordingLogger


def _file(tmp_path: Path, clock: FakeClock, log: RecordingLogger) -> FileCache:
    return FileCache(str(tmp_path / "cache"), clock, log)


# name -> (cache, keeps_tokens, keeps_holds), built in a fresh directory with a fresh clock.
IMPLEMENTATIONS: dict[str, Callable[[Path, FakeClock, RecordingLogger],
                                    tuple[TokenCache, bool, bool]]] = {
    "file": lambda p, c, log: (_file(p, c, log), True, True),
    "null": lambda p, c, log: (NullCache(), False, False),
    "memory-over-file": lambda p, c, log: (MemoryCache(_file(p, c, log), c), True, True),
    "memory-over-null": lambda p, c, log: (MemoryCache(NullCache(), c), True, False),
    "unread-over-file": lambda p, c, log: (Unread(_file(p, c, log)), False, True),
    "unread-over-dict": lambda p, c, log: (Unread(DictCache()), False, True),
    "dict (tests' fake)": lambda p, c, log: (DictCache(), True, True),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    log = RecordingLogger()
    cache, keeps_tokens, keeps_holds = IMPLEMENTATIONS[request.param](tmp_path, FakeClock(), log)
    yield Subject(cache, keeps_tokens, keeps_holds, log)
    # An implementation that degraded (a directory it could not use) would pass as "keeps
    # nothing" for the wrong reason: none may have warned.
    assert log.at("warning") == []


# -- tokens ---------------------------------------------------------------------------------------

def test_an_unknown_key_loads_nothing(subject: Subject):
    assert subject.cache.load(KEY) is None


def test_a_stored_token_loads_back_where_tokens_are_kept(subject: Subject):
    subject.cache.store(KEY, TOKEN)
    assert subject.cache.load(KEY) == (TOKEN if subject.keeps_tokens else None)


def test_the_last_token_stored_wins(subject: Subject):
    subject.cache.store(KEY, TOKEN)
    subject.cache.store(KEY, NEWER)
    assert subject.cache.load(KEY) == (NEWER if subject.keeps_tokens else None)


@pytest.mark.parametrize("other", [OTHER_REGISTRY, OTHER_IDENTITY], ids=["registry", "identity"])
def test_a_token_answers_only_its_own_key(subject: Subject, other: CacheKey):
    subject.cache.store(KEY, TOKEN)
    assert subject.cache.load(other) is None


def test_the_label_is_not_part_of_the_key(subject: Subject):
    subject.cache.store(KEY, TOKEN)
    unlabelled = CacheKey(KEY.registry, KEY.identity)
    assert subject.cache.load(unlabelled) == (TOKEN if subject.keeps_tokens else None)


def test_storing_a_token_sets_no_hold(subject: Subject):
    subject.cache.store(KEY, TOKEN)
    assert subject.cache.load_throttled(KEY) is None


# -- the lock -------------------------------------------------------------------------------------

def test_the_lock_is_a_context_manager_taken_twice_in_a_row(subject: Subject):
    for _ in range(2):
        with subject.cache.lock(KEY) as entered:
            assert entered is None


def test_the_lock_is_released_when_its_block_raises(subject: Subject):
    with pytest.raises(RuntimeError), subject.cache.lock(KEY):
        raise RuntimeError("the fetch failed")
    with subject.cache.lock(KEY):
        pass


def test_locks_of_two_keys_may_be_held_together(subject: Subject):
    with subject.cache.lock(KEY), subject.cache.lock(OTHER_REGISTRY):
        pass


def test_what_is_stored_under_the_lock_is_read_under_it_and_after(subject: Subject):
    # get_or_fetch's miss path: load, fetch, store and clear the hold, all with the lock held.
    with subject.cache.lock(KEY):
        assert subject.cache.load(KEY) is None
        subject.cache.store(KEY, TOKEN)
        subject.cache.store_throttled(KEY, None)
        assert subject.cache.load(KEY) == (TOKEN if subject.keeps_tokens else None)
    assert subject.cache.load(KEY) == (TOKEN if subject.keeps_tokens else None)


# -- throttling holds -----------------------------------------------------------------------------

def test_an_unknown_key_has_no_hold(subject: Subject):
    assert subject.cache.load_throttled(KEY) is None


def test_a_stored_hold_loads_back_where_holds_are_kept(subject: Subject):
    subject.cache.store_throttled(KEY, HOLD)
    assert subject.cache.load_throttled(KEY) == (HOLD if subject.keeps_holds else None)


def test_a_hold_of_none_forgets_it(subject: Subject):
    subject.cache.store_throttled(KEY, HOLD)
    subject.cache.store_throttled(KEY, None)
    assert subject.cache.load_throttled(KEY) is None


def test_forgetting_a_hold_never_set_is_harmless(subject: Subject):
    subject.cache.store_throttled(KEY, None)
    assert subject.cache.load_throttled(KEY) is None


def test_a_hold_is_per_key_and_leaves_the_token_alone(subject: Subject):
    subject.cache.store(KEY, TOKEN)
    subject.cache.store_throttled(KEY, HOLD)
    assert subject.cache.load_throttled(OTHER_REGISTRY) is None
    assert subject.cache.load(KEY) == (TOKEN if subject.keeps_tokens else None)
    subject.cache.store_throttled(KEY, None)
    assert subject.cache.load(KEY) == (TOKEN if subject.keeps_tokens else None)


def test_the_last_hold_stored_wins(subject: Subject):
    later = Throttled(at=HOLD.at + 2, until=HOLD.until + 2)
    subject.cache.store_throttled(KEY, HOLD)
    subject.cache.store_throttled(KEY, later)
    assert subject.cache.load_throttled(KEY) == (later if subject.keeps_holds else None)
