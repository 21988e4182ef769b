"""Connections to the DuckDB file: wait a bounded time for a file another process holds."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import duckdb

from cekura_sessions import settings

log = logging.getLogger(__name__)


class DatabaseBusy(Exception):
    """Another process holds the DuckDB file."""


class DatabaseUnavailable(Exception):
    """The file cannot be opened at all (not a lock: a path, permission or corruption problem)."""


class connect:
    """A DuckDB connection that waits a bounded time for a file another process holds."""

    def __init__(self, db_path: Path, wait_seconds: float, read_only: bool = False) -> None:
        self._db_path, self._wait_seconds, self._read_only = db_path, wait_seconds, read_only

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self._wait_seconds
        told = False
        while True:
            try:
                self._con = duckdb.connect(str(self._db_path), read_only=self._read_only,
                                           config=dict(settings.DUCKDB_CONFIG))
                return self._con
            except duckdb.IOException as error:
                holder = _lock_holder(str(error))
                if holder is None:
                    raise DatabaseUnavailable(f"cannot open {self._db_path}: {first_line(error)}") from None
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(
                        f"{self._db_path} is held by {holder}; close that program (a notebook kernel or "
                        "the DuckDB CLI) or raise --db-wait"
                    ) from None
                if not told:  # a wait in silence looks like a hang
                    log.warning("%s is held by %s; waiting up to %g s for it (--db-wait)",
                                self._db_path, holder, self._wait_seconds)
                    told = True
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def _lock_holder(message: str) -> str | None:
    if "lock" not in message.lower():
        return None
    found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
    return f"{found.group(1)} (PID {found.group(2)})" if found else "another process"




def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
