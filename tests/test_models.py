"""The SQL models against a real DuckDB file, checked against plain-Python expectations.

Every expected value is computed here from the raw rows in raw_data.py (datetime, zoneinfo,
statistics, a hand-written quantile), never by running the SQL under test.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
from cekura_sessions.extract.contract import MODEL_INPUTS
from cekura_sessions.models.declarations import load_declarations
from cekura_sessions.models.runner import (
    ModelBuildError,
    build_models,
    inputs_fingerprint,
    model_files,
    up_to_date,
)
from cekura_sessions.settings import SQL_DIR
from support import raw_data
from support.model_expectations import (
    CONTRACT_MARTS,
    ENUM,
    counted,
    counts_in_models,
    expected_daily_completion_rates,
    expected_project_completion_rates,
    expected_scenario_stats,
    expected_session_durations,
    expected_session_scenarios,
    expected_sessions,
    local_day,
)
from support.raw_data import CLEAN, VARIED, RawData, parse_timestamp
from support.rows import assert_same_rows, keyed_rows

MARTS = CONTRACT_MARTS
# the functions whose SQL differs per engine, defined once per engine (sql/functions/)
ENGINE_FUNCTIONS = {"staging.iso_timestamp", "staging.zone_key", "staging.integer_or_null", "staging.seconds_between"}
GENERATED_VIEWS = {"staging.stg_session_statuses"}  # from the row contract, built before the files


# --- helpers and fixtures ------------------------------------------------------------------


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def fresh_db(path: Path, data: RawData | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    if data is not None:
        raw_data.create_raw_tables(con)
        raw_data.load(con, data)
    return con


def copied_db(made: Path, path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to a copy of the closed database `made` at `path`."""
    return duckdb.connect(str(shutil.copy(made, path)))


def loaded_file(folder: Path, data: RawData) -> Path:
    """A closed database in `folder` holding the raw tables with `data`'s rows, no models."""
    path = folder / "cekura.duckdb"
    fresh_db(path, data).close()
    return path


# Loading VARIED takes about 0.15 s of CPU (support/raw_data.py inserts row by row), a build about
# 0.25 s, a copy of the file milliseconds: a test starting from the same rows, or the same build,
# copies a file made once per module.


@pytest.fixture(scope="module")
def varied_raw(tmp_path_factory) -> Path:
    """VARIED's raw rows, no models."""
    return loaded_file(tmp_path_factory.mktemp("varied-raw"), VARIED)


@pytest.fixture(scope="module")
def clean_raw(tmp_path_factory) -> Path:
    """CLEAN's raw rows, no models."""
    return loaded_file(tmp_path_factory.mktemp("clean-raw"), CLEAN)


@pytest.fixture(scope="module")
def varied_builds(varied_raw, tmp_path_factory) -> Callable[[str], tuple[Path, dict[str, int]]]:
    """`varied_builds(zone)`: a closed database of VARIED with the models built from the real sql/
    by a connection whose TimeZone is `zone`, and the build's row counts; made once per zone."""
    made: dict[str, tuple[Path, dict[str, int]]] = {}

    def build(zone: str) -> tuple[Path, dict[str, int]]:
        if zone not in made:
            path = tmp_path_factory.mktemp("varied") / "cekura.duckdb"
            with copied_db(varied_raw, path) as con:
                con.execute(f"set TimeZone = '{zone}'")
                made[zone] = path, build_models(con)
        return made[zone]

    return build


@dataclass
class Built:
    con: duckdb.DuckDBPyConnection
    counts: dict[str, int]


def table_counts(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = MARTS) -> dict:
    return {n: con.execute(f"select count(*) from analytics.{n}").fetchone()[0] for n in names}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("UTC", id="session-tz-utc"),
        # the connection's TimeZone must not change a parsed timestamp or a local day
        pytest.param("Asia/Tokyo", id="session-tz-tokyo"),
    ],
)
def varied(request, varied_builds) -> Built:
    path, counts = varied_builds(request.param)
    # read-only: the tests of `varied` only read; the staging views are read in the zone too
    con = duckdb.connect(str(path), read_only=True)
    con.execute(f"set TimeZone = '{request.param}'")
    yield Built(con, counts)
    con.close()


