"""KODE's history windows, compression records, recovered files and media cache, typed.

Field names are KODE's in snake case (``windowId`` -> ``window_id``,
``mimeType`` -> ``mime_type``); KODE's millisecond timestamps are datetimes
here (``datetime.fromtimestamp(ms / 1000, UTC)``). Input is checked strictly:
no string becomes a number, no number a string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from agentkeep.models.common import Model

__all__ = [
    "CompressionConfig",
    "CompressionRecord",
    "HistoryStats",
    "HistoryWindow",
    "MediaCacheRecord",
    "RecoveredFile",
]


class _Strict(Model):
    model_config = ConfigDict(extra="forbid", strict=True)


class HistoryStats(_Strict):
    """What a history window holds: counts of its messages, tokens and events."""

    message_count: int = Field(ge=0)
    token_count: int = Field(ge=0)
    event_count: int = Field(ge=0)


class HistoryWindow(_Strict):
    """A window of an agent's history (messages and timeline events) kept aside, e.g. before
    compression. Keyed by ``id`` within its session."""

    id: str = Field(min_length=1, max_length=512)
    messages: list[dict[str, Any]]
    events: list[dict[str, Any]]
    stats: HistoryStats
    timestamp: datetime


class CompressionConfig(_Strict):
    """How a window was compressed: the model, its prompt and the threshold that triggered it."""

    model: str = Field(max_length=256)
    prompt: str
    threshold: float


class CompressionRecord(_Strict):
    """One compression of a history window into a summary. Keyed by ``id`` within its session."""

    id: str = Field(min_length=1, max_length=512)
    window_id: str = Field(min_length=1, max_length=512)
    config: CompressionConfig
    summary: str
    ratio: float
    recovered_files: list[str]
    timestamp: datetime


class RecoveredFile(_Strict):
    """A file's content recovered into context after a compression. Keyed by ``path``."""

    path: str = Field(min_length=1, max_length=512)
    content: str
    mtime: datetime
    timestamp: datetime


class MediaCacheRecord(_Strict):
    """A media file an agent used: where a provider holds it and, optionally, its bytes.

    Keyed by ``key`` within its session. ``data`` is stored as bytes (a BLOB or
    bytea column); ``size_bytes`` defaults to ``len(data)``. Listings leave
    ``data`` out (None) unless asked for it.
    """

    key: str = Field(min_length=1, max_length=512)
    provider: str = Field(min_length=1, max_length=128)
    mime_type: str = Field(min_length=1, max_length=256)
    size_bytes: int | None = Field(default=None, ge=0)
    file_id: str | None = Field(default=None, max_length=512)
    file_uri: str | None = None
    created_at: datetime | None = None
    data: bytes | None = None
