"""A LangGraph checkpointer over an agentkeep store.

    from agentkeep.integrations.langgraph import AgentkeepSaver
    graph = builder.compile(checkpointer=AgentkeepSaver(agentkeep.connect()))

Sync and async (``ainvoke``/``astream``), on memory, SQLite and PostgreSQL,
with ``delete_thread``, ``copy_thread``, ``prune`` and ``delete_for_runs``.
Each step stores only the channels it changed; a list channel that grew (the
messages of a conversation) is stored as the items the step appended, so a
turn costs the same at message 10 and at message 10,000. Needs
``pip install 'agentkeep[langgraph]'``.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from agentkeep.integrations._extra import require

require("langgraph.checkpoint.base", "langgraph")

from langchain_core.runnables import RunnableConfig  # noqa: E402
from langgraph.checkpoint.base import (  # noqa: E402
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol  # noqa: E402

from agentkeep.aio import AsyncStore  # noqa: E402
from agentkeep.errors import NotFound  # noqa: E402
from agentkeep.store import Store  # noqa: E402
from agentkeep.store.checkpoints import (  # noqa: E402
    Blob,
    ChannelBlob,
    PendingWrite,
    StoredCheckpoint,
)

__all__ = ["AgentkeepSaver"]

_PAGE = 100
_CACHED_LISTS = 1024  # list channels remembered per saver, to store what a step appended


class _ListCache:
    """The last stored value of each list channel: (thread, ns, channel) -> (version, items).

    A copy of the items, so a reducer that extends its list in place cannot
    change what we compare against.
    """

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str, str], tuple[str, list[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> tuple[str, list[Any]] | None:
        with self._lock:
            return self._items.get(key)

    def set(self, key: tuple[str, str, str], version: str, value: list[Any]) -> None:
        with self._lock:
            self._items[key] = (version, list(value))
            self._items.move_to_end(key)
            while len(self._items) > _CACHED_LISTS:
                self._items.popitem(last=False)

    def drop_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == thread_id]:
                del self._items[key]


class AgentkeepSaver(BaseCheckpointSaver[str]):
    """LangGraph's ``BaseCheckpointSaver`` on ``store.checkpoints``.

    ``store``: a :class:`agentkeep.Store` or :class:`agentkeep.AsyncStore`;
    checkpoints belong to its tenant. ``serde``: LangGraph's serializer
    (default: its JsonPlusSerializer).
    """

    def __init__(
        self, store: Store | AsyncStore, *, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(serde=serde)
        self.store: Store = store.sync if isinstance(store, AsyncStore) else store
        self._lists = _ListCache()

    # --- writes -----------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        saved: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = saved.pop("channel_values")
        meta = get_serializable_checkpoint_metadata(config, metadata)
        store_put = functools.partial(
            self.store.checkpoints.put,
            thread_id,
            ns,
            checkpoint["id"],
            checkpoint=Blob(*self.serde.dumps_typed(saved)),
            metadata=Blob(*self.serde.dumps_typed(meta)),
            channel_versions={ch: str(v) for ch, v in checkpoint["channel_versions"].items()},
            parent_checkpoint_id=conf.get("checkpoint_id"),
            run_id=str(meta["run_id"]) if meta.get("run_id") is not None else None,
        )
        blobs = [
            self._blob(thread_id, ns, ch, str(v), values, True) for ch, v in new_versions.items()
        ]
        try:
            store_put(blobs=blobs)
        except NotFound:
            # A base value is gone (its thread was deleted or pruned elsewhere): store in full.
            self._lists.drop_thread(thread_id)
            blobs = [
                self._blob(thread_id, ns, ch, str(v), values, False)
                for ch, v in new_versions.items()
            ]
            store_put(blobs=blobs)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _blob(
        self,
        thread_id: str,
        ns: str,
        channel: str,
        version: str,
        values: dict[str, Any],
        delta: bool,
    ) -> ChannelBlob:
        """A channel's new value: the appended items when it extends the last list we stored."""
        if channel not in values:
            return ChannelBlob(channel, version, Blob("empty", b""))
        value = values[channel]
        if type(value) is not list:
            return ChannelBlob(channel, version, Blob(*self.serde.dumps_typed(value)))
        key = (thread_id, ns, channel)
        last = self._lists.get(key) if delta else None
        self._lists.set(key, version, value)
        if last is not None and last[0] != version:
            n = len(last[1])
            if len(value) >= n and value[:n] == last[1]:
                appended = Blob(*self.serde.dumps_typed(value[n:]))
                return ChannelBlob(channel, version, appended, base_version=last[0])
        return ChannelBlob(channel, version, Blob(*self.serde.dumps_typed(value)))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        rows = [
            PendingWrite(
                task_id,
                WRITES_IDX_MAP.get(ch, idx),
                ch,
                Blob(*self.serde.dumps_typed(v)),
                task_path,
            )
            for idx, (ch, v) in enumerate(writes)
        ]
        self.store.checkpoints.put_writes(
            str(conf["thread_id"]),
            conf.get("checkpoint_ns", ""),
            conf["checkpoint_id"],
            rows,
            replace=all(ch in WRITES_IDX_MAP for ch, _ in writes),
        )

    # --- reads ------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        stored = self.store.checkpoints.get(
            str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config)
        )
        return None if stored is None else self._tuple(stored)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        thread_id = str(conf["thread_id"]) if conf.get("thread_id") is not None else None
        ns = conf.get("checkpoint_ns")
        found = self._matching(thread_id, ns, conf.get("checkpoint_id"), before, filter)
        for n, tup in enumerate(found):
            if limit is not None and n >= limit:
                return
            yield tup

    def _matching(
        self,
        thread_id: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        before: RunnableConfig | None,
        filter: dict[str, Any] | None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, read a page at a time, filtered by their metadata."""
        cursor = get_checkpoint_id(before) if before else None
        seen: set[tuple[str, str, str]] = set()
        checkpoints = self.store.checkpoints
        while True:
            page = checkpoints.list(
                thread_id, ns, checkpoint_id=checkpoint_id, before=cursor, limit=_PAGE
            )
            if len(page) == _PAGE and thread_id is None:
                # Ids repeat across threads (copy_thread): take the rest of the last id too.
                page += checkpoints.list(
                    None, ns, checkpoint_id=page[-1].checkpoint_id, limit=_PAGE
                )
            for stored in page:
                key = (stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id)
                if key in seen:
                    continue
                seen.add(key)
                tup = self._tuple(stored)
                if not filter or all(tup.metadata.get(k) == v for k, v in filter.items()):
                    yield tup
            if len(page) < _PAGE:
                return
            cursor = page[-1].checkpoint_id

    def _tuple(self, stored: StoredCheckpoint) -> CheckpointTuple:
        loads = self.serde.loads_typed
        values: dict[str, Any] = {}
        for channel, parts in stored.channels.items():
            if parts[0].type == "empty":
                continue
            value = loads(parts[0])
            for part in parts[1:]:
                value = value + loads(part)
            if type(value) is list:
                key = (stored.thread_id, stored.checkpoint_ns, channel)
                self._lists.set(key, stored.channel_versions[channel], value)
            values[channel] = value
        checkpoint = cast(Checkpoint, {**loads(stored.checkpoint), "channel_values": values})
        base = {"thread_id": stored.thread_id, "checkpoint_ns": stored.checkpoint_ns}
        parent = stored.parent_checkpoint_id
        return CheckpointTuple(
            config={"configurable": {**base, "checkpoint_id": stored.checkpoint_id}},
            checkpoint=checkpoint,
            metadata=loads(stored.metadata),
            parent_config={"configurable": {**base, "checkpoint_id": parent}} if parent else None,
            pending_writes=[(w.task_id, w.channel, loads(w.value)) for w in stored.writes],
        )

    # --- whole threads ------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        self._lists.drop_thread(str(thread_id))
        self.store.checkpoints.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.store.checkpoints.delete_for_runs([str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.store.checkpoints.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"strategy must be 'keep_latest' or 'delete', not {strategy!r}")
        threads = [str(t) for t in thread_ids]
        if strategy == "delete":
            for t in threads:
                self._lists.drop_thread(t)
        self.store.checkpoints.prune(threads, keep_latest=strategy == "keep_latest")

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``<counter>.<random>``: increasing, and unique across processes writing one thread."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # --- async: the same operations in a worker thread --------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for tup in found:
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