# --- order and layout ----------------------------------------------------------------------


def test_model_files_staging_first_then_marts_after_their_references():
    files = model_files()
    layers = [p.parent.name for p in files]
    assert layers == sorted(layers, key=["staging", "marts"].index), files
    schema_of = {"staging": "staging", "marts": "analytics"}
    names = [f"{schema_of[p.parent.name]}.{p.stem}" for p in files]
    assert {"staging.stg_projects", "staging.stg_sessions", "staging.stg_session_scenario_ids",
            *(f"analytics.{m}" for m in MARTS)} <= set(names), names
    macros = set(re.findall(r"macro (staging\.\w+)", (SQL_DIR / "functions" / "duckdb.sql").read_text()))
    functions = set(re.findall(r"function (staging\.\w+)", (SQL_DIR / "functions" / "postgres.sql").read_text()))
    assert macros == functions == ENGINE_FUNCTIONS, (macros, functions)  # run before every model, on each engine
    for i, path in enumerate(files):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for ref in set(re.findall(r"\b((?:analytics|staging)\.\w+)", text)) - {names[i]} - macros - GENERATED_VIEWS:
            assert ref in names[:i], f"{path.name} references {ref}, built later: {names}"


def test_model_files_orders_staging_views_by_their_references(tmp_path, varied_raw):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    # sorts before stg_sessions, but reads it, so it must come after
    (sql_dir / "staging" / "stg_a_titles.sql").write_text(
        "-- stg_a_titles: test view. Grain: one row per session. Key: session_id.\n"
        "with final as (\n"
        "    select session_id, title, from staging.stg_sessions\n"
        ")\n"
        "select * from final\n"
    )
    with (sql_dir / "models.toml").open("a") as toml:  # every staging view is declared
        toml.write(
            '\n[staging.stg_a_titles]\ndescription = "Test view."\ngrain = "one row per session"\n'
            'key = ["session_id"]\n'
            '[staging.stg_a_titles.columns]\nsession_id = "the session"\ntitle = "its title"\n'
        )
    names = [p.stem for p in model_files(sql_dir)]
    assert names.index("stg_a_titles") > names.index("stg_sessions"), names
    assert max(names.index(n) for n in names if n.startswith("stg_")) < names.index("sessions"), names
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    build_models(con, sql_dir)
    got = con.execute("select count(*) from staging.stg_a_titles").fetchone()
    assert got == (len(VARIED.sessions),)


def test_model_files_picks_up_a_new_mart_by_its_references(tmp_path, varied_raw):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    # sorts first alphabetically, but reads two marts, so it must come after both
    (sql_dir / "marts" / "a_status_counts.sql").write_text(
        "-- a_status_counts: test mart. Grain: one row per status. Key: status.\n"
        "with final as (\n"
        "    select status, count(*) as sessions, from analytics.sessions\n"
        "    where session_id in (select session_id from analytics.scenario_stats)\n"
        "    group by status\n"
        ")\n"
        "select * from final\n"
    )
    with (sql_dir / "models.toml").open("a") as toml:  # every mart is declared
        toml.write(
            '\n[a_status_counts]\ndescription = "Test mart."\ngrain = "one row per status"\nkey = ["status"]\n'
            '[a_status_counts.columns]\nstatus = "the status"\nsessions = "sessions with that status"\n'
        )
    names = [p.stem for p in model_files(sql_dir)]
    assert names.index("a_status_counts") > names.index("sessions"), names
    assert names.index("a_status_counts") > names.index("scenario_stats"), names
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    counts = build_models(con, sql_dir)
    want = len({s["status"] for s in VARIED.sessions})
    assert counts["a_status_counts"] == want, counts


def test_model_files_cycle_raises(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "marts" / "x_one.sql").write_text("create table analytics.x_one as from analytics.x_two")
    (sql_dir / "marts" / "x_two.sql").write_text("create table analytics.x_two as from analytics.x_one")
    with pytest.raises(ModelBuildError, match=r"marts/x_one\.sql, marts/x_two\.sql: .*cycle"):
        model_files(sql_dir)


