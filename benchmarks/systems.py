"""The systems under test, each behind the same small async interface.

A system is opened on one database (a SQLite file path or a PostgreSQL URL)
and offers ``new_session``, ``append`` (one durable message), ``append_batch``,
``recent`` (last n messages, oldest first) and ``close``. Sync libraries are
called directly inside the coroutine (no thread hop); async libraries are
awaited. Peers are imported only when used (``pip install -e .[bench]``).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["ASYNC_PEERS", "SYSTEMS", "SystemInfo", "open_system"]

#: Peers whose API is async (compared with agentkeep's async API: async beside async).
ASYNC_PEERS = {"oa-sqlite", "oa-sqla-sqlite", "oa-sqla-pg", "adk-sqlite", "adk-pg"}


@dataclass(frozen=True)
class SystemInfo:
    name: str
    backend: str  # "sqlite" or "postgresql"
    durability: str  # what a commit survives: "normal" (process crash) or "full" (power loss)
    reference: str  # the raw system its ratios are taken against
    kind: str  # "raw", "agentkeep" or "peer"
    label: str


def _info(name: str, backend: str, durability: str, kind: str, label: str) -> SystemInfo:
    if backend == "sqlite":
        ref = "raw-sqlite-full" if durability == "full" else "raw-sqlite-normal"
    else:
        ref = "raw-pg"
    return SystemInfo(name, backend, durability, ref, kind, label)


SYSTEMS: dict[str, SystemInfo] = {
    s.name: s
    for s in [
        _info("raw-sqlite-normal", "sqlite", "normal", "raw", "sqlite3 WAL synchronous=NORMAL"),
        _info("raw-sqlite-full", "sqlite", "full", "raw", "sqlite3 WAL synchronous=FULL"),
        _info("raw-pg", "postgresql", "full", "raw", "psycopg 3, autocommit"),
        _info("agentkeep-sqlite-normal", "sqlite", "normal", "agentkeep", "agentkeep sync"),
        _info("agentkeep-sqlite-full", "sqlite", "full", "agentkeep", "agentkeep sync"),
        _info("agentkeep-async-sqlite-normal", "sqlite", "normal", "agentkeep", "agentkeep async"),
        _info("agentkeep-async-sqlite-full", "sqlite", "full", "agentkeep", "agentkeep async"),
        _info("agentkeep-pg", "postgresql", "full", "agentkeep", "agentkeep sync"),
        _info("agentkeep-async-pg", "postgresql", "full", "agentkeep", "agentkeep async"),
        _info(
            "agentkeep-history-sqlite-normal",
            "sqlite",
            "normal",
            "agentkeep",
            "agentkeep sync, W2 by history() (chat dicts)",
        ),
        _info(
            "agentkeep-history-pg",
            "postgresql",
            "full",
            "agentkeep",
            "agentkeep sync, W2 by history() (chat dicts)",
        ),
        _info("oa-sqlite", "sqlite", "full", "peer", "openai-agents SQLiteSession"),
        _info("oa-sqla-sqlite", "sqlite", "full", "peer", "openai-agents SQLAlchemySession"),
        _info("oa-sqla-pg", "postgresql", "full", "peer", "openai-agents SQLAlchemySession"),
        _info("langchain-sqlite", "sqlite", "full", "peer", "LangChain SQLChatMessageHistory"),
        _info("langchain-pg", "postgresql", "full", "peer", "LangChain SQLChatMessageHistory"),
        _info("langgraph-sqlite", "sqlite", "full", "peer", "LangGraph SqliteSaver"),
        _info("langgraph-pg", "postgresql", "full", "peer", "LangGraph PostgresSaver"),
        _info("adk-sqlite", "sqlite", "full", "peer", "Google ADK DatabaseSessionService"),
        _info("adk-pg", "postgresql", "full", "peer", "Google ADK DatabaseSessionService"),
    ]
}


class System:
    """One library on one database."""

    async def open(self, db: str, *, create: bool) -> None:
        """Connect; with ``create``, make the schema (the first process on a database)."""

    async def new_session(self, i: int) -> Any:
        raise NotImplementedError

    async def append(self, session: Any, role: str, text: str) -> None:
        raise NotImplementedError

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        for role, text in items:
            await self.append(session, role, text)

    async def recent(self, session: Any, n: int) -> list[Any]:
        raise NotImplementedError

    def own_time(self) -> tuple[float, float] | None:
        """Seconds spent so far inside the persistence layer's own calls (wall, CPU of
        the calling threads), where the framework calls it; None where not measured."""
        return None

    async def close(self) -> None:
        pass


# --- the limit: the drivers themselves ---------------------------------------------------


class RawSQLite(System):
    """stdlib sqlite3: the bare INSERT + COMMIT and SELECT on a minimal schema."""

    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous

    async def open(self, db: str, *, create: bool) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={self.synchronous}")
        if create:
            self.conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created_at REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS messages (
                    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id),
                    role TEXT NOT NULL, content TEXT NOT NULL, created_at REAL NOT NULL);
                CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, id);
                """
            )

    async def new_session(self, i: int) -> Any:
        sid = f"s{i}_{uuid.uuid4().hex[:8]}"
        self.conn.execute("INSERT INTO sessions VALUES (?, julianday('now'))", (sid,))
        return sid

    async def append(self, session: Any, role: str, text: str) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) VALUES (?, ?, ?, julianday('now'))",
            (session, role, text),
        )
        conn.execute("COMMIT")

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (session_id, role, content, created_at) VALUES (?, ?, ?, julianday('now'))",
            [(session, r, t) for r, t in items],
        )
        conn.execute("COMMIT")

    async def recent(self, session: Any, n: int) -> list[Any]:
        rows = self.conn.execute(
            "SELECT role, content FROM messages WHERE session_id = ? ORDER BY id DESC LIMIT ?",
            (session, n),
        ).fetchall()
        rows.reverse()
        return rows

    async def close(self) -> None:
        self.conn.close()


