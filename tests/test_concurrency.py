"""Concurrent appends to one session: unique gapless seq, no error reaches the caller.

Several processes (released at the same instant) on one SQLite file, at each
durability, and on PostgreSQL; several threads in one process on every
backend; idempotent appends racing with the same key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _multiproc import run_together
from _threads import in_threads

import agentkeep
from agentkeep import Message, Store

PROCESSES = 4
APPENDS_PER_PROCESS = 60
THREADS = 8
APPENDS_PER_THREAD = 25


@pytest.fixture(params=["sqlite-normal", "sqlite-full", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database that several processes share (durability in the URL's param)."""
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/shared.db"
    server: Any = request.getfixturevalue("postgres_server")
    url = str(server.new_database())
    agentkeep.connect(url, auto_migrate=True).close()
    return url


@pytest.fixture
def durability(request: pytest.FixtureRequest) -> str:
    param = str(request.node.callspec.params["shared_url"])
    return "full" if param.endswith("full") else "normal"


_APPEND = """
import agentkeep

def work(arg):
    store = agentkeep.connect(arg["url"], durability=arg["durability"]).tenant(arg["tenant"])
    out = []
    for j in range(arg["n"]):
        m = store.messages.append(arg["session"], "user", f"p{arg['p']}-{j}")
        out.append([m.id, m.seq, j])
    store.close()
    return out
"""

_IDEMPOTENT = """
import agentkeep

def work(arg):
    store = agentkeep.connect(arg["url"], durability=arg["durability"]).tenant(arg["tenant"])
    ids = []
    for key in arg["keys"]:
        m = store.messages.append(arg["session"], "user", f"from {arg['p']}", idempotency_key=key)
        ids.append([key, m.id, m.seq])
    store.close()
    return ids
"""


def _check_gapless(store: Store, session_id: str, total: int) -> list[Message]:
    messages = list(store.messages.list(session_id, limit=1000).items)
    assert [m.seq for m in messages] == list(range(1, total + 1))
    assert len({m.id for m in messages}) == total
    session = store.sessions.get(session_id)
    assert (session.message_count, session.last_seq) == (total, total)
    return messages


def test_processes_appending_to_one_session(
    shared_url: str, durability: str, tmp_path: Path
) -> None:
    tenant = "concurrency"
    with agentkeep.connect(shared_url, tenant=tenant) as store:
        session = store.sessions.create(title="raced")
    args = [
        {
            "url": shared_url,
            "durability": durability,
            "tenant": tenant,
            "session": session.id,
            "p": p,
            "n": APPENDS_PER_PROCESS,
        }
        for p in range(PROCESSES)
    ]
    results = run_together(_APPEND, args, tmp_path / "procs")
    total = PROCESSES * APPENDS_PER_PROCESS
    acknowledged = {mid: seq for result in results for mid, seq, _ in result}
    assert len(acknowledged) == total
    assert sorted(acknowledged.values()) == list(range(1, total + 1))
    for result in results:  # each process sees its own appends in increasing order
        seqs = [seq for _, seq, _ in result]
        assert seqs == sorted(seqs)
    with agentkeep.connect(shared_url, tenant=tenant) as store:
        messages = _check_gapless(store, session.id, total)
    assert {m.id: m.seq for m in messages} == acknowledged
    for p in range(PROCESSES):
        own = [m.text for m in messages if m.text.startswith(f"p{p}-")]
        assert own == [f"p{p}-{j}" for j in range(APPENDS_PER_PROCESS)]


def test_processes_racing_with_the_same_idempotency_key(
    shared_url: str, durability: str, tmp_path: Path
) -> None:
    tenant = "idempotency"
    with agentkeep.connect(shared_url, tenant=tenant) as store:
        session = store.sessions.create()
    keys = [f"key-{k}" for k in range(20)]
    args = [
        {
            "url": shared_url,
            "durability": durability,
            "tenant": tenant,
            "session": session.id,
            "p": p,
            "keys": keys,
        }
        for p in range(PROCESSES)
    ]
    results = run_together(_IDEMPOTENT, args, tmp_path / "procs")
    for key_index in range(len(keys)):
        answers = {tuple(result[key_index][1:]) for result in results}
        assert len(answers) == 1, f"{keys[key_index]} gave {answers}"
    with agentkeep.connect(shared_url, tenant=tenant) as store:
        _check_gapless(store, session.id, len(keys))


def test_threads_appending_to_one_session(store: Store) -> None:
    session = store.sessions.create()

    def append(i: int) -> list[int]:
        return [
            store.messages.append(session.id, "user", f"t{i}-{j}").seq
            for j in range(APPENDS_PER_THREAD)
        ]

    results = in_threads(THREADS, append)
    total = THREADS * APPENDS_PER_THREAD
    assert sorted(seq for seqs in results for seq in seqs) == list(range(1, total + 1))
    assert all(seqs == sorted(seqs) for seqs in results)
    _check_gapless(store, session.id, total)


def test_threads_racing_with_the_same_idempotency_key(store: Store) -> None:
    session = store.sessions.create()
    results = in_threads(
        THREADS,
        lambda i: (
            store.messages.append(
                session.id, "assistant", f"from thread {i}", idempotency_key="once"
            ).id
        ),
    )
    assert len(set(results)) == 1
    _check_gapless(store, session.id, 1)


def test_threads_appending_to_many_sessions(store: Store) -> None:
    sessions = [store.sessions.create() for _ in range(THREADS)]

    def append(i: int) -> None:
        for j in range(10):
            store.messages.append(sessions[(i + j) % THREADS].id, "user", f"{i}-{j}")

    in_threads(THREADS, append)
    for s in sessions:
        _check_gapless(store, s.id, 10)
