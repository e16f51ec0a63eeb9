"""The SQL statements a store sends through SQLAlchemy while a block runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from agentkeep import Store


@contextmanager
def sent_statements(store: Store) -> Iterator[list[str]]:
    """The statements of ``store``'s engine, in order, as the block sends them."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = store._core.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
