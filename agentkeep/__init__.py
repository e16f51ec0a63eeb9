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
    StoreUnavailable,
)
from agentkeep.integrations.openai_client import track
from agentkeep.models import (
    Agent,
    Backup,
    BackupCheck,
    ErasureReceipt,
    Event,
    Health,
    LLMUsage,
    Message,
    NewMessage,
    Page,
    RateLimitHit,
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
    "Conflict",
    "ErasureReceipt",
    "Event",
    "Health",
    "InvalidInput",
    "InvalidTransition",
    "LLMUsage",
    "LockTimeout",
    "Message",
    "MigrationRequired",
    "NewMessage",
    "NotFound",
    "Page",
    "RateLimitHit",
    "Run",
    "RunStep",
    "SchemaError",
    "Session",
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