# DuckDB's names for the contract's SQL types, spelled out by hand
DUCKDB_TYPES = {"bigint": "BIGINT", "text": "VARCHAR", "boolean": "BOOLEAN", "timestamptz": "TIMESTAMP WITH TIME ZONE"}


@pytest.fixture(scope="module")
def raw_tables(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    """The raw tables raw_tables_ddl() creates, empty: each test below reads one table's columns."""
    con = fresh_db(tmp_path_factory.mktemp("raw-tables") / "cekura.duckdb", RawData())
    yield con
    con.close()


@pytest.mark.parametrize("table", [pytest.param(t, id=t.name) for t in MODEL_INPUTS])
def test_raw_tables_ddl_creates_the_contracts_columns(raw_tables, table):
    want = [(c.name, DUCKDB_TYPES[c.sql]) for c in table.columns]
    got = raw_tables.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'cekura_raw' and table_name = ? order by ordinal_position",
        [table.name],
    ).fetchall()
    assert got == want, f"raw_tables_ddl() vs the contract's columns of {table.name}"


@pytest.mark.parametrize(
    "view, columns",
    [
        pytest.param(
            "stg_projects",
            ["project_id", "project_name", "organization_id", "organization_name", "timezone",
             "is_deleted", "is_listed", "is_live", "created_at", "updated_at"],
            id="stg_projects",
        ),
        pytest.param(
            "stg_sessions",
            ["session_id", "project_id", "reported_project_id", "title", "status", "created_at",
             "updated_at", "message_count"],
            id="stg_sessions",
        ),
        pytest.param(
            "stg_session_scenario_ids",
            ["session_id", "project_id", "position", "scenario_id"],
            id="stg_session_scenario_ids",
        ),
    ],
)
def test_staging_is_a_view_with_explicit_columns(varied, view, columns):
    kind = varied.con.execute(
        "select table_type from information_schema.tables "
        "where table_schema = 'staging' and table_name = ?",
        [view],
    ).fetchone()
    assert kind == ("VIEW",), f"staging.{view}: {kind}"
    got = [d[0] for d in varied.con.execute(f"select * from staging.{view} limit 0").description]
    assert got == columns, f"staging.{view} columns"


@pytest.mark.parametrize(
    "model, types",
    [
        pytest.param(
            "sessions",
            {"created_at": "TIMESTAMP WITH TIME ZONE", "updated_at": "TIMESTAMP WITH TIME ZONE",
             "message_count": "INTEGER", "duration_seconds": "DOUBLE", "is_terminal": "BOOLEAN"},
            id="sessions",
        ),
        pytest.param("session_scenarios", {"scenario_id": "BIGINT"}, id="session_scenarios"),
        pytest.param("daily_completion_rates", {"day": "DATE"}, id="daily_completion_rates"),
        pytest.param(
            "project_completion_rates",
            {"completion_rate": "DOUBLE", "terminal_completion_rate": "DOUBLE"},
            id="project_completion_rates",
        ),
        pytest.param("session_durations", {"p90_seconds": "DOUBLE"}, id="session_durations"),
        pytest.param(
            "scenario_stats",
            {"last_session_at": "TIMESTAMP WITH TIME ZONE"},
            id="scenario_stats",
        ),
    ],
)
def test_marts_are_tables_with_contract_types(varied, model, types):
    kind = varied.con.execute(
        "select table_type from information_schema.tables "
        "where table_schema = 'analytics' and table_name = ?",
        [model],
    ).fetchone()
    assert kind == ("BASE TABLE",), f"analytics.{model}: {kind}"
    got = dict(
        varied.con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'analytics' and table_name = ?",
            [model],
        ).fetchall()
    )
    assert {c: got.get(c) for c in types} == types, f"analytics.{model} column types"


# --- schemas: users see only the models in analytics ---------------------------------------


