"""Logging to stderr: readable text by default, JSON lines for log shippers; secrets masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value in every log line, whichever library writes it (defence in depth)."""
    if value and len(value.strip()) >= 4:
        _SECRETS.add(value.strip())


def _mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _mask(json.dumps(entry, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    adopt_dlt_logger()


def adopt_dlt_logger() -> None:
    """dlt installs its own handler and format when a pipeline is created; route its records
    through ours instead, so the format, the level and the masking apply to them too."""
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.handlers[:] = []
    dlt_logger.propagate = True
    dlt_logger.setLevel(max(logging.getLogger().level, logging.WARNING))
