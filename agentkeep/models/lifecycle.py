"""Backups, their checks, and erasure receipts."""

from __future__ import annotations

from datetime import datetime

from agentkeep.models.common import Model

__all__ = ["Backup", "BackupCheck", "ErasureReceipt"]


class Backup(Model):
    """One complete backup file, as its catalog row and its manifest describe it.

    ``kind``: ``sqlite`` (SQLite online backup API), ``pg_dump`` (custom
    format) or ``jsonl`` (the logical dump); ``trigger``: ``manual``,
    ``scheduled`` or ``pre-upgrade``.
    """

    id: str
    kind: str
    path: str
    size_bytes: int
    sha256: str
    counts: dict[str, int]
    revision: str | None
    trigger: str
    status: str
    compression: str | None
    started_at: datetime
    finished_at: datetime
    verified_at: datetime | None = None


class BackupCheck(Model):
    """What ``backups.verify`` found: ``ok`` and, if not, each problem in words."""

    ok: bool
    backup_id: str | None
    path: str
    kind: str
    problems: list[str]
    counts: dict[str, int]
    method: str = ""
    """How the copy was opened, e.g. ``pg_restore into a scratch database``."""


class ErasureReceipt(Model):
    """Proof of an erasure, kept without the erased content: rows removed (or scrubbed) per table."""

    id: str
    tenant_id: str
    user_sha256: str
    counts: dict[str, int]
    created_at: datetime