def schema_objects(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, set[str]]:
    """{"tables", "views", "macros"}: the names of each kind of object in `schema`."""
    def names(sql: str) -> set[str]:
        return {name for (name,) in con.execute(sql, [schema]).fetchall()}

    return {
        "tables": names("select table_name from duckdb_tables() where schema_name = ?"),
        "views": names("select view_name from duckdb_views() where schema_name = ? and not internal"),
        "macros": names("select function_name from duckdb_functions() where schema_name = ?"),
    }


def test_build_keeps_staging_and_bookkeeping_out_of_analytics(varied):
    marts = {p.stem for p in (SQL_DIR / "marts").glob("*.sql")}
    views = {p.stem for p in (SQL_DIR / "staging").glob("stg_*.sql")} | {v.split(".")[1] for v in GENERATED_VIEWS}
    assert schema_objects(varied.con, "analytics") == {"tables": marts, "views": set(), "macros": set()}
    assert schema_objects(varied.con, "staging") == {
        "tables": set(), "views": views, "macros": {f.split(".")[1] for f in ENGINE_FUNCTIONS}}
    assert schema_objects(varied.con, "cekura_meta")["tables"] == {"_build"}


@pytest.mark.parametrize(
    "removal",
    [
        pytest.param("drop view staging.stg_sessions", id="staging-view"),
        pytest.param("drop table analytics.scenario_stats", id="mart"),
    ],
)
def test_up_to_date_until_an_object_of_the_build_is_missing(tmp_path, clean_raw, removal):
    con = copied_db(clean_raw, tmp_path / "cekura.duckdb")
    fingerprint = inputs_fingerprint(con)
    assert not up_to_date(con, fingerprint), "never built"
    build_models(con, fingerprint=fingerprint)
    assert up_to_date(con, fingerprint)
    assert con.execute("select inputs_fingerprint from cekura_meta._build").fetchone() == (fingerprint,)
    con.execute(removal)
    assert not up_to_date(con, fingerprint)


# what a build of the layout before the staging and cekura_meta schemas left in analytics
OLD_LAYOUT = """
create schema analytics;
create macro analytics.iso_timestamp(iso_text) as try_cast(iso_text as timestamptz);
create view analytics.stg_projects as
    select id as project_id, analytics.iso_timestamp(created_at) as created_at from cekura_raw.projects;
create view analytics.stg_sessions as select id as session_id from cekura_raw.scenario_improvement_sessions;
create view analytics.stg_session_scenario_ids as select 1 as session_id;
create table analytics.sessions as select 1 as session_id;
create table analytics._build as select 'old' as inputs_fingerprint, now() as built_at;
create table analytics._checks (
    inputs_fingerprint text, name text, severity text, description text, offending_rows bigint
);
create table analytics.my_notes as select 'kept: not from the old layout' as note;
"""


def test_build_drops_what_the_old_layout_left_in_analytics(tmp_path, varied_raw):
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    con.execute(OLD_LAYOUT)
    before = schema_objects(con, "analytics")
    assert before["views"] == {"stg_projects", "stg_sessions", "stg_session_scenario_ids"}, before
    assert before["macros"] == {"iso_timestamp"} and {"_build", "_checks"} <= before["tables"], before

    counts = build_models(con)

    marts = {p.stem for p in (SQL_DIR / "marts").glob("*.sql")}
    assert schema_objects(con, "analytics") == {"tables": marts | {"my_notes"}, "views": set(), "macros": set()}
    assert counts["sessions"] == len(counted(VARIED).sessions), "the old analytics.sessions is replaced"
    assert con.execute("select count(*) from staging.stg_projects").fetchone() == (len(VARIED.projects),)


# --- every model against Python ------------------------------------------------------------


def test_build_models_returns_each_marts_row_count(varied):
    want = {
        "sessions": len(expected_sessions(VARIED)),
        "session_scenarios": len(expected_session_scenarios(VARIED)),
        "project_completion_rates": len(expected_project_completion_rates(VARIED)),
        "daily_completion_rates": len(expected_daily_completion_rates(VARIED)),
        "session_durations": len(expected_session_durations(VARIED)),
        "scenario_stats": len(expected_scenario_stats(VARIED)),
    }
    mart_files = {p.stem for p in (SQL_DIR / "marts").glob("*.sql")}
    assert varied.counts.keys() == mart_files, "one count per mart file"
    assert {m: varied.counts[m] for m in MARTS} == want
    assert table_counts(varied.con) == want


