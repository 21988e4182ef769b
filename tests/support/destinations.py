"""A night's destination in the end-to-end tests: a DuckDB file or a fresh PostgreSQL database,
what `--db` gets for it, how to read it back, and every value it holds as text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from cekura_sessions.destination.warehouse import as_warehouse

from support import postgres

# a password a PostgreSQL URL carries in these tests: pgserver trusts local sockets, so any
# password logs in, and none may be stored anywhere
DB_PASSWORD = "pg-pass-7f3c9"


@dataclass(frozen=True)
class Target:
    """`kind`: duckdb or postgres; `db`: what --db gets; `folder`: the test's folder, where the
    DuckDB file, dlt's data dir (DLT_DATA_DIR) and markers live."""

    kind: str
    db: str
    folder: Path

    @property
    def dlt_data_dir(self) -> Path:
        return self.folder / "dlt-data"

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A connection answering `.execute(sql).fetchall()` (DuckDB read-only, or PostgreSQL)."""
        if self.kind == "duckdb":
            with duckdb.connect(self.db, read_only=True) as con:
                yield con
            return
        warehouse = as_warehouse(postgres.connect(self.db))
        try:
            yield warehouse
        finally:
            warehouse.close()

    def all_text(self) -> str:
        """Every value of every table, as text, and dlt's compressed pipeline state decoded."""
        from dlt.common.versioned_state import decompress_state  # conftest imports this module: no dlt at import

        cast = "varchar" if self.kind == "duckdb" else "text"
        with self.read() as con:
            tables = con.execute(
                "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
                "and table_schema not in ('pg_catalog', 'information_schema')"
            ).fetchall()
            texts = [str(con.execute(f'select cast(t as {cast}) from "{s}"."{n}" as t').fetchall()) for s, n in tables]
            if ("cekura_raw", "_dlt_pipeline_state") in tables:
                texts += [repr(decompress_state(state)) for (state,) in
                          con.execute("select state from cekura_raw._dlt_pipeline_state").fetchall()]
        return "\n".join(texts)


def make_target(kind: str, folder: Path, server: postgres.PostgresServer | None, template: str | None = None) -> Target:
    """A destination of `kind` in `folder`; a PostgreSQL one is a new database of `server`, empty
    or a copy of the one `template` names."""
    if kind == "duckdb":
        return Target(kind, str(folder / "cekura.duckdb"), folder)
    assert server is not None
    url = server.new_database(template=template)
    # the socket URL has an empty password (`postgres:@`): give it one to keep secret
    return Target(kind, url.replace("postgres:@", f"postgres:{DB_PASSWORD}@", 1), folder)
