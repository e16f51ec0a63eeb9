"""A check of a cursor-paged listing against the whole listing it pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentkeep.models import Page


def check_every_page(
    listing: list[str], limit: int, page: Callable[[str | None, str | None], Page[Any]]
) -> None:
    """``page(after, before)`` for every cursor pair of ``listing`` (ids in the listing's
    order), and none, is the right slice: the first ``limit`` past ``after``, or with
    ``before`` alone the ``limit`` closest to it; ``has_more`` and the first and last ids
    as the slice says."""
    n = len(listing)
    for after in (None, *range(n)):
        for before in (None, *range(n)):
            a = None if after is None else listing[after]
            b = None if before is None else listing[before]
            window = listing[(after + 1 if after is not None else 0) : before]
            want = window[-limit:] if a is None and b is not None else window[:limit]
            got = page(a, b)
            ids = [x["id"] if isinstance(x, dict) else x.id for x in got.items]
            assert ids == want, (after, before)
            assert got.has_more is (len(window) > limit), (after, before)
            assert (got.first_id, got.last_id) == ((want[0], want[-1]) if want else (None, None))
