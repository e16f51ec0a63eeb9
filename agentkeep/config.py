"""Settings from ``AGENTKEEP_*`` environment variables (and the seeds' own names).

The database URL is the first of: ``AGENTKEEP_DATABASE_URL``, ``DATABASE_URL``,
``DATABASE_PATH`` (a SQLite file path, or ``:memory:``), KODE's
``KODE_STORE_TYPE`` (``sqlite`` with ``KODE_SQLITE_PATH``; ``postgres`` with
``POSTGRES_HOST/PORT/DB/USER/PASSWORD``), else the embedded SQLite default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from agentkeep.errors import InvalidInput

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Pool",
    "RecordLimits",
    "Settings",
    "display_url",
    "normalize_url",
    "url_from_env",
]

DEFAULT_DATABASE_URL = "sqlite:///./data/agentkeep.db"


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _first(env: dict[str, str], *names: str) -> str | None:
    """The value of the first of ``names`` set (non-empty) in ``env``."""
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _backup_time(value: str | None) -> str:
    """``HH:MM`` or ``HH:MM:SS`` (24-hour, the server's local time), default 02:00."""
    if value is None:
        return "02:00"
    parts = value.strip().split(":")
    limits = (23, 59, 59)
    if not (
        len(parts) in (2, 3)
        and all(p.isdigit() and len(p) <= 2 for p in parts)
        and all(int(p) <= limit for p, limit in zip(parts, limits, strict=False))
    ):
        raise InvalidInput(
            "must be HH:MM or HH:MM:SS (24-hour clock)", field="AGENTKEEP_BACKUP_TIME"
        )
    return ":".join(f"{int(p):02d}" for p in parts)


def _choice(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset), case-insensitive."""
    picked = (value or choices[0]).strip().lower()
    if picked not in choices:
        raise InvalidInput(f"must be one of {', '.join(choices)}, not {value!r}", field=name)
    return picked


def _days(value: str | None, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    if not value.strip().isdigit():
        raise InvalidInput("must be a whole number of days", field=name)
    return int(value)


def _int(env: dict[str, str], default: int | None, *names: str) -> int | None:
    value = _first(env, *names)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"must be an integer, not {value!r}", field=names[0]) from None


def _int_in(env: dict[str, str], default: int, name: str, low: int, high: int | None = None) -> int:
    """An integer from ``low`` to ``high`` (None: no bound) in ``name``; ``default`` if unset
    or empty. Checked here, so a bad value stops the service at start, naming the variable."""
    value = _int(env, default, name)
    assert value is not None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"must be an integer {bound}, not {env[name]!r}", field=name)
    return value


def _key_cache_seconds(env: dict[str, str]) -> float:
    """``AGENTKEEP_KEY_CACHE_SECONDS``: 10 when unset; 0 (or less) looks every key up."""
    value = _float(env, "AGENTKEEP_KEY_CACHE_SECONDS")
    if value is None:
        return 10.0
    return max(0.0, value)


def _float(env: dict[str, str], *names: str, unit: str = "seconds") -> float | None:
    value = _first(env, *names)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # "nan" and "inf" parse: an unbounded wait is no setting
        raise InvalidInput(f"must be a finite number of {unit}, not {value!r}", field=names[0])
    return number


def _positive(env: dict[str, str], default: float, *names: str) -> float:
    """A number of seconds greater than zero (the first of ``names`` set), else ``default``."""
    value = _float(env, *names)
    if value is None:
        return default
    if not value > 0:
        raise InvalidInput("must be a number of seconds greater than 0", field=names[0])
    return value


MAX_RESPONSE_TTL_DAYS = 36_500.0  # a century: expiry times stay within a 64-bit column


def _response_ttl_days(env: dict[str, str]) -> float:
    """``AGENTKEEP_RESPONSE_TTL_DAYS``: days greater than 0 (30 when unset or empty).

    Checked here, so a bad value stops the service at start rather than
    failing every create with a 400 on ``ttl_seconds``.
    """
    name = "AGENTKEEP_RESPONSE_TTL_DAYS"
    value = _float(env, name, unit="days")
    if value is None:
        return 30.0
    if not 0 < value <= MAX_RESPONSE_TTL_DAYS:  # NaN fails this too
        raise InvalidInput(
            f"must be a number of days greater than 0 and at most {MAX_RESPONSE_TTL_DAYS:g}, "
            f"not {env[name]!r}",
            field=name,
        )
    return value


def _optional_bool(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"must be true or false, not {value!r}", field=name)


def _at_least_one(env: dict[str, str], default: int, *names: str) -> int:
    value = _int(env, default, *names)
    assert value is not None
    if value < 1:
        raise InvalidInput("must be at least 1", field=names[0])
    return value


def normalize_url(url: str) -> str:
    """A database URL in the form agentkeep parses.

    Accepts the seeds' SQLite forms besides SQLAlchemy's: ``:memory:`` and
    ``sqlite::memory:`` (memory), ``sqlite:./x.db`` (relative) and
    ``sqlite:/data/x.db`` (absolute).
    """
    url = url.strip()
    if url in (":memory:", "sqlite::memory:", "sqlite:memory:"):
        return "memory://"
    if url.startswith("sqlite:") and not url.startswith("sqlite://"):
        path = url[len("sqlite:") :]
        return f"sqlite:///{path}" if path else url
    return url


def display_url(url: str) -> str:
    """``url`` with any password hidden (for logs and command output)."""
    if url.startswith("memory://"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _sqlite_path_url(path: str) -> str:
    return "memory://" if path.strip() == ":memory:" else f"sqlite:///{path}"


def _kode_url(env: dict[str, str]) -> str | None:
    kind = (env.get("KODE_STORE_TYPE") or "").strip().lower()
    if kind == "sqlite":
        return _sqlite_path_url(env.get("KODE_SQLITE_PATH") or "./data/agents.db")
    if kind in ("postgres", "postgresql"):
        user = quote(env.get("POSTGRES_USER") or "kode", safe="")
        password = env.get("POSTGRES_PASSWORD")
        auth = f"{user}:{quote(password, safe='')}" if password else user
        host = env.get("POSTGRES_HOST") or "localhost"
        port = env.get("POSTGRES_PORT") or "5432"
        return f"postgresql://{auth}@{host}:{port}/{env.get('POSTGRES_DB') or 'kode_agents'}"
    return None


def url_from_env(env: dict[str, str] | None = None) -> str:
    """The database URL the environment names (see the module docstring for the order)."""
    e = os.environ if env is None else env
    url = _first(dict(e), "AGENTKEEP_DATABASE_URL", "DATABASE_URL")
    if url:
        return normalize_url(url)
    path = e.get("DATABASE_PATH")
    if path:
        return _sqlite_path_url(path)
    return _kode_url(dict(e)) or DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Pool:
    """Connection pool settings; None keeps the caller's (or SQLAlchemy's) default."""

    size: int | None = None
    max_overflow: int | None = None
    timeout_s: float | None = None
    max_idle_s: float | None = None
    max_lifetime_s: float | None = None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Pool:
        return cls(
            size=_int(env, None, "AGENTKEEP_POOL_SIZE"),
            max_overflow=_int(env, None, "AGENTKEEP_POOL_MAX_OVERFLOW"),
            timeout_s=_float(env, "AGENTKEEP_POOL_TIMEOUT"),
            max_idle_s=_float(env, "AGENTKEEP_POOL_MAX_IDLE"),
            max_lifetime_s=_float(env, "AGENTKEEP_POOL_MAX_LIFETIME"),
        )


@dataclass(frozen=True)
class RecordLimits:
    """Largest media file and session record a store accepts (``store.media``, ``store.history``)."""

    media_max_bytes: int = 20 * 1024 * 1024
    record_max_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_env(cls, env: dict[str, str]) -> RecordLimits:
        return cls(
            media_max_bytes=_at_least_one(env, cls.media_max_bytes, "AGENTKEEP_MEDIA_MAX_BYTES"),
            record_max_bytes=_at_least_one(env, cls.record_max_bytes, "AGENTKEEP_RECORD_MAX_BYTES"),
        )


@dataclass(frozen=True)
class Settings:
    """Everything agentkeep reads from the environment, with its default."""

    database_url: str = DEFAULT_DATABASE_URL
    durability: str = "normal"
    auto_migrate: bool | None = None
    db_schema: str | None = None
    pool: Pool = field(default_factory=Pool)
    limits: RecordLimits = field(default_factory=RecordLimits)
    api_keys: str = ""
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_max_retries: int = 2
    llm_models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 8 * 1024 * 1024
    run_concurrency: int = 16
    response_ttl_days: float = 30.0
    key_cache_seconds: float = 10.0
    sse_keepalive_seconds: float = 15.0
    stream_poll_seconds: float = 0.25
    shutdown_grace_seconds: float = 10.0
    required_action_ttl_seconds: float = 600.0
    rate_limit_enabled: bool | None = None  # None: on for PostgreSQL, off for SQLite and memory
    rate_limit_max_requests: int = 100
    rate_limit_window_ms: int = 60_000
    ui_secret: str | None = None
    backup_dir: str = "./data/backups"
    backup_enabled: bool = True
    backup_time: str = "02:00"
    backup_retention_days: int = 30
    retention_inactive_days: int | None = None
    retention_compact_events: bool = False
    metrics_auth: str = "admin"
    log_format: str = "text"
    prices_path: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        return cls(
            **_store_env(e),
            **_service_env(e),
            **_rate_limit_env(e),
            ui_secret=e.get("AGENTKEEP_UI_SECRET") or None,
            **_backup_env(e),
            **_retention_env(e),
            metrics_auth=_choice(
                e.get("AGENTKEEP_METRICS_AUTH"), "AGENTKEEP_METRICS_AUTH", ("admin", "none")
            ),
            log_format=_choice(
                e.get("AGENTKEEP_LOG_FORMAT"), "AGENTKEEP_LOG_FORMAT", ("text", "json")
            ),
            prices_path=e.get("AGENTKEEP_PRICES") or None,
        )

    @property
    def responses_ttl_seconds(self) -> float:
        """How long a stored response stays readable (``AGENTKEEP_RESPONSE_TTL_DAYS``)."""
        return self.response_ttl_days * 86400.0


# The groups of Settings.from_env, each read in the order of the fields.


def _store_env(e: dict[str, str]) -> dict[str, Any]:
    """The database: its URL, durability, migration, schema, pool and record limits."""
    auto = e.get("AGENTKEEP_AUTO_MIGRATE")
    return {
        "database_url": url_from_env(e),
        "durability": (e.get("AGENTKEEP_DURABILITY") or "normal").lower(),
        "auto_migrate": None if auto in (None, "") else _bool(auto, False),
        "db_schema": e.get("AGENTKEEP_DB_SCHEMA") or None,
        "pool": Pool.from_env(e),
        "limits": RecordLimits.from_env(e),
    }


def _service_env(e: dict[str, str]) -> dict[str, Any]:
    """The service: keys, the LLM upstream, where it listens, and its limits and timings."""
    models = e.get("AGENTKEEP_LLM_MODELS") or ""
    return {
        "api_keys": e.get("AGENTKEEP_API_KEYS", ""),
        "llm_base_url": e.get("AGENTKEEP_LLM_BASE_URL") or None,
        "llm_api_key": e.get("AGENTKEEP_LLM_API_KEY") or None,
        "llm_max_retries": _int_in(e, 2, "AGENTKEEP_LLM_MAX_RETRIES", 0, 10),
        "llm_models": tuple(m.strip() for m in models.split(",") if m.strip()),
        "host": e.get("AGENTKEEP_HOST", "127.0.0.1"),
        "port": _int_in(e, 8080, "AGENTKEEP_PORT", 1, 65535),
        "workers": _int_in(e, 1, "AGENTKEEP_WORKERS", 1),
        "max_body_bytes": _int_in(e, 8 * 1024 * 1024, "AGENTKEEP_MAX_BODY_BYTES", 1),
        "run_concurrency": _int_in(e, 16, "AGENTKEEP_RUN_CONCURRENCY", 1),
        "response_ttl_days": _response_ttl_days(e),
        "key_cache_seconds": _key_cache_seconds(e),
        "sse_keepalive_seconds": _positive(e, 15.0, "AGENTKEEP_SSE_KEEPALIVE_SECONDS"),
        "stream_poll_seconds": _positive(e, 0.25, "AGENTKEEP_STREAM_POLL_SECONDS"),
        "shutdown_grace_seconds": _positive(e, 10.0, "AGENTKEEP_SHUTDOWN_GRACE_SECONDS"),
        "required_action_ttl_seconds": _positive(e, 600.0, "AGENTKEEP_REQUIRED_ACTION_TTL_SECONDS"),
    }


def _rate_limit_env(e: dict[str, str]) -> dict[str, Any]:
    return {
        "rate_limit_enabled": _optional_bool(
            _first(e, "AGENTKEEP_RATE_LIMIT_ENABLED", "ENABLE_RATE_LIMITING"),
            "AGENTKEEP_RATE_LIMIT_ENABLED",
        ),
        "rate_limit_max_requests": _at_least_one(
            e, 100, "AGENTKEEP_RATE_LIMIT_MAX_REQUESTS", "RATE_LIMIT_MAX_REQUESTS"
        ),
        "rate_limit_window_ms": _at_least_one(
            e, 60_000, "AGENTKEEP_RATE_LIMIT_WINDOW_MS", "RATE_LIMIT_WINDOW_MS"
        ),
    }


def _backup_env(e: dict[str, str]) -> dict[str, Any]:
    return {
        "backup_dir": _first(e, "AGENTKEEP_BACKUP_DIR", "DATABASE_BACKUP_DIR") or "./data/backups",
        "backup_enabled": _bool(_first(e, "AGENTKEEP_BACKUP_ENABLED", "AUTO_BACKUP_ENABLED"), True),
        "backup_time": _backup_time(_first(e, "AGENTKEEP_BACKUP_TIME", "AUTO_BACKUP_TIME")),
        "backup_retention_days": _days(
            _first(e, "AGENTKEEP_BACKUP_RETENTION_DAYS", "BACKUP_RETENTION_DAYS"),
            "AGENTKEEP_BACKUP_RETENTION_DAYS",
            30,
        )
        or 0,
    }


def _retention_env(e: dict[str, str]) -> dict[str, Any]:
    return {
        "retention_inactive_days": _days(
            e.get("AGENTKEEP_RETENTION_INACTIVE_DAYS") or None,
            "AGENTKEEP_RETENTION_INACTIVE_DAYS",
            None,
        ),
        "retention_compact_events": _bool(e.get("AGENTKEEP_RETENTION_COMPACT_EVENTS"), False),
    }
