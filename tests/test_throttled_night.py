"""Whole nights against DRF's throttle on the fake API: a throttle-bound night loads exactly and
keeps what it learned of the throttle, from which the next night paces from its first request
(refused only for what the first night counted too many); a throttle that never lifts ends the
night at its time budget with one message."""

from __future__ import annotations

import dataclasses
import logging

import duckdb
import pytest
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected
from support.settings import API_KEY, TEST_RETRY
from support.throttling import night_of, refused

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API


@pytest.fixture
def crowded():
    return generate(DataSpec(projects=80, sessions_per_project=4, seed=9, oddities=False))


def test_a_throttle_bound_night_loads_exactly(load, crowded, db_path):
    with FakeCekuraApi(crowded, api_key=API_KEY, faults=Faults(throttle="40/s")) as server:
        outcome = load(base_url=server.url)
        log = list(server.requests_log)

    assert outcome.exit_code == 0, outcome.message
    assert refused(log) > 0, "the throttle never refused: nothing was paced"
    listings = [record for record in log if record.endpoint != "details"]  # the sessions' details come after
    assert len(listings) - refused(listings) == 1 + len(expected.listed_project_ids(crowded)), "each asked once more only"
    with duckdb.connect(str(db_path), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(crowded)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(crowded)


def test_the_next_night_paces_from_the_throttle_the_first_one_learned(load, crowded, db_path, caplog):
    faults = Faults(throttle="40/s")
    with FakeCekuraApi(crowded, api_key=API_KEY, faults=faults) as server:
        first = load(base_url=server.url)
        first_log = list(server.requests_log)
        with duckdb.connect(str(db_path), read_only=True) as con:
            (learned,) = con.execute("select limit_requests from cekura_raw.api_throttles").fetchone()
        server.faults = faults  # a fresh window, as a day later
        server.reset_log()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cekura_sessions.api.pacing"):
            second = load(base_url=server.url)
        second_log = list(server.requests_log)
        base_url = server.url

    assert (first.exit_code, second.exit_code) == (0, 0), (first.message, second.message)
    assert night_of(first_log).refused > 0, "the first night never met the throttle"
    assert f"learned on an earlier night: {learned} requests per second" in caplog.text, caplog.text
    # paced from its first request: what a 429 corrects is only what the first night counted too
    # many (answers that came late, on a busy machine, read as within the window), one each
    overcounted = max(0, learned - 40)
    assert night_of(second_log).refused <= overcounted + 1, (
        f"{night_of(second_log).refused} refused on the second night, paced from {learned} per second")
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("select * from cekura_raw.api_throttles").fetchall()
        assert expected.loaded_sessions(con) == expected.sessions(crowded)
    # what the second night stores: the window, corrected from above; a first night that learned
    # fewer (a busy machine reads the answers of the 429's window late) is kept as it is, since
    # nothing is refused below the window to correct it (the Pacer does not probe upward)
    assert [row[:3] for row in rows] == [(base_url, min(learned, 40), 1.0)]
    assert API_KEY not in repr(rows), "the key was stored"


def test_an_unthrottled_night_remembers_nothing(load, api, db_path):
    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = {t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'cekura_raw'").fetchall()}
    assert "api_throttles" not in tables


def test_a_throttle_that_never_lifts_ends_the_night_at_its_time_budget(load, dataset, db_path, caplog):
    listed = expected.listed_project_ids(dataset)
    faults = Faults(always={pid: "429:0" for pid in listed})  # the projects list answers, no listing ever does
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=faults) as server, caplog.at_level(logging.INFO):
        outcome = load(base_url=server.url, retry=dataclasses.replace(TEST_RETRY, time_budget_seconds=1.0))

    assert outcome.exit_code == 2, outcome.message  # no project could be loaded
    assert "the night's time budget of 1 s ran out" in outcome.message, outcome.message
    assert sorted(outcome.report.projects_failed) == sorted(listed)
    budget_lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "time budget" in r.getMessage()]
    assert len(budget_lines) == 1, budget_lines
