"""One SQL connection to the destination, DuckDB or PostgreSQL, as the SQL we write ourselves
needs it: `?` parameters, one error class for "no such table", the catalog through
information_schema, and a SELECT written in DuckDB's dialect turned into PostgreSQL's.

What dlt loads goes through dlt; this is for the models, the checks and the run's own
bookkeeping, so none of them holds an engine's connection or catches an engine's exceptions.
Why not SQLAlchemy: its Core would still need our SQL per dialect (percentiles, time zones,
safe casts), and dlt already brings sqlglot, which turns a DuckDB SELECT into PostgreSQL's.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import duckdb

from cekura_sessions.destination.dataset import Dataset
from cekura_sessions.logs import one_line

DUCKDB, POSTGRES = "duckdb", "postgres"
T = TypeVar("T")

log = logging.getLogger(__name__)


INSERT_BATCH = 500  # rows a statement of DuckDBWarehouse.executemany inserts
_VALUES_ROW = re.compile(r"(.*\bvalues\s*)(\(\s*\?(?:\s*,\s*\?)*\s*\))\s*", re.IGNORECASE | re.DOTALL)


class WarehouseError(Exception):
    """A statement failed; the message is the engine's, on one line."""


class MissingObject(WarehouseError):
    """A table, view, schema, column or function the statement names does not exist."""


class SettingError(WarehouseError):
    """A server setting or a missing privilege stopped a statement (PostgreSQL): the message is one
    line naming the statement and the setting (statement_timeout, lock_timeout and --db-wait, a
    grant), never the engine's bare text."""


class StatementTimeout(SettingError):
    """The server cancelled a statement after its statement_timeout."""


class PermissionDenied(SettingError):
    """The role lacks a privilege the statement needs."""


class LockTimeout(SettingError):
    """A statement waited on another session's lock past lock_timeout, and (raised by
    `retry_on_locks`) kept waiting past --db-wait."""


