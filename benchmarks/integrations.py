"""agentkeep's framework integrations as benchmark systems, beside the frameworks' own backends.

Each drives the framework the same way as its peer in ``benchmarks.systems``
(the same graph, session, history or service calls), with agentkeep underneath
instead of the framework's SQLite or PostgreSQL backend. SQLite runs at
durability ``full``, as the peers' SQLite does (synchronous=FULL).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from benchmarks.systems import (
    ADK,
    SYSTEMS,
    LangChainSQL,
    LangGraph,
    OpenAISQLite,
    SaverClock,
    System,
    SystemInfo,
)

__all__ = ["FACTORIES", "PAIRS"]


def _url(db: str) -> str:
    return db if db.startswith("postgresql") else f"sqlite:///{db}"


def _connect(db: str) -> Any:
    import agentkeep

    return agentkeep.connect(_url(db), auto_migrate=True, durability="full")


class AkLangGraph(LangGraph):
    """The peer's graph, compiled with ``AgentkeepSaver``."""

    async def open(self, db: str, *, create: bool) -> None:
        from agentkeep.integrations.langgraph import AgentkeepSaver

        await super().open(":memory:", create=True)  # builds the graph; its saver is replaced
        self.conn.close()
        self.store = _connect(db)
        saver = AgentkeepSaver(self.store)
        self.graph = self.graph.builder.compile(checkpointer=saver)
        self.clock = SaverClock(saver)
        self.conn = sqlite3.connect(":memory:")

    async def close(self) -> None:
        self.store.close()
        await super().close()


class AkOpenAI(OpenAISQLite):
    """``AgentkeepSession`` over an ``AsyncStore``; session objects are kept."""

    async def open(self, db: str, *, create: bool) -> None:
        from agentkeep import AsyncStore
        from agentkeep.integrations.openai_agents import AgentkeepSession

        self.store = _connect(db)
        self.astore = AsyncStore(self.store)
        self.cls = AgentkeepSession

    async def new_session(self, i: int) -> Any:
        return self.cls(f"s{i}_{uuid.uuid4().hex[:8]}", self.astore)

    async def close(self) -> None:
        self.store.close()


class AkLangChain(LangChainSQL):
    """``AgentkeepChatMessageHistory``; last n read by ``recent(n)`` (only those rows)."""

    async def open(self, db: str, *, create: bool) -> None:
        from agentkeep.integrations.langchain import AgentkeepChatMessageHistory

        self.store = _connect(db)
        self.cls = AgentkeepChatMessageHistory

    async def new_session(self, i: int) -> Any:
        return self.cls(f"s{i}_{uuid.uuid4().hex[:8]}", self.store)

    async def recent(self, session: Any, n: int) -> list[Any]:
        return list(session.recent(n))

    async def close(self) -> None:
        self.store.close()


class AkADK(ADK):
    """``AgentkeepSessionService``; the same events and reads as the peer."""

    async def open(self, db: str, *, create: bool) -> None:
        from agentkeep.integrations.adk import AgentkeepSessionService

        self.store = _connect(db)
        self.service = AgentkeepSessionService(self.store)

    async def close(self) -> None:
        self.store.close()


def _info(name: str, backend: str, label: str) -> SystemInfo:
    ref = "raw-sqlite-full" if backend == "sqlite" else "raw-pg"
    return SystemInfo(name, backend, "full", ref, "integration", label)


# integration system -> the framework's own backend it is measured against
PAIRS: dict[str, str] = {
    "ak-langgraph-sqlite": "langgraph-sqlite",
    "ak-langgraph-pg": "langgraph-pg",
    "ak-oa-sqlite": "oa-sqlite",
    "ak-oa-pg": "oa-sqla-pg",
    "ak-langchain-sqlite": "langchain-sqlite",
    "ak-langchain-pg": "langchain-pg",
    "ak-adk-sqlite": "adk-sqlite",
    "ak-adk-pg": "adk-pg",
}

FACTORIES: dict[str, type[System]] = {
    "ak-langgraph-sqlite": AkLangGraph,
    "ak-langgraph-pg": AkLangGraph,
    "ak-oa-sqlite": AkOpenAI,
    "ak-oa-pg": AkOpenAI,
    "ak-langchain-sqlite": AkLangChain,
    "ak-langchain-pg": AkLangChain,
    "ak-adk-sqlite": AkADK,
    "ak-adk-pg": AkADK,
}

_LABELS = {
    "langgraph": "AgentkeepSaver (LangGraph)",
    "oa": "AgentkeepSession (OpenAI Agents SDK)",
    "langchain": "AgentkeepChatMessageHistory (LangChain)",
    "adk": "AgentkeepSessionService (Google ADK)",
}

for _name in PAIRS:
    _framework, _backend = _name.split("-")[1], _name.rsplit("-", 1)[1]
    SYSTEMS[_name] = _info(
        _name, "sqlite" if _backend == "sqlite" else "postgresql", _LABELS[_framework]
    )
