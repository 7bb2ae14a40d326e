"""Log lines for operators: readable text by default, one JSON object per line on request.

``authsvc serve`` hands ``logging_config`` to uvicorn, which applies it before the app starts:
every ``authsvc`` and ``uvicorn`` logger then writes through one formatter, and uvicorn's own
access log is off (``api.request_log`` writes ours, with request ids and route templates).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from authsvc.config import LogFormat

ACCESS_LOGGER = "authsvc.access"
# The fields of a request line, in the order the text format shows them.
ACCESS_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "client_id", "sub")


class _Clock:
    """ISO 8601 UTC with milliseconds; the part up to the second is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, "http", None)
        if fields is not None:
            message = (
                f"{fields['method']} {fields['route'] or '-'} {fields['status']} "
                f"{fields['duration_ms']}ms request_id={fields['request_id']}"
            )
            for name in ("client_id", "sub"):
                if fields.get(name) is not None:
                    message += f" {name}={fields[name]}"
        else:
            message = record.getMessage()
        line = f"{self._clock(record.created)} {record.levelname} {record.name} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._clock(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, "http", None)
        if fields is not None:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``authsvc serve`` (uvicorn's ``log_config``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "authsvc": {"()": JsonFormatter if log_format == "json" else TextFormatter},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "authsvc",
                "stream": "ext://sys.stderr",
            },
        },
        # Third-party warnings (SQLAlchemy, passlib, asyncio) in the same format.
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            "authsvc": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            # Ours replaces it; uvicorn is also started with access_log=False.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
