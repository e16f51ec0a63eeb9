"""The schema, declared once for SQLite and PostgreSQL.

Every table carries ``tenant_id`` and every primary and unique key starts with
it. Times are integer microseconds since the Unix epoch (UTC); costs are integer
nano-dollars (exact sums on both backends; NULL means unknown). JSON columns
are JSONB on PostgreSQL. Alembic revisions (``migrations/``) are the only way
this schema reaches a database; a test checks that head matches this file.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["metadata"]

JSON = sa.JSON().with_variant(JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), nullable=False)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(64), nullable=False)


def _micros(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, JSON, nullable=nullable)


agents = sa.Table(
    "agents",
    metadata,
    _tenant(),
    _id(),
    sa.Column("name", sa.String(256)),
    sa.Column("description", sa.Text()),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("instructions", sa.Text()),
    _json("tools"),
    _json("metadata"),
    _json("extra"),
    sa.Column("version", sa.Integer(), nullable=False),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "created_at"),
)

# Earlier versions of each agent: the agent's row as it was before each change
# (the current version is the agents row itself). Deleting the agent deletes them.
agent_versions = sa.Table(
    "agent_versions",
    metadata,
    _tenant(),
    _id(),
    sa.Column("name", sa.String(256)),
    sa.Column("description", sa.Text()),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("instructions", sa.Text()),
    _json("tools"),
    _json("metadata"),
    _json("extra"),
    sa.Column("version", sa.Integer(), nullable=False),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id", "version"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "id"], ["agents.tenant_id", "agents.id"], ondelete="CASCADE"
    ),
)

sessions = sa.Table(
    "sessions",
    metadata,
    _tenant(),
    _id(),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("agent_id", sa.String(64)),
    sa.Column("user_id", sa.String(256)),
    sa.Column("title", sa.Text()),
    _json("metadata"),
    _json("traits"),
    _json("state"),
    _json("extra"),
    sa.Column("parent_id", sa.String(64)),
    sa.Column("fork_seq", sa.BigInteger()),
    sa.Column("message_count", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    _micros("last_activity_at"),
    sa.Column("version", sa.Integer(), nullable=False),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "kind", "id"),
    sa.Index(None, "tenant_id", "agent_id", "id"),
    sa.Index(None, "tenant_id", "user_id", "id"),
    # The dashboard's sessions list (sort="created_at", newest first).
    sa.Index(None, "tenant_id", "created_at"),
    # No index on last_activity_at: every append rewrites it, and an index
    # entry per append costs more than the activity filter it would serve.
)

_session_fk = sa.ForeignKeyConstraint(
    ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
)

messages = sa.Table(
    "messages",
    metadata,
    _tenant(),
    _id(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    _json("content"),
    sa.Column("content_types", sa.String(256), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("agent_id", sa.String(64)),
    sa.Column("idempotency_key", sa.String(256)),
    _json("metadata"),
    _json("extra"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.UniqueConstraint("tenant_id", "session_id", "seq"),
    # Partial indexes: most messages have neither an idempotency key nor a run,
    # and an append should write as few index pages as it can.
    sa.Index(
        None,
        "tenant_id",
        "session_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(
        None,
        "tenant_id",
        "run_id",
        sqlite_where=sa.text("run_id IS NOT NULL"),
        postgresql_where=sa.text("run_id IS NOT NULL"),
    ),
)

runs = sa.Table(
    "runs",
    metadata,
    _tenant(),
    _id(),
    sa.Column("agent_id", sa.String(256), nullable=False),
    sa.Column("session_id", sa.String(64)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("objective", sa.Text()),
    sa.Column("instructions", sa.Text()),
    sa.Column("model", sa.String(256)),
    _json("tools"),
    sa.Column("iterations", sa.Integer(), nullable=False),
    sa.Column("output", sa.Text()),
    _json("last_error", nullable=True),
    _json("required_action", nullable=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_nano_usd", sa.BigInteger()),  # cost in 1e-9 USD; NULL = unknown
    _json("metadata"),
    _json("extra"),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("agent_version", sa.Integer()),  # the agent's version when the run was made
    sa.Column("worker_id", sa.String(128)),
    _micros("created_at"),
    _micros("updated_at"),
    _micros("started_at", nullable=True),
    _micros("finished_at", nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "agent_id", "id"),
    sa.Index(None, "tenant_id", "session_id", "id"),
    sa.Index(None, "status", "created_at"),
)

run_steps = sa.Table(
    "run_steps",
    metadata,
    _tenant(),
    _id(),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64)),
    sa.Column("agent_id", sa.String(256)),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    _json("details"),
    _json("last_error", nullable=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    _json("metadata"),
    _micros("created_at"),
    _micros("updated_at"),
    _micros("finished_at", nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "run_id"], ["runs.tenant_id", "runs.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "run_id", "id"),
)

events = sa.Table(
    "events",
    metadata,
    _tenant(),
    sa.Column("bookmark", sa.BigInteger(), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("session_id", sa.String(64)),
    sa.Column("agent_id", sa.String(256)),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    _json("data"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "bookmark"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "run_id"], ["runs.tenant_id", "runs.id"], ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "run_id", "bookmark"),
    sa.Index(None, "tenant_id", "session_id", "bookmark"),
)

# The last bookmark given out per tenant: bookmarks never go back, even when
# deleting a run or session deletes the newest events.
event_bookmarks = sa.Table(
    "event_bookmarks",
    metadata,
    _tenant(),
    sa.Column("last_bookmark", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id"),
    # An import that meets a stored bookmark keeps the larger one.
    info={"merge": "max:last_bookmark"},
)

tool_calls = sa.Table(
    "tool_calls",
    metadata,
    _tenant(),
    _id(),
    sa.Column("run_id", sa.String(64)),
    sa.Column("session_id", sa.String(64)),
    sa.Column("step_id", sa.String(64)),
    sa.Column("agent_id", sa.String(256)),
    sa.Column("name", sa.String(256), nullable=False),
    _json("input", nullable=True),
    _json("output", nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("is_error", sa.Boolean(), nullable=False),
    _json("approval", nullable=True),
    _json("audit"),
    _json("metadata"),
    _micros("created_at"),
    _micros("updated_at"),
    _micros("started_at", nullable=True),
    _micros("finished_at", nullable=True),
    sa.Column("duration_ms", sa.BigInteger()),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "run_id"], ["runs.tenant_id", "runs.id"], ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "run_id"),
    sa.Index(None, "tenant_id", "session_id"),
    sa.Index(None, "tenant_id", "name"),
    sa.Index(None, "tenant_id", "agent_id"),
)

llm_usage = sa.Table(
    "llm_usage",
    metadata,
    _tenant(),
    _id(),
    sa.Column("agent_id", sa.String(256)),
    sa.Column("session_id", sa.String(64)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("user_id", sa.String(256)),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("prompt", sa.Text()),
    sa.Column("response", sa.Text()),
    sa.Column("prompt_length", sa.BigInteger()),
    sa.Column("response_length", sa.BigInteger()),
    _json("input_params"),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
    sa.Column("latency_ms", sa.BigInteger()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_message", sa.Text()),
    sa.Column("cost_nano_usd", sa.BigInteger()),  # cost in 1e-9 USD; NULL = unknown
    sa.Column("cost_source", sa.String(32)),
    sa.Column("price_version", sa.String(64)),
    _json("metadata"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "agent_id", "created_at"),
    sa.Index(None, "tenant_id", "session_id"),
    sa.Index(None, "tenant_id", "run_id"),
    # Covers the latency percentiles of a window (an index-only scan, no row read).
    sa.Index(None, "tenant_id", "created_at", "latency_ms"),
)

# LLM usage summed per tenant, UTC day, provider, model, agent, user and status
# (agentkeep.store.usage_days): derived from llm_usage, kept in the transaction
# that writes the rows, rebuilt from them after a copy, import or restore, so
# never exported. key_hash names (provider, model, agent_id, user_id, status),
# None and '' apart, in a key short enough for any index.
usage_days = sa.Table(
    "usage_days",
    metadata,
    _tenant(),
    sa.Column("day", sa.BigInteger(), nullable=False),  # days since 1970-01-01 (UTC)
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("agent_id", sa.String(256)),
    sa.Column("user_id", sa.String(256)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("calls", sa.BigInteger(), nullable=False),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),  # of the priced calls
    sa.Column("unpriced_calls", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "day", "key_hash"),
    info={"export": False, "derived": True},  # rebuilt from llm_usage, never exported
)

# The user price table (store.prices.set): per-token USD prices, as exact
# decimal strings, that override the maintained table for a model (of one
# provider, or of any: provider ''). ``version`` counts the changes of the row.
prices = sa.Table(
    "prices",
    metadata,
    _tenant(),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("input", sa.String(40), nullable=False),
    sa.Column("output", sa.String(40), nullable=False),
    sa.Column("cached_input", sa.String(40)),
    sa.Column("reasoning", sa.String(40)),
    sa.Column("version", sa.Integer(), nullable=False),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "provider", "model"),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    _tenant(),
    _id(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("label", sa.String(256)),
    _json("state"),
    _json("metadata"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "session_id", "id"),
)

# Snapshots that do not move (copy-on-write): when a message a snapshot covers
# (seq <= the snapshot's seq) is first edited or deleted after the snapshot was
# taken, its row as it was is kept here for that snapshot. A snapshot reads as
# the session's messages up to its seq, with these rows in place of the live ones
# (and for the deleted ones). ``created_at`` is when the row was kept;
# ``message_created_at`` the message's own time.
snapshot_messages = sa.Table(
    "snapshot_messages",
    metadata,
    _tenant(),
    sa.Column("snapshot_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    _json("content"),
    sa.Column("content_types", sa.String(256), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("agent_id", sa.String(64)),
    sa.Column("idempotency_key", sa.String(256)),
    _json("metadata"),
    _json("extra"),
    _micros("message_created_at"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "snapshot_id", "seq"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "snapshot_id"], ["snapshots.tenant_id", "snapshots.id"], ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "session_id"),
)

state_docs = sa.Table(
    "state_docs",
    metadata,
    _tenant(),
    sa.Column("namespace", sa.String(256), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    _json("value", nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "namespace", "key"),
)

locks = sa.Table(
    "locks",
    metadata,
    _tenant(),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("holder", sa.String(128), nullable=False),
    _micros("acquired_at"),
    _micros("expires_at"),
    sa.PrimaryKeyConstraint("tenant_id", "name"),
    info={"export": False},  # leases of live processes: never exported, copied or restored
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _tenant(),
    _id(),
    sa.Column("name", sa.String(256)),
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False),
    _micros("created_at"),
    _micros("revoked_at", nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "key_hash"),
)

# Graph checkpoints (LangGraph's model): a checkpoint row holds the small part
# (versions, what each node saw) and names its channels' versions; each value
# is stored once per (channel, version) in graph_checkpoint_blobs, so a step
# writes only the channels it changed. A blob with ``base_version`` holds only
# the items appended to the list stored at that version of the same channel;
# ``seq`` numbers the values of such a chain (0: the full value) so the writer
# can keep every chain short (see agentkeep/store/checkpoints.py).


def _thread_key() -> tuple[sa.Column[str], sa.Column[str]]:
    return (
        sa.Column("thread_id", sa.String(256), nullable=False),
        sa.Column("checkpoint_ns", sa.String(256), nullable=False),
    )


graph_checkpoints = sa.Table(
    "graph_checkpoints",
    metadata,
    _tenant(),
    *_thread_key(),
    sa.Column("checkpoint_id", sa.String(64), nullable=False),
    sa.Column("parent_checkpoint_id", sa.String(64)),
    sa.Column("run_id", sa.String(128)),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("checkpoint", sa.LargeBinary(), nullable=False),
    sa.Column("metadata_type", sa.String(32), nullable=False),
    sa.Column("metadata", sa.LargeBinary(), nullable=False),
    _json("channel_versions"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "thread_id", "checkpoint_ns", "checkpoint_id"),
    sa.Index(
        None,
        "tenant_id",
        "run_id",
        sqlite_where=sa.text("run_id IS NOT NULL"),
        postgresql_where=sa.text("run_id IS NOT NULL"),
    ),
)

graph_checkpoint_blobs = sa.Table(
    "graph_checkpoint_blobs",
    metadata,
    _tenant(),
    *_thread_key(),
    sa.Column("channel", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("blob", sa.LargeBinary()),
    sa.Column("base_version", sa.String(64)),
    sa.Column("seq", sa.Integer()),
    sa.PrimaryKeyConstraint("tenant_id", "thread_id", "checkpoint_ns", "channel", "version"),
)

graph_checkpoint_writes = sa.Table(
    "graph_checkpoint_writes",
    metadata,
    _tenant(),
    *_thread_key(),
    sa.Column("checkpoint_id", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(256), nullable=False),
    sa.Column("idx", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(256), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("blob", sa.LargeBinary()),
    sa.Column("task_path", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint(
        "tenant_id", "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"
    ),
)

# LangGraph's long-term memory (its BaseStore): JSON items by (namespace, key).
# ``namespace`` is the labels joined by ".", which LangGraph forbids in a label,
# so the items under a prefix are ``namespace = p OR p. <= namespace < p/``: a
# range of the primary key. On PostgreSQL the column compares bytes (collation
# "C") whatever the database's collation, so that range is the prefix's items
# there too. ``ttl_minutes``: the item's time to live, for refreshing
# ``expires_at`` when it is read; NULL: it does not expire.
_NAMESPACE = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

graph_store_items = sa.Table(
    "graph_store_items",
    metadata,
    _tenant(),
    sa.Column("namespace", _NAMESPACE, nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    _json("value"),
    _micros("created_at"),
    _micros("updated_at"),
    sa.Column("ttl_minutes", sa.Float()),
    _micros("expires_at", nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "namespace", "key"),
    sa.Index(
        None,
        "expires_at",
        sqlite_where=sa.text("expires_at IS NOT NULL"),
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    ),
)

# Responses API: a stored response, the items it took and made, and its stream.
responses = sa.Table(
    "responses",
    metadata,
    _tenant(),
    _id(),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    _json("instructions", nullable=True),
    sa.Column("previous_response_id", sa.String(64)),
    sa.Column("conversation_id", sa.String(64)),
    sa.Column("background", sa.Boolean(), nullable=False),
    _json("params"),
    _json("error", nullable=True),
    _json("incomplete_details", nullable=True),
    _json("usage", nullable=True),
    sa.Column("cost_nano_usd", sa.BigInteger()),  # cost in 1e-9 USD; NULL = unknown
    sa.Column("worker_id", sa.String(128)),
    _micros("created_at"),
    _micros("updated_at"),
    _micros("completed_at", nullable=True),
    _micros("expires_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "status", "created_at"),
    sa.Index(None, "expires_at"),
)

response_items = sa.Table(
    "response_items",
    metadata,
    _tenant(),
    _id(),
    sa.Column("response_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # input | output
    _json("item"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.UniqueConstraint("tenant_id", "response_id", "position"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "response_id"], ["responses.tenant_id", "responses.id"], ondelete="CASCADE"
    ),
)

response_events = sa.Table(
    "response_events",
    metadata,
    _tenant(),
    sa.Column("response_id", sa.String(64), nullable=False),
    sa.Column("sequence_number", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    _json("data"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "response_id", "sequence_number"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "response_id"], ["responses.tenant_id", "responses.id"], ondelete="CASCADE"
    ),
)

# The backup catalog: one row per complete backup file (a manifest JSON beside
# each file says the same, so a directory can be catalogued again). Backups
# cover the whole database; their rows belong to the "_system" tenant.
backups = sa.Table(
    "backups",
    metadata,
    _tenant(),
    _id(),
    sa.Column("kind", sa.String(16), nullable=False),  # sqlite | pg_dump | jsonl
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    _json("counts"),
    sa.Column("revision", sa.String(64)),
    sa.Column("trigger", sa.String(16), nullable=False),  # manual | scheduled | pre-upgrade
    sa.Column("status", sa.String(16), nullable=False),  # complete | verified | corrupt | missing
    sa.Column("compression", sa.String(16)),
    _micros("started_at"),
    _micros("finished_at"),
    _micros("verified_at", nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index(None, "tenant_id", "finished_at"),
    info={"export": False},  # describes files beside this database, not its data
)

# Erasure receipts: who asked for what to go, when, and how many rows went;
# never the erased content (the user is kept as a SHA-256 of their id).
erasures = sa.Table(
    "erasures",
    metadata,
    _tenant(),
    _id(),
    sa.Column("user_sha256", sa.String(64), nullable=False),
    _json("counts"),
    _micros("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
)
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    _tenant(),
    sa.Column("key", sa.String(128), nullable=False),
    _micros("window_start"),
    sa.Column("hits", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "key"),
    info={"export": False},  # counters of the current window: never exported, copied or restored
)

# KODE's history windows, compression records and recovered files of a session
# (kind: history_window, compression, recovered_file), typed by store.history.
session_records = sa.Table(
    "session_records",
    metadata,
    _tenant(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("id", sa.String(512), nullable=False),
    _json("value"),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    _micros("recorded_at"),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "session_id", "kind", "id"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
    sa.Index(None, "tenant_id", "session_id", "kind", "recorded_at"),
)

# KODE's media cache of a session: what a provider holds for a file, and the
# file's bytes when they are kept here (a BLOB / bytea, never base64 in JSON).
media_cache = sa.Table(
    "media_cache",
    metadata,
    _tenant(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("mime_type", sa.String(256), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("file_id", sa.String(512)),
    sa.Column("file_uri", sa.Text()),
    sa.Column("data", sa.LargeBinary()),
    _micros("created_at"),
    _micros("updated_at"),
    sa.PrimaryKeyConstraint("tenant_id", "session_id", "key"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "session_id"], ["sessions.tenant_id", "sessions.id"], ondelete="CASCADE"
    ),
)
