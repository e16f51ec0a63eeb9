"""The user's price table: prices that override the maintained (genai-prices) one.

Two places, both per-token USD prices for a model (optionally of one provider):

- ``store.prices.set(model, input=..., output=..., cached_input=...,
  reasoning=...)``: stored in the database (table ``prices``, per tenant), so
  every process on the database prices with it from its next call;
- ``AGENTKEEP_PRICES``: a JSON or TOML file (by suffix ``.toml``, else JSON),
  one entry per model::

      {"house-llm-1": {"input": "0.0000004", "output": "0.0000016",
                       "cached_input": "0.0000001", "provider": "acme"}}

  read when the store is opened (a bad file is refused, naming the entry and
  field) and again when its modification time changes (a broken rewrite is
  logged and the last good content kept).

A call is priced by the first that knows its model: the caller's
``cost_usd``, the stored prices (provider-specific before any-provider), the
file, the maintained table; else its cost stays unknown (``None``), never $0.
``cost_source`` says which (``caller``, ``user``, ``price_table``) and
``price_version`` which table: ``store.prices:<provider or *>/<model>@v<N>``,
``AGENTKEEP_PRICES:sha256:<12 hex>`` or ``genai-prices==X.Y.Z``.

Token counts follow OpenAI: ``input_tokens`` include the cached ones (billed
at ``cached_input``, else ``input``), ``output_tokens`` include the
reasoning ones (billed at ``reasoning``, else ``output``).
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import logging
import math
import os
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models import Price, RecomputeReport
from agentkeep.models.common import from_micros, to_micros, utcnow_micros
from agentkeep.store import usage_days
from agentkeep.store._base import Resource
from agentkeep.store._prices import price_from_table, to_nano
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import require_str
from agentkeep.store.message_sql import MessageSQL, named
from agentkeep.store.schema import llm_usage as ut
from agentkeep.store.schema import prices as t

__all__ = [
    "STORED_PRICE",
    "PriceFile",
    "Prices",
    "TokenPrices",
    "price_from",
    "stored_params",
    "stored_price",
]

log = logging.getLogger("agentkeep.prices")
_ANY = ""  # the provider column of a price for any provider
_FIELDS = ("input", "output", "cached_input", "reasoning")
_BATCH = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _price(value: Any, field: str, *, required: bool) -> Decimal | None:
    """A per-token USD price: a non-negative finite number (or its string)."""
    if value is None:
        if required:
            raise InvalidInput("is required", field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise InvalidInput("must be a number of USD per token", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("must be a finite price", field=field)
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"is not a number: {value!r}", field=field) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("must be a non-negative finite price", field=field)
    text = format(amount.normalize(), "f")
    if len(text) > 40:
        raise InvalidInput("has too many digits (at most 40 characters)", field=field)
    return Decimal(text)


@dataclass(frozen=True)
class TokenPrices:
    """USD per token; ``cached_input`` / ``reasoning`` None: billed as input / output."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None

    def cost(
        self, *, input_tokens: int, cached_tokens: int, output_tokens: int, reasoning_tokens: int
    ) -> Decimal:
        cached = self.cached_input if self.cached_input is not None else self.input
        reasoning = self.reasoning if self.reasoning is not None else self.output
        return (
            (input_tokens - cached_tokens) * self.input
            + cached_tokens * cached
            + (output_tokens - reasoning_tokens) * self.output
            + reasoning_tokens * reasoning
        )


def _token_prices(entry: Any, where: str) -> TokenPrices:
    if not isinstance(entry, dict):
        raise InvalidInput("must be an object of prices", field=where)
    unknown = set(entry) - {*_FIELDS, "provider"}
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=where)
    values = {
        name: _price(entry.get(name), f"{where}.{name}", required=name in ("input", "output"))
        for name in _FIELDS
    }
    return TokenPrices(**values)  # type: ignore[arg-type]


