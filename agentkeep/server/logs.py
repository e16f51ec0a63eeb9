"""The service's logging: uvicorn's text lines, or one JSON object per line.

``agentkeep serve --log-format json`` (``AGENTKEEP_LOG_FORMAT=json``) writes
every record of uvicorn and agentkeep to stderr as JSON with ``time`` (UTC,
ISO 8601), ``level``, ``logger`` and ``message``; an access record (logger
``agentkeep.access``, one per request) adds ``method``, ``path``, ``route``,
``status``, ``duration_ms``, ``request_id`` and ``client``; a record with an
exception adds ``exception`` (its traceback as text).
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

from uvicorn.config import LOGGING_CONFIG

__all__ = ["ACCESS_FIELDS", "JsonFormatter", "log_config"]

ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "request_id", "client")
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging config, plus agentkeep's loggers at INFO on the same handler.

    ``text``: uvicorn's own format, and its access log. ``json``: every line is
    a :class:`JsonFormatter` object, and the access log is agentkeep's (with the
    duration and request id), not uvicorn's.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    loggers = config["loggers"]
    loggers["agentkeep"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if log_format == "text":
        # uvicorn.access already writes a line per request in this format.
        loggers["agentkeep.access"] = {"handlers": [], "level": "WARNING", "propagate": False}
        return config
    config["formatters"] = {"json": {"()": "agentkeep.server.logs.JsonFormatter"}}
    config["handlers"] = {
        "default": {
            "formatter": "json",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        }
    }
    loggers["uvicorn"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    loggers["uvicorn.error"] = {"level": "INFO"}
    loggers["uvicorn.access"] = {"handlers": [], "level": "WARNING", "propagate": False}
    loggers["agentkeep.access"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
