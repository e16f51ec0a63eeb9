"""The errors agentkeep raises.

Every error is an ``AgentkeepError``; the families say what the caller can do::

    AgentkeepError
    ├── NotFound            the object does not exist (in this tenant)
    ├── Conflict            a stale version, a duplicate, a state that forbids it
    │   ├── InvalidTransition   a run or tool call asked to move where it cannot
    │   └── SessionBusy     a message refused while a run of its session is active
    ├── InvalidInput        bad input; ``field`` names what is wrong
    ├── StoreUnavailable    the database cannot be reached or is busy past waiting
    ├── LockTimeout         a named lock was not acquired in time
    ├── BackupFailed        a backup could not be taken, verified or restored
    └── SchemaError         the database schema is missing, unknown or newer
        └── MigrationRequired   the database must be upgraded first

Driver errors are translated in one place (``agentkeep.store._errors``) and
chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "AgentkeepError",
    "BackupFailed",
    "Conflict",
    "InvalidInput",
    "InvalidTransition",
    "LockTimeout",
    "MigrationRequired",
    "NotFound",
    "SchemaError",
    "SessionBusy",
    "StoreUnavailable",
]


class AgentkeepError(Exception):
    """Base of every error agentkeep raises."""


class NotFound(AgentkeepError):
    """The object does not exist, or belongs to another tenant."""

    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident!r} not found")


class Conflict(AgentkeepError):
    """The write conflicts with what is stored (stale version, duplicate id, state).

    A stale version carries ``current_version`` and ``requested_version``.
    """

    def __init__(
        self,
        message: str,
        *,
        current_version: int | None = None,
        requested_version: int | None = None,
    ) -> None:
        self.current_version = current_version
        self.requested_version = requested_version
        super().__init__(message)


class InvalidTransition(Conflict):
    """A status change that the state machine does not allow."""

    def __init__(self, kind: str, ident: str, current: str, target: str) -> None:
        self.kind = kind
        self.ident = ident
        self.current = current
        self.target = target
        super().__init__(f"{kind} {ident!r} cannot move from {current!r} to {target!r}")


class SessionBusy(Conflict):
    """The session has an active run (``run_id``): nothing was written.

    Raised by ``messages.append_if_idle``, the OpenAI thread rule that no
    message is added while a run of the thread is queued, in progress,
    requires action or is cancelling.
    """

    def __init__(self, session_id: str, run_id: str) -> None:
        self.session_id = session_id
        self.run_id = run_id
        super().__init__(f"session {session_id!r} has an active run {run_id!r}")


class InvalidInput(AgentkeepError, ValueError):
    """Input that fails validation; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class StoreUnavailable(AgentkeepError):
    """The database cannot be reached, or stayed busy past the time allowed."""


class LockTimeout(AgentkeepError):
    """A named lock could not be acquired within ``wait`` seconds."""


class BackupFailed(AgentkeepError):
    """A backup could not be taken, did not verify, or cannot be restored; nothing was catalogued."""


class SchemaError(AgentkeepError):
    """The database schema is unknown, newer than this agentkeep, or missing."""


class MigrationRequired(SchemaError):
    """The database is behind this agentkeep's schema; run the named command."""
