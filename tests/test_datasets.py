"""Two organisations, one database (issue 20, item 6): `--dataset NAME` loads a second key beside
the first, into schemas of its own; a key of another organisation than a dataset was loaded
with is refused before anything is loaded (exit 2, one line suggesting --dataset). Expected
rows come from the fake API's generated data in plain Python (support/expected.py)."""

from __future__ import annotations

import subprocess

import duckdb
import pytest
from cekura_sessions.destination.address import parse_destination
from cekura_sessions.destination.database import Database, DatabaseUnavailable
from cekura_sessions.destination.dataset import Dataset, DatasetNameError
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi
from support import expected, postgres, warm
from support.processes import CLI, cli_env

OTHER_KEY = "other-organisation-key-3b1d"


# --- the names (fast) -------------------------------------------------------------------------------


def test_the_default_dataset_keeps_the_names_users_know():
    names = Dataset()
    assert (names.raw, names.analytics, names.staging, names.meta, names.pipeline_name) == (
        "cekura_raw", "analytics", "staging", "cekura_meta", "cekura_sessions")
    sql = "select * from analytics.sessions join staging.stg_sessions using (session_id)"
    assert names.sql(sql) == sql


def test_a_named_dataset_has_schemas_of_its_own_and_its_sql_is_rewritten_as_whole_names_only():
    names = Dataset("acme")
    assert sorted(names.schemas()) == ["acme", "acme_analytics", "acme_analytics_staging", "acme_meta", "acme_staging"]
    assert names.pipeline_name == "cekura_sessions_acme"
    sql = ("create schema if not exists cekura_meta; select s.staging, 'analytics' from analytics.sessions as s "
           "join staging.stg_sessions using (session_id) join cekura_raw.projects p on true "
           "where table_schema in ('cekura_raw_staging', 'my_analytics', 'staging_x')")
    assert names.sql(sql) == (
        "create schema if not exists acme_meta; select s.staging, 'acme_analytics' from acme_analytics.sessions as s "
        "join acme_analytics_staging.stg_sessions using (session_id) join acme.projects p on true "
        "where table_schema in ('acme_staging', 'my_analytics', 'staging_x')")
    assert names.sql(names.sql(sql)) == names.sql(sql)  # rewriting twice changes nothing more


@pytest.mark.parametrize("name", [
    pytest.param("Acme", id="uppercase"),
    pytest.param("acme-health", id="dash"),
    pytest.param("1acme", id="leading-digit"),
    pytest.param("a" * 41, id="too-long"),
    pytest.param("analytics", id="the-models-schema"),
    pytest.param("acme_meta", id="another-datasets-bookkeeping"),
    pytest.param("acme_staging", id="another-datasets-dlt-staging"),
    pytest.param("pg_acme", id="postgres-reserved"),
    pytest.param("public", id="public"),
    pytest.param("system", id="duckdb-catalog"),
    pytest.param("order", id="reserved-word"),
    pytest.param("cross", id="a-join-word"),
    pytest.param("user", id="reserved-in-postgres-only"),
])
def test_a_name_no_dataset_can_have_is_refused_in_one_line(name):
    with pytest.raises(DatasetNameError) as refused:
        Dataset(name)
    assert "\n" not in str(refused.value) and "--dataset" in str(refused.value), str(refused.value)


@pytest.mark.parametrize(("file_name", "name"), [
    pytest.param("cekura.duckdb", "cekura", id="the-default-file-and-its-name"),
    pytest.param("acme.v2.duckdb", "acme", id="up-to-the-first-dot"),
    pytest.param("Acme_Meta.duckdb", "acme", id="another-schema-of-the-dataset-any-case"),
    pytest.param("analytics.duckdb", "cekura_raw", id="the-default-dataset"),
])
def test_a_duckdb_file_named_as_a_schema_of_the_dataset_is_refused_in_one_line(tmp_path, file_name, name):
    # DuckDB names a file's database after the file up to its first dot, and then refuses
    # `cekura.projects` as "Ambiguous reference to catalog or schema" in every statement
    with pytest.raises(DatabaseUnavailable) as refused:
        Database(parse_destination(str(tmp_path / file_name)), 1.0, Dataset(name))
    message = str(refused.value)
    assert "\n" not in message and file_name in message and "--db" in message, message
    Database(parse_destination(str(tmp_path / "team.duckdb")), 1.0, Dataset(name))  # another name is fine


# --- two keys, one DuckDB file (in process) ----------------------------------------------------------


@pytest.fixture
def other_organisation():
    """Another organisation's data: ids of its organisations start at 41 (the first key's at 11)."""
    return generate(DataSpec(projects=5, sessions_per_project=20, seed=23, first_organization_id=41))


