"""List query parameters as OpenAI takes them: ``limit``, ``order``, ``after``, ``before``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

__all__ = ["ListParams", "Pagination"]


class ListParams:
    """``limit`` 1-100 (default 20), ``order`` asc|desc (default desc), id cursors.

    Use as ``params: Pagination`` (or ``Annotated[ListParams, Depends()]``);
    out-of-range values are answered with a 400 naming the parameter.
    """

    def __init__(
        self,
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
    ) -> None:
        self.limit = limit
        self.order: Literal["asc", "desc"] = order
        self.after = after or None
        self.before = before or None


Pagination = Annotated[ListParams, Depends(ListParams)]
