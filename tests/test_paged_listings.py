"""A paged listing identical to last night's writes nothing; one that changed on a later page
is read whole again, exactly."""

from __future__ import annotations

import copy

import duckdb
import pytest
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected
from support.settings import API_KEY, TEST_RETRY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

PAGE_SIZE = 7


@pytest.fixture
def paged(dataset):
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE) as server:
        yield server


def _pages(dataset, project_id: int) -> int:
    return max(1, -(-len(dataset.sessions[project_id]) // PAGE_SIZE))


def test_an_unchanged_paged_night_writes_nothing(load, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    assert any(_pages(dataset, p) > 1 for p in listed), "the test data has no listing of more than one page"
    assert load(base_url=paged.url).exit_code == 0
    with duckdb.connect(str(db_path), read_only=True) as con:
        loads = con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0]

    outcome = load(base_url=paged.url)

    assert outcome.exit_code == 0, outcome.message
    assert sorted(outcome.report.projects_unchanged) == sorted(listed)
    assert outcome.report.sessions_written == 0
    assert outcome.report.stats.requests == 1 + sum(_pages(dataset, p) for p in listed)
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert con.execute("select count(*) from cekura_raw._dlt_loads").fetchone()[0] == loads, "a package loaded"
        assert expected.loaded_sessions(con) == expected.sessions(dataset, listed)


def test_a_change_on_the_last_page_reloads_the_listing_exactly(load, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    assert load(base_url=paged.url).exit_code == 0
    victim = next(p for p in listed if _pages(dataset, p) > 2)
    tomorrow = copy.deepcopy(dataset)  # only the victim's last session changes
    last = tomorrow.sessions[victim][-1]
    last["status"] = "failed" if last["status"] != "failed" else "completed"
    last["scenario_ids"] = [101, 102, 103]
    paged.dataset = tomorrow

    outcome = load(base_url=paged.url)

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
def test_next_links_are_followed_on_the_configured_api_root(load, dataset, db_path, links):
    """DRF builds `next` from the request's host: behind a proxy it names the app server."""
    listed = expected.listed_project_ids(dataset)
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE, faults=Faults(next_links=links)) as server:
        outcome = load(base_url=server.url)
        endpoints = {record.endpoint for record in server.requests_log}

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.stats.requests == 1 + sum(_pages(dataset, p) for p in listed)
    assert endpoints == {"projects", "sessions"}, endpoints
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, listed)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(dataset, listed)


def test_a_next_link_that_loops_fails_its_project_and_the_night_ends(load, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    looping = sorted(p for p in listed if _pages(dataset, p) > 1)
    single = [p for p in listed if p not in looping]
    assert looping and single, "the test data needs listings of one page and of several"
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE, faults=Faults(next_links="self")) as server:
        outcome = load(base_url=server.url)
        asked = {p: server.request_count(endpoint="sessions", project_id=p) for p in looping}

    assert outcome.exit_code == 1, outcome.message
    assert sorted(outcome.report.projects_failed) == looping
    assert all("pagination loops" in why for why in outcome.report.projects_failed.values()), outcome.report.projects_failed
    assert asked == dict.fromkeys(looping, 1), "a looping listing is asked for its first page once"
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset, single)


# --- listings that change while they are paged ---------------------------------------------


def _raw(db_path) -> tuple[set, list]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return expected.loaded_sessions(con), expected.loaded_scenario_ids(con)


def _want(dataset) -> tuple[set, list]:
    listed = expected.listed_project_ids(dataset)
    return expected.sessions(dataset, listed), expected.scenario_ids(dataset, listed)


