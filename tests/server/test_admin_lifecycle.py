"""Admin endpoints and scheduled backups + retention in a real ``agentkeep serve``."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from live import LiveService, StartService

import agentkeep
from agentkeep.store.api_keys import create_key
from agentkeep.store.backups import SYSTEM_TENANT
from agentkeep.store.schema import backups as catalog


def _wait_for(condition: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_admin_endpoints_need_an_admin_key_and_do_the_work(service: LiveService) -> None:
    _, admin_key = create_key(service.store, admin=True)
    tenant = service.new_tenant()
    tenant.client().beta.assistants.create(model="gpt-4o-mini", name="exported one")
    admin = service.http(key=admin_key)
    refused = service.http(key=tenant.key).get("/v1/admin/backups")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
    assert admin.get("/v1/assistants").status_code == 401  # an admin key is no tenant's key

    made = admin.post("/v1/admin/backups", json={"compress": True})
    assert made.status_code == 200, made.text
    backup = made.json()
    assert backup["id"] in [b["id"] for b in admin.get("/v1/admin/backups").json()["data"]]
    content = admin.get(f"/v1/admin/backups/{backup['id']}/content")
    assert hashlib.sha256(content.content).hexdigest() == backup["sha256"]

    exported = admin.get("/v1/admin/export", params={"tenant": tenant.id})
    lines = exported.text.splitlines()
    assert json.loads(lines[0])["counts"]["agents"] == 1 and "exported one" in exported.text
    copy_tenant = tenant.id + "_copy"
    imported = admin.post(
        "/v1/admin/import", params={"tenant": copy_tenant}, content=exported.content
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"]["agents"] == 1
    assert service.store.tenant(copy_tenant).agents.list().items[0].name == "exported one"
    metrics = admin.get("/v1/admin/metrics", params={"tenant": tenant.id})
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["storage"]["agents"] == 1 and metrics.json()["storage"]["db_size_bytes"]
    assert metrics.json()["operations"]["write"]["count"] > 0
    assert service.http(key=tenant.key).get("/v1/admin/metrics").status_code == 403
    bad = admin.post("/v1/admin/import", content=b'{"format": "nope"}\n')
    assert bad.status_code == 400 and "line 1" in bad.json()["error"]["message"]

    service.store.tenant(tenant.id).sessions.create(user_id="u-erase")
    receipt = admin.post(
        "/v1/admin/erasures", json={"tenant": tenant.id, "user_id": "u-erase"}
    ).json()
    assert receipt["counts"]["sessions"] == 1
    dry = admin.post(
        "/v1/admin/retention",
        json={"tenant": tenant.id, "compact_events": True, "dry_run": True},
    )
    assert dry.json() == {"tenant": tenant.id, "sessions": 0, "events": 0, "dry_run": True}


def _finished_run_with_deltas(store: agentkeep.Store) -> str:
    session = store.sessions.create()
    run = store.runs.create("asst_x", session_id=session.id)
    store.runs.transition(run.id, "in_progress")
    for i in range(3):
        store.events.append("thread.message.delta", run_id=run.id, data={"i": i})
    store.events.append("thread.run.completed", run_id=run.id)
    store.runs.transition(run.id, "completed")
    store.usage.record(provider="openai", model="m", input_tokens=5, run_id=run.id)
    return run.id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_serve_takes_the_scheduled_backup_and_sweeps(
    backend: str, start_service: StartService, tmp_path: Path
) -> None:
    folder = tmp_path / "scheduled"
    service = start_service(
        backend,
        AGENTKEEP_BACKUP_ENABLED="false",  # set up first; the schedule is set below
        AGENTKEEP_BACKUP_DIR=str(folder),
        BACKUP_RETENTION_DAYS="30",  # the seed's name, read as a fallback
        AGENTKEEP_RETENTION_COMPACT_EVENTS="1",
    )
    store = service.store.tenant("acme")
    run_id = _finished_run_with_deltas(store)
    old = service.store.backups.create(to=folder)  # aged below: past the 30-day retention
    with service.store._core.write() as conn:
        long_ago = int((time.time() - 40 * 86400) * 1_000_000)
        conn.execute(
            sa.update(catalog)
            .where(catalog.c.tenant_id == SYSTEM_TENANT, catalog.c.id == old.id)
            .values(finished_at=long_ago)
        )

    # A few seconds ahead; a restart slower than that still takes the slot (catch-up).
    at = datetime.now() + timedelta(seconds=3)
    service.env.update(AGENTKEEP_BACKUP_ENABLED="true", AGENTKEEP_BACKUP_TIME=f"{at:%H:%M:%S}")
    service.restart(kill=False)

    def scheduled() -> list[agentkeep.Backup]:
        return [b for b in service.store.backups.list() if b.trigger == "scheduled"]

    _wait_for(
        lambda: scheduled() and not Path(old.path).exists(),
        f"the scheduled backup at {at:%H:%M:%S}; server log:\n{service.log()[-3000:]}",
        120,
    )
    (backup,) = scheduled()
    assert service.store.backups.verify(backup.id).ok
    assert [b.id for b in service.store.backups.list()] == [backup.id]  # the old one was swept
    _wait_for(
        lambda: [e.type for e in store.events.list(run_id=run_id)] == ["thread.run.completed"],
        "the deltas of the finished run to be compacted",
    )
    assert store.usage.list().items[0].input_tokens == 5  # usage rows stay
