"""The destination of a night: connections (a DuckDB file waited for a bounded time while
another process holds it, or a PostgreSQL database), the run lock, dlt's destination and its
working folder."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import duckdb

from cekura_sessions import settings
from cekura_sessions.destination import lock, postgres
from cekura_sessions.destination.address import MOTHERDUCK, Destination
from cekura_sessions.destination.dataset import Dataset
from cekura_sessions.destination.warehouse import DuckDBWarehouse, Warehouse
from cekura_sessions.logs import one_line

log = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseBusy(Exception):
    """Another process holds the DuckDB file."""


class DatabaseUnavailable(Exception):
    """The file cannot be opened at all (not a lock: a path, permission or corruption problem)."""


class LockLost(DatabaseBusy):
    """The run's lock ended with its session (PostgreSQL) and another run holds it now: nothing
    more may be written, the ledger included; the message names the holder and the step."""


class connect:
    """A DuckDB connection that waits a bounded time for a file another process holds."""

    def __init__(self, db_path: Path, wait_seconds: float, read_only: bool = False) -> None:
        self._db_path, self._wait_seconds, self._read_only = db_path, wait_seconds, read_only

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self._con = open_waiting(lambda: _open(self._db_path, self._read_only), self._db_path, self._wait_seconds)
        return self._con

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def _open(db_path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to `db_path`, opened as dlt opens its own (nothing given to the open, the
    settings applied after it). DuckDB keeps one database per file and process while a connection
    to it is open, and hands it to each later open of the file given the same config (its
    instance cache; another config is refused): opened alike, ours and dlt's share it while
    Database.keep_open() holds it, each open then a new connection to it (measured: 0.3 ms, not
    the 25 to 35 ms of starting DuckDB's database again) and no checkpoint at each close. A file
    that does not exist yet is first created with the whole config, since the storage version is
    chosen as it is created."""
    if not db_path.exists() and not read_only:
        duckdb.connect(str(db_path), config=dict(settings.DUCKDB_CONFIG)).close()
    con = duckdb.connect(str(db_path), read_only=read_only)
    try:
        for name, value in settings.DUCKDB_CONFIG.items():
            con.execute(f"set global {name} = ?", [value])
    except BaseException:
        con.close()
        raise
    return con


def open_waiting(open_file: Callable[[], T], db_path: Path, wait_seconds: float) -> T:
    """`open_file()` (a DuckDB open of `db_path`), asked again while another process holds the
    file (DuckDB lets one writer in, and no writer beside a reader), for up to `wait_seconds`:
    after 0.05 s, then twice as long each time up to every half second, since a dashboard's
    query holds the file for a moment only. The wait is logged once, naming the holder. Raises
    DatabaseBusy past the wait, DatabaseUnavailable when the file cannot be opened for another
    reason."""
    deadline = time.monotonic() + wait_seconds
    told = False
    pause = 0.05
    while True:
        try:
            return open_file()
        except duckdb.IOException as error:
            holder = _lock_holder(str(error))
            if holder is None:
                raise DatabaseUnavailable(f"cannot open {db_path}: {one_line(error, first_only=True)}") from None
            if time.monotonic() >= deadline:
                raise DatabaseBusy(
                    f"{db_path} is held by {holder}; close that program (a notebook kernel or "
                    "the DuckDB CLI) or raise --db-wait"
                ) from None
            if not told:  # a wait in silence looks like a hang
                log.warning("%s is held by %s; waiting up to %g s for it (--db-wait)", db_path, holder, wait_seconds)
                told = True
            time.sleep(pause)
            pause = min(0.5, pause * 2)


_DLT_WAITS: dict[str, float] = {}  # DuckDB file -> --db-wait, for dlt's opens of it (waiting_credentials)


def waiting_credentials(db_path: Path, wait_seconds: float) -> Any:
    """dlt's DuckDB credentials for `db_path`, whose every open by dlt waits up to
    `wait_seconds` like ours (open_waiting): without it a reader holding the file for a moment (a
    notebook, a dashboard polling it) fails the load step at once with `Could not set lock on
    file`. dlt has no option for it, and it rebuilds a credentials object from its fields (a
    subclass would be lost), so its connection-pool class is replaced, once per process, by one
    whose borrow waits for the files registered here; other files open as before."""
    from dlt.destinations.impl.duckdb import configuration

    if not getattr(configuration.DuckDbConnectionPool, "waits_for_readers", False):
        configuration.DuckDbConnectionPool = _waiting_pool(configuration.DuckDbConnectionPool)
    _DLT_WAITS[str(db_path)] = wait_seconds
    return configuration.DuckDbCredentials(str(db_path), global_config=dict(settings.DUCKDB_CONFIG))