class PriceFile:
    """``AGENTKEEP_PRICES``: loaded now (errors raised), reloaded when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime, self.entries, self.version = self._load()

    def _load(self) -> tuple[float, dict[tuple[str, str], TokenPrices], str]:
        field = "AGENTKEEP_PRICES"
        try:
            mtime = os.stat(self.path).st_mtime
            raw = Path(self.path).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {self.path}: {exc.strerror}", field=field) from None
        try:
            if self.path.endswith(".toml"):
                data: Any = tomllib.loads(raw.decode("utf-8"))
            else:
                data = json.loads(raw, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{self.path} is not valid: {exc}", field=field) from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{self.path} must map model names to prices", field=field)
        entries: dict[tuple[str, str], TokenPrices] = {}
        for model, entry in data.items():
            where = f"{field}.{model}"
            provider = entry.get("provider") if isinstance(entry, dict) else None
            if provider is not None and (not isinstance(provider, str) or not provider):
                raise InvalidInput("must be a non-empty string", field=f"{where}.provider")
            entries[(provider or _ANY, model)] = _token_prices(entry, where)
        version = f"AGENTKEEP_PRICES:sha256:{hashlib.sha256(raw).hexdigest()[:12]}"
        return mtime, entries, version

    def lookup(self, provider: str, model: str) -> tuple[TokenPrices, str] | None:
        """The file's prices for the call (reloaded first if the file changed)."""
        try:
            changed = os.stat(self.path).st_mtime != self._mtime
        except OSError:
            changed = False  # gone for now: keep what was read
        if changed:
            with self._lock:
                try:
                    self._mtime, self.entries, self.version = self._load()
                except InvalidInput as exc:
                    log.warning("AGENTKEEP_PRICES: keeping the prices read before: %s", exc)
                    self._mtime = os.stat(self.path).st_mtime
        found = self.entries.get((provider, model)) or self.entries.get((_ANY, model))
        return None if found is None else (found, self.version)


def _to_price(row: Any) -> Price:
    return Price(
        provider=row["provider"] or None,
        model=row["model"],
        input=Decimal(row["input"]),
        output=Decimal(row["output"]),
        cached_input=None if row["cached_input"] is None else Decimal(row["cached_input"]),
        reasoning=None if row["reasoning"] is None else Decimal(row["reasoning"]),
        version=row["version"],
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
    )


#: A user's stored price of a model: the provider's own before the any-provider one; built
#: once, its values bound (:func:`stored_params`).
STORED_PRICE = (
    sa.select(t)
    .where(
        t.c.tenant_id == sa.bindparam("tenant_id"),
        t.c.model == sa.bindparam("model"),
        t.c.provider.in_([sa.bindparam("provider"), sa.bindparam("any_provider")]),
    )
    .order_by(t.c.provider.desc())
    .limit(1)
)


def stored_params(tenant_id: str, provider: str, model: str) -> dict[str, Any]:
    """The parameters of :data:`STORED_PRICE` for a call of ``model`` by ``provider``."""
    return {"tenant_id": tenant_id, "model": model, "provider": provider, "any_provider": _ANY}


def stored_price(sql: MessageSQL, tenant_id: str, provider: str, model: str) -> Steps[Any]:
    """The user's stored price of a call of ``model`` by ``provider`` (its row by column
    name; None: none): one statement, compiled once."""
    found = yield sql.built_once(STORED_PRICE).stmt(stored_params(tenant_id, provider, model))
    return sql.named_row(t, found[0]) if found else None


