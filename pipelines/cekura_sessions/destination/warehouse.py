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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import duckdb

DUCKDB, POSTGRES = "duckdb", "postgres"


class WarehouseError(Exception):
    """A statement failed; the message is the engine's, on one line."""


class MissingObject(WarehouseError):
    """A table, view, schema, column or function the statement names does not exist."""


class Cursor(Protocol):
    description: Any

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class Warehouse:
    """A connection and its dialect. `execute(sql, params)` takes `?` placeholders on both
    engines and returns a cursor (fetchone, fetchall, description); errors are WarehouseError
    or MissingObject. `con` is the engine's own connection, for what only it can do."""

    dialect: str

    def __init__(self, con: Any) -> None:
        self.con = con

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
            [schema, table],
        ).fetchall()]

    def has_table(self, schema: str, table: str) -> bool:
        return self.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0] > 0


class DuckDBWarehouse(Warehouse):
    dialect = DUCKDB

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        try:
            return self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        except duckdb.CatalogException as error:
            raise MissingObject(_one_line(error)) from error
        except duckdb.Error as error:
            raise WarehouseError(_one_line(error)) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.con.executemany(sql, rows)
        except duckdb.Error as error:
            raise WarehouseError(_one_line(error)) from error

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

        cursor = self.con.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(_format_params(sql), list(params))
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedObject, psycopg2.errors.UndefinedColumn,
                psycopg2.errors.InvalidSchemaName, psycopg2.errors.UndefinedFunction) as error:
            raise MissingObject(_one_line(error)) from error
        except psycopg2.Error as error:
            raise WarehouseError(_one_line(error)) from error
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg2

        try:
            self.con.cursor().executemany(_format_params(sql), [list(row) for row in rows])
        except psycopg2.Error as error:
            raise WarehouseError(_one_line(error)) from error

    def changed_rows(self, sql: str, params: Sequence[Any] | None = None) -> int:
        return max(0, self.execute(sql, params).rowcount)  # type: ignore[attr-defined]

    def select_sql(self, sql: str) -> str:
        return _to_postgres(sql)


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


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
