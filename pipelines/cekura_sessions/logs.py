"""Logging to stderr, and the lines a command says to people: readable text by default, or with
`--log-format json` one JSON object a line (time, level, logger, message, run_id), so a log file
that collects both streams reads with `jq`. Secrets are masked in either format."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

_SECRETS: set[str] = set()


class _State:
    """What every line needs and no call site should pass: the format, the run it belongs to,
    and the last error line said (the one-line summary under --log-file repeats it)."""

    log_format = "text"
    run_id: str | None = None
    last_error: str | None = None
    output_lost: str | None = None  # why a line could not be written (a full disk)


def register_secret(value: str | None) -> None:
    """Mask this value in every log line, whichever library writes it (defence in depth)."""
    if value and len(value.strip()) >= 4:
        _SECRETS.add(value.strip())


def set_format(log_format: str) -> None:
    """"text" or "json"; set before argument parsing, so even a usage error is a JSON line."""
    _State.log_format = log_format


def set_run_id(run_id: str | None) -> None:
    """Stamp every following line with this run's id (the `run_id` of `cekura_raw.pipeline_runs`).
    A plain attribute, not a context variable: the fetch threads log for the same run."""
    _State.run_id = run_id


def current_run_id() -> str | None:
    return _State.run_id


def last_error() -> str | None:
    """The message of the last `say(..., level="error")`, masked; None if there was none."""
    return _State.last_error


def _mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def _json_line(created: float, level: str, logger: str, message: str, **fields: Any) -> str:
    entry = {
        "time": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message.strip(" "),
        "run_id": _State.run_id,
        **fields,
    }
    return _mask(json.dumps(entry, ensure_ascii=False, default=str))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {"exception": self.formatException(record.exc_info)} if record.exc_info else {}
        return _json_line(record.created, record.levelname.lower(), record.name, record.getMessage(), **extra)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


def setup_logging(level: str = "INFO", log_format: str = "text", dated: bool = False) -> None:
    """Route every logger (dlt's and Python's warnings included) to stderr in `log_format`;
    `dated` text lines carry the date too (a log file keeps many nights)."""
    set_format(log_format)
    _State.last_error = None
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        clock = "%Y-%m-%d %H:%M:%S" if dated else "%H:%M:%S"
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", clock))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # a library's DeprecationWarning would otherwise be a bare text line among the JSON ones
    logging.captureWarnings(True)
    adopt_dlt_logger()


def adopt_dlt_logger() -> None:
    """dlt installs its own handler and format when a pipeline is created; route its records
    through ours instead, so the format, the level and the masking apply to them too."""
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.handlers[:] = []
    dlt_logger.propagate = True
    dlt_logger.setLevel(max(logging.getLogger().level, logging.WARNING))


def one_line(said: BaseException | str, *, first_only: bool = False) -> str:
    """What an error (or a text) says, as one line of a message: its whitespace and line breaks
    collapsed to single spaces. `first_only` keeps its first line alone, for errors whose further
    lines repeat a chain of wrapped errors or a trace (dlt's step failures, DuckDB's context). An
    error that says nothing is named by its type."""
    text = str(said).strip()
    if first_only:
        text = text.splitlines()[0] if text else ""
    text = " ".join(text.split())
    if not text and isinstance(said, BaseException):
        return type(said).__name__
    return text


def say(message: str, *, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    """One line a command says to people: the run's summary, a verdict, the error line.

    Text: `message` as is, errors prefixed `cekura-sessions: `. JSON: one object with time, level,
    logger "cekura_sessions.cli", message, run_id and `fields` (counts, exit_code). Goes to
    stdout unless `stream` is given (errors: stderr). Not subject to --log-level: these lines are
    the command's output. A reader that went away (`status | head`) ends the output quietly."""
    if level == "error":
        _State.last_error = _mask(message)
    if stream is None:
        stream = sys.stderr if level == "error" else sys.stdout
    if _State.log_format == "json":
        text = _json_line(datetime.now(timezone.utc).timestamp(), level, "cekura_sessions.cli", message, **fields)
    else:
        text = _mask(f"cekura-sessions: {message}" if level == "error" else message)
    _emit(text, stream)


def write(text: str, stream: TextIO | None = None) -> None:
    """Print a block of output (a table) to `stream`, stdout by default; in JSON mode as one
    object whose message holds the block, so a log file stays one JSON object a line."""
    if _State.log_format == "json":
        text = _json_line(datetime.now(timezone.utc).timestamp(), "info", "cekura_sessions.cli", text)
    _emit(text, stream or sys.stdout)


def _emit(text: str, stream: TextIO) -> None:
    """Write and flush; when the reader closed the pipe (`status | head`), point the stream at
    /dev/null, so neither this nor the interpreter's final flush prints a BrokenPipeError."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except OSError as error:
        if error.errno in _FULL:
            # a full disk under the log file must not change how the command ends: the exit
            # code and the mailed line (on the original stdout) still say it
            _State.output_lost = f"{os.strerror(error.errno)} writing the output"
            return
        if error.errno != errno.EPIPE:
            raise
        _silence(stream)


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def output_lost() -> str | None:
    """Why output could not be written (a full disk under --log-file), or None."""
    return _State.output_lost


def _silence(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's capture): nothing left to flush
        pass
