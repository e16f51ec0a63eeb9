"""Scheduled backups and retention, run by ``agentkeep serve``.

Every day at ``AGENTKEEP_BACKUP_TIME`` (the server's local time, ``HH:MM`` or
``HH:MM:SS``) one service process takes a backup into ``AGENTKEEP_BACKUP_DIR``
(trigger ``scheduled``), then prunes backups older than
``AGENTKEEP_BACKUP_RETENTION_DAYS`` (the newest is always kept) and applies
the data retention rules (``AGENTKEEP_RETENTION_*``) to every tenant. With
several processes on one database, each tries at the same moment: the one
that takes the store's lock ``scheduled-backup`` does the work, and a process
that gets the lock later finds that slot's backup in the catalog and stops.
A process that starts within ``CATCH_UP`` (10 minutes) after a slot takes it
if nobody did (a restart across the slot does not skip a day).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentkeep.config import Settings
from agentkeep.errors import AgentkeepError, LockTimeout
from agentkeep.lifecycle.retention import RetentionReport, sweep_all_tenants
from agentkeep.models import Backup
from agentkeep.store import Store

__all__ = ["BackupScheduler", "SlotResult", "next_slot"]

log = logging.getLogger("agentkeep.lifecycle.schedule")
LOCK = "scheduled-backup"
CATCH_UP = timedelta(minutes=10)
"""A process that starts this soon after a slot nobody backed up takes that slot's backup."""


def next_slot(now: datetime, at: str) -> datetime:
    """The first time of day ``at`` strictly after ``now`` (an aware local datetime)."""
    parts = [int(p) for p in at.split(":")] + [0]
    slot = now.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
    return slot if slot > now else slot + timedelta(days=1)


@dataclass
class SlotResult:
    """What one scheduled slot did in this process (``backup`` None: another process took it)."""

    slot: datetime
    backup: Backup | None = None
    pruned: list[Backup] = field(default_factory=list)
    retention: list[RetentionReport] = field(default_factory=list)


class BackupScheduler:
    """A daemon thread that runs :meth:`run_slot` at each daily slot until :meth:`stop`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.results: list[SlotResult] = []
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="agentkeep-backups", daemon=True)
        self._thread.start()
        log.info(
            "scheduled backups daily at %s into %s",
            self.settings.backup_time,
            self.settings.backup_dir,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        now = datetime.now().astimezone()
        missed = next_slot(now, self.settings.backup_time) - timedelta(days=1)
        catch_up = now - missed <= CATCH_UP  # started just after a slot: take it now
        while True:
            now = datetime.now().astimezone()
            slot = missed if catch_up else next_slot(now, self.settings.backup_time)
            catch_up = False
            if self._stop.wait(max(0.0, (slot - now).total_seconds())):
                return
            try:
                self.results.append(self.run_slot(slot))
                self.last_error = None
            except AgentkeepError as exc:  # reported on the log and to doctor; tried again tomorrow
                self.last_error = str(exc)
                log.error("scheduled backup of %s failed: %s", slot.isoformat(), exc)

    def run_slot(self, slot: datetime) -> SlotResult:
        """Take the slot's backup, prune, sweep, unless another process did or does."""
        result = SlotResult(slot=slot)
        try:
            with self.store.lock(LOCK, ttl=60, wait=0):
                taken = [
                    b
                    for b in self.store.backups.list(limit=50)
                    if b.trigger == "scheduled" and b.started_at >= slot
                ]
                if taken:
                    return result
                result.backup = self.store.backups.create(
                    to=self.settings.backup_dir, trigger="scheduled"
                )
                result.pruned = self.store.backups.prune(
                    keep_days=self.settings.backup_retention_days, keep_last=1
                )
                if self.settings.retention_inactive_days or self.settings.retention_compact_events:
                    result.retention = sweep_all_tenants(
                        self.store,
                        inactive_days=self.settings.retention_inactive_days,
                        compact_events=self.settings.retention_compact_events,
                    )
        except LockTimeout:
            return result  # another process holds it: that one backs up this slot
        log.info(
            "scheduled backup %s taken, %d old backup(s) pruned",
            result.backup.id if result.backup else "-",
            len(result.pruned),
        )
        return result
