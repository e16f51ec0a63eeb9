"""The vocabulary of agentkeep: every stored object, as a pydantic model."""

from agentkeep.models.agents import Agent
from agentkeep.models.common import JSONValue, Order, Page
from agentkeep.models.events import CHANNELS, EVENT_TYPES, Channel, Event
from agentkeep.models.history import (
    CompressionConfig,
    CompressionRecord,
    HistoryStats,
    HistoryWindow,
    MediaCacheRecord,
    RecoveredFile,
)
from agentkeep.models.lifecycle import Backup, BackupCheck, ErasureReceipt
from agentkeep.models.messages import BLOCK_TYPES, ROLES, Message, NewMessage, Role
from agentkeep.models.rate_limits import RateLimitHit
from agentkeep.models.responses import (
    RESPONSE_STATUSES,
    TERMINAL_RESPONSE_STATUSES,
    ResponseEvent,
    ResponseStatus,
    StoredResponse,
)
from agentkeep.models.runs import (
    ACTIVE_RUN_STATUSES,
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    Run,
    RunStatus,
    RunStep,
    StepStatus,
    StepType,
)
from agentkeep.models.sessions import Session
from agentkeep.models.snapshots import Snapshot, StateDoc
from agentkeep.models.stats import (
    ConsistencyIssue,
    ConsistencyReport,
    Health,
    OperationMetrics,
    Stats,
    StoreMetrics,
    ToolStats,
)
from agentkeep.models.tool_calls import (
    TOOL_CALL_TERMINAL,
    TOOL_CALL_TRANSITIONS,
    Approval,
    ToolCall,
    ToolCallState,
)
from agentkeep.models.usage import CostSource, LLMUsage, Price, RecomputeReport, UsageRollup

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "BLOCK_TYPES",
    "CHANNELS",
    "EVENT_TYPES",
    "RESPONSE_STATUSES",
    "ROLES",
    "RUN_TRANSITIONS",
    "TERMINAL_RESPONSE_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "TOOL_CALL_TERMINAL",
    "TOOL_CALL_TRANSITIONS",
    "Agent",
    "Approval",
    "Backup",
    "BackupCheck",
    "Channel",
    "CompressionConfig",
    "CompressionRecord",
    "ConsistencyIssue",
    "ConsistencyReport",
    "CostSource",
    "ErasureReceipt",
    "Event",
    "Health",
    "HistoryStats",
    "HistoryWindow",
    "JSONValue",
    "LLMUsage",
    "MediaCacheRecord",
    "Message",
    "NewMessage",
    "OperationMetrics",
    "Order",
    "Page",
    "Price",
    "RateLimitHit",
    "RecomputeReport",
    "RecoveredFile",
    "ResponseEvent",
    "ResponseStatus",
    "Role",
    "Run",
    "RunStatus",
    "RunStep",
    "Session",
    "Snapshot",
    "StateDoc",
    "Stats",
    "StepStatus",
    "StepType",
    "StoreMetrics",
    "StoredResponse",
    "ToolCall",
    "ToolCallState",
    "ToolStats",
    "UsageRollup",
]