def test_stg_projects_match_python(varied):
    got = keyed_rows(varied.con, "staging.stg_projects", key=("project_id",))
    want = {
        p["id"]: {
            "project_id": p["id"],
            "project_name": p["name"],
            "organization_id": p["organization_id"],
            "organization_name": p["organization_name"],
            "timezone": p["timezone"],
            "is_deleted": p["is_deleted"],
            "is_listed": p["is_listed"],
            # the models count it: not deleted (NULL is not) and still listed (NULL is)
            "is_live": p["is_deleted"] is not True and p["is_listed"] is not False,
            "created_at": parse_timestamp(p["created_at"]),
            "updated_at": parse_timestamp(p["updated_at"]),
        }
        for p in VARIED.projects
    }
    assert got == want


def _matches_python(varied: Built, model: str, expected, rel: float = 0.0) -> None:
    """The mart holds exactly the rows computed in Python, every column equal (floats within `rel`)."""
    assert_same_rows(keyed_rows(varied.con, model), expected(VARIED), model, rel=rel, abs_=0, exact_columns=True)


def test_sessions_match_python(varied):
    _matches_python(varied, "sessions", expected_sessions)


def test_session_scenarios_match_python(varied):
    _matches_python(varied, "session_scenarios", expected_session_scenarios)


def test_project_completion_rates_match_python(varied):
    _matches_python(varied, "project_completion_rates", expected_project_completion_rates)


def test_daily_completion_rates_match_python(varied):
    _matches_python(varied, "daily_completion_rates", expected_daily_completion_rates)


def test_session_durations_match_python(varied):
    # avg and interpolation may round differently in the last bit: 1e-12 relative
    _matches_python(varied, "session_durations", expected_session_durations, rel=1e-12)


def test_scenario_stats_match_python(varied):
    _matches_python(varied, "scenario_stats", expected_scenario_stats)


# --- edge cases, spelled out ---------------------------------------------------------------

@pytest.mark.parametrize(
    "session_id, column, want",
    [
        pytest.param(1002, "message_count", None, id="null-message-count"),
        pytest.param(1004, "message_count", None, id="non-numeric-message-count"),
        pytest.param(1008, "message_count", None, id="decimal-message-count-not-rounded"),
        pytest.param(1010, "message_count", None, id="message-count-beyond-integer"),
        pytest.param(1005, "message_count", 3, id="padded-message-count"),
        pytest.param(1006, "duration_seconds", None, id="negative-duration-is-null"),
        pytest.param(1011, "duration_seconds", None, id="missing-updated-at-null-duration"),
        pytest.param(1009, "duration_seconds", 0.0, id="zero-duration-kept"),
        pytest.param(1002, "duration_seconds", 125.5, id="fractional-duration"),
        pytest.param(1007, "duration_seconds", 30.530865, id="microsecond-duration"),
        pytest.param(1004, "created_at", datetime(2024, 3, 3, tzinfo=UTC), id="offset-minus-0800"),
        pytest.param(1003, "created_at", datetime(2024, 3, 2, 8, tzinfo=UTC), id="offset-plus-0530"),
        pytest.param(1010, "created_at", datetime(2024, 3, 6, 12, tzinfo=UTC), id="no-offset-is-utc"),
        pytest.param(1019, "created_at", None, id="unparsable-created-at"),
        pytest.param(1012, "status", "archived", id="unknown-status-kept"),
        pytest.param(1025, "is_terminal", False, id="uppercase-status-not-terminal"),
        pytest.param(1020, "is_terminal", False, id="null-status-not-terminal"),
        pytest.param(1003, "scenario_count", 3, id="repeated-id-counts-twice"),
        pytest.param(1004, "scenario_count", 0, id="empty-list"),
        pytest.param(1005, "scenario_count", 0, id="null-list"),
        pytest.param(1017, "scenario_count", 2, id="null-element-counts"),
        pytest.param(1009, "project_id", 101, id="null-delivered-project-uses-listing"),
        pytest.param(1038, "project_name", "Old listing", id="listed-before-is-listed-counts"),
    ],
)
def test_sessions_edge_case(varied, session_id, column, want):
    (got,) = varied.con.execute(
        f"select {column} from analytics.sessions where session_id = ?", [session_id]
    ).fetchone()
    assert got == want, f"session {session_id} {column}"