def price_from(row: Any, price_file: PriceFile | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """The cost columns of a usage row without a caller's cost (see the module docstring),
    given the user's stored price of its model (``row``, by column name:
    :data:`STORED_PRICE`'s; None: none)."""
    provider, model = values["provider"], values["model"]
    tokens = {
        "input_tokens": values["input_tokens"],
        "cached_tokens": values["cached_tokens"],
        "output_tokens": values["output_tokens"],
        "reasoning_tokens": values["reasoning_tokens"],
    }
    if row is not None:
        price = _to_price(row)
        prices = TokenPrices(price.input, price.output, price.cached_input, price.reasoning)
        label = f"store.prices:{row['provider'] or '*'}/{model}@v{row['version']}"
        return {
            "cost_nano_usd": to_nano(prices.cost(**tokens)),
            "cost_source": "user",
            "price_version": label[:64],
        }
    from_file = price_file.lookup(provider, model) if price_file is not None else None
    if from_file is not None:
        return {
            "cost_nano_usd": to_nano(from_file[0].cost(**tokens)),
            "cost_source": "user",
            "price_version": from_file[1],
        }
    priced = price_from_table(
        provider,
        model,
        input_tokens=values["input_tokens"],
        cached_tokens=values["cached_tokens"],
        output_tokens=values["output_tokens"],
        at=_EPOCH + timedelta(microseconds=values["created_at"]),
    )
    if priced is None:
        return {"cost_nano_usd": None, "cost_source": None, "price_version": None}
    return {
        "cost_nano_usd": to_nano(priced[0]),
        "cost_source": "price_table",
        "price_version": priced[1],
    }


_ONE = sa.select(t).where(
    t.c.tenant_id == sa.bindparam("tenant_id"),
    t.c.provider == sa.bindparam("provider"),
    t.c.model == sa.bindparam("model"),
)
_ALL = (
    sa.select(t).where(t.c.tenant_id == sa.bindparam("tenant_id")).order_by(t.c.model, t.c.provider)
)


_DELETE = sa.delete(t).where(
    t.c.tenant_id == sa.bindparam("tenant_id"),
    t.c.provider == sa.bindparam("provider"),
    t.c.model == sa.bindparam("model"),
)


def _set_statement(insert: Callable[[sa.Table], Any]) -> sa.ClauseElement:
    """``Prices.set``'s upsert: version 1 for a new price, else one more, its ``created_at``
    kept (parameters by column name, ``now`` for both times)."""
    now = sa.bindparam("now", type_=sa.BigInteger())
    names = ("tenant_id", "provider", "model", *_FIELDS)
    stmt = insert(t).values(
        **{n: sa.bindparam(n, type_=t.c[n].type) for n in names},
        version=1,
        created_at=now,
        updated_at=now,
    )
    upsert: sa.ClauseElement = stmt.on_conflict_do_update(
        index_elements=list(t.primary_key),
        set_={
            **{n: stmt.excluded[n] for n in _FIELDS},
            "version": t.c.version + 1,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(*t.c)
    return upsert


class Prices(Resource):
    """``store.prices``: the user's price table of this tenant (see the module docstring)."""

    kind = "price"

    @op
    def set(
        self,
        model: str,
        *,
        input: Decimal | float | str,
        output: Decimal | float | str,
        cached_input: Decimal | float | str | None = None,
        reasoning: Decimal | float | str | None = None,
        provider: str | None = None,
    ) -> Op[Price]:
        """Set (or replace) the per-token USD prices of ``model`` (of ``provider``, else any).

        Calls recorded from now on are priced with them; ``recompute`` reprices
        calls recorded before. A transaction of another connection that read this
        model's price already prices its calls with the price it read until it ends.
        One statement (an upsert that raises the version and keeps ``created_at``).
        """
        model = require_str(model, "model", max_len=256)
        key = _ANY if provider is None else require_str(provider, "provider", max_len=128)
        values = {
            name: _price(v, name, required=name in ("input", "output"))
            for name, v in (
                ("input", input),
                ("output", output),
                ("cached_input", cached_input),
                ("reasoning", reasoning),
            )
        }
        stored = {k: (None if v is None else format(v, "f")) for k, v in values.items()}
        self._core.forget_prices()  # (the open transaction's, if any: it changes them)
        sql = self._core.message_sql
        params: dict[str, Any] = {"tenant_id": self.tenant_id, "provider": key, "model": model}
        params.update(stored, now=utcnow_micros())
        upsert = sql.shaped("price_set", lambda: _set_statement(self._core.dialect.insert))
        rows = yield Write("setting a price", single(upsert.stmt(params)))
        return _to_price(sql.named_row(t, rows[0]))

    @op
    def get(self, model: str, *, provider: str | None = None) -> Op[Price]:
        """The stored price of ``model`` (of ``provider``, else the any-provider one)."""
        key = _ANY if provider is None else provider
        sql = self._core.message_sql
        read = Stmt(
            sql.compiled(_ONE), {"tenant_id": self.tenant_id, "provider": key, "model": model}
        )
        found = yield Read("reading a price", single(read))
        if not found:
            raise NotFound("price", model if provider is None else f"{provider}/{model}")
        return _to_price(sql.named_row(t, found[0]))

    @op
    def list(self) -> Op[builtins.list[Price]]:
        """Every stored price of this tenant, by model then provider."""
        sql = self._core.message_sql
        read = Stmt(sql.compiled(_ALL), {"tenant_id": self.tenant_id})
        rows = yield Read("listing prices", single(read))
        return [_to_price(sql.named_row(t, r)) for r in rows]

    @op
    def delete(self, model: str, *, provider: str | None = None) -> Op[None]:
        """Remove a stored price: the model falls back to the file or the maintained table."""
        key = _ANY if provider is None else provider
        self._core.forget_prices()
        sql = self._core.message_sql
        params = {"tenant_id": self.tenant_id, "provider": key, "model": model}
        gone = yield Write("deleting a price", single(Stmt(sql.compiled(_DELETE), params, COUNT)))
        if gone == 0:
            raise NotFound("price", model if provider is None else f"{provider}/{model}")

    @op
    def recompute(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        dry_run: bool = False,
    ) -> Op[RecomputeReport]:
        """Price recorded calls again with today's tables (the user's, then the maintained one).

        Covers this tenant's usage rows created in ``[since, until)`` (all by
        default), of ``model`` if given. A cost the caller gave
        (``cost_source="caller"``) is kept. A row no table prices becomes
        unpriced (``None``), never $0. Runs in batches of 500 rows, each its
        own transaction (safe to run again). Run totals (``runs.cost_usd``)
        are not changed; usage rollups (``usage_days``) move with the rows.
        """
        where = _recompute_where(self.tenant_id, since, until, model)
        rows = changed = 0
        by_source = {"user": 0, "price_table": 0, "unpriced": 0}
        after = ""
        while True:
            steps = functools.partial(self._reprice_steps, where, after, dry_run)
            batch: _Repriced = yield Write("recomputing costs", steps, atomic=True)
            rows += batch.rows
            changed += batch.changed
            for source, n in batch.by_source.items():
                by_source[source] += n
            if batch.rows < _BATCH:
                break
            after = batch.last_id
        return RecomputeReport(rows=rows, changed=changed, by_source=by_source)

    def _reprice_steps(
        self, where: builtins.list[sa.ColumnElement[bool]], after: str, dry_run: bool
    ) -> Steps[_Repriced]:
        """A batch of the rows after ``after``, each priced again; the new costs stored (and
        moved in their days' totals) unless ``dry_run``. Each model's price is read once."""
        sql, tenant = self._core.message_sql, self.tenant_id
        pick = sa.select(*_RECOMPUTE_COLUMNS).where(*where, ut.c.id > after)
        pick = pick.order_by(ut.c.id).limit(_BATCH)
        batch = named(pick, (yield sql.adhoc(pick)))
        upsert = sql.compiled(usage_days.upsert_sql(self._core.dialect.name))
        known: dict[tuple[str, str], Any] = {}
        by_source = {"user": 0, "price_table": 0, "unpriced": 0}
        changed = 0
        for row in batch:
            key = (row["provider"], row["model"])
            if key not in known:
                known[key] = yield from stored_price(sql, tenant, *key)
            cost = price_from(known[key], self._core.price_file, row)
            by_source[cost["cost_source"] or "unpriced"] += 1
            if all(cost[k] == row[k] for k in cost):
                continue
            changed += 1
            if not dry_run:
                mine = {"r_tenant": tenant, "r_id": row["id"]}
                yield Stmt(sql.compiled(_REPRICE), {**cost, **mine}, COUNT)
                moved = usage_days.repriced(row, cost["cost_nano_usd"])
                if moved is not None:
                    yield Stmt(upsert, moved, COUNT)
        last = batch[-1]["id"] if batch else after
        return _Repriced(len(batch), changed, by_source, last)


class _Repriced(NamedTuple):
    """What one batch of a recompute did."""

    rows: int
    changed: int
    by_source: dict[str, int]
    last_id: str


#: A usage row's cost columns set again (``Prices.recompute``; ``:r_tenant``, ``:r_id``).
_REPRICE = (
    sa.update(ut)
    .where(ut.c.tenant_id == sa.bindparam("r_tenant"), ut.c.id == sa.bindparam("r_id"))
    .values(
        {
            name: sa.bindparam(name, type_=ut.c[name].type)
            for name in ("cost_nano_usd", "cost_source", "price_version")
        }
    )
)

_RECOMPUTE_COLUMNS = [
    ut.c.tenant_id,
    ut.c.id,
    ut.c.provider,
    ut.c.model,
    ut.c.agent_id,
    ut.c.user_id,
    ut.c.status,
    ut.c.input_tokens,
    ut.c.cached_tokens,
    ut.c.output_tokens,
    ut.c.reasoning_tokens,
    ut.c.created_at,
    ut.c.cost_nano_usd,
    ut.c.cost_source,
    ut.c.price_version,
]


def _recompute_where(
    tenant_id: str, since: datetime | None, until: datetime | None, model: str | None
) -> list[sa.ColumnElement[bool]]:
    """The usage rows a recompute covers: the tenant's, in the window, of the model, not the caller's."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, datetime):
            raise InvalidInput("must be a datetime", field=name)
    where = [
        ut.c.tenant_id == tenant_id,
        sa.or_(ut.c.cost_source.is_(None), ut.c.cost_source != "caller"),
    ]
    if since is not None:
        where.append(ut.c.created_at >= to_micros(since))
    if until is not None:
        where.append(ut.c.created_at < to_micros(until))
    if model is not None:
        where.append(ut.c.model == require_str(model, "model", max_len=256))
    return where
