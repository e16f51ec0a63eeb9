"""Store internals: the Store, its entity stores, schema and migrations."""

from agentkeep.store.store import DEFAULT_TENANT, Store, connect

__all__ = ["DEFAULT_TENANT", "Store", "connect"]