class RawPostgres(System):
    """psycopg 3 in autocommit: each INSERT is its own committed transaction (one round trip)."""

    async def open(self, db: str, *, create: bool) -> None:
        import psycopg

        self.conn = psycopg.connect(db, autocommit=True)
        if create:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (id BIGSERIAL PRIMARY KEY, "
                "session_id TEXT NOT NULL REFERENCES sessions(id), role TEXT NOT NULL, "
                "content TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            self.conn.execute(
                "CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, id)"
            )

    async def new_session(self, i: int) -> Any:
        sid = f"s{i}_{uuid.uuid4().hex[:8]}"
        self.conn.execute("INSERT INTO sessions (id) VALUES (%s)", (sid,))
        return sid

    async def append(self, session: Any, role: str, text: str) -> None:
        self.conn.execute(
            "INSERT INTO messages (session_id, role, content) VALUES (%s, %s, %s)",
            (session, role, text),
        )

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO messages (session_id, role, content) VALUES (%s, %s, %s)",
                [(session, r, t) for r, t in items],
            )

    async def recent(self, session: Any, n: int) -> list[Any]:
        rows = self.conn.execute(
            "SELECT role, content FROM messages WHERE session_id = %s ORDER BY id DESC LIMIT %s",
            (session, n),
        ).fetchall()
        rows.reverse()
        return rows

    async def close(self) -> None:
        self.conn.close()


# --- agentkeep ----------------------------------------------------------------------------


class Agentkeep(System):
    def __init__(self, durability: str) -> None:
        self.durability = durability

    async def open(self, db: str, *, create: bool) -> None:
        import agentkeep

        url = db if db.startswith("postgresql") else f"sqlite:///{db}"
        self.store = agentkeep.connect(url, auto_migrate=create, durability=self.durability)

    async def new_session(self, i: int) -> Any:
        return self.store.sessions.create().id

    async def append(self, session: Any, role: str, text: str) -> None:
        self.store.messages.append(session, role, text)

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        self.store.messages.append_many(session, [{"role": r, "content": t} for r, t in items])

    async def recent(self, session: Any, n: int) -> list[Any]:
        return self.store.messages.recent(session, n)

    async def close(self) -> None:
        self.store.close()


class AgentkeepHistory(Agentkeep):
    """W2 through ``messages.history()``: role and content as chat dicts, no Message objects.

    The read an agent loop makes to build its next prompt, and what the raw
    driver and openai-agents' ``get_items`` return; ``recent()`` (the
    ``agentkeep-*`` systems) builds a full :class:`Message` per row.
    """

    async def recent(self, session: Any, n: int) -> list[Any]:
        return self.store.messages.history(session, n)


class AgentkeepAsync(Agentkeep):
    async def open(self, db: str, *, create: bool) -> None:
        import agentkeep

        url = db if db.startswith("postgresql") else f"sqlite:///{db}"
        self.astore = await agentkeep.aconnect(url, auto_migrate=create, durability=self.durability)

    async def new_session(self, i: int) -> Any:
        return (await self.astore.sessions.create()).id

    async def append(self, session: Any, role: str, text: str) -> None:
        await self.astore.messages.append(session, role, text)

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        await self.astore.messages.append_many(
            session, [{"role": r, "content": t} for r, t in items]
        )

    async def recent(self, session: Any, n: int) -> list[Any]:
        return list(await self.astore.messages.recent(session, n))

    async def close(self) -> None:
        await self.astore.close()