@pytest.mark.parametrize("pagination", ["page_number", "limit_offset"])
@pytest.mark.parametrize("move", ["insert-first", "delete-first", "swap", "shrink"])
def test_a_listing_that_moves_between_pages_ends_exact(load, dataset, db_path, pagination, move):
    """Night 1 loads; on night 2 the busiest project's listing changes right after its first
    page went out. The night ends exact: no stored session that still exists is deleted, none
    is loaded twice, and nothing is set aside."""
    busiest = max(expected.listed_project_ids(dataset), key=lambda p: len(dataset.sessions[p]))
    assert _pages(dataset, busiest) > 2, "the test data needs a listing of three pages or more"
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE, pagination=pagination) as api:
        assert load(base_url=api.url).exit_code == 0
        before = {s["id"] for s in dataset.sessions[busiest]}
        api.faults = Faults(moves={busiest: [move]})

        outcome = load(base_url=api.url)

        after = api.dataset  # the move really happened: the served data changed for good
    assert {s["id"] for s in after.sessions[busiest]} != before, "the move changed nothing"
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.rows_rejected == 0, "a row seen twice in a torn read was set aside"
    assert _raw(db_path) == _want(after)


def test_a_first_night_read_twice_by_a_shift_loads_each_session_once(load, dataset, db_path):
    busiest = max(expected.listed_project_ids(dataset), key=lambda p: len(dataset.sessions[p]))
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE,
                       faults=Faults(moves={busiest: ["insert-first"]})) as api:
        outcome = load(base_url=api.url)
        after = api.dataset
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.rows_rejected == 0
    assert _raw(db_path) == _want(after)


def test_a_listing_that_never_holds_still_fails_its_project_and_keeps_its_rows(load, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    busiest = max(listed, key=lambda p: len(dataset.sessions[p]))
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE) as api:
        assert load(base_url=api.url).exit_code == 0
        kept = _raw(db_path)
        api.faults = Faults(moves={busiest: ["swap"] * 100})  # a new session and a deletion on every read

        outcome = load(base_url=api.url)

        reads = sum(1 for r in api.requests_log if r.project_id == busiest and r.page == 1)
        after = api.dataset
    assert outcome.exit_code == 1, outcome.message
    assert set(outcome.report.projects_failed) == {busiest}
    assert "changed" in outcome.report.projects_failed[busiest], outcome.report.projects_failed
    # bounded: at most listing_reads reads by the source, each at most listing_reads by the client
    assert reads <= TEST_RETRY.listing_reads ** 2, reads
    sessions, scenarios = _raw(db_path)
    others = [p for p in listed if p != busiest]
    assert {s for s in sessions if s[7] == busiest} == {s for s in kept[0] if s[7] == busiest}, "its rows changed"
    assert {s for s in sessions if s[7] != busiest} == expected.sessions(after, others)
    assert [r for r in scenarios if r[1] == busiest] == [r for r in kept[1] if r[1] == busiest]


@pytest.mark.parametrize(("page_size", "pagination", "max_page_size"), [
    pytest.param(None, "page_number", None, id="bare-array"),
    pytest.param(PAGE_SIZE, "page_number", None, id="page-number"),
    pytest.param(PAGE_SIZE, "page_number", 12, id="page-number-page-size-param"),
    pytest.param(PAGE_SIZE, "limit_offset", None, id="limit-offset"),
    pytest.param(PAGE_SIZE, "limit_offset", 12, id="limit-offset-max-limit"),
    pytest.param(PAGE_SIZE, "cursor", None, id="cursor"),
    pytest.param(PAGE_SIZE, "cursor", 12, id="cursor-page-size-param"),
])
def test_every_drf_pagination_class_loads_two_nights_with_deletions_exactly(load, dataset, db_path, page_size,
                                                                           pagination, max_page_size):
    """DRF's own paging classes, as a deployment may configure them; night 2 deletes sessions
    (one project empties) and creates others: raw rows equal what the fake served, each night."""
    tomorrow = dataset.next_night(seed=11)
    assert tomorrow.last_changes.get("deleted"), "night 2 deletes no session: the test shows nothing"
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=page_size, pagination=pagination,
                       max_page_size=max_page_size) as server:
        for night in (dataset, tomorrow):
            server.dataset = night
            listed = expected.listed_project_ids(night)

            outcome = load(base_url=server.url)

            assert outcome.exit_code == 0, outcome.message
            with duckdb.connect(str(db_path), read_only=True) as con:
                assert expected.loaded_sessions(con) == expected.sessions(night, listed)
                assert expected.loaded_scenario_ids(con) == expected.scenario_ids(night, listed)
