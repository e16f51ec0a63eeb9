"""A service process sizes its PostgreSQL connections to its share of the server's."""

from __future__ import annotations

import logging

import pytest

from agentkeep.config import Pool, Settings
from agentkeep.server.connections import (
    KINDS,
    MAX_OVERFLOW,
    POOL_SIZE,
    SHARE,
    budget,
    fit,
    log_budget,
    open_store,
    server_allows,
)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("allowed", [7, 20, 50, 97, 197, 497, 10_000])
def test_fitted_pools_share_the_server_and_never_exceed_the_defaults(
    allowed: int, workers: int
) -> None:
    size, overflow = fit(allowed, workers)
    assert size >= 1 and overflow >= 0
    assert size + overflow <= POOL_SIZE + MAX_OVERFLOW
    if allowed * SHARE >= workers * KINDS:  # room for one connection of each kind each
        assert workers * KINDS * (size + overflow) <= allowed * SHARE
    else:
        assert (size, overflow) == (1, 0)


def test_fitted_pools_on_a_default_server() -> None:
    """PostgreSQL's default: max_connections 100, 3 reserved for superusers."""
    assert fit(97, 1) == (18, 7)  # 3 x 25 = 75 connections
    assert fit(97, 2) == (9, 3)  # 2 x 3 x 12 = 72
    assert fit(10_000, 1) == (POOL_SIZE, MAX_OVERFLOW)


def test_the_service_fits_its_pools_to_the_server(postgres_url: str) -> None:
    settings = Settings(database_url=postgres_url, workers=2)
    store = open_store(settings)
    try:
        allowed = server_allows(store)
        dialect = store._core.dialect
        assert (dialect.pool_size, dialect.max_overflow) == fit(allowed, 2)
        found = budget(store, settings)
        assert found is not None and found.fits
        assert found.per_process == KINDS * sum(fit(allowed, 2))
        # All three kinds take their size from the store's pool sizes.
        assert store._core.own.limit == dialect.pool_size + dialect.max_overflow
        assert store._core.engine.pool.size() == dialect.pool_size
    finally:
        store.close()


def test_pool_sizes_set_by_hand_are_kept_and_an_excess_is_warned(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=postgres_url, workers=4, pool=Pool(size=30, max_overflow=10))
    store = open_store(settings)
    try:
        assert (store._core.dialect.pool_size, store._core.dialect.max_overflow) == (30, 10)
        found = budget(store, settings)
        assert found is not None and found.per_process == 120
        assert found.fits is (server_allows(store) >= 4 * 120)
        with caplog.at_level(logging.INFO, logger="agentkeep.server"):
            log_budget(store, settings)
        [record] = [r for r in caplog.records if "PostgreSQL connections" in r.getMessage()]
        assert "up to 120 for this process" in record.getMessage()
        if not found.fits:
            assert record.levelno == logging.WARNING
            assert "AGENTKEEP_POOL_SIZE" in record.getMessage()
    finally:
        store.close()


def test_sqlite_keeps_the_default_pools(tmp_path: object) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite", workers=8)
    store = open_store(settings)
    try:
        assert store._core.dialect.pool_size == POOL_SIZE
        assert budget(store, settings) is None
    finally:
        store.close()