def _waiting_pool(pool: type) -> type:
    class WaitingPool(pool):  # type: ignore[misc, valid-type]
        waits_for_readers = True

        def borrow_conn(self, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
            borrow = super().borrow_conn
            path = self.credentials._conn_str()
            if self._conn is not None or path not in _DLT_WAITS:  # a duplicate of an open connection
                return borrow(*args, **kwargs)
            return open_waiting(lambda: borrow(*args, **kwargs), Path(path), _DLT_WAITS[path])

    return WaitingPool


def _with_lock_timeout(query: str, wait_seconds: float) -> str:
    """A URL's query with `-clock_timeout=...` added to its libpq `options` (dlt passes them to every
    connection it opens): dlt's statements wait on another session's lock at most `wait_seconds`."""
    pairs = parse_qs(query, keep_blank_values=True)
    given = " ".join(pairs.pop("options", []))
    if "lock_timeout" not in given:  # a timeout the URL sets is the operator's choice
        given = f"{given} -clock_timeout={postgres.lock_timeout_ms(wait_seconds)}".strip()  # no space: ADBC reads a `+`
    pairs["options"] = [given]
    return "&".join(f"{key}={quote(value, safe='')}" for key, values in pairs.items() for value in values)


def _lock_holder(message: str) -> str | None:
    """Who holds the file, from DuckDB's lock error: the program as a person knows it (`cekura-sessions
    run`, a Jupyter kernel, the DuckDB CLI) and its PID; None when the error is not a lock."""
    if "lock" not in message.lower():
        return None
    found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
    if not found:
        return "another process"
    return f"{holder_command(int(found.group(2))) or found.group(1)} (PID {found.group(2)})"


def holder_command(pid: int) -> str | None:
    """What process `pid` runs, as a person would name it, read from /proc (None where there is
    none): DuckDB names only the interpreter (`/usr/bin/python3.11`), which says nothing."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    argv = [arg for arg in argv if arg]
    if not argv:
        return None
    words = [Path(argv[0]).name, *argv[1:]]
    if words[0] == "cekura-sessions" or "cekura_sessions.cli" in words:
        command = next((w for w in words[1:] if not w.startswith("-") and w != "cekura_sessions.cli"), "")
        return f"cekura-sessions {command}".strip()
    if any("ipykernel" in word for word in words):
        return "a Jupyter kernel"
    if words[0] == "duckdb":
        return "the DuckDB CLI"
    # the program and what it runs, never its other arguments (a command line may hold a password)
    if words[0].startswith("python") and len(words) > 1:
        if words[1] in ("-m", "-c"):
            return " ".join(words[:3]) if words[1] == "-m" and len(words) > 2 else f"{words[0]} {words[1]}"
        return f"{words[0]} {Path(words[1]).name}"
    return words[0]


def check_file_name(path: Path, dataset: Dataset) -> None:
    """Raises DatabaseUnavailable when DuckDB would name the file's own database as one of the
    dataset's schemas: DuckDB names it after the file, up to its first dot (`cekura.duckdb` is the
    database `cekura`), and then refuses `cekura.projects` as ambiguous in every statement."""
    catalog = path.name.split(".")[0].lower()
    if catalog in dataset.schemas():
        raise DatabaseUnavailable(
            f"{path}: DuckDB calls this file's database {catalog!r}, as the dataset {dataset.name} calls its schema "
            f"{catalog}, and cannot tell the two apart; name the file otherwise (--db)"
            + ("" if dataset.is_default else ", or choose another --dataset"))


class Database:
    """The night's destination, whichever engine: its connections, its run lock, its dlt
    destination and working folder.

    `destination`: what --db named (destination/address.py); `wait_seconds`: how long a DuckDB
    file held by another process is waited for, and on PostgreSQL how long a step that met
    another session's lock is tried again (each statement of ours waits at most
    postgres.LOCK_TIMEOUT_SECONDS, each of dlt's postgres.LOAD_LOCK_TIMEOUT_SECONDS);
    `dataset`: the schemas this run and its connections work in (`--dataset`), each dataset with
    a run lock of its own on PostgreSQL (a DuckDB file lets one writer in at a time anyway)."""

    lost_lock = False  # set when confirm_lock found the run lock taken by another run

    def __init__(self, destination: Destination, wait_seconds: float = 30.0, dataset: Dataset | None = None) -> None:
        self.dataset = dataset or Dataset()
        if destination.kind == MOTHERDUCK:
            raise DatabaseUnavailable(f"{destination}: MotherDuck is not supported by this version; "
                                      "pass a DuckDB file path or a postgresql:// URL")
        self.destination, self.wait_seconds = destination, wait_seconds
        self.path = destination.path.resolve() if destination.path is not None else None
        if self.path is not None:
            check_file_name(self.path, self.dataset)
        self._run_lock: postgres.RunLock | None = None
        self._kept: duckdb.DuckDBPyConnection | None = None  # what keep_open() holds

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else str(self.destination)

    @property
    def is_file(self) -> bool:
        return self.path is not None

    @contextmanager
    def connect(self, read_only: bool = False, application: str = "cekura-sessions") -> Iterator[Warehouse]:
        """A Warehouse on the destination, closed at the end of the block. Raises DatabaseBusy
        (a DuckDB file held past the wait) or DatabaseUnavailable (one line, no password)."""
        if self.path is not None:
            with connect(self.path, self.wait_seconds, read_only=read_only) as con:
                yield DuckDBWarehouse(con, self.dataset)
            return
        try:
            warehouse = postgres.connect(self.destination, application, self.wait_seconds)
        except postgres.PostgresUnavailable as error:
            raise DatabaseUnavailable(str(error)) from None
        warehouse.dataset = self.dataset
        try:
            if read_only:
                warehouse.execute("set session characteristics as transaction read only")
            yield warehouse
        finally:
            warehouse.close()

    def keep_open(self) -> None:
        """Hold the DuckDB file open until let_go(), for steps that follow one another without
        waiting on the network: every open of it meanwhile, ours or dlt's, is then a connection to
        the one database DuckDB keeps open (see _open), and its changes are checkpointed into the
        file at checkpoint() and let_go(), not at the end of each step. A reader waits meanwhile,
        as it waits for each step now. Raises what connect() raises; nothing on PostgreSQL, or
        when the file is already held."""
        if self.path is None or self._kept is not None:
            return
        path = self.path
        self._kept = open_waiting(lambda: _open(path, read_only=False), path, self.wait_seconds)

    def checkpoint(self) -> None:
        """Write what was changed so far into the DuckDB file now, while keep_open() holds it
        (else each close did: nothing to do; nothing on PostgreSQL). Called after the load, so
        the model build that follows reuses the blocks the load freed: one checkpoint for both at
        let_go() grew the file (100 projects of 400 sessions, changed nights: 61 blocks, 24 of them
        free, instead of 52 and 15). About 10 ms on a small night."""
        if self._kept is not None:
            self._kept.execute("checkpoint")

    def let_go(self) -> None:
        """Close what keep_open() holds (nothing when it holds nothing): the last connection, so
        DuckDB checkpoints its changes into the file. Never raises: what a failed checkpoint leaves
        is in DuckDB's write-ahead log, which the next open replays, so it is only logged."""
        kept, self._kept = self._kept, None
        if kept is None:
            return
        try:
            kept.close()
        except (duckdb.Error, OSError) as error:
            log.warning("%s: closing the file failed (%s); the next open finishes writing it",
                        self.path, one_line(error, first_only=True))

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """One run at a time: the flock beside a DuckDB file; on PostgreSQL a session advisory lock
        on the dataset, held by a connection of its own for the whole run. Raises LockHeld."""
        if self.path is not None:
            with lock.run_lock(self.path, run_id):
                yield
            return
        application = f"cekura-sessions run {run_id} on {socket.gethostname()}"

        def open_connection() -> postgres.PostgresWarehouse:
            try:
                return postgres.connect(self.destination, application)
            except postgres.PostgresUnavailable as error:
                raise DatabaseUnavailable(str(error)) from None

        run_lock = postgres.RunLock(open_connection, self.dataset.raw)
        try:
            run_lock.take()
        except postgres.PostgresLockHeld as error:
            raise lock.LockHeld(str(error)) from None
        self._run_lock = run_lock
        try:
            yield
        finally:
            self._run_lock = None
            run_lock.release()

    def confirm_lock(self, step: str) -> None:
        """Before a writing step (`step`: load, history, models, ledger): on PostgreSQL the run
        lock still held, or taken again if its session ended and it is free (said in one log line).
        Raises LockLost when another run holds it now. A DuckDB file's flock cannot be lost."""
        if self._run_lock is None:
            return
        try:
            self._run_lock.confirm(step)
        except postgres.PostgresLockLost as error:
            self.lost_lock = True
            raise LockLost(str(error)) from None
        except postgres.PostgresUnavailable as error:
            raise DatabaseUnavailable(str(error)) from None

    def running_night(self) -> str | None:
        """Who holds this database's run lock now (a night is running), as one phrase; None when
        it is free. Asked without taking the lock: the kernel's lock table for a DuckDB file's
        flock, pg_locks for PostgreSQL's advisory lock."""
        if self.path is not None:
            return lock.holder_if_held(self.path)
        with self.connect(read_only=True) as warehouse:
            return postgres.lock_holder(warehouse, self.dataset.raw)

    def check_writable(self) -> None:
        """Raises DatabaseUnavailable when the run could not write there (checked before the lock)."""
        if self.path is None:
            return  # the first connection tells: PostgreSQL's privileges are checked as it writes
        folder = self.path.parent
        if not folder.is_dir():
            raise DatabaseUnavailable(f"the folder of the database, {folder}, does not exist; create it or set CEKURA_DB")
        if not os.access(folder, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise DatabaseUnavailable(f"cannot write {self.path}; choose a writable path with --db or CEKURA_DB")

    def pipelines_dir(self) -> Path:
        """dlt's working folder for this database alone: `<db>.dlt/` beside a DuckDB file; for
        PostgreSQL a folder in dlt's data directory named by server, database and user (never
        the password), `postgres-<database>-<hash>`.

        dlt's default (`~/.dlt`, `/var/dlt` as root) is one folder per pipeline name on the machine,
        so every database shared it: after a failed night into one file, dlt's stored schema
        version said the other file's tables existed (every later night into that file failed with
        a CatalogException), and two runs at once removed each other's packages (dlt #1619)."""
        if self.path is not None:
            return self.path.with_name(self.path.name + settings.PIPELINES_DIR_SUFFIX)
        from dlt.common.runtime.run_context import active  # dlt's data dir: DLT_DATA_DIR, ~/.dlt or /var/dlt

        parts = urlsplit(self.destination.url or "")
        where = f"{parts.hostname}|{parts.port}|{parts.path}|{parts.username}|{sorted(parse_qs(parts.query).get('host', []))}"
        digest = hashlib.blake2b(where.encode(), digest_size=4).hexdigest()
        return Path(active().data_dir) / "cekura-sessions" / f"postgres-{self.destination.database_name}-{digest}"

    def dlt_destination(self) -> Any:
        """dlt's destination for this database. For PostgreSQL dlt wants a host and a password
        even on a trusted local socket: `localhost` and a placeholder stand in, and a `host=`
        parameter (the socket folder) still decides where libpq connects."""
        import dlt

        if self.path is not None:
            return _resolved_once(dlt.destinations.duckdb(waiting_credentials(self.path, self.wait_seconds)))
        parts = urlsplit(self.destination.url or "")
        user = quote(unquote(parts.username or ""), safe="")
        password = quote(unquote(parts.password or "") or "unused", safe="")
        host = parts.netloc.rpartition("@")[2] or "localhost"
        # each of dlt's statements waits for a lock briefly (postgres.LOAD_LOCK_TIMEOUT_SECONDS);
        # its load is started again within --db-wait (run/dlt_pipeline.py load_waiting)
        query = _with_lock_timeout(parts.query, min(self.wait_seconds, postgres.LOAD_LOCK_TIMEOUT_SECONDS))
        url = f"postgresql://{user}:{password}@{host}{parts.path}?{query}"
        return _resolved_once(dlt.destinations.postgres(credentials=url))


def _resolved_once(destination: Any) -> Any:
    """`destination`, whose partial configuration (what its capabilities are adjusted by) is
    resolved once, not on each of the thirty or so capabilities() calls dlt makes in a night
    (each walks every config provider for every field: measured, about 12% of a night's time on a
    DuckDB file). Why by hand: dlt has no switch for it. The full configuration a client is
    made with (accept_partial False) is still resolved each time, as dlt does."""
    resolve = destination.configuration
    resolved: list[Any] = []

    def configuration(initial_config: Any, accept_partial: bool = False) -> Any:
        if not accept_partial:
            return resolve(initial_config, accept_partial)
        if not resolved:
            resolved.append(resolve(initial_config, accept_partial=True))
        return resolved[0]

    destination.configuration = configuration
    return destination
