"""API keys: each belongs to one tenant and is stored only as its SHA-256 hash.

``create_key`` returns the plaintext once; the database keeps the hash and a
short prefix for display. ``AGENTKEEP_API_KEYS`` (comma-separated ``key`` or
``tenant:key``) adds development keys that live in memory only.

A service process remembers the tenant of a stored key it resolved for
``AGENTKEEP_KEY_CACHE_SECONDS`` (:class:`KeyCache`, default 10 s), so most
requests do not read ``api_keys``: a revoked key stops working in every
process within that time. Unknown keys are never remembered (a key just
created works at once).

An admin key (``create_key(store, admin=True)``, ``agentkeep keys create
--admin``, or ``*:key`` in ``AGENTKEEP_API_KEYS``) belongs to no tenant: it is
stored under the reserved tenant name ``*``, opens the dashboard on every
tenant, and is refused by the tenant APIs.

Here, below the service and the dashboard, because both sign callers in with
these keys (``agentkeep.server.keys`` re-exports this module).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models.common import from_micros, utcnow_micros
from agentkeep.store._base import Row
from agentkeep.store.schema import api_keys as t
from agentkeep.store.store import DEFAULT_TENANT, Store

__all__ = [
    "ADMIN_TENANT",
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

KEY_PREFIX = "ak-"
ADMIN_TENANT = "*"  # the tenant name admin keys are stored under; no tenant can have it
_SHOWN = 10  # characters of a key kept for display


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is known about a key without its plaintext."""

    id: str
    tenant_id: str
    name: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def admin(self) -> bool:
        return self.tenant_id == ADMIN_TENANT


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _info(row: Row) -> ApiKeyInfo:
    created = from_micros(row["created_at"])
    assert created is not None
    return ApiKeyInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=created,
        revoked_at=from_micros(row["revoked_at"]),
    )


def _check_tenant(tenant: Any) -> str:
    if not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 64:
        raise InvalidInput("must be a non-empty string of at most 64 characters", field="tenant")
    if tenant == ADMIN_TENANT:
        raise InvalidInput(f"{ADMIN_TENANT!r} is reserved for admin keys", field="tenant")
    return tenant


def create_key(
    store: Store, *, tenant: str | None = None, name: str | None = None, admin: bool = False
) -> tuple[ApiKeyInfo, str]:
    """A new key for ``tenant`` (or an admin key): its record and the plaintext (shown once)."""
    if admin and tenant is not None:
        raise InvalidInput(
            "an admin key belongs to no tenant: give one or the other", field="tenant"
        )
    tenant = ADMIN_TENANT if admin else _check_tenant(tenant)
    if name is not None and (not isinstance(name, str) or len(name) > 256):
        raise InvalidInput("must be a string of at most 256 characters", field="name")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    values = {
        "tenant_id": tenant,
        "id": new_id("key"),
        "name": name,
        "key_hash": hash_key(plaintext),
        "prefix": plaintext[:_SHOWN],
        "created_at": utcnow_micros(),
        "revoked_at": None,
    }
    with store._core.write("creating an API key") as conn:
        conn.execute(sa.insert(t).values(values))
    return _info(values), plaintext


def list_keys(store: Store, *, tenant: str | None = None) -> list[ApiKeyInfo]:
    """Every key (of ``tenant``, if given), oldest first, revoked ones included."""
    stmt = sa.select(t).order_by(t.c.created_at, t.c.id)
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == _check_tenant(tenant))
    with store._core.read("listing API keys") as conn:
        return [_info(r) for r in conn.execute(stmt).mappings()]


def revoke_key(store: Store, key_id: str) -> ApiKeyInfo:
    """Revoke a key by id (any tenant); revoking twice keeps the first time."""
    with store._core.write("revoking an API key") as conn:
        row = conn.execute(sa.select(t).where(t.c.id == key_id)).mappings().first()
        if row is None:
            raise NotFound("api_key", key_id)
        if row["revoked_at"] is not None:
            return _info(row)
        now = utcnow_micros()
        conn.execute(
            sa.update(t)
            .where(t.c.tenant_id == row["tenant_id"], t.c.id == key_id)
            .values(revoked_at=now)
        )
        return _info({**row, "revoked_at": now})


def resolve_key(store: Store, plaintext: str) -> str | None:
    """The tenant of a live (not revoked) key, or None."""
    if not plaintext:
        return None
    return resolve_hash(store, hash_key(plaintext))


def resolve_hash(store: Store, key_hash: str) -> str | None:
    """The tenant of the live (not revoked) key with this hash, or None."""
    with store._core.read("checking an API key") as conn:
        row = conn.execute(
            sa.select(t.c.tenant_id)
            .where(t.c.key_hash == key_hash, t.c.revoked_at.is_(None))
            .limit(1)
        ).first()
    return None if row is None else str(row.tenant_id)


class KeyCache:
    """Tenants of live keys by key hash, each remembered for ``ttl`` seconds (0: never).

    At most ``max_entries`` (the oldest go first); safe from any thread.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> str | None:
        """The tenant, if the key was resolved less than ``ttl`` seconds ago."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            with self._lock:
                if self._entries.get(key_hash) is entry:
                    del self._entries[key_hash]
            return None
        return entry[0]

    def put(self, key_hash: str, tenant: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries.pop(key_hash, None)
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (tenant, self._clock() + self.ttl)


def parse_bootstrap_keys(spec: str) -> dict[str, str]:
    """``AGENTKEEP_API_KEYS`` as {key hash: tenant}; ``key`` alone is the default tenant."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        tenant, sep, key = part.partition(":")
        if not sep:
            tenant, key = DEFAULT_TENANT, part
        tenant, key = tenant.strip(), key.strip()
        if not key:
            raise InvalidInput(f"entry {part!r} has an empty key", field="AGENTKEEP_API_KEYS")
        out[hash_key(key)] = tenant if tenant == ADMIN_TENANT else _check_tenant(tenant)
    return out
