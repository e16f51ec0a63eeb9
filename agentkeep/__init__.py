"""agentkeep: the persistence layer for AI agents and assistants.

import agentkeep
store = agentkeep.connect()            # sqlite:///./data/agentkeep.db
session = store.sessions.create()
store.messages.append(session.id, "user", "Hello")
"""

from agentkeep.aio import AsyncStore, aconnect
from agentkeep.errors import (
    AgentkeepError,
    BackupFailed,
    Conflict,
    InvalidInput,
    InvalidTransition,
    LockTimeout,
    MigrationRequired,
    NotFound,
    SchemaError,
    SessionBusy,
    StoreUnavailable,
)
from agentkeep.integrations.openai_client import track
from agentkeep.models import (
    Agent,
    Backup,
    BackupCheck,
    CompressionConfig,
    CompressionRecord,
    ErasureReceipt,
    Event,
    Health,
    HistoryStats,
    HistoryWindow,
    LLMUsage,
    MediaCacheRecord,
    Message,
    NewMessage,
    Page,
    RateLimitHit,
    RecoveredFile,
    Run,
    RunStep,
    Session,
    Snapshot,
    StateDoc,
    Stats,
    StoreMetrics,
    ToolCall,
)
from agentkeep.store import Store, connect

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentkeepError",
    "AsyncStore",
    "Backup",
    "BackupCheck",
    "BackupFailed",
    "CompressionConfig",
    "CompressionRecord",
    "Conflict",
    "ErasureReceipt",
    "Event",
    "Health",
    "HistoryStats",
    "HistoryWindow",
    "InvalidInput",
    "InvalidTransition",
    "LLMUsage",
    "LockTimeout",
    "MediaCacheRecord",
    "Message",
    "MigrationRequired",
    "NewMessage",
    "NotFound",
    "Page",
    "RateLimitHit",
    "RecoveredFile",
    "Run",
    "RunStep",
    "SchemaError",
    "Session",
    "SessionBusy",
    "Snapshot",
    "StateDoc",
    "Stats",
    "Store",
    "StoreMetrics",
    "StoreUnavailable",
    "ToolCall",
    "__version__",
    "aconnect",
    "connect",
    "track",
]