@pytest.mark.parametrize(
    "project_id",
    [pytest.param(108, id="deleted"), pytest.param(110, id="no-longer-listed")],
)
def test_gone_project_leaves_every_model(varied, project_id):
    assert any(s["project_id"] == project_id for s in VARIED.sessions), "the case needs sessions"
    models = [name for (name,) in varied.con.execute(
        "select table_name from information_schema.tables where table_schema = 'analytics'"
    ).fetchall()]
    assert sorted(models) == sorted(load_declarations()), models  # every model models.toml declares
    left = {m: varied.con.execute(f"select count(*) from analytics.{m} where project_id = ?",
                                  [project_id]).fetchone()[0]
            for m in models}
    assert left == dict.fromkeys(models, 0), f"project {project_id} still counts in {left}"
    (raw,) = varied.con.execute("select count(*) from cekura_raw.scenario_improvement_sessions where project_id = ?",
                                [project_id]).fetchone()
    assert raw == sum(1 for s in VARIED.sessions if s["project_id"] == project_id), "raw keeps its rows"


def test_repeated_scenario_id_gives_two_rows_but_one_session(varied):
    rows = fetch(
        varied.con,
        "select position from analytics.session_scenarios "
        "where session_id = 1003 and scenario_id = 2 order by position",
    )
    assert rows == [{"position": 0}, {"position": 1}]
    want = {r["session_id"] for r in VARIED.scenario_ids if (r["project_id"], r["value"]) == (101, 2)}
    assert want == {1001, 1002, 1003, 1008}, "test data changed"
    (got,) = varied.con.execute(
        "select sessions from analytics.scenario_stats where project_id = 101 and scenario_id = 2"
    ).fetchone()
    assert got == len(want)


def test_unknown_and_null_statuses_count_in_total_and_other(varied):
    got = fetch(
        varied.con,
        "select project_id, sessions_total, sessions_other from analytics.project_completion_rates "
        "where project_id in (101, 102, 103) order by project_id",
    )
    want = []
    for project_id in (101, 102, 103):
        statuses = [s["status"] for s in VARIED.sessions if s["project_id"] == project_id]
        other = [s for s in statuses if s not in ENUM]
        want.append(
            {"project_id": project_id, "sessions_total": len(statuses), "sessions_other": len(other)}
        )
    assert [w["sessions_other"] for w in want] == [1, 1, 1], "test data changed"
    assert got == want


AT_2350, AT_0010 = "2024-03-01T23:50:00Z", "2024-03-02T00:10:00Z"
MAR_1, MAR_2 = date(2024, 3, 1), date(2024, 3, 2)