@pytest.fixture
def other_api(other_organisation):
    with FakeCekuraApi(other_organisation, api_key=OTHER_KEY) as server:
        yield server


def _loaded_sessions(con, schema: str) -> set[tuple]:
    return set(con.execute(
        "select id, title, project, status, created_at, updated_at, message_count, project_id "
        f"from {schema}.scenario_improvement_sessions").fetchall())


def _analytics_ids(con, schema: str) -> set[int]:
    return {sid for (sid,) in con.execute(f"select session_id from {schema}.sessions").fetchall()}


def _schemas(con) -> set[str]:
    return {s for (s,) in con.execute("select schema_name from information_schema.schemata").fetchall()}


@pytest.mark.e2e
def test_two_keys_load_into_two_datasets_side_by_side_and_exactly(run_night, first_night, db_path, dataset,
                                                                   other_api, other_organisation):
    first_night()  # the first key's night, the one the other dataset loads beside: a copy (it exited 0)
    for night in (1, 2):  # a second night changes nothing on either side
        other = run_night(api_key=OTHER_KEY, base_url=other_api.url, dataset="other_org")
        assert other.exit_code == 0, (night, other.message)
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert _loaded_sessions(con, "cekura_raw") == expected.sessions(dataset)
        assert _loaded_sessions(con, "other_org") == expected.sessions(other_organisation)
        want_first = {row[0] for row in expected.sessions(dataset)}
        want_other = {row[0] for row in expected.sessions(other_organisation)}
        assert _analytics_ids(con, "analytics") == want_first
        assert _analytics_ids(con, "other_org_analytics") == want_other
        orgs = {schema: {o for (o,) in con.execute(f"select distinct organization_id from {schema}.projects")
                         .fetchall()} for schema in ("cekura_raw", "other_org")}
        assert orgs == {"cekura_raw": {11}, "other_org": {41}}, orgs
        assert {"other_org", "other_org_staging", "other_org_analytics", "other_org_analytics_staging",
                "other_org_meta"} <= _schemas(con)
        runs = {schema: con.execute(f"select count(*) from {schema}.pipeline_runs").fetchone()[0]
                for schema in ("cekura_raw", "other_org")}
        assert runs == {"cekura_raw": 1, "other_org": 2}, runs


@pytest.mark.e2e
def test_a_key_of_another_organisation_is_refused_before_anything_is_loaded(run_night, first_night, db_path, dataset,
                                                                            other_api):
    first_night()
    with duckdb.connect(str(db_path), read_only=True) as con:
        before = expected.snapshot(con)
        analytics_before = con.execute("select * from analytics.sessions order by all").fetchall()
        schemas_before = _schemas(con)
    refused = run_night(api_key=OTHER_KEY, base_url=other_api.url)
    assert refused.exit_code == 2, refused.message
    line = refused.message
    assert "\n" not in line and "--dataset" in line and "id 41" in line and "id 11" in line, line
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.snapshot(con) == before
        assert con.execute("select * from analytics.sessions order by all").fetchall() == analytics_before
        assert _schemas(con) == schemas_before
        assert len(_analytics_ids(con, "analytics")) == len(expected.sessions(dataset))


# --- every command takes --dataset (real processes) ---------------------------------------------------


@pytest.mark.e2e
def test_every_command_takes_the_dataset_and_a_mistyped_one_names_those_there(tmp_path, api, dataset):
    db = str(tmp_path / "team.duckdb")

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
        return warm.run([*CLI, *args, "--db", db], env=cli_env(tmp_path, **env), capture_output=True,
                        text=True, timeout=180)

    loaded = cli("run", "--base-url", api.url, "--no-details", CEKURA_DATASET="team_a")
    assert loaded.returncode == 0, loaded.stderr
    for command in ("models", "check", "status"):
        done = cli(command, "--dataset", "team_a")
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    gone = [project["id"] for project in dataset.projects if project.get("is_deleted")]
    assert gone and "kept in team_a, left out of team_a_analytics" in done.stdout, done.stdout  # status's
    with duckdb.connect(db, read_only=True) as con:
        assert _analytics_ids(con, "team_a_analytics") == {row[0] for row in expected.sessions(dataset)}
        assert "analytics" not in _schemas(con) and "cekura_raw" not in _schemas(con)
    unbuilt = cli("run", "--base-url", api.url, "--no-details", "--no-models", "--dataset", "team_c")
    assert unbuilt.returncode == 0, unbuilt.stderr
    no_models = cli("check", "--dataset", "team_c")  # the command it suggests builds team_c's, not the default's
    assert no_models.returncode == 2 and f"`cekura-sessions models --db {db} --dataset team_c`" in no_models.stderr, \
        no_models.stderr
    mistyped = cli("status", "--dataset", "team_b")
    assert mistyped.returncode == 5, mistyped.stderr
    assert mistyped.stderr.strip().count("\n") == 0 and "team_a" in mistyped.stderr, mistyped.stderr
    bad = cli("run", "--base-url", api.url, "--dataset", "Team A")
    assert bad.returncode == 2 and "'team_a'" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


