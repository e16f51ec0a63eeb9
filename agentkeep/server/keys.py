"""API keys now live in :mod:`agentkeep.store.api_keys` (below both the server and the
dashboard); this module re-exports them for code that imports them from here."""

from __future__ import annotations

from agentkeep.store.api_keys import (
    ADMIN_TENANT,
    KEY_PREFIX,
    ApiKeyInfo,
    KeyCache,
    create_key,
    hash_key,
    list_keys,
    parse_bootstrap_keys,
    resolve_hash,
    resolve_key,
    revoke_key,
)

__all__ = [
    "ADMIN_TENANT",
    "KEY_PREFIX",
    "ApiKeyInfo",
    "KeyCache",
    "create_key",
    "hash_key",
    "list_keys",
    "parse_bootstrap_keys",
    "resolve_hash",
    "resolve_key",
    "revoke_key",
]