class Cursor(Protocol):
    description: Any

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class Warehouse:
    """A connection and its dialect. `execute(sql, params)` takes `?` placeholders on both
    engines and returns a cursor (fetchone, fetchall, description); errors are WarehouseError
    or MissingObject. `con` is the engine's own connection, for what only it can do.
    `dataset`: whose schemas the statements mean; SQL naming the default dataset's schemas
    (`analytics.sessions`) is run on that dataset's (destination/dataset.py)."""

    dialect: str
    # how long a step that met another session's lock is tried again (--db-wait); 0: not at all
    lock_wait_seconds: float = 0.0

    def __init__(self, con: Any, dataset: Dataset | None = None) -> None:
        self.con = con
        self.dataset = dataset or Dataset()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def changed_rows(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run an INSERT, UPDATE or DELETE; how many rows it wrote."""
        raise NotImplementedError

    def select_sql(self, sql: str) -> str:
        """A SELECT written in DuckDB's dialect, as this engine reads it."""
        return sql

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or nothing does (both engines have
        transactional DDL: a failed model build keeps the previous models)."""
        self.execute("begin transaction")
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.execute("commit")

    def rollback(self) -> None:
        try:
            self.execute("rollback")
        except WarehouseError:
            pass  # a failed commit has already ended the transaction

    def columns(self, schema: str, table: str) -> list[str]:
        """The table's (or view's) columns in order; empty when there is no such table."""
        return [name for (name,) in self.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [self.dataset.schema(schema), table],
        ).fetchall()]

    def columns_by_table(self, schemas: Sequence[str]) -> dict[tuple[str, str], list[str]]:
        """{(schema, table): its columns in order} for every table and view of `schemas`, keyed by
        the schema names the SQL writes (the default dataset's): one catalog query, where
        `columns` costs one per table."""
        named = {self.dataset.schema(schema): schema for schema in schemas}
        found: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in self.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            f"where table_schema in ({', '.join('?' * len(named))}) "
            "order by table_schema, table_name, ordinal_position",
            list(named),
        ).fetchall():
            found.setdefault((named[schema], table), []).append(column)
        return found

    def has_table(self, schema: str, table: str) -> bool:
        return self.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [self.dataset.schema(schema), table],
        ).fetchone()[0] > 0

    def lock_holders(self) -> str:
        """Who holds locks this connection may wait on, for a person to find (`""`: unknown)."""
        return ""

    def retry_on_locks(self, attempt: Callable[[], T], what: str) -> T:
        """`attempt()`, run again while it fails with LockTimeout (it must undo its own work, as a
        rolled-back transaction does), for up to `lock_wait_seconds`; the wait is logged once,
        naming the holders. Raises LockTimeout past the wait: one line naming `what`, the
        holders and --db-wait."""
        deadline = time.monotonic() + self.lock_wait_seconds
        told = False
        while True:
            try:
                return attempt()
            except LockTimeout as error:
                holders = self.lock_holders() or "another session"
                if not told:  # a wait in silence looks like a hang
                    log.warning("%s waits for a lock held by %s; trying again for up to %g s (--db-wait)",
                                what, holders, self.lock_wait_seconds)
                    told = True
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{what} waited past --db-wait ({self.lock_wait_seconds:g} s) for a lock held "
                                      f"by {holders}; end that session's transaction, or raise --db-wait") from error
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


class DuckDBWarehouse(Warehouse):
    dialect = DUCKDB

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        sql = self.dataset.sql(sql)
        try:
            return self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        except duckdb.CatalogException as error:
            raise MissingObject(one_line(error)) from error
        except duckdb.Error as error:
            raise WarehouseError(one_line(error)) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `sql`, an INSERT ending in `values (?, ...)`, for each of `rows`, as one statement
        per INSERT_BATCH rows. Why not DuckDB's own executemany: it runs the statement once a row,
        about 2 ms each. Raises ValueError for any other statement, and what `execute` raises."""
        found = _VALUES_ROW.fullmatch(sql)
        if found is None:
            raise ValueError(f"executemany takes an INSERT ending in values (?, ...), not: {one_line(sql)}")
        head, row = found.groups()
        for start in range(0, len(rows), INSERT_BATCH):
            batch = rows[start:start + INSERT_BATCH]
            self.execute(head + ", ".join([row] * len(batch)), [value for each in batch for value in each])

    def has_table(self, schema: str, table: str) -> bool:
        """Warehouse.has_table, asked first of DuckDB's binder (`con.table`), which finds a table,
        or a view that still reads, without a query: 0.3 ms against 1.5 to 3.7 ms for a query of
        the catalog functions (measured on a test night's file; a small night asks 14 times, and
        the binder's failure leaves a transaction usable). Only when it finds nothing (no such
        table, or a view whose own table is gone) is the catalog asked, as the rule is written:
        DuckDB's own functions, as its information_schema.tables is a view over them that costs
        twice as much."""
        schema = self.dataset.schema(schema)
        try:
            self.con.table(".".join('"' + part.replace('"', '""') + '"' for part in (schema, table)))
            return True
        except duckdb.Error:
            pass
        return self.execute(
            "select count(*) from (select schema_name, table_name from duckdb_tables() "
            "union all select schema_name, view_name from duckdb_views()) "
            "where schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0] > 0

    def changed_rows(self, sql: str, params: Sequence[Any] | None = None) -> int:
        row = self.execute(sql, params).fetchone()  # DuckDB answers a write with its row count
        return int(row[0]) if row else 0


class PostgresWarehouse(Warehouse):
    """A psycopg2 connection in autocommit mode: transactions are begun and ended explicitly,
    as on DuckDB. After a failed statement inside a transaction PostgreSQL refuses everything
    until the rollback, so code that may meet a missing table asks `has_table` first."""

    dialect = POSTGRES

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        import psycopg2  # the `postgres` extra; only a PostgreSQL destination gets here

        sql = self._without_existing_schemas(self.dataset.sql(sql))
        cursor = self.con.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(_format_params(sql), list(params))
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedObject, psycopg2.errors.UndefinedColumn,
                psycopg2.errors.InvalidSchemaName, psycopg2.errors.UndefinedFunction) as error:
            raise MissingObject(one_line(error)) from error
        except psycopg2.Error as error:
            raise postgres_error(error, sql, self._settings_known()) from error
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg2

        sql = self.dataset.sql(sql)  # the statement the message names is the one that ran
        try:
            self.con.cursor().executemany(_format_params(sql), [list(row) for row in rows])
        except psycopg2.Error as error:
            raise postgres_error(error, sql, self._settings_known()) from error

    @functools.cached_property
    def settings(self) -> dict[str, str]:
        """The session's role and the settings an error message names ({"role": ..., "statement_timeout":
        ..., "lock_timeout": ...}), read once, before any failure can leave the transaction aborted."""
        role, statement_timeout, lock_timeout = self._raw_one(
            "select current_user, current_setting('statement_timeout'), current_setting('lock_timeout')")
        return {"role": role, "statement_timeout": statement_timeout, "lock_timeout": lock_timeout}

    def _settings_known(self) -> dict[str, str]:
        """What an error message can name now: the settings once read, else the role the connection
        logged in as (a role's statement_timeout of 1 ms may stop even the query reading them)."""
        return self.__dict__.get("settings") or {"role": self.con.info.user}

    def _raw_one(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
        """One row of a catalog query run as written (no dataset, no `?`), its failure one of ours."""
        import psycopg2

        cursor = self.con.cursor()
        try:
            cursor.execute(sql, params)
        except psycopg2.Error as error:
            raise postgres_error(error, sql, self._settings_known()) from error
        return cursor.fetchone()

    def _without_existing_schemas(self, sql: str) -> str:
        """`sql` without its `create schema if not exists` of schemas that exist: PostgreSQL checks
        CREATE on the database for that statement even when the schema is there, so a loader that
        may only create in schemas made for it beforehand (README) fails on it."""
        if "create schema if not exists" not in sql.lower():
            return sql

        def drop_if_there(found: re.Match[str]) -> str:
            (there,) = self._raw_one("select count(*) from pg_namespace where nspname = %s",
                                     [found.group(1).strip('"')])
            return "" if there else found.group(0)

        kept = _CREATE_SCHEMA.sub(drop_if_there, sql)
        return kept if kept.strip() else "select where false"  # psycopg2 refuses an empty query

    def lock_holders(self) -> str:
        try:
            rows = self.execute(_HOLDERS_SQL).fetchall()
        except WarehouseError:
            return ""
        return "; ".join(f"server pid {pid} ({application or 'no application_name'}, user {user}, {state} since "
                         f"{since:%H:%M:%S}, holding {mode} on {relations})"
                         for pid, application, user, state, since, mode, relations in rows)

    def changed_rows(self, sql: str, params: Sequence[Any] | None = None) -> int:
        return max(0, self.execute(sql, params).rowcount)  # type: ignore[attr-defined]

    def select_sql(self, sql: str) -> str:
        return _to_postgres(sql)


_CREATE_SCHEMA = re.compile(r'create\s+schema\s+if\s+not\s+exists\s+("?[A-Za-z_][A-Za-z0-9_$]*"?)\s*;?',
                            re.IGNORECASE)

# the sessions other than this one holding locks on our schemas' tables, the strongest first: the
# lock a statement timed out on is among them (PostgreSQL's error does not say whose it was)
_HOLDERS_SQL = """
select a.pid, a.application_name, a.usename, a.state, coalesce(a.xact_start, a.backend_start),
       max(l.mode), string_agg(distinct n.nspname || '.' || c.relname, ', ')
from pg_locks l
join pg_stat_activity a on a.pid = l.pid
join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
where l.granted and l.pid <> pg_backend_pid()
  and n.nspname in ('cekura_raw', 'cekura_raw_staging', 'staging', 'analytics', 'cekura_meta')
group by 1, 2, 3, 4, 5
order by 5
limit 3
"""

# SQLSTATE -> (the error class, the setting it names, what to do)
_SETTING_ERRORS = {
    "57014": (StatementTimeout, "statement_timeout",
              "raise it for this role (alter role {role} set statement_timeout = '1h') or set it to 0"),
    "55P03": (LockTimeout, "lock_timeout", "another session holds a lock it needs"),
    "42501": (PermissionDenied, "the privileges of role {role}",
              "grant what the README's 'A team's PostgreSQL' lists"),
    "25P03": (SettingError, "idle_in_transaction_session_timeout", "raise it for this role, or set it to 0"),
    "57P05": (SettingError, "idle_session_timeout", "raise it for this role, or set it to 0"),
}


def postgres_error(error: BaseException, sql: str | None, settings: dict[str, str] | None = None) -> WarehouseError:
    """A psycopg2 error as one of ours: a SettingError naming the statement (its first words) and the
    setting, with the setting's value when `settings` has it; else a WarehouseError of one line."""
    code = getattr(error, "pgcode", None)
    settings = settings or {}
    if code == "57014" and "statement timeout" not in str(error) and settings.get("statement_timeout") == "0":
        code = None  # no timeout is set: another session cancelled it (pg_cancel_backend)
    # else a very short statement_timeout may fire before PostgreSQL can tell it from a cancel, and
    # says "due to user request": our own cancels (SIGINT) end the run before this is read
    if code not in _SETTING_ERRORS:
        return WarehouseError(one_line(error))
    kind, setting, advice = _SETTING_ERRORS[code]
    role = settings.get("role", "the loader")
    value = f" = {settings[setting]}" if setting in settings else ""
    what = f"`{statement_head(sql)}`" if sql else "a statement"
    detail = one_line(error)
    return kind(f"PostgreSQL stopped {what}: {detail} ({setting.format(role=role)}{value}); "
                f"{advice.format(role=role)}")


def setting_error_in(error: BaseException) -> SettingError | None:
    """The SettingError, or the psycopg2 error with a setting's SQLSTATE, in `error`'s chain (dlt
    wraps what PostgreSQL raised in its load) as a SettingError; None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, SettingError):
            return current
        if getattr(current, "pgcode", None) in _SETTING_ERRORS:
            found = postgres_error(current, None)
            if isinstance(found, SettingError):
                return found
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def statement_head(sql: str, length: int = 60) -> str:
    """The statement's first words, on one line: what a message names."""
    text = " ".join(_LINE_COMMENT.sub("", sql).split())
    return text if len(text) <= length else text[: length - 3].rstrip() + "..."


_LINE_COMMENT = re.compile(r"--[^\n]*")


def as_warehouse(con: Any) -> Warehouse:
    """`con` as a Warehouse: already one, a DuckDB connection, or a psycopg2 connection."""
    if isinstance(con, Warehouse):
        return con
    if isinstance(con, duckdb.DuckDBPyConnection):
        return DuckDBWarehouse(con)
    if type(con).__module__.startswith("psycopg2"):
        con.autocommit = True
        return PostgresWarehouse(con)
    raise TypeError(f"not a DuckDB or PostgreSQL connection: {type(con).__name__}")


@functools.lru_cache(maxsize=256)
def _to_postgres(sql: str) -> str:
    """sqlglot reads DuckDB's dialect (trailing commas, `::double`, `count(*) filter`,
    quantile_cont) and writes PostgreSQL's; the few functions it cannot map are ours, defined
    per engine (models/sql/functions/)."""
    import sqlglot

    # sqlglot writes a `?` as psycopg2's `%s`, which execute() would then escape: each `?` goes
    # through as a name of its own and comes back as `?`
    marked = _outside_quotes(sql, "?", _PARAMETER)
    return ";\n".join(sqlglot.transpile(marked, read="duckdb", write="postgres")).replace(_PARAMETER, "?")


_PARAMETER = "cekura_parameter_mark"


def _outside_quotes(sql: str, old: str, new: str) -> str:
    """`sql` with each character `old` outside quoted text and identifiers replaced by `new`."""
    out, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
            out.append(char)
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        else:
            out.append(new if char == old else char)
    return "".join(out)


def _format_params(sql: str) -> str:
    """`?` placeholders (outside quoted text and identifiers) as psycopg2's `%s`, and every
    literal `%` doubled, since psycopg2 reads `%` anywhere in a statement given parameters.
    Written by hand: psycopg2 has no `?` style, and every statement of ours uses it."""
    return _outside_quotes(sql.replace("%", "%%"), "?", "%s")
