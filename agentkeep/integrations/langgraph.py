"""A LangGraph checkpointer (and long-term memory store) over an agentkeep store.

    from agentkeep.integrations.langgraph import AgentkeepSaver, AgentkeepStore
    graph = builder.compile(
        checkpointer=AgentkeepSaver(agentkeep.connect()),
        store=AgentkeepStore(agentkeep.connect()),  # see langgraph_store
    )

Sync and async (``ainvoke``/``astream``), on memory, SQLite and PostgreSQL,
with ``delete_thread``, ``copy_thread``, ``prune`` and ``delete_for_runs``.
Each step stores only the channels it changed; a list channel that grew (the
messages of a conversation) is stored as the items appended since an earlier
value of its chain (value ``n`` after value ``n & (n - 1)``), so a turn writes
a few steps' items and a read from the database touches at most 13 rows per
channel, at message 10 and at message 10,000. The saver keeps the newest
value of each list channel it wrote or read, and of each other channel it
read (1,024 channels), so the next turn of a thread reads only the
checkpoint row (with its writes, one statement on PostgreSQL), not the
messages. Needs
``pip install 'agentkeep[langgraph]'``.
"""

from __future__ import annotations

import builtins
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, NamedTuple, cast

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
from agentkeep.integrations._apis import sync_and_async  # noqa: E402
from agentkeep.integrations.langgraph_store import AgentkeepStore  # noqa: E402
from agentkeep.store import Store  # noqa: E402
from agentkeep.store._steps import Op, operation  # noqa: E402
from agentkeep.store.checkpoints import (  # noqa: E402
    Blob,
    ChannelBlob,
    PendingWrite,
    StoredCheckpoint,
    ValuePart,
)

__all__ = ["AgentkeepSaver", "AgentkeepStore"]

_PAGE = 100
_CACHED_LISTS = (
    1024  # channels remembered per saver (a list's items: to store what a step appended)
)
_CACHED_BYTES = 64 * 1024  # a channel value that is not a list is remembered up to this size
_MAX_SEQ = 1 << 12  # a chain restarts with a full value after this many deltas


class _Link(NamedTuple):
    """A stored value of a list channel's chain: its number, version and item count."""

    seq: int
    version: str
    length: int


class _Tip(NamedTuple):
    """The newest value of a list channel we stored or read, with the chain behind it.

    ``path``: the values a delta after this one may be based on, the full one
    first: the value numbered ``seq``, ``seq & (seq - 1)``, ... down to 0.
    """

    version: str
    items: list[Any]
    path: tuple[_Link, ...]


def _next_link(tip: _Tip, length: int, version: str) -> tuple[_Link, _Link] | None:
    """The base and the new link of the next delta (a Fenwick tree), or None: store in full.

    Value ``n`` holds the items appended since value ``n & (n - 1)``: reading
    it walks at most one row per set bit of ``n``, and a write carries on
    average a few steps' items however long the thread is.
    """
    if not tip.path or tip.path[-1].seq + 1 >= _MAX_SEQ:
        return None
    seq = tip.path[-1].seq + 1
    base_seq = seq & (seq - 1)
    base = next((link for link in tip.path if link.seq == base_seq), None)
    return None if base is None else (base, _Link(seq, version, length))


class _Value(NamedTuple):
    """The newest stored value of a channel that is not a list: its version and bytes."""

    version: str
    blob: Blob