# --- peers ----------------------------------------------------------------------------------


class OpenAISQLite(System):
    """openai-agents SQLiteSession; session objects are kept (its fastest use)."""

    async def open(self, db: str, *, create: bool) -> None:
        from agents import SQLiteSession

        self.cls = SQLiteSession
        self.db = db

    async def new_session(self, i: int) -> Any:
        return self.cls(f"s{i}_{uuid.uuid4().hex[:8]}", self.db)

    async def append(self, session: Any, role: str, text: str) -> None:
        await session.add_items([{"role": role, "content": text}])

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        await session.add_items([{"role": r, "content": t} for r, t in items])

    async def recent(self, session: Any, n: int) -> list[Any]:
        return list(await session.get_items(limit=n))


class OpenAISQLAlchemy(OpenAISQLite):
    """openai-agents SQLAlchemySession on one shared async engine."""

    async def open(self, db: str, *, create: bool) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        if db.startswith("postgresql"):
            url = db.replace("postgresql://", "postgresql+asyncpg://", 1)
        else:
            url = f"sqlite+aiosqlite:///{db}"
        self.engine = create_async_engine(url)
        self.cls = SQLAlchemySession
        self.create = create

    async def new_session(self, i: int) -> Any:
        # create_tables is lazy and idempotent: every process asks for it (W5's
        # children open the file after the parent, which may not have used it yet).
        return self.cls(f"s{i}_{uuid.uuid4().hex[:8]}", engine=self.engine, create_tables=True)

    async def close(self) -> None:
        await self.engine.dispose()


class LangChainSQL(System):
    """LangChain SQLChatMessageHistory (sync) on one shared engine; history objects kept."""

    async def open(self, db: str, *, create: bool) -> None:
        import sqlalchemy as sa
        from langchain_community.chat_message_histories import SQLChatMessageHistory

        url = (
            db.replace("postgresql://", "postgresql+psycopg://", 1)
            if db.startswith("postgresql")
            else f"sqlite:///{db}"
        )
        self.engine = sa.create_engine(url)
        self.cls = SQLChatMessageHistory

    async def new_session(self, i: int) -> Any:
        return self.cls(f"s{i}_{uuid.uuid4().hex[:8]}", connection=self.engine)

    @staticmethod
    def _msg(role: str, text: str) -> Any:
        from langchain_core.messages import AIMessage, HumanMessage

        return HumanMessage(content=text) if role == "user" else AIMessage(content=text)

    async def append(self, session: Any, role: str, text: str) -> None:
        session.add_message(self._msg(role, text))

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        session.add_messages([self._msg(r, t) for r, t in items])

    async def recent(self, session: Any, n: int) -> list[Any]:
        # Its API reads the whole history; the last n are sliced from it.
        return list(session.get_messages()[-n:])

    async def close(self) -> None:
        self.engine.dispose()


class SaverClock:
    """The time a LangGraph checkpointer spends in its calls: wall and the calling thread's CPU.

    LangGraph calls the saver from its own threads (checkpoints are saved in the
    background while the next step runs), so a call's wall time also holds the
    time it waited for the interpreter lock while the graph's own work ran; the
    thread's CPU time counts only the saver's work (and, on PostgreSQL, not the
    server's). The same clock wraps either side's saver.
    """

    METHODS = ("get_tuple", "list", "put", "put_writes")

    def __init__(self, saver: Any) -> None:
        self.wall = self.cpu = 0.0
        self._lock = threading.Lock()
        for name in self.METHODS:
            setattr(saver, name, self._timed(getattr(saver, name)))

    def _timed(self, method: Any) -> Any:
        @functools.wraps(method)  # LangGraph inspects put_writes' signature
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                with self._lock:
                    self.wall += wall
                    self.cpu += cpu

        return timed


