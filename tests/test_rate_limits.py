"""``store.rate_limits``: fixed-window request counters, exact under concurrency, on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from agentkeep import InvalidInput, Store

T0 = datetime(2026, 12, 5, 7, 0, 0, tzinfo=UTC)


def test_counts_in_a_window_then_starts_again(store: Store) -> None:
    hits = [store.rate_limits.hit("k1", limit=3, window_ms=60_000, now=T0) for _ in range(4)]
    assert [h.count for h in hits] == [1, 2, 3, 4]
    assert [h.allowed for h in hits] == [True, True, True, False]
    assert [h.remaining for h in hits] == [2, 1, 0, 0]
    assert hits[0].window_start == T0 and hits[0].reset_at == T0 + timedelta(minutes=1)
    assert hits[0].reset_seconds == 60.0 and hits[0].retry_after == 60
    later = store.rate_limits.hit("k1", limit=3, window_ms=60_000, now=T0 + timedelta(seconds=59))
    assert later.count == 5 and later.retry_after == 1
    # The next window starts again at 1.
    fresh = store.rate_limits.hit("k1", limit=3, window_ms=60_000, now=T0 + timedelta(minutes=1))
    assert fresh.count == 1 and fresh.allowed
    # A late request of an earlier window (a process with a slow clock) counts in the current one.
    late = store.rate_limits.hit("k1", limit=3, window_ms=60_000, now=T0 + timedelta(seconds=30))
    assert late.count == 2 and late.window_start == T0 + timedelta(minutes=1)


def test_keys_and_tenants_count_apart(store: Store) -> None:
    other = store.tenant(store.tenant_id + "_b")
    store.rate_limits.hit("k", limit=5, window_ms=1000, now=T0)
    assert store.rate_limits.hit("k", limit=5, window_ms=1000, now=T0).count == 2
    assert store.rate_limits.hit("j", limit=5, window_ms=1000, now=T0).count == 1
    assert other.rate_limits.hit("k", limit=5, window_ms=1000, now=T0).count == 1
    store.rate_limits.reset("k")
    assert store.rate_limits.hit("k", limit=5, window_ms=1000, now=T0).count == 1


def test_concurrent_requests_are_all_counted(store: Store) -> None:
    threads, each = 4, 25
    barrier = threading.Barrier(threads)
    seen: list[int] = []
    lock = threading.Lock()
    now = datetime.now(UTC).replace(microsecond=0)

    def hammer() -> None:
        barrier.wait()
        for _ in range(each):
            hit = store.rate_limits.hit("shared", limit=60, window_ms=3_600_000, now=now)
            with lock:
                seen.append(hit.count)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(seen) == list(range(1, threads * each + 1))  # none lost, none twice
    assert sum(1 for c in seen if c <= 60) == 60


def test_bad_arguments_name_their_field(store: Store) -> None:
    for kwargs, field in (
        ({"key": "", "limit": 1, "window_ms": 1}, "key"),
        ({"key": "k", "limit": 0, "window_ms": 1}, "limit"),
        ({"key": "k", "limit": True, "window_ms": 1}, "limit"),
        ({"key": "k", "limit": 1, "window_ms": 0}, "window_ms"),
        ({"key": "k", "limit": 1, "window_ms": 1, "now": "now"}, "now"),
    ):
        with pytest.raises(InvalidInput) as caught:
            store.rate_limits.hit(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field


async def test_the_async_twin(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Native (the service counts every request with it): no worker thread, the same counts."""
    import asyncio

    from agentkeep import AsyncStore

    astore = AsyncStore(store)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("hit() hopped to a worker thread")

    with monkeypatch.context() as patched:
        patched.setattr(asyncio, "to_thread", refuse)
        assert (await astore.rate_limits.hit("a", limit=1, window_ms=60_000, now=T0)).allowed
        second = await astore.rate_limits.hit("a", limit=1, window_ms=60_000, now=T0)
        assert not second.allowed and second.count == 2
    assert store.rate_limits.hit("a", limit=1, window_ms=60_000, now=T0).count == 3
    with monkeypatch.context() as patched:  # a reset is one statement on the loop too
        patched.setattr(asyncio, "to_thread", refuse)
        await astore.rate_limits.reset("a")
        await astore.rate_limits.reset("never-hit")  # nothing to forget: no error
    assert store.rate_limits.hit("a", limit=1, window_ms=60_000, now=T0).count == 1
