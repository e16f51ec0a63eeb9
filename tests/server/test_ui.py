"""The dashboard in a real browser against a real ``agentkeep serve``, on SQLite and PostgreSQL.

Data is seeded through the store (the same database the service serves) or the
``openai`` client; the pages are read and clicked in headless Chromium; what a
click changes is read back from the store. A screenshot of each page lands in
``build/ui/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import httpx
import pytest
from browser import Tab, chromium
from live import LiveService, Tenant
from playwright.sync_api import Browser, Page, expect
from test_runs_api import new_model, run_to_tool_call
from upstream_llm import Reply, ToolCall, UpstreamLLM

from agentkeep import Store
from agentkeep.store.api_keys import create_key, list_keys, resolve_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser, service: LiveService) -> Iterator[Tab]:
    t = Tab(browser, service.base_url, service.backend)
    yield t
    t.close()


def scoped(service: LiveService, tenant: Tenant) -> Store:
    return service.store.tenant(tenant.id)


def signed_in_http(service: LiveService, key: str) -> httpx.Client:
    """An HTTP client with a dashboard cookie (for fragments and forms without a browser)."""
    http = httpx.Client(base_url=service.base_url, timeout=30.0)
    service._clients.append(http)  # closed with the service
    page = http.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    done = http.post("/ui/login", data={"csrf": csrf.group(1), "key": key, "next": "/ui/sessions"})
    assert done.status_code == 303, done.text
    return http


def test_sign_in_cookie_csrf_and_sign_out(tab: Tab, service: LiveService, tenant: Tenant) -> None:
    page = tab.page
    page.goto("/ui/sessions")
    page.wait_for_url("**/ui/login?next=/ui/sessions")
    page.fill("input[name=key]", "sk-wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator(".error")).to_contain_text("unknown or revoked")
    tab.shot("sign-in")
    tab.sign_in(tenant.key)
    expect(page.locator("#tenant-name")).to_have_text(tenant.id)
    cookie = next(c for c in tab.context.cookies() if c["name"] == "agentkeep_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert tenant.key not in cookie["value"]

    # a form posted without its token changes nothing
    http = signed_in_http(service, tenant.key)
    assert http.post("/ui/logout", data={}).status_code == 400
    assert http.get("/ui/sessions", follow_redirects=False).status_code == 200

    page.click("#sign-out")
    page.wait_for_url("**/ui/login")
    page.goto("/ui/usage")
    page.wait_for_url("**/ui/login?next=/ui/usage")
    # nothing is shown without a key, fragments and downloads included
    anonymous = service.http(key="")
    for path in ("/ui/sessions", "/ui/usage.csv", "/ui/operations", "/ui/runs/run_x/timeline"):
        assert anonymous.get(path).status_code in (303, 401)
    assert (
        anonymous.get("/ui/runs/run_x/live", headers={"accept": "text/event-stream"}).status_code
        == 401
    )


def test_sessions_list_pages_searches_and_filters(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    store = scoped(service, tenant)
    agent = store.agents.create(model="m", name="Support bot")
    for i in range(60):
        store.sessions.create(title=f"Chat {i:02d}", user_id=f"user{i % 3}")
    refund = store.sessions.create(
        kind="conversation", title="Refund for A17", user_id="ann", agent_id=agent.id
    )
    store.messages.append(refund.id, "user", "where is my refund?")
    page = tab.sign_in(tenant.key)
    expect(page.locator("#session-count")).to_have_text("61 sessions")
    rows = page.locator("#sessions tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("Refund for A17")
    expect(rows.first.locator("td").nth(4)).to_have_text("1")  # its message count
    tab.shot("sessions")
    page.click("#older")
    expect(rows).to_have_count(11)
    expect(rows.last).to_contain_text("Chat 00")
    page.click("#newer")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("Refund for A17")

    page.fill("input[name=q]", "refund")
    page.click("#session-filters button")
    expect(rows).to_have_count(1)
    expect(page.locator("#session-count")).to_have_text("1 session")
    page.goto("/ui/sessions?user=user1")
    expect(page.locator("#session-count")).to_have_text("20 sessions")
    page.goto(f"/ui/sessions?agent={agent.id}&kind=conversation")
    expect(rows).to_have_count(1)
    page.goto("/ui/sessions?kind=thread")
    expect(page.locator("#session-count")).to_have_text("0 sessions")
    page.goto("/ui/sessions?since=2000-01-01&until=2000-01-02")
    expect(page.locator("#session-count")).to_have_text("0 sessions")
    page.goto("/ui/sessions?kind=bogus")
    expect(page.locator("#error-message")).to_contain_text("kind")


def test_conversation_page_and_approval_from_the_page(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    store = scoped(service, tenant)
    agent = store.agents.create(model="m")
    session = store.sessions.create(title="Refund A17", user_id="ann", state={"step": 2})
    for i in range(57):
        store.messages.append(session.id, "user", f"filler {i}")
    store.messages.append(session.id, "user", "Refund order A17 please")
    store.messages.append(
        session.id,
        "assistant",
        [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "call_lookup", "name": "lookup", "input": {"order": "A17"}},
        ],
    )
    store.messages.append(
        session.id,
        "tool",
        [{"type": "tool_result", "tool_use_id": "call_lookup", "content": "paid 10 EUR"}],
    )
    run = store.runs.create(agent.id, session_id=session.id, status="in_progress")
    call = store.tool_calls.create(
        name="refund", input={"order": "A17", "amount": 10}, session_id=session.id, run_id=run.id
    )
    store.tool_calls.require_approval(call.id)
    snapshot = store.snapshots.create(session.id, label="before refund")
    fork = store.sessions.fork(session.id, at_seq=58, title="What if we refuse")
    store.state.put("todos", session.id, {"items": ["refund A17"]})

    page = tab.sign_in(tenant.key, f"/ui/sessions/{session.id}")
    messages = page.locator("#messages > li")
    expect(messages).to_have_count(50)  # the newest 50 of 60, oldest of them first
    expect(messages.first).to_have_attribute("data-seq", "11")
    expect(messages.last).to_have_attribute("data-seq", "60")
    paired = page.locator("#msg-59 .block.call")
    expect(paired).to_contain_text("lookup")
    expect(paired.locator(".result.paired")).to_contain_text("paid 10 EUR")
    expect(page.locator("#msg-60")).to_contain_text("shown with its call")
    expect(page.locator("#forks")).to_contain_text("What if we refuse")
    expect(page.locator("#snapshots")).to_contain_text("before refund")
    expect(page.locator("#state")).to_contain_text("refund A17")
    expect(page.locator("#runs")).to_contain_text(run.id)
    tab.shot("conversation")
    page.click("#older")
    expect(messages).to_have_count(10)
    expect(messages.first).to_have_attribute("data-seq", "1")
    page.goto(f"/ui/sessions/{fork.id}")
    expect(page.locator("#parent")).to_have_text(session.id)

    page.goto(f"/ui/sessions/{session.id}")
    waiting = page.locator(f"#await-{call.id}")
    waiting.locator("input[name=note]").fill("checked the receipt")
    waiting.locator("button[value=approved]").click()
    expect(page.locator(f"#call-{call.id}")).to_have_attribute("data-state", "approved")
    expect(page.locator("#awaiting")).to_have_count(0)
    stored = store.tool_calls.get(call.id)
    assert stored.state == "approved"
    assert stored.approval is not None and stored.approval.note == "checked the receipt"
    assert stored.approval.by == f"dashboard:{tenant.id}"
    assert snapshot.seq == 60


def test_run_page_updates_live(
    tab: Tab, service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}', id="call_ui_1")]),
        Reply(text="It is sunny in Oslo today.", chunk_delay=0.05),
    )
    _, thread, run = run_to_tool_call(client, model, "Weather in Oslo?")
    page = tab.sign_in(tenant.key, f"/ui/runs/{run.id}")
    body = page.locator("#run-body")
    expect(page.locator("#run-status")).to_have_text("requires_action")
    expect(page.locator("#live-indicator")).to_have_text("● live")
    expect(page.locator("#timeline .row[data-kind=llm]")).to_have_count(1)
    tab.shot("run-waiting")
    assert run.required_action is not None
    tool_call = run.required_action.submit_tool_outputs.tool_calls[0]
    client.beta.threads.runs.submit_tool_outputs(
        run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": tool_call.id, "output": "21C"}]
    )
    # no reload: the page follows the persisted events
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#live-indicator")).to_have_text("finished")
    expect(page.locator("#timeline .row[data-kind=llm]")).to_have_count(2)
    expect(page.locator("#timeline .row[data-kind=step]")).to_have_count(2)
    expect(page.locator("#transitions")).to_contain_text("completed")
    assert int(body.get_attribute("data-updates") or 0) >= 1
    usage = scoped(service, tenant).usage.list(run_id=run.id, order="asc").items
    rows = page.locator("#usage tbody tr")
    expect(rows).to_have_count(2)
    for row, record in zip(rows.all(), usage, strict=True):
        assert row.get_attribute("id") == f"usage-{record.id}"
        assert row.locator("td").nth(3).inner_text() == str(record.input_tokens)
    tab.shot("run")


def _charts_match_the_rollup(page: Page, store: Store, after: datetime, before: datetime) -> None:
    """Every chart of the page shows what ``store.usage.rollup`` gives for the window."""
    for by in ("day", "model", "agent", "user"):
        expected = store.usage.rollup(by, created_after=after, created_before=before)  # type: ignore[arg-type]
        rows = page.locator(f"#chart-{by} tbody tr")
        expect(rows).to_have_count(len(expected))
        shown = [
            {
                name: row.get_attribute(f"data-{name}")
                for name in (
                    "key",
                    "calls",
                    "input",
                    "cached",
                    "output",
                    "reasoning",
                    "cost",
                    "unpriced",
                )
            }
            for row in rows.all()
        ]
        assert shown == [
            {
                "key": r.key if r.key is not None else "(none)",
                "calls": str(r.calls),
                "input": str(r.input_tokens),
                "cached": str(r.cached_tokens),
                "output": str(r.output_tokens),
                "reasoning": str(r.reasoning_tokens),
                "cost": str(r.cost_usd) if r.cost_usd is not None else "unpriced",
                "unpriced": str(r.unpriced_calls),
            }
            for r in expected
        ], by
        bars = page.locator(f"#chart-{by} svg rect[data-kind=cached]")
        assert sorted(int(b.get_attribute("data-tokens") or -1) for b in bars.all()) == sorted(
            r.cached_tokens for r in expected if r.cached_tokens
        )
    latency = store.usage.latency(created_after=after, created_before=before)
    shown_ms = {
        span.get_attribute("data-p"): span.get_attribute("data-ms")
        for span in page.locator("#latency span").all()
    }
    assert shown_ms == {p: "" if v is None else str(v) for p, v in latency.items()}


def test_usage_charts_match_the_rollup_of_the_window(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    store = scoped(service, tenant)
    agent = store.agents.create(model="gpt-4o-mini", name="Bot")
    for i in range(4):
        store.usage.record(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=1000 + i,
            output_tokens=200,
            cached_tokens=100,
            reasoning_tokens=10 * i,
            latency_ms=100 * (i + 1),
            agent_id=agent.id,
            user_id="ann",
        )
    store.usage.record(
        provider="house", model="in-house", input_tokens=50, output_tokens=5, user_id="bob"
    )
    store.usage.record(
        provider="house",
        model="priced-by-caller",
        input_tokens=7,
        output_tokens=3,
        cost_usd=Decimal("0.25"),
    )
    # Two calls 45 days ago: outside the default window (the last 30 UTC days)
    today = datetime.now(UTC).date()
    old_day = today - timedelta(days=45)
    old = datetime.combine(old_day, time(12), tzinfo=UTC)
    for ms in (5000, 7000):
        store.usage.record(
            provider="openai",
            model="gpt-old",
            input_tokens=ms,
            output_tokens=1,
            cached_tokens=3,
            latency_ms=ms,
            user_id="carol",
            created_at=old,
        )
    window_start = datetime.combine(today - timedelta(days=29), time(), tzinfo=UTC)
    window_end = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)

    page = tab.sign_in(tenant.key, "/ui/usage")
    _charts_match_the_rollup(page, store, window_start, window_end)
    expect(page.locator("#chart-model")).not_to_contain_text("gpt-old")
    in_house = page.locator('#chart-model tbody tr[data-key="in-house"] td').last
    expect(in_house).to_have_text("unpriced")  # never $0
    expect(page.locator("#total-cost")).to_contain_text("+ 1 unpriced")
    expect(page.locator('#latency span[data-p="p50"]')).to_have_text("p50 250 ms")
    tab.shot("usage")

    # The page keeps its figures a while, but a call recorded meanwhile shows at once
    store.usage.record(
        provider="openai", model="gpt-4o-mini", input_tokens=9, output_tokens=1, latency_ms=900
    )
    page.reload()
    _charts_match_the_rollup(page, store, window_start, window_end)
    expect(page.locator('#latency span[data-p="p50"]')).to_have_text("p50 300 ms")
    expect(page.locator("#computed-at")).to_contain_text("Computed")

    with page.expect_download() as info:
        page.click("#chart-model a.csv")
    text = info.value.path().read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["key"], int(r["calls"]), r["cost_usd"]) for r in table] == [
        (r.key, r.calls, "" if r.cost_usd is None else str(r.cost_usd))
        for r in store.usage.rollup("model", created_after=window_start, created_before=window_end)
    ]

    # The day of the old calls alone: every chart and the latency follow the window
    page.fill("#usage-window input[name=since]", old_day.isoformat())
    page.fill("#usage-window input[name=until]", old_day.isoformat())
    page.click("#usage-window button")
    page.wait_for_url(f"**since={old_day.isoformat()}**")
    old_start = datetime.combine(old_day, time(), tzinfo=UTC)
    _charts_match_the_rollup(page, store, old_start, old_start + timedelta(days=1))
    expect(page.locator("#chart-model tbody tr")).to_have_count(1)
    expect(page.locator("#chart-model")).to_contain_text("gpt-old")
    expect(page.locator('#latency span[data-p="p50"]')).to_have_text("p50 6.00 s")
    tab.shot("usage-window")


def test_operations_and_docs_work_offline(tab: Tab, service: LiveService, tenant: Tenant) -> None:
    page = tab.sign_in(tenant.key, "/ui/operations")
    expect(page.locator("#health-state")).to_have_text("healthy")
    expect(page.locator("#revision")).to_contain_text("(current)")
    expect(page.locator("#run-doctor")).to_be_visible()
    expect(page.locator("#keys")).to_have_count(0)  # a tenant key does not manage keys
    tab.shot("operations")
    http = signed_in_http(service, tenant.key)
    csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/ui/operations").text)
    assert csrf is not None
    denied = http.post("/ui/keys", data={"csrf": csrf.group(1), "tenant": tenant.id})
    assert denied.status_code == 403

    page.goto("/docs")  # Swagger UI from the package; the internet is blocked (see Tab)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("agentkeep")
    expect(page.locator(".opblock").first).to_be_visible()
    tab.shot("docs")


# The doctor reads the whole database (every tenant's consistency): on a loaded machine
# the page can take longer than a click's usual wait.
DOCTOR_WAIT_MS = 120_000


def _doctor_rows(page: Page) -> dict[str, tuple[bool, str]]:
    rows = page.locator("#doctor-results tbody tr")
    return {
        str(row.get_attribute("data-check")): (
            row.get_attribute("data-ok") == "true",
            row.locator("td").nth(2).inner_text(),
        )
        for row in rows.all()
    }


def _broken_run(store: Store, tool: str) -> str:
    """A failed run with a tool call that will never get a result: a consistency issue."""
    agent = store.agents.create(model="m")
    run = store.runs.create(agent.id, status="in_progress")
    call = store.tool_calls.create(name=tool, run_id=run.id)
    store.runs.transition(run.id, "failed")
    return call.id


def test_doctor_checks_run_on_demand(
    browser: Browser, tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    mine = _broken_run(scoped(service, tenant), "my_tool")
    other = service.new_tenant()
    theirs = _broken_run(scoped(service, other), "their_tool")

    # a tenant key: the schema and its own consistency, nothing database-wide
    page = tab.sign_in(tenant.key, "/ui/operations")
    expect(page.locator("#doctor-results")).to_have_count(0)  # not run on a page view
    page.click("#run-doctor button", timeout=DOCTOR_WAIT_MS)
    expect(page.locator("#doctor-results")).to_be_visible()
    rows = _doctor_rows(page)
    assert set(rows) == {"database", "schema", "consistency"}
    assert rows["database"][0] and rows["schema"][0]
    assert "(head)" in rows["schema"][1]
    assert rows["consistency"] == (
        False,
        f"1 issue(s): {tenant.id}: tool_call_without_result {mine}",
    )
    assert theirs not in page.content() and other.id not in page.content()
    expect(page.locator("#doctor-state")).to_have_text("1 failing")
    tab.shot("operations-doctor")

    # an admin key: every check, every tenant
    _, admin_key = create_key(service.store, admin=True, name="doctor")
    admin = Tab(browser, service.base_url, service.backend)
    try:
        page = admin.sign_in(admin_key, "/ui/operations")
        expect(page.locator("#doctor-results")).to_have_count(0)
        page.click("#run-doctor button", timeout=DOCTOR_WAIT_MS)
        expect(page.locator("#doctor-results")).to_be_visible()
        rows = _doctor_rows(page)
        wanted = {"database", "schema", "integrity", "consistency", "disk: backup directory"}
        wanted |= {"last backup", "wal", "usage totals"}
        if service.backend == "sqlite":
            wanted.add("disk: data directory")
        assert set(rows) == wanted
        for name in wanted - {"consistency", "last backup"}:
            assert rows[name][0], (name, rows[name])
        if service.backend == "sqlite":
            assert rows["integrity"][1] == "PRAGMA quick_check: ok"
            assert rows["wal"][1].endswith("MiB")
        assert "GiB free" in rows["disk: backup directory"][1]
        ok, detail = rows["consistency"]
        issues = int(detail.split()[0])  # "N issue(s): the first five"
        assert not ok and issues >= 2
        if issues <= 5:
            assert mine in detail and theirs in detail
        expect(page.locator("#doctor-took")).to_contain_text("Ran in")
        admin.shot("operations-doctor-admin")
    finally:
        admin.close()

    # a form without its token runs nothing
    http = signed_in_http(service, tenant.key)
    assert http.post("/ui/operations/doctor", data={}).status_code == 400


def test_a_tenant_never_sees_another_tenants_data(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    other = service.new_tenant()
    theirs = scoped(service, other)
    agent = theirs.agents.create(model="m", name="their agent")
    session = theirs.sessions.create(title="their secret chat", user_id="their-user-xyz")
    theirs.messages.append(session.id, "user", "their secret message")
    run = theirs.runs.create(agent.id, session_id=session.id)
    call = theirs.tool_calls.create(name="secret_tool", session_id=session.id, run_id=run.id)
    theirs.tool_calls.require_approval(call.id)
    theirs.usage.record(
        provider="openai", model="their-secret-model", input_tokens=5, output_tokens=1
    )

    page = tab.sign_in(tenant.key)
    expect(page.locator("#session-count")).to_have_text("0 sessions")
    for path in (
        f"/ui/sessions/{session.id}",
        f"/ui/runs/{run.id}",
        f"/ui/runs/{run.id}/timeline",
        f"/ui/sessions?agent={agent.id}",
        "/ui/usage",
        "/ui/operations",
    ):
        response = page.goto(path)
        assert response is not None
        html = page.content()
        for secret in ("their secret", "their-secret-model", "secret_tool", "their-user-xyz"):
            assert secret not in html, (path, secret)
        if "/ui/sessions/" in path or "/ui/runs/" in path:
            assert response.status == 404
    http = signed_in_http(service, tenant.key)
    assert http.get(f"/ui/runs/{run.id}/live").status_code == 404
    assert "their-secret-model" not in http.get("/ui/usage.csv?by=model").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/ui/sessions").text)
    assert csrf is not None
    decided = http.post(
        f"/ui/tool-calls/{call.id}/decide", data={"csrf": csrf.group(1), "decision": "approved"}
    )
    assert decided.status_code == 404
    assert theirs.tool_calls.get(call.id).state == "approval_required"


def test_admin_key_sees_every_tenant_and_manages_keys(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    _, admin_key = create_key(service.store, admin=True, name="ops")
    scoped(service, tenant).sessions.create(title="A session of the viewed tenant")
    page = tab.sign_in(admin_key)
    page.fill("#tenant-form input[name=tenant]", tenant.id)
    page.click("#tenant-form button")
    expect(page.locator("#session-count")).to_have_text("1 session")
    expect(page.locator("#sessions")).to_contain_text("A session of the viewed tenant")

    page.goto("/ui/operations")
    page.fill("#create-key input[name=tenant]", tenant.id)
    page.fill("#create-key input[name=name]", "from the dashboard")
    page.click("#create-key button")
    new_key = page.locator("#new-key").inner_text()
    made = [k for k in list_keys(service.store, tenant=tenant.id) if k.name == "from the dashboard"]
    assert len(made) == 1 and new_key.startswith(made[0].prefix)
    assert resolve_key(service.store, new_key) == tenant.id
    tab.shot("operations-admin")
    page.locator(f'#key-list tr[data-id="{made[0].id}"] button').click()
    expect(page.locator(f'#key-list tr[data-id="{made[0].id}"] button')).to_have_count(0)
    assert resolve_key(service.store, new_key) is None

    # the admin key is not a tenant key
    assert service.http(key=admin_key).get("/v1/assistants").status_code == 401


def test_admin_takes_verifies_and_downloads_a_backup_from_the_page(
    tab: Tab, service: LiveService, tenant: Tenant
) -> None:
    scoped(service, tenant).sessions.create(title="Kept in the backup")
    _, admin_key = create_key(service.store, admin=True, name="backups")
    before = {b.id for b in service.store.backups.list()}
    page = tab.sign_in(admin_key, "/ui/operations")
    page.click("#create-backup button")
    page.wait_for_url("**/ui/operations#backup-*")
    made = [b for b in service.store.backups.list() if b.id not in before]
    assert len(made) == 1 and made[0].trigger == "manual"
    backup = made[0]
    row = page.locator(f'#backup-list tr[data-id="{backup.id}"]')
    expect(row).to_contain_text(backup.kind)
    tab.shot("operations-backups")

    row.locator("button.verify").click()
    expect(page.locator("#backup-check")).to_contain_text("verified")
    assert service.store.backups.get(backup.id).verified_at is not None

    http = signed_in_http(service, admin_key)
    download = http.get(f"/ui/backups/{backup.id}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == backup.sha256

    # a tenant key sees no backups and cannot take, verify or download one
    theirs = signed_in_http(service, tenant.key)
    ops = theirs.get("/ui/operations")
    assert ops.status_code == 200 and backup.id not in ops.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', ops.text)
    assert csrf is not None
    assert theirs.post("/ui/backups", data={"csrf": csrf.group(1)}).status_code == 403
    verify = theirs.post(f"/ui/backups/{backup.id}/verify", data={"csrf": csrf.group(1)})
    assert verify.status_code == 403
    assert theirs.get(f"/ui/backups/{backup.id}/download").status_code == 403
    assert {b.id for b in service.store.backups.list()} == before | {backup.id}