class LangGraph(System):
    """A StateGraph over MessagesState whose one node appends the turn's message(s)."""

    async def open(self, db: str, *, create: bool) -> None:
        from langgraph.graph import END, START, MessagesState, StateGraph

        if db.startswith("postgresql"):
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row

            self.conn: Any = psycopg.connect(
                db, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            saver: Any = PostgresSaver(self.conn)
        else:
            from langgraph.checkpoint.sqlite import SqliteSaver

            self.conn = sqlite3.connect(db, check_same_thread=False, timeout=30)
            saver = SqliteSaver(self.conn)
        if create:
            saver.setup()

        from langchain_core.runnables import RunnableConfig

        def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
            return {"messages": config["configurable"]["new"]}

        # Real objects, not this module's postponed annotation strings: LangGraph
        # passes the config only to a node whose parameter is typed RunnableConfig.
        node.__annotations__ = {"state": MessagesState, "config": RunnableConfig, "return": dict}

        graph = StateGraph(MessagesState)
        graph.add_node("append", node)
        graph.add_edge(START, "append")
        graph.add_edge("append", END)
        self.graph = graph.compile(checkpointer=saver)
        self.clock = SaverClock(saver)

    def own_time(self) -> tuple[float, float] | None:
        return self.clock.wall, self.clock.cpu

    async def new_session(self, i: int) -> Any:
        return f"s{i}_{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _msg(role: str, text: str) -> Any:
        from langchain_core.messages import AIMessage, HumanMessage

        return HumanMessage(content=text) if role == "user" else AIMessage(content=text)

    async def append_batch(self, session: Any, items: list[tuple[str, str]]) -> None:
        new = [self._msg(r, t) for r, t in items]
        self.graph.invoke({"messages": []}, {"configurable": {"thread_id": session, "new": new}})

    async def append(self, session: Any, role: str, text: str) -> None:
        await self.append_batch(session, [(role, text)])

    async def recent(self, session: Any, n: int) -> list[Any]:
        state = self.graph.get_state({"configurable": {"thread_id": session}})
        return list(state.values.get("messages", [])[-n:])

    async def close(self) -> None:
        self.conn.close()


class ADK(System):
    """Google ADK DatabaseSessionService; a message is an event appended to the session."""

    async def open(self, db: str, *, create: bool) -> None:
        from google.adk.sessions import DatabaseSessionService

        if db.startswith("postgresql"):
            url = db.replace("postgresql://", "postgresql+asyncpg://", 1)
        else:
            url = f"sqlite+aiosqlite:///{db}"
        self.service = DatabaseSessionService(db_url=url)

    async def new_session(self, i: int) -> Any:
        return await self.service.create_session(
            app_name="bench", user_id="u", session_id=f"s{i}_{uuid.uuid4().hex[:8]}"
        )

    async def append(self, session: Any, role: str, text: str) -> None:
        from google.adk.events import Event
        from google.genai import types

        event = Event(
            author="user" if role == "user" else "model",
            invocation_id="inv",
            content=types.Content(
                role="user" if role == "user" else "model", parts=[types.Part(text=text)]
            ),
        )
        await self.service.append_event(session, event)

    async def recent(self, session: Any, n: int) -> list[Any]:
        from google.adk.sessions.base_session_service import GetSessionConfig

        got = await self.service.get_session(
            app_name="bench",
            user_id="u",
            session_id=session.id,
            config=GetSessionConfig(num_recent_events=n),
        )
        return list(got.events if got is not None else [])

    async def close(self) -> None:
        close = getattr(self.service, "close", None)
        if close is not None:
            await close()
        else:
            await self.service.db_engine.dispose()


def open_system(name: str) -> System:
    """A fresh, unopened instance of the named system."""
    factories: dict[str, Any] = {
        "raw-sqlite-normal": lambda: RawSQLite("NORMAL"),
        "raw-sqlite-full": lambda: RawSQLite("FULL"),
        "raw-pg": RawPostgres,
        "agentkeep-sqlite-normal": lambda: Agentkeep("normal"),
        "agentkeep-sqlite-full": lambda: Agentkeep("full"),
        "agentkeep-async-sqlite-normal": lambda: AgentkeepAsync("normal"),
        "agentkeep-async-sqlite-full": lambda: AgentkeepAsync("full"),
        "agentkeep-pg": lambda: Agentkeep("normal"),
        "agentkeep-async-pg": lambda: AgentkeepAsync("normal"),
        "agentkeep-history-sqlite-normal": lambda: AgentkeepHistory("normal"),
        "agentkeep-history-pg": lambda: AgentkeepHistory("normal"),
        "oa-sqlite": OpenAISQLite,
        "oa-sqla-sqlite": OpenAISQLAlchemy,
        "oa-sqla-pg": OpenAISQLAlchemy,
        "langchain-sqlite": LangChainSQL,
        "langchain-pg": LangChainSQL,
        "langgraph-sqlite": LangGraph,
        "langgraph-pg": LangGraph,
        "adk-sqlite": ADK,
        "adk-pg": ADK,
    }
    if name not in factories:  # the framework integrations (benchmarks/integrations.py)
        from benchmarks.integrations import FACTORIES

        return FACTORIES[name]()
    return factories[name]()  # type: ignore[no-any-return]