class _ListCache:
    """The last stored value of each channel: (thread, ns, channel) -> its tip.

    A list channel's tip keeps a copy of the items, so a reducer that extends
    its list in place cannot change what we compare against or hand out; other
    channels keep their serialized value as stored (up to ``_CACHED_BYTES``):
    read from the database, or written by a put that stored every one of its
    values (a put keeps a value already stored at its version), decoded anew
    for each reader. Values at a
    (channel, version) never change, so a reader may take a cached one instead
    of the stored rows.
    """

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str, str], _Tip | _Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> _Tip | None:
        with self._lock:
            tip = self._items.get(key)
            return tip if type(tip) is _Tip else None

    def has(self, thread_id: str, ns: str, channel: str, version: str) -> bool:
        with self._lock:
            tip = self._items.get((thread_id, ns, channel))
            return tip is not None and tip.version == version

    def items(self, key: tuple[str, str, str], version: str) -> list[Any] | None:
        """A copy of the cached items of ``key`` at ``version``, if that is what we hold."""
        with self._lock:
            tip = self._items.get(key)
            if type(tip) is not _Tip or tip.version != version:
                return None
            self._items.move_to_end(key)
            return list(tip.items)

    def blob(self, key: tuple[str, str, str], version: str) -> Blob | None:
        """The cached serialized value of a channel that is not a list, at ``version``."""
        with self._lock:
            tip = self._items.get(key)
            if type(tip) is not _Value or tip.version != version:
                return None
            self._items.move_to_end(key)
            return tip.blob

    def set(self, key: tuple[str, str, str], tip: _Tip) -> None:
        self._put(key, tip._replace(items=list(tip.items)))

    def set_blob(self, key: tuple[str, str, str], version: str, blob: Blob) -> None:
        if len(blob.data) <= _CACHED_BYTES:
            self._put(key, _Value(version, blob))

    def _put(self, key: tuple[str, str, str], tip: _Tip | _Value) -> None:
        with self._lock:
            self._items[key] = tip
            self._items.move_to_end(key)
            while len(self._items) > _CACHED_LISTS:
                self._items.popitem(last=False)

    def drop_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == thread_id]:
                del self._items[key]


