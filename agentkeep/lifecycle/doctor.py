"""``agentkeep doctor``: is this database healthy, and is it backed up?

Checks, each with what to do when it fails: the database answers; its schema
revision is head; SQLite's ``PRAGMA quick_check`` (PostgreSQL: the data
checksum failures the server counted in the database); the consistency check of
every tenant; the daily usage totals against the usage rows (repaired by
:func:`repair_usage`, ``agentkeep doctor --repair-usage``); free disk in the
data and backup directories; the age of the last backup against the schedule;
the size of SQLite's WAL.

:func:`run_doctor` opens the database at a URL; :func:`check_store` runs the
checks on a store already open (the dashboard's on-demand checks), and with
``tenant=`` only those a tenant's key may see: the schema revision and that
tenant's consistency.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import agentkeep
from agentkeep.config import Settings
from agentkeep.errors import AgentkeepError
from agentkeep.store import Store, migrate, usage_days
from agentkeep.store.dialects import SQLiteDialect
from agentkeep.store.schema import runs, sessions

__all__ = ["Check", "DoctorReport", "check_store", "repair_usage", "run_doctor"]

MIN_FREE_BYTES = 256 * 1024 * 1024
MAX_WAL_BYTES = 512 * 1024 * 1024
BACKUP_SLACK = timedelta(hours=2)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    remedy: str | None = None


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def run_doctor(url: str, settings: Settings | None = None) -> DoctorReport:
    """Run every check on the database at ``url``."""
    settings = settings or Settings.from_env()
    report = DoctorReport()
    try:
        store = agentkeep.connect(url, auto_migrate=False)
    except AgentkeepError as exc:
        report.checks.append(
            Check("database", False, str(exc), "start the database or run `agentkeep db upgrade`")
        )
        return report
    with store:
        return check_store(store, settings)


def check_store(store: Store, settings: Settings, *, tenant: str | None = None) -> DoctorReport:
    """Every check on an open store; with ``tenant``, only the schema and its consistency.

    The integrity and consistency checks read the whole database: run them on
    demand, not on every page view.
    """
    report = DoctorReport([Check("database", True, f"{store.backend} answers")])
    if tenant is not None:
        report.checks += [_revision(store), _consistency(store, [tenant])]
        return report
    report.checks += [
        _revision(store),
        _integrity(store),
        _consistency(store),
        _usage_totals(store),
        *_disk(store, settings),
        _last_backup(store, settings),
        _wal(store),
    ]
    return report


def _revision(store: Store) -> Check:
    current = migrate.current_revision(store._core.dialect)
    head = migrate.head_revision()
    if current == head:
        return Check("schema", True, f"revision {current} (head)")
    return Check(
        "schema", False, f"revision {current}, head is {head}", "run `agentkeep db upgrade`"
    )


def _integrity(store: Store) -> Check:
    if not isinstance(store._core.dialect, SQLiteDialect):
        return _pg_integrity(store)
    with store._core.read("integrity check") as conn:
        rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    if rows == ["ok"]:
        return Check("integrity", True, "PRAGMA quick_check: ok")
    return Check(
        "integrity",
        False,
        f"PRAGMA quick_check: {rows[:3]}",
        "restore the latest good backup (`agentkeep backup restore`)",
    )


def _pg_integrity(store: Store) -> Check:
    """PostgreSQL: page checksum failures the server has counted in this database."""
    with store._core.read("integrity check") as conn:
        checksums = conn.execute(sa.text("SHOW data_checksums")).scalar()
        failures = conn.execute(
            sa.text(
                "SELECT coalesce(checksum_failures, 0) FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).scalar()
    if failures:
        return Check(
            "integrity",
            False,
            f"{failures} data checksum failure(s) counted in this database",
            "a disk or memory fault corrupted pages: check the server's log for the relation, "
            "then restore the latest good backup (`agentkeep backup restore`)",
        )
    if checksums != "on":
        return Check(
            "integrity",
            True,
            "data checksums are off: PostgreSQL does not detect corrupt pages "
            "(pg_checksums --enable on a stopped cluster turns them on)",
        )
    return Check("integrity", True, "data checksums on, no failures counted")


def _consistency(store: Store, tenants: list[str] | None = None) -> Check:
    if tenants is None:  # every tenant with sessions or runs (a run needs no session)
        listing = sa.union(sa.select(sessions.c.tenant_id), sa.select(runs.c.tenant_id))
        with store._core.read("listing tenants") as conn:
            tenants = sorted(r[0] for r in conn.execute(listing))
    issues = []
    for tenant in tenants:
        issues += [
            f"{tenant}: {i.kind} {i.object_id}"
            for i in store.tenant(tenant).check_consistency().issues
        ]
    if not issues:
        return Check("consistency", True, f"{len(tenants)} tenant(s), no issues")
    return Check(
        "consistency",
        False,
        f"{len(issues)} issue(s): {'; '.join(issues[:5])}",
        "see store.check_consistency() for each tenant; finish or fail the runs named",
    )


def _usage_totals(store: Store) -> Check:
    """The daily usage totals (``usage_days``) against the usage rows they sum."""
    with store._core.read("checking the usage totals", batches=True) as conn:
        count, named = usage_days.drift(conn, most=5)
    if not count:
        return Check("usage totals", True, "the daily totals equal the usage rows")
    return Check(
        "usage totals",
        False,
        f"{count} daily group(s) differ from the usage rows: {'; '.join(named)}",
        "recompute them from the rows: `agentkeep doctor --repair-usage`",
    )


def repair_usage(url: str) -> int:
    """Recompute the daily usage totals of every tenant from the usage rows; the groups fixed."""
    with (
        agentkeep.connect(url, auto_migrate=False) as store,
        store._core.write("recomputing the usage totals") as conn,
    ):
        count, _ = usage_days.drift(conn, most=0)
        if count:
            usage_days.refresh_all(conn)
        return count


def _disk(store: Store, settings: Settings) -> list[Check]:
    dialect = store._core.dialect
    places = {"backup directory": Path(settings.backup_dir)}
    if isinstance(dialect, SQLiteDialect) and dialect.path:
        places["data directory"] = Path(dialect.path).parent
    checks = []
    for name, place in places.items():
        probe = place
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        ok = free >= MIN_FREE_BYTES
        checks.append(
            Check(
                f"disk: {name}",
                ok,
                f"{free / 2**30:.1f} GiB free at {place}",
                None if ok else "free disk space or move the directory",
            )
        )
    return checks


def _last_backup(store: Store, settings: Settings) -> Check:
    latest = store.backups.list(limit=1)
    if not settings.backup_enabled:
        detail = "scheduled backups are off (AGENTKEEP_BACKUP_ENABLED)"
        return Check(
            "last backup",
            True,
            detail + (f"; last {latest[0].finished_at:%Y-%m-%d %H:%M}" if latest else ""),
        )
    due = timedelta(days=1) + BACKUP_SLACK
    if not latest:
        return Check(
            "last backup",
            False,
            "no backup in the catalog",
            "run `agentkeep backup create` (and `agentkeep serve` takes them daily)",
        )
    age = datetime.now(UTC) - latest[0].finished_at
    hours = age.total_seconds() / 3600
    if age <= due:
        return Check(
            "last backup",
            True,
            f"{latest[0].id}, {hours:.1f} h ago (daily at {settings.backup_time})",
        )
    return Check(
        "last backup",
        False,
        f"the last backup is {hours:.1f} h old; one is due daily at {settings.backup_time}",
        "check that `agentkeep serve` runs with AGENTKEEP_BACKUP_ENABLED, or run `agentkeep backup create`",
    )


def _wal(store: Store) -> Check:
    dialect = store._core.dialect
    if not isinstance(dialect, SQLiteDialect) or not dialect.path:
        return Check("wal", True, "no WAL file (not a SQLite file)")
    wal = f"{dialect.path}-wal"
    size = os.path.getsize(wal) if os.path.exists(wal) else 0
    if size <= MAX_WAL_BYTES:
        return Check("wal", True, f"{size / 2**20:.1f} MiB")
    return Check(
        "wal",
        False,
        f"{size / 2**20:.1f} MiB",
        "a reader holds an old snapshot: end long reads, then the WAL checkpoints",
    )
