"""Checks of the ``NotFound`` that calls raise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentkeep import NotFound, Store


def check_not_found(cases: list[tuple[Callable[[], object], str, str]]) -> None:
    """Each ``(call, kind, ident)``: ``call()`` raises ``NotFound`` naming that ``kind``
    and ``ident`` (what the service's 404 says)."""
    for call, kind, ident in cases:
        with pytest.raises(NotFound) as caught:
            call()
        assert (caught.value.kind, caught.value.ident) == (kind, ident), call


def check_in_session_not_found(
    store: Store, resource: str, name: str, ident: str, thread_id: str, other_id: str
) -> None:
    """``store.<resource>.in_session`` (runs, messages: one shared read of a row beside its
    session's kind) for row ``ident`` of thread ``thread_id``: ``NotFound`` names the row
    (``name``) in another thread ``other_id`` and for a missing row, and the session for a
    missing session, a session of another kind and another tenant's."""
    mine, theirs = getattr(store, resource), getattr(store.tenant("t_other"), resource)
    missing = f"{name}_missing"
    check_not_found(
        [
            (lambda: mine.in_session(ident, other_id), name, ident),
            (lambda: mine.in_session(missing, thread_id), name, missing),
            (lambda: mine.in_session(ident, "sess_missing"), "session", "sess_missing"),
            (
                lambda: mine.in_session(ident, thread_id, kind="conversation"),
                "conversation",
                thread_id,
            ),
            (lambda: theirs.in_session(ident, thread_id), "session", thread_id),
        ]
    )
