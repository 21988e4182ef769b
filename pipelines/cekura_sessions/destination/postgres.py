"""PostgreSQL as a destination: a connection that says what failed without the password, and
the lock that keeps two runs off one database and dataset, from any machine.

The lock is a session advisory lock (pg_try_advisory_lock): PostgreSQL releases it when the
connection ends, so a run killed with -9 frees it like the flock does a DuckDB file. The
holder is named from pg_stat_activity, where each run's connection says who it is
(application_name). It also ends, without a word, when the server ends the session
(idle_session_timeout, a restart, a failover, pg_terminate_backend): RunLock.confirm asks
before each writing step whether it is still held.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from cekura_sessions.destination.address import Destination, password_of, redacted
from cekura_sessions.destination.warehouse import PostgresWarehouse, WarehouseError
from cekura_sessions.logs import one_line

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
# the longest one statement of ours waits on another session's lock before it fails and its step
# is tried again (Warehouse.retry_on_locks, within --db-wait): without it, DDL waits behind a
# reader's open transaction for ever
LOCK_TIMEOUT_SECONDS = 5.0
# the same for each of dlt's load statements: dlt starts a job that failed so again, up to 5
# times (its load.raise_on_max_retries), before the load raises and its wait is said: 5 x 1 s,
# about as soon as ours, where 5 s each kept a lock wait silent for 25 s
LOAD_LOCK_TIMEOUT_SECONDS = 1.0


class PostgresUnavailable(Exception):
    """The server cannot be reached or refused the login; one line, no password."""


class PostgresLockHeld(Exception):
    """Another run holds this database and dataset; the message names it."""


class PostgresLockLost(PostgresLockHeld):
    """The run's lock ended with its session and another run took it: this run must not write
    again; the message names the holder and the step it stopped before."""


def connect(destination: Destination, application_name: str = "cekura-sessions",
            wait_seconds: float = 0.0) -> PostgresWarehouse:
    """A PostgresWarehouse (autocommit) on `destination` whose statements wait at most
    lock_timeout_seconds(wait_seconds) on another session's lock, and whose steps that met one
    are tried again for `wait_seconds` (--db-wait). Raises PostgresUnavailable, whose message
    names the database without its password and says what to check."""
    import psycopg2  # the `postgres` extra

    try:
        con = psycopg2.connect(destination.url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name=application_name[:63])
    except psycopg2.Error as error:
        detail = one_line(error).replace(destination.url or "", str(destination))
        raise PostgresUnavailable(f"cannot connect to {destination}: {_without_password(detail, destination)}; "
                                  "check the URL in --db or CEKURA_DB, and that the server is up") from None
    con.autocommit = True
    warehouse = PostgresWarehouse(con)
    warehouse.execute(f"set lock_timeout = {lock_timeout_ms(min(wait_seconds, LOCK_TIMEOUT_SECONDS))}")
    warehouse.lock_wait_seconds = wait_seconds
    warehouse.settings  # noqa: B018 (read now: after a failed statement the session answers nothing)
    return warehouse


def lock_timeout_ms(seconds: float) -> int:
    """`seconds` as a lock_timeout in milliseconds, at least 100 (0 would mean no limit)."""
    return max(100, int(seconds * 1000))


def lock_key(dataset: str) -> int:
    """The advisory lock's key for one dataset (a signed 64-bit integer, as PostgreSQL wants)."""
    digest = hashlib.blake2b(f"cekura_sessions:{dataset}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(warehouse: PostgresWarehouse, dataset: str) -> Iterator[None]:
    """Hold the run lock of `dataset` on this connection while the block runs. Raises
    PostgresLockHeld at once, naming the holder, when another session has it."""
    key = lock_key(dataset)
    (taken,) = warehouse.execute("select pg_try_advisory_lock(?)", [key]).fetchone()
    if not taken:
        raise PostgresLockHeld(f"another run holds the lock on {dataset} ({_holder(warehouse, key)})")
    try:
        yield
    finally:
        try:
            warehouse.execute("select pg_advisory_unlock(?)", [key])
        except WarehouseError:
            pass  # the connection is gone: PostgreSQL has released the lock with it


class RunLock:
    """The run lock of one dataset, held by a connection of its own (`open_connection()` makes
    one). `take()` raises PostgresLockHeld naming the holder; `confirm(step)` before each writing
    step: still held, nothing; lost with its session and free, taken again on a new connection
    and said in one log line; lost to another run, PostgresLockLost. `release()` at the end."""

    def __init__(self, open_connection: Callable[[], PostgresWarehouse], dataset: str) -> None:
        self._open, self.dataset, self._key = open_connection, dataset, lock_key(dataset)
        self._warehouse: PostgresWarehouse | None = None

    def take(self) -> None:
        warehouse = self._open()
        try:
            (taken,) = warehouse.execute("select pg_try_advisory_lock(?)", [self._key]).fetchone()
            if not taken:
                raise PostgresLockHeld(f"another run holds the lock on {self.dataset} ({_holder(warehouse, self._key)})")
        except BaseException:
            warehouse.close()
            raise
        self._warehouse = warehouse

    def confirm(self, step: str) -> None:
        """Raises PostgresLockLost (another run has the lock), or PostgresUnavailable (the server
        cannot be reached to take it again)."""
        why = self._lost_because()
        if why is None:
            return
        self._close()
        try:
            self.take()
        except PostgresLockLost:
            raise
        except PostgresLockHeld as error:
            holder = str(error).partition(" (")[2].rstrip(")")
            raise PostgresLockLost(f"the run lock on {self.dataset} was lost ({why}) and another run holds it now "
                                   f"({holder}); stopped before the {step}: what this run loaded is complete, the "
                                   "next run finishes the rest") from None
        log.warning("the run lock on %s was lost (%s) and was free: taken again before the %s",
                    self.dataset, why, step)

    def release(self) -> None:
        if self._warehouse is not None:
            try:
                self._warehouse.execute("select pg_advisory_unlock(?)", [self._key])
            except WarehouseError:
                pass  # the connection is gone: PostgreSQL has released the lock with it
            self._close()

    def _lost_because(self) -> str | None:
        """None while this session holds the lock; else why it does not (one line)."""
        if self._warehouse is None:
            return "it was never taken"
        high, low = (self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF
        try:
            (held,) = self._warehouse.execute(
                "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid() "
                "and classid = ? and objid = ? and granted", [high, low]).fetchone()
        except WarehouseError as error:
            said = one_line(error.__cause__ or error)
            return f"its session ended: {said[:160]}"
        return None if held else "its session no longer holds it"

    def _close(self) -> None:
        if self._warehouse is not None:
            try:
                self._warehouse.close()
            except Exception:  # noqa: BLE001 (a connection the server ended may refuse even this)
                pass
            self._warehouse = None


def lock_holder(warehouse: PostgresWarehouse, dataset: str) -> str | None:
    """Who holds `dataset`'s run lock now (a night is running), read from pg_locks without taking
    it; None when no session holds it."""
    holder = _holder(warehouse, lock_key(dataset))
    return None if holder == "holder unknown" else holder


def _holder(warehouse: PostgresWarehouse, key: int) -> str:
    # an 8-byte key is stored as classid (high half) and objid (low half), both unsigned
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = warehouse.execute(
        "select a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local socket'), "
        "a.backend_start from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and l.classid = ? and l.objid = ? and l.granted limit 1",
        [high, low],
    ).fetchone()
    if row is None:
        return "holder unknown"
    pid, application, address, since = row
    return f"{application or 'a session'}, server pid {pid}, from {address}, since {since:%Y-%m-%d %H:%M:%S %Z}"


def _without_password(text: str, destination: Destination) -> str:
    """libpq quotes parts of the connection string in some messages: never the password."""
    raw = urlsplit(destination.url or "").password  # libpq may quote it still percent-encoded
    for secret in {raw, password_of(destination.url or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return redacted(text) if "://" in text else text
