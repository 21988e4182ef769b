"""Build the SQL models in `sql/` in DuckDB or PostgreSQL, in one transaction, and tell whether
they are up to date with their inputs (the checks are run by checks.py).

Layout of `sql/`:
- `functions/<engine>.sql` (duckdb.sql, postgres.sql), run first, after the contract's `create
  table if not exists` for the raw tables staging reads (so the models build before, or
  without, a load): the few functions whose SQL differs between engines (ISO-8601 parsing,
  safe integer casts, seconds between two timestamps, time zone name keys), with one meaning.
- `staging/<view>.sql`: a SELECT over `cekura_raw`, materialised as the view `staging.<view>`;
  before them, the staging views generated from the row contract (lookups.py: the status enum).
- `marts/<model>.sql`: a SELECT, materialised as the table `analytics.<model>` (the file stem is
  the name). Written in DuckDB's dialect; PostgreSQL gets it through sqlglot
  (destination/warehouse.py), so a model calls only portable SQL and the functions above.
- `models.toml`: each mart's and staging view's description, grain, key, columns and generic
  checks (declarations.py); the build writes the descriptions as the tables', views' and columns'
  comments (dictionary.py), and fails when a model and its declaration disagree.
- `checks/<what_must_hold>.sql`: the business rules no generic rule says (see checks.py).

Staging is built before the marts; within each layer the order is derived from the
`staging.<name>` and `analytics.<name>` references in each file, so a new file is picked up
without touching this module. The build is recorded in `cekura_meta._build`.

On PostgreSQL the database is shared (views others built on the models, grants, comments), so a
model is never dropped to be rebuilt (postgres_models.py): a table whose columns are unchanged is
refreshed in place, an added column is added, and only a dropped, renamed or retyped one replaces
the table, refused while objects of others depend on it unless `drop_dependents`. A statement
that waits on a reader's lock fails after lock_timeout, and the whole build is tried again
within --db-wait (Warehouse.retry_on_locks). DuckDB keeps `create or replace`: nothing of others
can depend on its models (its file has one writer, and views are bound when queried).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
import time
from pathlib import Path
from typing import Any

from cekura_sessions import test_hooks
from cekura_sessions.destination.warehouse import DUCKDB, LockTimeout, Warehouse, WarehouseError, as_warehouse
from cekura_sessions.extract.contract import MODEL_INPUTS, RAW_SCHEMA, raw_tables_ddl
from cekura_sessions.logs import one_line
from cekura_sessions.models import dictionary, legacy, lookups, postgres_models
from cekura_sessions.models.declarations import (
    CONTRACT_VALUES,
    DECLARATIONS_FILE,
    DeclarationError,
    load_declarations,
)
from cekura_sessions.settings import (
    ANALYTICS_SCHEMA,
    META_SCHEMA,
    SQL_DIR,
    STAGING_SCHEMA,
)

log = logging.getLogger(__name__)

BUILD_TABLE = f"{META_SCHEMA}._build"
RAW_DDL = "extract/contract.py (raw tables)"  # names the raw DDL step in a ModelBuildError
LOOKUPS = "generated from extract/contract.py"  # names a generated view's step (lookups.py)
# each folder of model files and the schema its objects are created in, in build order
LAYERS = (("staging", STAGING_SCHEMA), ("marts", ANALYTICS_SCHEMA))

_LINE_COMMENT = re.compile(r"--[^\n]*")
_REFERENCE = re.compile(
    rf'\b({STAGING_SCHEMA}|{ANALYTICS_SCHEMA})\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE
)


class ModelBuildError(Exception):
    """A model file failed (or the files cannot be ordered); nothing of the build was kept."""

    def __init__(self, file: str, message: str) -> None:
        self.file = file
        self.message = one_line(message)  # DuckDB's messages span lines; keep one
        super().__init__(f"{file}: {self.message}")


class DependentsError(ModelBuildError):
    """A model must be replaced and objects of others depend on it; nothing was dropped or kept."""


def model_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """Staging files, then mart files, each layer in dependency order (ties alphabetical).
    Raises ModelBuildError naming the files when some reference each other in a cycle."""
    ordered: list[Path] = []
    for folder, _ in LAYERS:
        paths = sorted(p for p in (sql_dir / folder).glob("*.sql") if not p.name.startswith("_"))
        ordered += _dependency_order(paths)
    return ordered


def qualified_name(path: Path) -> str:
    """`<schema>.<stem>`: the view or table a model file creates."""
    return f"{dict(LAYERS)[path.parent.name]}.{path.stem}"


def functions_file(sql_dir: Path, dialect: str) -> Path:
    """`functions/<engine>.sql`: run before the models."""
    return sql_dir / "functions" / f"{dialect}.sql"


# order-independent content hashes of a table, per engine (DuckDB's hash() has no PostgreSQL
# twin; md5 of the row's text, cut to 60 bits, sums without overflow in numeric)
_CONTENT_HASH = {
    DUCKDB: "select count(*), coalesce(sum(hash(t)::hugeint), 0) from {table} as t",
    "postgres": "select count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint::numeric), 0) "
                "from {table} as t",
}


def inputs_fingerprint(con: Any, sql_dir: Path = SQL_DIR) -> str:
    """A fingerprint of everything the models are built from: the SQL files and models.toml, what
    they take from the contract (the raw DDL, the raw tables' descriptions, the accepted values, the
    generated views) and the content of the raw tables they read (order-independent row hashes:
    about 40 ms at 200,000 sessions)."""
    warehouse = as_warehouse(con)
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted([*sql_dir.rglob("*.sql"), *sql_dir.rglob("*.toml")]):
        digest.update(_relative(path, sql_dir).encode() + b"\0" + path.read_bytes())
    digest.update(raw_tables_ddl().encode())
    digest.update(repr((dictionary.raw_descriptions(), sorted(CONTRACT_VALUES.items()),
                        lookups.generated_views())).encode())
    for table in (t.name for t in MODEL_INPUTS):
        row: Any = ("missing",)
        if warehouse.has_table(RAW_SCHEMA, table):
            row = warehouse.execute(_CONTENT_HASH[warehouse.dialect].format(table=f"{RAW_SCHEMA}.{table}")).fetchone()
        digest.update(f"{table}:{tuple(row)}".encode())
    return digest.hexdigest()


def up_to_date(con: Any, fingerprint: str, sql_dir: Path = SQL_DIR) -> bool:
    """True when the models were last built from these inputs and every one of them is there."""
    warehouse = as_warehouse(con)
    schema, table = BUILD_TABLE.split(".")
    if not warehouse.has_table(schema, table):
        return False
    row = warehouse.execute(f"select inputs_fingerprint from {BUILD_TABLE}").fetchone()
    if not row or row[0] != fingerprint:
        return False
    present = {f"{schema}.{name}" for schema, name in warehouse.execute(
        "select table_schema, table_name from information_schema.tables where table_schema in (?, ?)",
        [warehouse.dataset.staging, warehouse.dataset.analytics],
    ).fetchall()}
    wanted = {qualified_name(path) for path in model_files(sql_dir)} | set(_generated())
    return {warehouse.dataset.sql(name) for name in wanted} <= present


def build_models(con: Any, sql_dir: Path = SQL_DIR, fingerprint: str | None = None,
                 drop_dependents: bool = False) -> dict[str, int]:
    """Rebuild every model in one transaction; return {mart name: row count}.

    On any failure the transaction is rolled back, so the previous models stay as they were,
    and ModelBuildError names the failing file (or `models.toml`, when the declarations are
    malformed or disagree with a model's columns) with the message on one line; DependentsError
    when a PostgreSQL model must be replaced and views of others depend on it (`drop_dependents`:
    drop them, logged); LockTimeout when another session's lock was held past the connection's
    lock_wait_seconds (--db-wait). `fingerprint` (see inputs_fingerprint) is recorded with the
    models, in the same transaction. `con`: a DuckDB or psycopg2 connection, or a Warehouse.
    """
    con = as_warehouse(con)
    started = time.monotonic()
    files = model_files(sql_dir)
    try:
        declarations = load_declarations(sql_dir, staging=True)
    except DeclarationError as exc:
        raise ModelBuildError(DECLARATIONS_FILE, exc.detail) from exc
    counts, dropped = con.retry_on_locks(
        lambda: _build_once(con, sql_dir, files, declarations, fingerprint, drop_dependents), "the model build")
    if dropped:
        log.info("dropped what the old layout left in %s: %s", ANALYTICS_SCHEMA, ", ".join(dropped))
    log.info("built %d models in %.2f s (%d session rows)",
             len(counts), time.monotonic() - started, counts.get("sessions", 0))
    return counts


def _build_once(con: Warehouse, sql_dir: Path, files: list[Path], declarations: Any, fingerprint: str | None,
                drop_dependents: bool) -> tuple[dict[str, int], list[str]]:
    """One attempt at the build, in one transaction: ({mart: rows}, what the old layout left)."""
    try:
        con.execute("begin transaction")
    except WarehouseError as exc:  # e.g. the caller left a transaction open: not ours to end
        raise ModelBuildError("begin transaction", str(exc)) from exc
    step = _Step(RAW_DDL)
    try:
        dropped = _prepare(con, sql_dir, step)
        counts = _create_models(con, sql_dir, files, step, drop_dependents)
        step.now(DECLARATIONS_FILE)
        views = [*lookups.generated_views(), *(path.stem for path in files if path.parent.name == "staging")]
        dictionary.comment_models(con, declarations, list(counts), views)
        step.now(RAW_DDL)
        dictionary.comment_raw_tables(con)
        step.now("recording the build")
        # emptied, not dropped: a table of ours others may have been granted
        con.execute(f"create table if not exists {BUILD_TABLE} (inputs_fingerprint text, built_at timestamptz)")
        con.execute(f"delete from {BUILD_TABLE}")
        con.execute(f"insert into {BUILD_TABLE} values (?, now())", [fingerprint])
        step.now("commit")
        con.execute("commit")
    except (LockTimeout, DependentsError):
        _rollback(con)
        raise
    except WarehouseError as exc:
        _rollback(con)
        raise ModelBuildError(step.where, str(exc)) from exc
    except DeclarationError as exc:
        _rollback(con)
        raise ModelBuildError(DECLARATIONS_FILE, exc.detail) from exc
    except BaseException:
        _rollback(con)
        raise
    return counts, dropped


class _Step:
    """Where the build is, so a failure names the file (or step) it happened in."""

    def __init__(self, where: str) -> None:
        self.where = where

    def now(self, where: str) -> None:
        self.where = where


def _prepare(con: Warehouse, sql_dir: Path, step: _Step) -> list[str]:
    """The raw tables a fresh database lacks, the schemas, the engine's functions; the old
    layout's objects dropped (returned)."""
    step.now(RAW_DDL)
    con.execute(raw_tables_ddl())
    step.now("dropping the old layout")
    # only the default dataset of a DuckDB file ever had the old layout, and a build recorded in
    # the new one ran this in its transaction already (a look costs 30 ms: duckdb_functions())
    may_have_old_layout = (con.dialect == DUCKDB and con.dataset.is_default
                           and not con.has_table(*BUILD_TABLE.split(".")))
    dropped = legacy.drop_old_layout(con) if may_have_old_layout else []
    for schema in (STAGING_SCHEMA, ANALYTICS_SCHEMA, META_SCHEMA):
        con.execute(f"create schema if not exists {schema}")
    functions = functions_file(sql_dir, con.dialect)
    step.now(_relative(functions, sql_dir))
    con.execute(functions.read_text())
    return dropped


def _create_models(con: Warehouse, sql_dir: Path, files: list[Path], step: _Step,
                   drop_dependents: bool = False) -> dict[str, int]:
    """Materialise the generated staging views, then the model files in order; {mart name: row count}."""
    generated = _generated()
    ours = {qualified_name(path) for path in files} | set(generated)
    for name, select in generated.items():
        step.now(f"{name} ({LOOKUPS})")
        _materialise(con, name, "view", select, step.where, ours, drop_dependents)
    for path in files:
        step.now(_relative(path, sql_dir))
        kind = "view" if path.parent.name == "staging" else "table"
        _materialise(con, qualified_name(path), kind, path.read_text(), step.where, ours, drop_dependents)
        test_hooks.reach(f"model-{path.stem}")  # a test kills the build here, inside its transaction
    counts = {}
    for path in files:
        if path.parent.name == "marts":
            step.now(_relative(path, sql_dir))
            counts[path.stem] = _row_count(con, f"{ANALYTICS_SCHEMA}.{path.stem}")
    return counts


def _generated() -> dict[str, str]:
    """{qualified name: SELECT} of the staging views generated from the contract (lookups.py)."""
    return {f"{STAGING_SCHEMA}.{name}": select for name, select in lookups.generated_views().items()}


def _materialise(con: Warehouse, name: str, kind: str, select: str, where: str, ours: set[str],
                 drop_dependents: bool) -> None:
    """Make `select` (DuckDB's dialect) the view or table `name`: `create or replace` on DuckDB,
    refreshed in place on PostgreSQL (postgres_models.py). `where` names it in a DependentsError."""
    if con.dialect == DUCKDB:
        con.execute(f"create or replace {kind} {name} as\n{con.select_sql(select)}")
        return
    try:
        replaced = postgres_models.materialise(con, name, kind, con.select_sql(select), ours, drop_dependents)
    except postgres_models.HasDependents as error:
        raise DependentsError(where, str(error)) from None
    if replaced:
        log.warning("%s", replaced)


def _dependency_order(paths: list[Path]) -> list[Path]:
    """Topological order of one layer's `paths` by the references between the objects they
    create (Kahn, ties by name)."""
    by_name = {qualified_name(path): path for path in paths}
    needs = {name: _references(path) & by_name.keys() - {name} for name, path in by_name.items()}
    ready = [name for name, deps in needs.items() if not deps]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(name)
        for other, deps in needs.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    stuck = sorted(set(by_name) - set(ordered))
    if stuck:
        files = ", ".join(_relative(by_name[name], by_name[name].parents[1]) for name in stuck)
        raise ModelBuildError(files, "these files reference each other in a cycle")
    return [by_name[name] for name in ordered]


def _references(path: Path) -> set[str]:
    """The `staging.<name>` and `analytics.<name>` objects the file mentions, lowercase."""
    sql = _LINE_COMMENT.sub("", path.read_text())
    return {f"{schema}.{name}".lower() for schema, name in _REFERENCE.findall(sql)}


def _row_count(con: Warehouse, table: str) -> int:
    row = con.execute(f"select count(*) from {table}").fetchone()
    return int(row[0])


def _rollback(con: Warehouse) -> None:
    con.rollback()


def _relative(path: Path, sql_dir: Path) -> str:
    return path.relative_to(sql_dir).as_posix()
