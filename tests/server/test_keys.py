"""API keys: hashed at rest, per tenant, revocable; bootstrap parsing; the ``keys`` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from live import LiveService, until_refused
from typer.testing import CliRunner

import agentkeep
from agentkeep.errors import InvalidInput, NotFound
from agentkeep.server.cli import keys_app
from agentkeep.store import Store
from agentkeep.store.api_keys import (
    ADMIN_TENANT,
    KeyCache,
    create_key,
    hash_key,
    list_keys,
    parse_bootstrap_keys,
    resolve_key,
    revoke_key,
)
from agentkeep.store.schema import api_keys


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = agentkeep.connect(f"sqlite:///{tmp_path}/keys.db")
    yield store
    store.close()


def test_create_resolve_revoke(db: Store) -> None:
    info, key = create_key(db, tenant="acme", name="ci")
    assert info.tenant_id == "acme" and info.name == "ci" and info.revoked_at is None
    assert key.startswith(info.prefix) and len(key) > 30
    assert resolve_key(db, key) == "acme"
    assert resolve_key(db, key + "x") is None
    assert resolve_key(db, "") is None

    with db._core.read() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(api_keys)).mappings()]
    assert key not in str(rows), "the plaintext is never stored"
    assert rows[0]["key_hash"] == hash_key(key)

    other, _ = create_key(db, tenant="globex")
    assert [k.id for k in list_keys(db)] == [info.id, other.id]
    assert [k.id for k in list_keys(db, tenant="globex")] == [other.id]

    revoked = revoke_key(db, info.id)
    assert revoked.revoked_at is not None
    assert resolve_key(db, key) is None
    assert revoke_key(db, info.id).revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        revoke_key(db, "key_missing")
    with pytest.raises(InvalidInput):
        create_key(db, tenant="")
    with pytest.raises(InvalidInput):
        create_key(db, tenant="t" * 65)


def test_key_cache_remembers_a_tenant_for_its_ttl_only() -> None:
    now = [100.0]
    cache = KeyCache(10.0, max_entries=2, clock=lambda: now[0])
    cache.put("h1", "acme")
    assert cache.get("h1") == "acme" and cache.get("h2") is None
    now[0] += 9.9
    assert cache.get("h1") == "acme"
    now[0] += 0.1  # ttl passed: the next request reads the database again
    assert cache.get("h1") is None
    for i in range(3):
        cache.put(f"k{i}", "acme")
    assert cache.get("k0") is None and cache.get("k2") == "acme"  # the oldest went first
    off = KeyCache(0.0)
    off.put("h1", "acme")
    assert off.get("h1") is None


def test_parse_bootstrap_keys() -> None:
    parsed = parse_bootstrap_keys(" k1 , acme:k2,globex: k3 ,,")
    assert parsed == {hash_key("k1"): "default", hash_key("k2"): "acme", hash_key("k3"): "globex"}
    assert parse_bootstrap_keys("") == {}
    with pytest.raises(InvalidInput):
        parse_bootstrap_keys("acme:")


@pytest.mark.slow
def test_cli_keys_against_the_live_service(service: LiveService) -> None:
    runner = CliRunner()
    url = ["--database-url", service.database_url]
    created = runner.invoke(keys_app, ["create", "--tenant", "cli_t", "--name", "laptop", *url])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("ak-")

    http = service.http(key=key)
    assert http.post("/v1/assistants", json={"model": "m"}).status_code == 200
    assert len(service.store.tenant("cli_t").agents.list().items) == 1

    listed = runner.invoke(keys_app, ["list", "--tenant", "cli_t", *url])
    assert listed.exit_code == 0, listed.output
    assert "laptop" in listed.stdout and key not in listed.stdout
    key_id = next(k.id for k in list_keys(service.store, tenant="cli_t"))

    revoked = runner.invoke(keys_app, ["revoke", key_id, *url])
    assert revoked.exit_code == 0, revoked.output
    until_refused(http)

    missing = runner.invoke(keys_app, ["revoke", "key_missing", *url])
    assert missing.exit_code == 1


def test_admin_keys_belong_to_no_tenant(db: Store) -> None:
    info, key = create_key(db, admin=True, name="ops")
    assert info.admin and info.tenant_id == ADMIN_TENANT
    assert resolve_key(db, key) == ADMIN_TENANT
    tenant_key, _ = create_key(db, tenant="acme")
    assert not tenant_key.admin
    with pytest.raises(InvalidInput) as err:
        create_key(db, tenant=ADMIN_TENANT)  # the reserved name is not a tenant
    assert err.value.field == "tenant"
    with pytest.raises(InvalidInput):
        create_key(db, tenant="acme", admin=True)
    with pytest.raises(InvalidInput):
        create_key(db)
    assert parse_bootstrap_keys("*:root,acme:k") == {
        hash_key("root"): ADMIN_TENANT,
        hash_key("k"): "acme",
    }


@pytest.mark.slow
def test_cli_admin_key_is_refused_by_the_tenant_apis(service: LiveService) -> None:
    runner = CliRunner()
    url = ["--database-url", service.database_url]
    neither = runner.invoke(keys_app, ["create", *url])
    assert neither.exit_code == 2
    created = runner.invoke(keys_app, ["create", "--admin", "--name", "ops", *url])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert "admin key" in created.stderr
    refused = service.http(key=key).get("/v1/assistants")
    assert refused.status_code == 401
    assert "admin key" in refused.json()["error"]["message"]
