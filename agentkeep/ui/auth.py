"""Signing in to the dashboard: an API key once, then a signed cookie; CSRF tokens for forms.

The sign-in form takes an API key (a tenant's, or an admin key that sees every
tenant). The cookie that follows holds the key's SHA-256 hash, the tenant
viewed and a random session id, signed with HMAC-SHA256 under
``AGENTKEEP_UI_SECRET`` (random per start when unset: sign-ins then last until
the service restarts). Every request checks that the key is still live, so
revoking a key signs its dashboard sessions out. Each form carries a CSRF token
derived from the session id; the sign-in form is guarded by a double-submit
cookie. Cookies are ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from agentkeep.errors import InvalidInput
from agentkeep.store import DEFAULT_TENANT, Store
from agentkeep.store.api_keys import ADMIN_TENANT, hash_key, list_keys, resolve_hash
from agentkeep.ui.web import Service, SignInRequired, UiRoute, form_data, render, service

__all__ = ["Signer", "Visitor", "check_csrf", "router", "signed_in"]

COOKIE = "agentkeep_ui"
LOGIN_COOKIE = "agentkeep_ui_login"
MAX_AGE_S = 12 * 3600

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 signed, expiring JSON tokens."""

    def __init__(self, secret: str | None) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def dumps(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps({**payload, "exp": int(time.time()) + MAX_AGE_S}).encode())
        return f"{body}.{self._mac(body)}"

    def loads(self, token: str) -> dict[str, Any] | None:
        body, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            return None
        return payload

    def token(self, purpose: str, nonce: str) -> str:
        return self._mac(f"{purpose}:{nonce}")


@dataclass(frozen=True)
class Visitor:
    """A signed-in visitor: whose key, which tenant is viewed, and the form token."""

    key_hash: str
    tenant: str  # the key's tenant
    admin: bool
    viewing: str  # the tenant whose data the pages show
    csrf: str
    store: Store  # scoped to ``viewing``
    tenants: tuple[str, ...] = ()  # for an admin: the tenants that have keys


def _signer(request: Request) -> Signer:
    signer = request.app.state.ui_signer
    assert isinstance(signer, Signer)
    return signer


def _principal(state: Service, key_hash: str) -> tuple[str, bool] | None:
    """The tenant of a live key and whether it is an admin key."""
    tenant = state.bootstrap_keys.get(key_hash)
    if tenant is None:
        tenant = resolve_hash(state.store, key_hash)
    return None if tenant is None else (tenant, tenant == ADMIN_TENANT)


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=MAX_AGE_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def signed_in(request: Request) -> Visitor:
    """The visitor of a request with a valid cookie of a live key; else :class:`SignInRequired`."""
    state = service(request)
    signer = _signer(request)
    payload = signer.loads(request.cookies.get(COOKIE, ""))
    if payload is None:
        raise SignInRequired
    key_hash = str(payload.get("k", ""))
    found = await anyio.to_thread.run_sync(_principal, state, key_hash)
    if found is None:
        raise SignInRequired
    tenant, admin = found
    viewing = str(payload.get("v") or tenant) if admin else tenant
    tenants: tuple[str, ...] = ()
    if admin:
        keys = await anyio.to_thread.run_sync(list_keys, state.store)
        named = {k.tenant_id for k in keys} | set(state.bootstrap_keys.values())
        tenants = tuple(sorted(named - {ADMIN_TENANT}))
    visitor = Visitor(
        key_hash=key_hash,
        tenant=tenant,
        admin=admin,
        viewing=viewing,
        csrf=signer.token("csrf", str(payload.get("n", ""))),
        store=state.tenant(viewing),
        tenants=tenants,
    )
    request.state.visitor = visitor
    return visitor


SignedIn = Annotated[Visitor, Depends(signed_in)]


def check_csrf(visitor: Visitor, form: dict[str, str]) -> None:
    if not hmac.compare_digest(form.get("csrf", ""), visitor.csrf):
        raise InvalidInput(
            "the form's security token is missing or stale; reload the page and retry", field="csrf"
        )


def _next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/sessions"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = render(request, "login.html", next=_next(next), csrf=nonce, error=None)
    _set_cookie(request, response, LOGIN_COOKIE, nonce)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_data(request)
    state = service(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    target = _next(form.get("next"))
    if not cookie or not hmac.compare_digest(form.get("csrf", ""), cookie):
        error = "The sign-in form expired; it has been reloaded, please sign in again."
        return _login_again(request, target, error, 400)
    key = form.get("key", "").strip()
    key_hash = hash_key(key)
    found = await anyio.to_thread.run_sync(_principal, state, key_hash) if key else None
    if found is None:
        return _login_again(request, target, "That key is unknown or revoked.", 401)
    response = RedirectResponse(target, status_code=303)
    viewing = DEFAULT_TENANT if found[1] else found[0]
    token = _signer(request).dumps({"k": key_hash, "n": secrets.token_urlsafe(16), "v": viewing})
    _set_cookie(request, response, COOKIE, token)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


def _login_again(request: Request, target: str, error: str, status: int) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = render(
        request, "login.html", status_code=status, next=target, csrf=nonce, error=error
    )
    _set_cookie(request, response, LOGIN_COOKIE, nonce)
    return response


@router.post("/logout")
async def logout(request: Request, visitor: SignedIn) -> Response:
    check_csrf(visitor, await form_data(request))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, visitor: SignedIn) -> Response:
    """An admin chooses the tenant the pages show."""
    form = await form_data(request)
    check_csrf(visitor, form)
    if not visitor.admin:
        raise InvalidInput("only an admin key can view another tenant", field="tenant")
    tenant = form.get("tenant", "").strip()
    if tenant == ADMIN_TENANT:
        raise InvalidInput("names no tenant; choose a tenant to view", field="tenant")
    state = service(request)
    state.tenant(tenant)  # checks the name
    payload = _signer(request).loads(request.cookies.get(COOKIE, "")) or {}
    payload.pop("exp", None)
    response = RedirectResponse("/ui/sessions", status_code=303)
    _set_cookie(request, response, COOKIE, _signer(request).dumps({**payload, "v": tenant}))
    return response


@router.get("")
@router.get("/")
def home() -> Response:
    return RedirectResponse("/ui/sessions", status_code=303)
