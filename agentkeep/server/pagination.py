"""List query parameters as OpenAI takes them: ``limit``, ``order``, ``after``, ``before``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query

from agentkeep._aio_util import arun_op
from agentkeep.models import Message, Page
from agentkeep.store import Store

__all__ = ["ListParams", "Pagination", "list_params", "session_page"]


@dataclass(frozen=True, slots=True)
class ListParams:
    """``limit`` 1-100 (default 20), ``order`` asc|desc (default desc), id cursors.

    Use as ``params: Pagination``; out-of-range values are answered with a 400
    naming the parameter. An empty cursor is no cursor.
    """

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


async def list_params(
    limit: Annotated[
        int, Query(ge=1, le=100, description="Number of objects to return, 1 to 100.")
    ] = 20,
    order: Annotated[
        Literal["asc", "desc"], Query(description="Sort order by creation time.")
    ] = "desc",
    after: Annotated[
        str | None, Query(description="An object id: list the objects after it.")
    ] = None,
    before: Annotated[
        str | None, Query(description="An object id: list the objects before it.")
    ] = None,
) -> ListParams:
    """The list parameters of a request.

    ``async``, though it waits for nothing: FastAPI calls a plain function
    dependency in a worker thread, one more thread hop per list request.
    """
    return ListParams(limit, order, after or None, before or None)


Pagination = Annotated[ListParams, Depends(list_params)]


async def session_page(
    store: Store, session_id: str, kind: str, params: ListParams, run_id: str | None = None
) -> Page[Message]:
    """A page of a thread's messages or a conversation's items: one read on the store's
    async path, without a worker thread (the session's kind comes with the rows); a 404
    naming ``kind`` when ``session_id`` is not one."""
    return await arun_op(
        store.messages.page,
        session_id,
        run_id=run_id,
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
        kind=kind,
    )
