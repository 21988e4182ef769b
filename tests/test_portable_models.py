"""The same SQL models and checks on DuckDB and on a real PostgreSQL: from the same raw rows,
every mart is identical row for row, each equals the plain-Python expectations, and the checks
give the same answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from cekura_sessions.destination.warehouse import PostgresWarehouse, WarehouseError, as_warehouse
from cekura_sessions.models.checks import run_checks
from cekura_sessions.models.runner import ModelBuildError, build_models, inputs_fingerprint, up_to_date
from support import postgres, raw_data
from support.model_expectations import CONTRACT_MARTS, EXPECTED
from support.raw_data import CLEAN, VARIED, RawData
from support.rows import assert_same_rows, declared_marts, keyed_rows

def _loaded(con: Any, data: RawData) -> Any:
    warehouse = as_warehouse(con)
    raw_data.create_raw_tables(warehouse)
    raw_data.load(warehouse, data)
    return warehouse


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, postgres_server: postgres.PostgresServer):
    """VARIED loaded and built on each engine: (duckdb warehouse, postgres warehouse); built once
    for the module, as its tests only read them."""
    duck = _loaded(duckdb.connect(str(tmp_path_factory.mktemp("both") / "cekura.duckdb")), VARIED)
    pg = _loaded(postgres.connect(postgres_server.new_database()), VARIED)
    assert build_models(duck) == build_models(pg), "row counts differ"
    yield duck, pg
    duck.close()
    pg.close()


@pytest.mark.parametrize("model", declared_marts())
def test_every_mart_is_identical_on_both_engines(both, model):
    duck, pg = both
    assert_same_rows(keyed_rows(pg, model), keyed_rows(duck, model), f"postgres vs duckdb: {model}")


@pytest.mark.parametrize("model", list(EXPECTED))
def test_every_contract_mart_on_postgres_matches_python(both, model):
    assert set(EXPECTED) == set(CONTRACT_MARTS)
    _, pg = both
    assert_same_rows(keyed_rows(pg, model), EXPECTED[model](VARIED), f"postgres: {model}")


def test_the_checks_answer_the_same_on_both_engines(both):
    duck, pg = both
    on_duckdb = [(r.name, r.severity, r.offending_rows) for r in run_checks(duck)]
    on_postgres = [(r.name, r.severity, r.offending_rows) for r in run_checks(pg)]
    assert on_postgres == on_duckdb
    assert any(count for _, _, count in on_duckdb), "VARIED should trip some warnings"


def test_a_failed_build_on_postgres_keeps_the_previous_models(tmp_path, pg_url):
    pg = _loaded(postgres.connect(pg_url), CLEAN)
    before = build_models(pg)
    sql_dir = tmp_path / "sql"
    import shutil

    from cekura_sessions.settings import SQL_DIR

    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "marts" / "scenario_stats.sql").write_text("select * from analytics.nowhere")
    raw_data.insert_raw(pg, sessions=[raw_data.session(2999, 201, "completed", "2024-05-04T10:00:00Z", None)])

    with pytest.raises(ModelBuildError, match=r"^marts/scenario_stats\.sql: .*nowhere"):
        build_models(pg, sql_dir)

    (count,) = pg.execute("select count(*) from analytics.sessions").fetchone()
    assert count == before["sessions"], "the failed build's sessions table was kept"
    assert build_models(pg)["sessions"] == before["sessions"] + 1, "the connection is usable after the failure"


def test_the_data_dictionary_is_written_on_postgres_too(pg_url):
    """Staging views (the generated one included), raw tables and the run's ledger get their
    comments as on DuckDB (expected texts read from models.toml and the contract directly)."""
    import tomllib

    from cekura_sessions.extract import contract
    from cekura_sessions.settings import SQL_DIR

    pg = _loaded(postgres.connect(pg_url), CLEAN)
    pg.execute("create table if not exists cekura_raw.pipeline_runs (run_id text, started_at timestamptz)")
    build_models(pg)
    views = tomllib.loads((SQL_DIR / "models.toml").read_text())["staging"]

    def described(name: str) -> str | None:
        return pg.execute("select obj_description(to_regclass(?), 'pg_class')", [name]).fetchone()[0]

    statuses = views["stg_session_statuses"]
    assert described("staging.stg_session_statuses") == (
        f"{statuses['description']} Grain: {statuses['grain']}. Key: status.")
    assert described("cekura_raw.projects") == contract.PROJECTS.description
    assert described("cekura_raw.pipeline_runs"), "the ledger's table comment"
    (column,) = pg.execute("select col_description(to_regclass('staging.stg_projects'), attnum) from pg_attribute "
                           "where attrelid = to_regclass('staging.stg_projects') and attname = 'is_live'").fetchone()
    assert column == views["stg_projects"]["columns"]["is_live"]
    (run_id,) = pg.execute("select col_description(to_regclass('cekura_raw.pipeline_runs'), 1)").fetchone()
    assert run_id and run_id.strip(), "the ledger's first column, run_id, is described"


def test_the_fingerprint_follows_the_raw_rows_on_postgres(pg_url):
    pg = _loaded(postgres.connect(pg_url), CLEAN)
    first = inputs_fingerprint(pg)
    build_models(pg, fingerprint=first)
    assert up_to_date(pg, first) and inputs_fingerprint(pg) == first
    pg.execute("update cekura_raw.scenario_improvement_sessions set status = 'failed' where id = 2001")
    assert inputs_fingerprint(pg) != first


def test_timestamps_parse_alike_on_both_engines(tmp_path, pg_url):
    """The ISO-8601 forms the contract lets through, and text it would not, read the same."""
    texts = ["2024-03-01T08:00:00Z", "2024-03-01T09:00:00.250000+00:00", "2024-03-02T13:30:00+05:30",
             "2024-03-02T16:00:00-08:00", "2024-03-06T12:00:00", "2022-12-31", "2024-03-01 08:00:00+0530",
             "2024-13-01T00:00:00Z", "2024-02-30T00:00:00", "garbage", "NOW", "EPOCH", "INFINITY", "", "soon"]
    duck = as_warehouse(duckdb.connect(str(tmp_path / "t.duckdb")))
    pg = postgres.connect(pg_url)
    for warehouse in (duck, as_warehouse(pg)):
        build_models(warehouse)  # defines the engine's functions
    got = {}
    for name, warehouse in (("duckdb", duck), ("postgres", as_warehouse(pg))):
        got[name] = [warehouse.execute("select staging.iso_timestamp(upper(trim(?)))", [t]).fetchone()[0] for t in texts]
    assert got["postgres"] == got["duckdb"], list(zip(texts, got["duckdb"], got["postgres"]))
    assert got["duckdb"][7:] == [None] * 8, "impossible dates and words are NULL"


def test_postgres_errors_are_one_line_and_name_the_missing_table(pg_url):
    pg = as_warehouse(postgres.connect(pg_url))
    assert isinstance(pg, PostgresWarehouse)
    with pytest.raises(WarehouseError, match=r"nowhere") as caught:
        pg.execute("select * from analytics.nowhere where x = ?", [1])
    assert "\n" not in str(caught.value)


def test_has_table_finds_tables_and_views_and_nothing_else_inside_a_transaction(tmp_path, pg_url):
    duck = as_warehouse(duckdb.connect(str(tmp_path / "cekura.duckdb")))
    for warehouse in (duck, as_warehouse(postgres.connect(pg_url))):
        warehouse.execute("create schema analytics")
        warehouse.execute("create table analytics.kept (a integer)")
        warehouse.execute("create view analytics.seen as select a from analytics.kept")
        with warehouse.transaction():
            found = {name: warehouse.has_table("analytics", name) for name in ("kept", "seen", "nowhere")}
            found["no schema"] = warehouse.has_table("staging", "kept")
            warehouse.execute("insert into analytics.kept values (1)")  # a miss leaves the transaction usable
        assert found == {"kept": True, "seen": True, "nowhere": False, "no schema": False}, warehouse.dialect
        assert warehouse.execute("select count(*) from analytics.seen").fetchone()[0] == 1
    # DuckDB lets a view outlive the table it reads; it is still there
    duck.execute("create table analytics.gone (a integer)")
    duck.execute("create view analytics.orphan as select a from analytics.gone")
    duck.execute("drop table analytics.gone")
    assert duck.has_table("analytics", "orphan") and not duck.has_table("analytics", "gone")
