"""A PostgreSQL database shared with its readers, its team and their DBA (issue 20, items 2 to 5),
against a real server and the CLI in real processes: a team's view and grants on the models
survive the nights; a reader's open transaction never blocks a night for ever; the nights run
as a least-privilege loader while a read-only role queries; the run lock's session ended by the
server is noticed before the next write; a role's statement_timeout is one line naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cekura_sessions.destination.postgres import lock_key
from cekura_sessions.destination.warehouse import as_warehouse
from cekura_sessions.fake.data import generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from cekura_sessions.models.runner import DependentsError, build_models
from cekura_sessions.settings import SQL_DIR
from support import expected, nights, postgres, raw_data, warm
from support.first_night import copy_dlt_folder
from support.processes import CLI, cli_env
from support.raw_data import VARIED
from support.settings import API_KEY, DATASET_SPEC

pytestmark = pytest.mark.e2e

TEAM_VIEW = "create view bi.completed_sessions as select session_id from analytics.sessions where status = 'completed'"


def _as(url: str, user: str) -> str:
    """`url` logging in as `user` (pgserver trusts its socket: no password)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))


def _run(tmp_path: Path, api, db: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return warm.run([*CLI, "run", "--base-url", api.url, "--db", db, *args], env=cli_env(tmp_path, **env),
                    capture_output=True, text=True, timeout=180)


def _start(tmp_path: Path, api, db: str, *args: str, **env: str) -> subprocess.Popen:
    return warm.Popen([*CLI, "run", "--base-url", api.url, "--db", db, *args], env=cli_env(tmp_path, **env),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _query(url: str, sql: str) -> list[tuple]:
    con = postgres.connect(url)
    try:
        cursor = con.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        con.close()


def _completed(dataset) -> set[int]:
    return {row[0] for row in expected.sessions(dataset) if row[3] == "completed"}


def _wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _reader_role(url: str, name: str = "reader") -> None:
    admin = postgres.connect(url)
    try:
        admin.cursor().execute(f"do $$ begin create role {name} login; exception when duplicate_object then null; end $$")
    finally:
        admin.close()


# --- databases several tests start from --------------------------------------------------------------
# What a test only starts from (a first night; VARIED with its models built) is made once per module
# in a database of its own, and each test gets a database of its own that is a copy of it: the
# server copies a database from another as from a template (CREATE DATABASE ... TEMPLATE), in about
# 0.2 s of CPU where a night costs one to two seconds. Roles belong to the server, not to a
# database: `reader` exists once per server (_reader_role), and a copy keeps the grants made to it.


@dataclass(frozen=True)
class _Made:
    """A first night made once: its database's URL and its dlt folder."""

    url: str
    pipelines: Path


@pytest.fixture(scope="module")
def made_first_night(postgres_server, tmp_path_factory: pytest.TempPathFactory) -> _Made:
    """A plain first night of the suite's data, run in this process against a fake API of its own
    that serves the data whole, as `api` does (support/first_night.py says why whole); details=None:
    the sessions' details read, as the CLI's night reads them by default."""
    url, folder = postgres_server.new_database(), tmp_path_factory.mktemp("first-night")
    with FakeCekuraApi(generate(DATASET_SPEC), api_key=API_KEY, faults=Faults()) as server:
        outcome = nights.run(db=url, base_url=server.url, pipelines_dir=str(folder / "pipelines"), details=None)
    assert outcome.exit_code == 0, f"the first night failed: {outcome.message}"
    return _Made(url, folder / "pipelines")


@pytest.fixture
def night_1_url(postgres_server, made_first_night: _Made, tmp_path: Path, dataset) -> str:
    """The URL of a database of the test's own (as `pg_url`'s) holding a copy of the module's first
    night, and the CLI's dlt folder for it (in cli_env's dlt data dir) a copy of the night's, its
    marker (run/dlt_pipeline.py) naming the copy: the test's next night goes on from it as from its
    own."""
    from cekura_sessions.destination.address import parse_destination
    from cekura_sessions.destination.database import Database  # imports dlt: here, not while collecting

    assert dataset == generate(DATASET_SPEC), "the copied first night is of the suite's data, unchanged"
    pg_url = postgres_server.new_database(template=made_first_night.url)
    database = Database(parse_destination(pg_url))
    folder = tmp_path / "dlt-data" / "cekura-sessions" / database.pipelines_dir().name  # as cli_env's CLI keeps it
    copy_dlt_folder(made_first_night.pipelines, folder, str(database))
    return pg_url


# --- item 2: what others built survives ------------------------------------------------------------


def test_a_team_view_grants_and_comments_survive_two_nights(night_1_url, tmp_path, api, dataset):
    pg_url = night_1_url  # the first night, which only gives the team the models to build on, copied
    _reader_role(pg_url)
    admin = postgres.connect(pg_url)
    for statement in ("create schema bi", TEAM_VIEW, "grant usage on schema analytics, bi to reader",
                      "grant select on analytics.sessions, bi.completed_sessions to reader",
                      "comment on view bi.completed_sessions is 'the team''s own'"):
        admin.cursor().execute(statement)
    admin.close()

    for seed in (5, 6):  # two nights with changes: the models are rebuilt each time
        dataset = dataset.next_night(seed=seed)
        api.dataset = dataset
        night = _run(tmp_path, api, pg_url)
        assert night.returncode == 0, night.stderr
        seen = {session_id for (session_id,) in _query(_as(pg_url, "reader"), "select session_id from bi.completed_sessions")}
        assert seen == _completed(dataset), f"night {seed}: the reader's view differs"
    (comment,) = _query(pg_url, "select obj_description('bi.completed_sessions'::regclass)")[0]
    assert comment == "the team's own"


@pytest.fixture(scope="module")
def made_built(postgres_server) -> str:
    """VARIED loaded and its models built once per module, with a team's view and a reader's grant
    on analytics.sessions: the database's URL."""
    url = postgres_server.new_database()
    warehouse = as_warehouse(postgres.connect(url))
    try:
        raw_data.create_raw_tables(warehouse)
        raw_data.load(warehouse, VARIED)
        build_models(warehouse)
        _reader_role(url)
        for statement in ("create schema bi", TEAM_VIEW, "grant usage on schema analytics, bi to reader",
                          "grant select on analytics.sessions, bi.completed_sessions to reader"):
            warehouse.execute(statement)
    finally:
        warehouse.close()
    return url


@pytest.fixture
def built(postgres_server, made_built: str) -> Iterator[tuple]:
    """A copy of `made_built`, the test's own to change: (warehouse, url)."""
    pg_url = postgres_server.new_database(template=made_built)
    warehouse = as_warehouse(postgres.connect(pg_url))
    yield warehouse, pg_url
    warehouse.close()


def _sql_dir_with(tmp_path: Path, change) -> Path:
    """A copy of the models' SQL with marts/sessions.sql changed by `change(text) -> text`."""
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    sessions = copy / "marts" / "sessions.sql"
    sessions.write_text(change(sessions.read_text()))
    return copy


def test_an_added_column_is_added_and_the_view_and_grant_stay(built, tmp_path):
    warehouse, url = built
    sql_dir = _sql_dir_with(tmp_path, lambda text: text.replace("select * from final", "select *, 1 as extra_flag from final"))
    declarations = sql_dir / "models.toml"
    declarations.write_text(declarations.read_text().replace(
        "[sessions.columns]", "[sessions.columns]\nextra_flag = \"a test's added column\"", 1))

    build_models(warehouse, sql_dir)

    assert _query(_as(url, "reader"), "select count(*) from bi.completed_sessions") == \
        _query(url, "select count(*) from analytics.sessions where status = 'completed'")
    assert _query(_as(url, "reader"), "select distinct extra_flag from analytics.sessions") == [(1,)]


def test_a_retyped_column_stops_the_build_naming_the_view_unless_drop_dependents(built, tmp_path):
    warehouse, url = built
    (before,) = _query(url, "select count(*) from analytics.sessions")[0]
    sql_dir = _sql_dir_with(tmp_path, lambda text: text.replace("        sessions.title,\n",
                                                                "        length(sessions.title) as title,\n"))
    with pytest.raises(DependentsError, match=r"analytics\.sessions must be replaced \(column\(s\) title of another "
                                              r"type\), which would drop view bi\.completed_sessions") as stopped:
        build_models(warehouse, sql_dir)
    assert "\n" not in str(stopped.value)
    assert _query(url, "select count(*) from bi.completed_sessions") != [], "the view was dropped"
    assert _query(url, "select count(*) from analytics.sessions") == [(before,)]

    build_models(warehouse, sql_dir, drop_dependents=True)
    assert _query(url, "select to_regclass('bi.completed_sessions') is null") == [(True,)]


def test_models_without_drop_dependents_exits_1_with_one_line(built, tmp_path):
    _, url = built
    # the CLI builds the shipped models: the table differs from them by a renamed column instead (a
    # view follows a rename, so the team's view now reads `state`)
    admin = postgres.connect(url)
    admin.cursor().execute("alter table analytics.sessions rename column status to state")
    admin.close()
    done = warm.run([*CLI, "models", "--db", url], env=cli_env(tmp_path), capture_output=True, text=True,
                    timeout=120)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "would drop view bi.completed_sessions" in line and "--drop-dependents" in line, line
    again = warm.run([*CLI, "models", "--db", url, "--drop-dependents"], env=cli_env(tmp_path),
                     capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


# --- item 2: a reader's open transaction ------------------------------------------------------------


def test_a_readers_open_transaction_does_not_stop_the_night(night_1_url, tmp_path, api, dataset):
    pg_url = night_1_url  # the night the reader reads, copied
    reader = postgres.connect(pg_url)
    cursor = reader.cursor()
    cursor.execute("begin isolation level repeatable read")
    cursor.execute("select count(*) from analytics.sessions")
    (seen_before,) = cursor.fetchone()
    tomorrow = dataset.next_night(seed=5)
    api.dataset = tomorrow
    try:
        night = _run(tmp_path, api, pg_url, "--db-wait", "20")
        cursor.execute("select count(*) from analytics.sessions")
        assert cursor.fetchone() == (seen_before,), "the reader's snapshot changed under it"
    finally:
        reader.rollback()
        reader.close()
    assert night.returncode == 0, night.stderr
    assert seen_before == len(expected.sessions(dataset))
    assert _query(pg_url, "select count(*) from analytics.sessions") == [(len(expected.sessions(tomorrow)),)]


def test_a_lock_held_past_db_wait_exits_3_naming_its_holder(night_1_url, tmp_path, api, dataset):
    pg_url = night_1_url  # the first night, whose models the holder locks, copied
    api.dataset = dataset.next_night(seed=5)
    holder = postgres.connect(pg_url)
    cursor = holder.cursor()
    cursor.execute("set application_name = 'a dashboard refresh'")
    cursor.execute("begin")
    cursor.execute("lock table analytics.sessions in share mode")  # what a reader's index build takes
    try:
        started = time.monotonic()
        night = _run(tmp_path, api, pg_url, "--db-wait", "3")
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert night.returncode == 3, night.stderr
    line = night.stderr.strip().splitlines()[-1]
    assert "the model build waited past --db-wait (3 s) for a lock held by server pid" in line, line
    assert "a dashboard refresh" in line, line
    waits = [said for said in night.stderr.splitlines() if "waits for a lock held by" in said]
    assert len(waits) == 1, night.stderr
    assert took >= 3, "it did not wait --db-wait"


# --- item 3: least privilege ------------------------------------------------------------------------


LEAST_PRIVILEGE = [
    "create role loader login",
    "create role analyst login",
    "revoke create on database {db} from public",
    "create schema cekura_raw authorization loader",
    "create schema cekura_raw_staging authorization loader",
    "create schema staging authorization loader",
    "create schema analytics authorization loader",
    "create schema cekura_meta authorization loader",
    "grant usage on schema analytics to analyst",
    "alter default privileges for role loader in schema analytics grant select on tables to analyst",
]


def test_two_nights_as_a_least_privilege_loader_while_a_reader_queries(pg_url, tmp_path, api, dataset):
    database = urlsplit(pg_url).path.lstrip("/")
    admin = postgres.connect(pg_url)
    for statement in LEAST_PRIVILEGE:
        admin.cursor().execute(statement.format(db=database))
    admin.close()
    loader, analyst = _as(pg_url, "loader"), _as(pg_url, "analyst")
    assert _query(loader, f"select has_database_privilege('{database}', 'create')") == [(False,)]

    first = _run(tmp_path, api, loader)
    assert first.returncode == 0, first.stderr
    assert _query(analyst, "select count(*) from analytics.sessions") == [(len(expected.sessions(dataset)),)]
    tomorrow = dataset.next_night(seed=5)
    api.dataset = tomorrow
    second = _run(tmp_path, api, loader)
    assert second.returncode == 0, second.stderr
    assert _query(analyst, "select count(*) from analytics.sessions") == [(len(expected.sessions(tomorrow)),)]
    denied = subprocess.run([sys.executable, "-c", "import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); "
                             "c.cursor().execute('delete from analytics.sessions')", analyst],
                            capture_output=True, text=True, timeout=60)
    assert "permission denied" in denied.stderr, "the reader may write"


# --- item 4: the run lock's session ended -----------------------------------------------------------


def _lock_pid(url: str) -> int | None:
    high, low = (lock_key("cekura_raw") >> 32) & 0xFFFFFFFF, lock_key("cekura_raw") & 0xFFFFFFFF
    rows = _query(url, f"select pid from pg_locks where locktype = 'advisory' and classid = {high} and objid = {low} "
                       "and granted")
    return rows[0][0] if rows else None


@pytest.mark.parametrize("how", ["pg_terminate_backend", "idle_session_timeout"])
def test_a_lost_lock_that_is_free_is_taken_again_and_said(pg_url, tmp_path, api, dataset, how):
    marker = tmp_path / "paused"
    if how == "idle_session_timeout":  # a DBA's setting: sessions idle for 1 s are ended
        admin = postgres.connect(pg_url)
        admin.cursor().execute(f"alter database {urlsplit(pg_url).path.lstrip('/')} set idle_session_timeout = '1s'")
        admin.close()
    run = _start(tmp_path, api, pg_url, CEKURA_TEST_HOOK=f"normalize:{marker}")
    try:
        _wait_for(marker.exists, "the run to pause after its fetch")
        if how == "pg_terminate_backend":
            pid = _lock_pid(pg_url)
            assert pid is not None, "the run does not hold its lock"
            _query(pg_url, f"select pg_terminate_backend({pid})")
        _wait_for(lambda: _lock_pid(pg_url) is None, "the lock's session to end", 30)
        marker.unlink()
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)
    assert run.returncode == 0, err
    said = [line for line in err.splitlines() if "the run lock on cekura_raw was lost" in line]
    assert said and "was free: taken again before the load" in said[0], err
    assert _query(pg_url, "select count(*) from analytics.sessions") == [(len(expected.sessions(dataset)),)]


def test_a_lost_lock_another_run_took_stops_before_the_load_with_exit_3(pg_url, tmp_path, api):
    marker = tmp_path / "paused"
    run = _start(tmp_path, api, pg_url, CEKURA_TEST_HOOK=f"normalize:{marker}")
    other = postgres.connect(pg_url)
    try:
        _wait_for(marker.exists, "the run to pause after its fetch")
        other.cursor().execute("set application_name = 'cekura-sessions run other on host-2'")
        _query(pg_url, f"select pg_terminate_backend({_lock_pid(pg_url)})")
        _wait_for(lambda: _lock_pid(pg_url) is None, "the lock's session to end", 30)
        cursor = other.cursor()
        cursor.execute(f"select pg_try_advisory_lock({lock_key('cekura_raw')})")
        assert cursor.fetchone() == (True,)
        marker.unlink()
        out, err = run.communicate(timeout=180)
    finally:
        other.close()
        if run.poll() is None:
            run.kill()
            run.wait(30)
    assert run.returncode == 3, err
    line = err.strip().splitlines()[-1]
    assert "was lost" in line and "another run holds it now (cekura-sessions run other on host-2" in line, line
    assert "stopped before the load" in line, line
    assert _query(pg_url, "select to_regclass('cekura_raw.scenario_improvement_sessions') is null") == [(True,)], \
        "it loaded"
    assert _query(pg_url, "select status from cekura_raw.pipeline_runs") == [("running",)], "it wrote its ledger"


# --- item 5: a DBA's setting in one line -----------------------------------------------------------


def test_a_roles_statement_timeout_is_one_line_naming_it(pg_url, tmp_path, api):
    admin = postgres.connect(pg_url)
    admin.cursor().execute("create role slowpoke login")
    admin.cursor().execute(f"grant all on database {urlsplit(pg_url).path.lstrip('/')} to slowpoke")
    admin.cursor().execute("grant all on schema public to slowpoke")
    admin.cursor().execute("alter role slowpoke set statement_timeout = '1ms'")
    # the run's first statements could end within 1 ms on a fast machine: a schema another
    # session is creating (not yet committed) makes its `create schema if not exists` wait, past
    # 1 ms on any machine
    admin.autocommit = False
    admin.cursor().execute("create schema cekura_raw")
    try:
        night = _run(tmp_path, api, _as(pg_url, "slowpoke"))
    finally:
        admin.rollback()
        admin.close()
    assert night.returncode == 2, night.stderr
    line = night.stderr.strip().splitlines()[-1]
    assert "(statement_timeout" in line and "alter role slowpoke set statement_timeout" in line, line
    assert "unexpected" not in night.stderr and "Traceback" not in night.stderr, night.stderr


def test_permission_denied_is_one_line_naming_the_statement_and_the_role(built):
    from cekura_sessions.destination.address import parse_destination
    from cekura_sessions.destination.postgres import connect
    from cekura_sessions.destination.warehouse import PermissionDenied

    _, url = built
    _reader_role(url, "outsider")
    outsider = connect(parse_destination(_as(url, "outsider")))
    try:
        with pytest.raises(PermissionDenied) as denied:
            outsider.execute("delete from analytics.sessions")
    finally:
        outsider.close()
    line = str(denied.value)
    assert "\n" not in line and line.startswith("PostgreSQL stopped `delete from analytics.sessions`: permission denied"), line
    assert "the privileges of role outsider" in line, line


def test_status_says_a_night_is_running_while_a_run_holds_the_lock(night_1_url, tmp_path):
    """item 8 on PostgreSQL: the advisory lock held means a night is running (asked of pg_locks,
    never taken); once it is free, a newest run that never finished is `unfinished`."""
    pg_url = night_1_url  # a night that succeeded, copied: what `status` reads once the lock is free
    other = postgres.connect(pg_url)
    try:
        cursor = other.cursor()
        cursor.execute("set application_name = 'cekura-sessions run r2 on host-2'")
        cursor.execute(f"select pg_try_advisory_lock({lock_key('cekura_raw')})")
        assert cursor.fetchone() == (True,)
        held = warm.run([*CLI, "status", "--db", pg_url], env=cli_env(tmp_path), capture_output=True, text=True,
                        timeout=120)
    finally:
        other.close()
    free = warm.run([*CLI, "status", "--db", pg_url], env=cli_env(tmp_path), capture_output=True, text=True,
                    timeout=120)

    assert held.returncode == 3, held.stderr
    assert "a night is running" in held.stderr and "cekura-sessions run r2 on host-2" in held.stderr, held.stderr
    assert free.returncode == 0, free.stdout + free.stderr


def test_a_lock_on_a_raw_table_is_waited_for_and_the_load_goes_on_once_it_is_released(night_1_url, tmp_path, api,
                                                                                        dataset):
    """dlt's load meets another session's lock on a raw table: the wait is said once, naming the
    holder, and the load is started again until the lock is released; the night then ends exact."""
    pg_url = night_1_url  # the first night, which made the raw table the holder locks, copied
    tomorrow = dataset.next_night(seed=5)
    api.dataset = tomorrow
    holder = postgres.connect(pg_url)
    cursor = holder.cursor()
    cursor.execute("set application_name = 'a nightly vacuum script'")
    cursor.execute("begin")
    cursor.execute("lock table cekura_raw.scenario_improvement_sessions in share mode")
    night = _start(tmp_path, api, pg_url, "--db-wait", "600", "--no-details")
    said = []
    try:
        for line in night.stderr:  # the wait is said while the lock is held
            said.append(line)
            if "waits for a lock held by" in line:
                break
    finally:
        holder.rollback()
        holder.close()
    rest, more = night.communicate(timeout=300)
    said.append(more)
    assert night.returncode == 0, "".join(said)
    waits = [line for line in "".join(said).splitlines() if "waits for a lock held by" in line]
    assert len(waits) == 1 and "a nightly vacuum script" in waits[0] and "dlt's load" in waits[0], said
    assert _query(pg_url, "select count(*) from analytics.sessions") == [(len(expected.sessions(tomorrow)),)]
