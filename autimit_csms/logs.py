"""Log lines for operators: one line per event, text for people or JSON for a pipeline.

Owns: the root logging configuration (`--log-level`, `--log-format`), and the
context every line about a station carries -- station code, connection id and
OCPP message id -- kept in context variables that the connection task sets
(Trio tasks inherit them), so no call site passes them by hand. It never
decides what is logged: callers keep secrets, hashes and id tags out of messages.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any, Final

STATION: Final = contextvars.ContextVar[str | None]("station", default=None)
CONNECTION: Final = contextvars.ContextVar[str | None]("connection", default=None)
MESSAGE: Final = contextvars.ContextVar[str | None]("message", default=None)

_CONTEXT: Final = (("station", STATION), ("connection", CONNECTION), ("messageId", MESSAGE))
# LogRecord attributes that are not extras given by a call site.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName", "context", *(name for name, _ in _CONTEXT)}


class StationContext(logging.Filter):
    """Copies the station context of the current task onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """`2026-12-03 10:00:00,123 INFO name [CP-1 c7 m42]: message`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [str(value) for value in (getattr(record, name, None) for name, _ in _CONTEXT)
                 if value is not None]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    station context when there is one, extras given by the call site, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: str = "INFO", form: str = "text") -> None:
    """Root logger to stderr at `level`, in `form` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    handler.addFilter(StationContext())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
