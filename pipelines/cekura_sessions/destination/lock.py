"""One run at a time per database: an flock on `<db>.lock`, released by the kernel even on kill -9."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path


class LockHeld(Exception):
    """Another run holds the lock; the message names it."""


class LockUnavailable(Exception):
    """The lock file cannot be created next to the database."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextmanager
def run_lock(db_path: Path, run_id: str) -> Iterator[None]:
    path = lock_path(db_path)
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as error:
        raise LockUnavailable(f"cannot write {path} ({error.strerror}); choose a writable path with --db or CEKURA_DB") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"another run holds {path} ({_holder(path)})") from None
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id,
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        handle.write(json.dumps(holder))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the flock


def holder_if_held(db_path: Path) -> str | None:
    """The holder of `db_path`'s run lock when a run holds it now, else None. Read from the
    kernel's table of locks (/proc/locks), never by taking the lock: a status that held it even
    for a moment could turn away the night starting then. None where that table is not there."""
    path = lock_path(db_path)
    try:
        stat = path.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device:
            return _holder(path)
    return None


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return (f"cekura-sessions run (PID {holder['pid']}) on {holder['host']}, run {holder['run_id']} "
                f"since {holder['since']}")
    except (OSError, ValueError, KeyError):
        return "holder unknown"