class _Held:
    """The ``have`` of a read: which values it told the store not to read."""

    def __init__(self, cache: _ListCache) -> None:
        self.cache = cache
        self.skipped: set[tuple[str, str, str, str]] = set()

    def __call__(self, thread_id: str, ns: str, channel: str, version: str) -> bool:
        if self.cache.has(thread_id, ns, channel, version):
            self.skipped.add((thread_id, ns, channel, version))
            return True
        return False


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
        self.store, self.astore = sync_and_async(store)
        self._lists = _ListCache()

    # --- writes -----------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.store._core.run_op(self._put(config, checkpoint, metadata, new_versions))

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Op[RunnableConfig]:
        """``put`` and ``aput``, as one store operation (``store._steps``): the checkpoint
        and its new values (list channels as deltas), in full if a delta's base is gone."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        saved: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = saved.pop("channel_values")
        meta = get_serializable_checkpoint_metadata(config, metadata)
        checkpoints = self.store.checkpoints
        stored_checkpoint = Blob(*self.serde.dumps_typed(saved))
        stored_metadata = Blob(*self.serde.dumps_typed(meta))
        versions = {ch: str(v) for ch, v in checkpoint["channel_versions"].items()}
        run_id = str(meta["run_id"]) if meta.get("run_id") is not None else None

        def store_put(blobs: list[ChannelBlob]) -> Op[bool]:
            return operation(
                checkpoints.put,
                thread_id,
                ns,
                checkpoint["id"],
                checkpoint=stored_checkpoint,
                metadata=stored_metadata,
                channel_versions=versions,
                blobs=blobs,
                parent_checkpoint_id=conf.get("checkpoint_id"),
                run_id=run_id,
            )

        blobs = [
            self._blob(thread_id, ns, ch, str(v), values, True) for ch, v in new_versions.items()
        ]
        try:
            all_new = yield from store_put(blobs)
        except NotFound:
            # A base value is gone (its thread was deleted or pruned elsewhere): store in full.
            self._lists.drop_thread(thread_id)
            blobs = [
                self._blob(thread_id, ns, ch, str(v), values, False)
                for ch, v in new_versions.items()
            ]
            all_new = yield from store_put(blobs)
        if all_new:  # the stored values are these: remember those that are not lists
            for blob in blobs:
                if type(values.get(blob.channel)) is not list:
                    self._lists.set_blob((thread_id, ns, blob.channel), blob.version, blob.value)
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
        """A channel's new value: the items appended since a base when it extends the last list."""
        if channel not in values:
            return ChannelBlob(channel, version, Blob("empty", b""))
        value = values[channel]
        if type(value) is not list:
            return ChannelBlob(channel, version, Blob(*self.serde.dumps_typed(value)))
        key = (thread_id, ns, channel)
        last = self._lists.get(key) if delta else None
        if last is not None and last.version == version:
            return ChannelBlob(channel, version, Blob(*self.serde.dumps_typed(value)))
        if last is not None:
            n = len(last.items)
            step = _next_link(last, len(value), version)
            if step is not None and len(value) >= n and value[:n] == last.items:
                base, link = step
                path = (*(p for p in last.path if p.seq <= base.seq), link)
                self._lists.set(key, _Tip(version, value, path))
                appended = Blob(*self.serde.dumps_typed(value[base.length :]))
                return ChannelBlob(
                    channel, version, appended, base_version=base.version, seq=link.seq
                )
        self._lists.set(key, _Tip(version, value, (_Link(0, version, len(value)),)))
        return ChannelBlob(channel, version, Blob(*self.serde.dumps_typed(value)), seq=0)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        args, replace = self._writes(config, writes, task_id, task_path)
        self.store.checkpoints.put_writes(*args, replace=replace)

    def _writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[tuple[str, str, str, list[PendingWrite]], bool]:
        """``store.checkpoints.put_writes``'s arguments, and its ``replace``."""
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
        args = (str(conf["thread_id"]), conf.get("checkpoint_ns", ""), conf["checkpoint_id"], rows)
        return args, all(ch in WRITES_IDX_MAP for ch, _ in writes)

    # --- reads ------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.store._core.run_op(self._get_tuple(config))

    def _get_tuple(self, config: RunnableConfig) -> Op[CheckpointTuple | None]:
        """``get_tuple`` and ``aget_tuple``, as one store operation."""
        conf = config["configurable"]
        held = _Held(self._lists)
        checkpoints = self.store.checkpoints
        stored = yield from operation(
            checkpoints.get,
            str(conf["thread_id"]),
            conf.get("checkpoint_ns", ""),
            get_checkpoint_id(config),
            have=held,
        )
        if stored is None:
            return None
        return (yield from self._tuple(stored, held))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        walk = self._walk(config, filter, before, limit)
        checkpoints, run_op = self.store.checkpoints, self.store._core.run_op
        sent: Any = None
        while True:
            try:
                step = walk.send(sent)
            except StopIteration:
                return
            if type(step) is dict:  # a page to read
                sent = checkpoints.list(**step)
            elif type(step) is CheckpointTuple:
                sent = None
                yield step
            else:  # a checkpoint's tuple to build (an operation)
                sent = run_op(step)

    def _walk(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Generator[Any, Any, None]:
        """``list`` and ``alist``: the checkpoints newest first, a page at a time, as tuples
        whose metadata matches ``filter``, at most ``limit`` of them.

        Yields, for its driver to carry out: the arguments of each
        ``checkpoints.list`` call (a dict; send back its page), the operation that
        builds a checkpoint's tuple (send back the tuple), and each tuple to give out.
        """
        held = _Held(self._lists)
        conf = config["configurable"] if config else {}
        thread_id = str(conf["thread_id"]) if conf.get("thread_id") is not None else None
        ns, checkpoint_id = conf.get("checkpoint_ns"), conf.get("checkpoint_id")
        cursor = get_checkpoint_id(before) if before else None
        seen: set[tuple[str, str, str]] = set()
        given = 0
        if limit is not None and limit <= 0:
            return
        while True:
            page: list[StoredCheckpoint] = yield {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
                "before": cursor,
                "limit": _PAGE,
                "have": held,
            }
            if len(page) == _PAGE and thread_id is None:
                # Ids repeat across threads (copy_thread): take the rest of the last id too.
                page = page + (
                    yield {
                        "thread_id": None,
                        "checkpoint_ns": ns,
                        "checkpoint_id": page[-1].checkpoint_id,
                        "limit": _PAGE,
                        "have": held,
                    }
                )
            for stored in page:
                key = (stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id)
                if key in seen:
                    continue
                seen.add(key)
                tup: CheckpointTuple = yield self._tuple(stored, held)
                if filter and any(tup.metadata.get(k) != v for k, v in filter.items()):
                    continue
                yield tup
                given += 1
                if limit is not None and given >= limit:
                    return
            if len(page) < _PAGE:
                return
            cursor = page[-1].checkpoint_id

    def _tuple(self, stored: StoredCheckpoint, held: _Held) -> Op[CheckpointTuple]:
        """The tuple of a stored checkpoint; a value the read skipped (``held``) and the
        cache has dropped since is read again (an operation: on the caller's API)."""
        loads = self.serde.loads_typed
        checkpoints = self.store.checkpoints
        values: dict[str, Any] = {}
        for channel, version in stored.channel_versions.items():
            key = (stored.thread_id, stored.checkpoint_ns, channel)
            parts = stored.channels.get(channel)
            if parts is None:
                if (*key, version) not in held.skipped:
                    continue  # no value stored at this version
                cached = self._lists.items(key, version)  # dropped since? then read it
                if cached is not None:
                    values[channel] = cached
                    continue
                blob = self._lists.blob(key, version)
                if blob is not None:
                    if blob.type != "empty":
                        values[channel] = loads(blob)
                    continue
                again = yield from operation(
                    checkpoints.get, stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id
                )
                parts = again.channels.get(channel) if again is not None else None
                if parts is None:
                    continue
            if parts[0].value.type == "empty":
                continue
            value = self._value(key, version, parts)
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

    def _value(self, key: tuple[str, str, str], version: str, parts: Sequence[ValuePart]) -> Any:
        """A channel's value from its stored parts; a list is remembered with its chain."""
        loads = self.serde.loads_typed
        value = loads(parts[0].value)
        if type(value) is not list:
            if len(parts) == 1:
                self._lists.set_blob(key, version, parts[0].value)
            for part in parts[1:]:
                value = value + loads(part.value)
            return value
        path: list[_Link] = []
        numbered = parts[0].seq == 0
        for n, part in enumerate(parts):
            if n:
                value.extend(loads(part.value))
            numbered = numbered and part.seq is not None
            if numbered:
                path.append(_Link(cast(int, part.seq), part.version, len(value)))
        tip = _Tip(version, value, tuple(path) if numbered else ())
        current = self._lists.get(key)
        if current is None or len(current.items) <= len(value):  # keep the newest (longest)
            self._lists.set(key, tip)
        return list(value)

    # --- whole threads ------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        self._lists.drop_thread(str(thread_id))
        self.store.checkpoints.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.store.checkpoints.delete_for_runs([str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.store.checkpoints.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        threads = self._pruned(thread_ids, strategy)
        self.store.checkpoints.prune(threads, keep_latest=strategy == "keep_latest")

    def _pruned(self, thread_ids: Sequence[str], strategy: str) -> builtins.list[str]:
        """The threads ``prune`` works on, checked; those it deletes are dropped from the cache."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"strategy must be 'keep_latest' or 'delete', not {strategy!r}")
        threads = [str(t) for t in thread_ids]
        if strategy == "delete":
            for t in threads:
                self._lists.drop_thread(t)
        return threads

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``<counter>.<random>``: increasing, and unique across processes writing one thread."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # --- async: on the store's async API -------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.store._core.arun_op(self._get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """As ``list``, a page read at a time (the store's async API), never all at once."""
        walk = self._walk(config, filter, before, limit)
        checkpoints, arun_op = self.astore.checkpoints, self.store._core.arun_op
        sent: Any = None
        while True:
            try:
                step = walk.send(sent)
            except StopIteration:
                return
            if type(step) is dict:  # a page to read
                sent = await checkpoints.list(**step)
            elif type(step) is CheckpointTuple:
                sent = None
                yield step
            else:  # a checkpoint's tuple to build (an operation)
                sent = await arun_op(step)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self.store._core.arun_op(self._put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        args, replace = self._writes(config, writes, task_id, task_path)
        await self.astore.checkpoints.put_writes(*args, replace=replace)

    async def adelete_thread(self, thread_id: str) -> None:
        self._lists.drop_thread(str(thread_id))
        await self.astore.checkpoints.delete_thread(str(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.astore.checkpoints.delete_for_runs([str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.astore.checkpoints.copy_thread(str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        threads = self._pruned(thread_ids, strategy)
        await self.astore.checkpoints.prune(threads, keep_latest=strategy == "keep_latest")
