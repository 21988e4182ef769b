"""A paged listing identical to last night's writes nothing; one that changed on a later page
is read whole again, exactly."""

from __future__ import annotations

import copy

import duckdb
import pytest
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

PAGE_SIZE = 7


@pytest.fixture
def paged(dataset):
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE) as server:
        yield server


def _pages(dataset, project_id: int) -> int:
    return max(1, -(-len(dataset.sessions[project_id]) // PAGE_SIZE))


def test_an_unchanged_paged_night_writes_nothing(run_night, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    assert any(_pages(dataset, p) > 1 for p in listed), "the test data has no listing of more than one page"
    assert run_night(base_url=paged.url).exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        loads = con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0]

    outcome = run_night(base_url=paged.url)

    assert outcome.exit_code == 0, outcome.message
    assert sorted(outcome.report.projects_unchanged) == sorted(listed)
    assert outcome.report.sessions_written == 0
    assert outcome.report.stats.requests == 1 + sum(_pages(dataset, p) for p in listed)
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0] == loads, "a package loaded"
        assert expected.loaded_sessions(con) == expected.sessions(dataset, listed)


def test_a_change_on_the_last_page_reloads_the_listing_exactly(run_night, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    assert run_night(base_url=paged.url).exit_code == 0
    victim = next(p for p in listed if _pages(dataset, p) > 2)
    tomorrow = copy.deepcopy(dataset)  # only the victim's last session changes
    last = tomorrow.sessions[victim][-1]
    last["status"] = "failed" if last["status"] != "failed" else "completed"
    last["scenario_ids"] = [101, 102, 103]
    paged.dataset = tomorrow

    outcome = run_night(base_url=paged.url)

    assert outcome.exit_code == 0, outcome.message
    assert sorted(outcome.report.projects_unchanged) == sorted(p for p in listed if p != victim)
    assert outcome.report.sessions_written == len(tomorrow.sessions[victim])
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(tomorrow, listed)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(tomorrow, listed)


@pytest.mark.parametrize("links", [
    pytest.param("relative", id="relative"),
    pytest.param("internal-host", id="app-server-behind-a-tls-proxy"),
])
def test_next_links_are_followed_on_the_configured_api_root(run_night, dataset, db_path, links):
    """DRF builds `next` from the request's host: behind a proxy it names the app server."""
    listed = expected.listed_project_ids(dataset)
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE, faults=Faults(next_links=links)) as server:
        outcome = run_night(base_url=server.url)
        endpoints = {record.endpoint for record in server.requests_log}

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.stats.requests == 1 + sum(_pages(dataset, p) for p in listed)
    assert endpoints == {"projects", "sessions"}, endpoints
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, listed)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(dataset, listed)


def test_a_next_link_that_loops_fails_its_project_and_the_night_ends(run_night, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    looping = sorted(p for p in listed if _pages(dataset, p) > 1)
    single = [p for p in listed if p not in looping]
    assert looping and single, "the test data needs listings of one page and of several"
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE, faults=Faults(next_links="self")) as server:
        outcome = run_night(base_url=server.url)
        asked = {p: server.request_count(endpoint="sessions", project_id=p) for p in looping}

    assert outcome.exit_code == 1, outcome.message
    assert sorted(outcome.report.projects_failed) == looping
    assert all("pagination loops" in why for why in outcome.report.projects_failed.values()), outcome.report.projects_failed
    assert asked == dict.fromkeys(looping, 1), "a looping listing is asked for its first page once"
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, single)