# --- PostgreSQL: two datasets, each with its own run lock ---------------------------------------------


@pytest.mark.e2e
def test_two_organisations_load_a_postgres_database_at_the_same_time(pg_url, tmp_path, api, dataset, other_api,
                                                                    other_organisation):
    def start(*args: str, **env: str) -> subprocess.Popen:
        return warm.Popen([*CLI, "run", "--db", pg_url, "--no-details", *args], env=cli_env(tmp_path, **env),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("--base-url", api.url)
    other = start("--base-url", other_api.url, "--dataset", "other_org", CEKURA_API_KEY=OTHER_KEY)
    outputs = [process.communicate(timeout=300) for process in (first, other)]
    assert (first.returncode, other.returncode) == (0, 0), outputs
    con = postgres.connect(pg_url)
    try:
        cursor = con.cursor()
        got = {}
        for schema in ("analytics", "other_org_analytics"):
            cursor.execute(f"select session_id from {schema}.sessions")
            got[schema] = {sid for (sid,) in cursor.fetchall()}
    finally:
        con.close()
    assert got == {"analytics": {row[0] for row in expected.sessions(dataset)},
                   "other_org_analytics": {row[0] for row in expected.sessions(other_organisation)}}


# --- the night's one line names the dataset's tables, and leaves the API's words alone --------------


def test_the_partial_nights_line_names_the_datasets_rejected_rows_and_keeps_the_apis_words():
    from cekura_sessions.extract.report import RunReport
    from cekura_sessions.run.outcome import problems

    report = RunReport()
    report.rows_rejected = 2
    report.projects_failed = {7: "HTTP 503 on https://staging.cekura.ai/test_framework/v1/ (analytics down)"}
    found = "; ".join(problems(report, [], Dataset("acme").raw))
    assert "project 7: HTTP 503 on https://staging.cekura.ai/test_framework/v1/ (analytics down)" in found, found
    assert "set aside in acme.rejected_rows" in found and "cekura_raw" not in found, found


@pytest.mark.e2e
def test_a_rejected_row_of_a_named_dataset_is_set_aside_in_its_own_raw_schema(run_night, db_path, api, dataset):
    victim = expected.listed_project_ids(dataset)[0]
    dataset.sessions[victim].append({**dataset.sessions[victim][0], "id": 990001, "created_at": "not a date"})
    api.dataset = dataset
    outcome = run_night(dataset="team_x")
    assert outcome.exit_code == 1, outcome.message
    assert "set aside in team_x.rejected_rows" in outcome.message, outcome.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        rejected = con.execute("select project_id from team_x.rejected_rows").fetchall()
        assert rejected == [(victim,)], rejected
        assert "cekura_raw" not in _schemas(con)


@pytest.mark.e2e
def test_the_demo_refuses_a_dataset_named_as_its_file_before_making_anything(tmp_path):
    db = tmp_path / "acme.duckdb"
    refused = warm.run([*CLI, "demo", "--db", str(db), "--dataset", "acme", "--projects", "1"],
                       env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    said = (refused.stdout + refused.stderr).strip()
    assert refused.returncode == 2 and "\n" not in said and "--dataset" in said, said
    assert not db.exists() and not list(tmp_path.glob("acme.duckdb*")), list(tmp_path.iterdir())


def test_a_refused_insert_of_many_rows_names_the_statement_as_the_dataset_ran_it(pg_url):
    from urllib.parse import urlsplit, urlunsplit

    from cekura_sessions.destination.postgres import connect
    from cekura_sessions.destination.warehouse import PermissionDenied

    admin = postgres.connect(pg_url)
    try:
        admin.cursor().execute("create schema acme_meta; create table acme_meta.notes (note text); "
                               "create role acme_outsider login; grant usage on schema acme_meta to acme_outsider")
    finally:
        admin.close()
    parts = urlsplit(pg_url)
    url = urlunsplit(parts._replace(netloc=f"acme_outsider@{parts.netloc.rpartition('@')[2]}"))
    outsider = connect(parse_destination(url))
    outsider.dataset = Dataset("acme")
    try:
        with pytest.raises(PermissionDenied) as denied:
            outsider.executemany("insert into cekura_meta.notes values (?)", [["a"], ["b"]])
    finally:
        outsider.close()
    line = str(denied.value)
    assert line.startswith("PostgreSQL stopped `insert into acme_meta.notes values (?)`: permission denied"), line
