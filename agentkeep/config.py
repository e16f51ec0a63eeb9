"""Settings from ``AGENTKEEP_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from agentkeep.errors import InvalidInput

__all__ = ["DEFAULT_DATABASE_URL", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///./data/agentkeep.db"


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _first(env: dict[str, str], *names: str) -> str | None:
    """The first of ``names`` set (non-empty) in ``env``: agentkeep's name, then the seed's."""
    for name in names:
        if env.get(name):
            return env[name]
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


def _days(value: str | None, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    if not value.strip().isdigit():
        raise InvalidInput("must be a whole number of days", field=name)
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything agentkeep reads from the environment, with its default."""

    database_url: str = DEFAULT_DATABASE_URL
    durability: str = "normal"
    auto_migrate: bool | None = None
    api_keys: str = ""
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 8 * 1024 * 1024
    run_concurrency: int = 16
    response_ttl_days: float = 30.0
    key_cache_seconds: float = 10.0
    ui_secret: str | None = None
    backup_dir: str = "./data/backups"
    backup_enabled: bool = True
    backup_time: str = "02:00"
    backup_retention_days: int = 30
    retention_inactive_days: int | None = None
    retention_compact_events: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        auto = e.get("AGENTKEEP_AUTO_MIGRATE")
        return cls(
            database_url=e.get("AGENTKEEP_DATABASE_URL")
            or e.get("DATABASE_URL")
            or DEFAULT_DATABASE_URL,
            durability=(e.get("AGENTKEEP_DURABILITY") or "normal").lower(),
            auto_migrate=None if auto in (None, "") else _bool(auto, False),
            api_keys=e.get("AGENTKEEP_API_KEYS", ""),
            llm_base_url=e.get("AGENTKEEP_LLM_BASE_URL") or None,
            llm_api_key=e.get("AGENTKEEP_LLM_API_KEY") or None,
            host=e.get("AGENTKEEP_HOST", "127.0.0.1"),
            port=int(e.get("AGENTKEEP_PORT", "8080")),
            max_body_bytes=int(e.get("AGENTKEEP_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
            run_concurrency=int(e.get("AGENTKEEP_RUN_CONCURRENCY") or 16),
            response_ttl_days=float(e.get("AGENTKEEP_RESPONSE_TTL_DAYS") or 30),
            key_cache_seconds=max(0.0, float(e.get("AGENTKEEP_KEY_CACHE_SECONDS") or 10.0)),
            ui_secret=e.get("AGENTKEEP_UI_SECRET") or None,
            backup_dir=_first(e, "AGENTKEEP_BACKUP_DIR", "DATABASE_BACKUP_DIR") or "./data/backups",
            backup_enabled=_bool(
                _first(e, "AGENTKEEP_BACKUP_ENABLED", "AUTO_BACKUP_ENABLED"), True
            ),
            backup_time=_backup_time(_first(e, "AGENTKEEP_BACKUP_TIME", "AUTO_BACKUP_TIME")),
            backup_retention_days=_days(
                _first(e, "AGENTKEEP_BACKUP_RETENTION_DAYS", "BACKUP_RETENTION_DAYS"),
                "AGENTKEEP_BACKUP_RETENTION_DAYS",
                30,
            )
            or 0,
            retention_inactive_days=_days(
                e.get("AGENTKEEP_RETENTION_INACTIVE_DAYS") or None,
                "AGENTKEEP_RETENTION_INACTIVE_DAYS",
                None,
            ),
            retention_compact_events=_bool(e.get("AGENTKEEP_RETENTION_COMPACT_EVENTS"), False),
        )

    @property
    def responses_ttl_seconds(self) -> float:
        """How long a stored response stays readable (``AGENTKEEP_RESPONSE_TTL_DAYS``)."""
        return self.response_ttl_days * 86400.0