@pytest.mark.parametrize(
    "project_id, zone, created, local_date",
    [
        pytest.param(101, "America/New_York", AT_2350, MAR_1, id="america-new-york"),
        pytest.param(102, "Asia/Kolkata", AT_2350, MAR_2, id="asia-kolkata"),
        pytest.param(103, "Australia/Sydney", AT_2350, MAR_2, id="australia-sydney"),
        pytest.param(104, "Pacific/Kiritimati", AT_2350, MAR_2, id="pacific-kiritimati"),
        pytest.param(105, "Mars/Olympus_Mons", AT_2350, MAR_1, id="unknown-zone-2350"),
        pytest.param(105, "Mars/Olympus_Mons", AT_0010, MAR_2, id="unknown-zone-0010"),
        pytest.param(106, None, AT_2350, MAR_1, id="null-zone-2350"),
        pytest.param(106, None, AT_0010, MAR_2, id="null-zone-0010"),
        pytest.param(109, "", AT_0010, MAR_2, id="empty-zone-0010"),
    ],
)
def test_daily_day_is_created_at_in_project_zone_utc_fallback(
    varied, project_id, zone, created, local_date
):
    created_at = parse_timestamp(created)
    (session,) = [
        s for s in VARIED.sessions
        if s["project_id"] == project_id and parse_timestamp(s["created_at"]) == created_at
    ]
    (project,) = [p for p in VARIED.projects if p["id"] == project_id]
    assert project["timezone"] == zone, "test data changed"
    assert local_day(created_at, zone) == local_date, "zoneinfo disagrees with the spelled-out date"
    same_day = [
        s for s in VARIED.sessions
        if s["project_id"] == project_id
        and (c := parse_timestamp(s["created_at"])) is not None
        and local_day(c, zone) == local_date
    ]
    got = varied.con.execute(
        "select sessions_total from analytics.daily_completion_rates where project_id = ? and day = ?",
        [project_id, local_date],
    ).fetchall()
    assert got == [(len(same_day),)], f"session {session['id']} in {zone!r} belongs to {local_date}"


# --- building on thin or missing data ------------------------------------------------------


def test_empty_database_builds_every_model_with_zero_rows(tmp_path):
    con = fresh_db(tmp_path / "cekura.duckdb")  # no raw tables at all: no load has run
    counts = build_models(con)
    assert counts == {p.stem: 0 for p in (SQL_DIR / "marts").glob("*.sql")}
    assert table_counts(con) == {name: 0 for name in MARTS}


def test_projects_without_sessions_have_zero_counts_and_null_rates(tmp_path):
    data = RawData(projects=VARIED.projects)
    con = fresh_db(tmp_path / "cekura.duckdb", data)
    build_models(con)
    got = keyed_rows(con, "project_completion_rates")
    counts = ("total", "completed", "failed", "cancelled", "in_progress", "pending", "other")
    want = {
        p["id"]: {
            "project_id": p["id"],
            "project_name": p["name"],
            **{f"sessions_{c}": 0 for c in counts},
            "completion_rate": None,
            "terminal_completion_rate": None,
        }
        for p in data.projects
        if counts_in_models(p)
    }
    assert got == want
    assert table_counts(con, ("sessions", "daily_completion_rates", "session_durations")) == {
        "sessions": 0, "daily_completion_rates": 0, "session_durations": 0,
    }


def test_all_scenario_lists_empty_and_nested_table_never_created(tmp_path, varied_raw):
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    # dlt creates no nested table for a list that is always empty (dlt #2390, #2964): VARIED's
    # projects and sessions without it (its rows go with it)
    con.execute("drop table cekura_raw.scenario_improvement_sessions__scenario_ids")
    counts = build_models(con)
    assert (counts["session_scenarios"], counts["scenario_stats"]) == (0, 0), counts
    assert counts["sessions"] == len(counted(VARIED).sessions), counts
    got = con.execute("select distinct scenario_count from analytics.sessions").fetchall()
    assert got == [(0,)]


def test_build_models_twice_gives_the_same_tables(tmp_path, varied_raw):
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    first = build_models(con)
    snapshot = {m: sorted(map(repr, con.execute(f"from analytics.{m}").fetchall())) for m in MARTS}
    assert build_models(con) == first
    again = {m: sorted(map(repr, con.execute(f"from analytics.{m}").fetchall())) for m in MARTS}
    assert again == snapshot


# --- a failed build keeps the previous models ----------------------------------------------

EXTRA = RawData(
    sessions=[raw_data.session(9001, 101, "completed", "2024-04-01T00:00:00Z", "2024-04-01T00:01:00Z")],
)
EXTRA.scenario_ids = raw_data.explode(EXTRA.sessions, {9001: [1, 77]})


