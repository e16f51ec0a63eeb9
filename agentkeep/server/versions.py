"""Optimistic concurrency on the modify endpoints: ``If-Match`` / ``?expected_version=`` in, ``ETag`` out.

An agentkeep extension: retrieve and modify answers carry ``ETag: "<version>"``;
a modify request with ``If-Match: "<version>"`` (or ``?expected_version=``)
applies only if the object is still at that version, else 409
``VERSION_CONFLICT`` with ``current_version`` and ``requested_version``.
Without either, the last writer wins, as on OpenAI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Response

from agentkeep.server.errors import ApiError
from agentkeep.server.json_response import JSONResponse

__all__ = ["ExpectedVersion", "expected_version", "set_etag", "versioned"]


def _parse_if_match(value: str) -> int:
    tag = value.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit() or int(tag) < 1:
        raise ApiError(
            400,
            f"Invalid 'If-Match': expected an object version such as '\"3\"', not {value!r}.",
            param="If-Match",
        )
    return int(tag)


async def expected_version(  # async: no worker thread to parse a header
    if_match: Annotated[
        str | None,
        Header(alias="If-Match", description='Apply only at this version (the ETag, e.g. "3").'),
    ] = None,
    version: Annotated[
        int | None,
        Query(alias="expected_version", ge=1, description="Apply only at this version."),
    ] = None,
) -> int | None:
    """The version the client expects (None: last writer wins)."""
    header = None if if_match is None or if_match.strip() == "*" else _parse_if_match(if_match)
    if header is not None and version is not None and header != version:
        raise ApiError(
            400, "'If-Match' and 'expected_version' name different versions.", param="If-Match"
        )
    return header if header is not None else version


ExpectedVersion = Annotated[int | None, Depends(expected_version)]


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def set_etag(response: Response, version: int) -> None:
    response.headers.update(_etag(version))


def versioned(content: dict[str, Any], version: int) -> JSONResponse:
    """``content`` (a wire object, JSON already) with its ``ETag``."""
    return JSONResponse(content, headers=_etag(version))