@pytest.mark.parametrize(
    "broken_file, error",
    [
        # sessions and session_scenarios are rebuilt with the new rows before this one fails
        pytest.param("marts/scenario_stats.sql", "Binder Error", id="last-mart-fails"),
        pytest.param("staging/stg_sessions.sql", "Binder Error", id="staging-view-fails"),
    ],
)
def test_failed_build_keeps_previous_models(tmp_path, varied_builds, broken_file, error):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    made, before = varied_builds("UTC")  # the models as built from the unbroken sql/
    con = copied_db(made, tmp_path / "cekura.duckdb")
    view_before = con.execute("select count(*) from staging.stg_sessions").fetchone()

    path = sql_dir / broken_file
    path.write_text(path.read_text().replace("select * from final", "select no_such_column from final"))
    raw_data.load(con, EXTRA)  # a rebuild would change the counts
    with pytest.raises(ModelBuildError) as caught:
        build_models(con, sql_dir)

    message = str(caught.value)
    assert message.startswith(f"{broken_file}: {error}"), message
    assert "no_such_column" in message and "\n" not in message, message
    assert caught.value.file == broken_file
    assert table_counts(con, tuple(before)) == before, "a failed build must leave the previous tables"
    new_rows = "select count(*) from analytics.session_scenarios where session_id = 9001"
    assert con.execute(new_rows).fetchone() == (0,)
    # the previous view definition is back, so it still reads raw (now with one more session)
    assert con.execute("select count(*) from staging.stg_sessions").fetchone() == (view_before[0] + 1,)
    # the connection is usable and a fixed build goes through
    shutil.copy(SQL_DIR / broken_file, path)
    assert build_models(con, sql_dir)["sessions"] == before["sessions"] + 1


def test_build_error_names_the_model_reading_a_missing_table(tmp_path, varied_raw):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "marts" / "misnamed.sql").write_text("select * from analytics.other_name")
    con = copied_db(varied_raw, tmp_path / "cekura.duckdb")
    with pytest.raises(ModelBuildError, match=r"^marts/misnamed\.sql: Catalog Error"):
        build_models(con, sql_dir)
    assert con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema in ('analytics', 'staging', 'cekura_meta')"
    ).fetchone() == (0,), "nothing of the failed first build is kept"


def test_clean_data_builds_too(tmp_path, clean_raw):
    con = copied_db(clean_raw, tmp_path / "cekura.duckdb")
    counts = build_models(con)
    assert counts["sessions"] == len(counted(CLEAN).sessions)
    assert counts["project_completion_rates"] == sum(1 for p in CLEAN.projects if counts_in_models(p))


KOLKATA_SPELLINGS = ["asia/kolkata", "Asia/Kolkata ", " ASIA/KOLKATA\t", "Asia/Kolkata"]


@pytest.fixture(scope="module")
def zoned(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    """Project 401 + i in KOLKATA_SPELLINGS[i]'s zone, with one session at 23:50 UTC, built once for
    all the spellings: daily_completion_rates takes each project's day from its own zone."""
    projects = [raw_data.project(401 + i, "Zoned", zone) for i, zone in enumerate(KOLKATA_SPELLINGS)]
    sessions = [raw_data.session(4001 + i, 401 + i, "completed", AT_2350, "2024-03-02T00:20:00Z")
                for i in range(len(KOLKATA_SPELLINGS))]
    con = fresh_db(tmp_path_factory.mktemp("zoned") / "cekura.duckdb", RawData(projects, sessions, []))
    build_models(con)
    yield con
    con.close()


@pytest.mark.parametrize("zone", KOLKATA_SPELLINGS)
def test_daily_day_matches_a_zone_name_as_the_database_does(zoned, zone):
    """Case and surrounding spaces aside, the name is the zone: 23:50 UTC is the next day in Kolkata."""
    project_id = 401 + KOLKATA_SPELLINGS.index(zone)

    got = zoned.execute("select project_id, day from analytics.daily_completion_rates where project_id = ?",
                        [project_id]).fetchall()

    assert local_day(parse_timestamp(AT_2350), zone) == MAR_2, "the oracle reads the name alike"
    assert got == [(project_id, MAR_2)]
