"""A fault storm: 100 projects, 30% of requests failing at random, and a burst of 429s.

The run must end with every row exact, within the attempt cap, each burst project waiting as
long as Retry-After asked, and the burst's waits overlapping instead of adding up: a refused
worker waits out its own Retry-After while the other workers go on (the client's Pacer,
api/pacing.py). Time is read from the server's request log only for what the waits themselves
decide (a sleep lasts at least as long as asked, however busy the machine), never for how fast
this machine loads the rows: on a busy machine the Pacer may also learn a smaller window from
these 429s and pace the rest of the night to it, which lengthens the night but changes no row.
"""

from __future__ import annotations

import time

import duckdb
import pytest
from cekura_sessions.api.client import RetryPolicy
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected
from support.settings import API_KEY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

PROJECTS = 100
CONCURRENCY = 8
BURST_PROJECTS = 6  # the first projects listed: they are all in flight in the first wave
BURST = ["429:1", "429:1"]  # each burst project is told twice to wait 1 s

STORM_RETRY = RetryPolicy(
    max_attempts=10,
    max_wait_seconds=2.0,
    max_total_wait_seconds=30.0,
    backoff_initial_seconds=0.01,
    connect_timeout_seconds=2.0,
    read_timeout_seconds=2.0,
)


@pytest.fixture
def storm_dataset():
    return generate(DataSpec(projects=PROJECTS, sessions_per_project=20, seed=21, oddities=False))


def test_fault_storm_ends_exact_within_the_attempt_cap_and_retry_after_budget(run_night, storm_dataset, db_path):
    listed = expected.listed_project_ids(storm_dataset)
    burst = listed[:BURST_PROJECTS]
    faults = Faults(
        random_rate=0.3,
        random_kinds=("500", "502", "503", "drop"),
        random_seed=13,
        script={("sessions", pid): list(BURST) for pid in burst},
    )
    with FakeCekuraApi(storm_dataset, api_key=API_KEY, faults=faults) as server:
        started = time.monotonic()
        outcome = run_night(base_url=server.url, retry=STORM_RETRY, concurrency=CONCURRENCY)
        wall = time.monotonic() - started  # sleeps make a lower bound; nothing bounds it from above
        log = list(server.requests_log)

    assert outcome.exit_code == 0, outcome.message
    with duckdb.connect(str(db_path), read_only=True) as con:
        got = expected.loaded_sessions(con)
        assert got == expected.sessions(storm_dataset), f"{len(got)} session rows"
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(storm_dataset)
        assert expected.loaded_projects(con) == expected.projects(storm_dataset)

    # the storm really happened, and every failed attempt was retried exactly once
    faulted = [r for r in log if r.fault is not None]
    assert len(faulted) >= 0.2 * len(log), f"only {len(faulted)} of {len(log)} requests faulted"
    assert len(log) <= (len(listed) + 1) * STORM_RETRY.max_attempts, f"{len(log)} requests"
    assert outcome.report.stats.requests == len(log)
    assert outcome.report.stats.retries == len(log) - (len(listed) + 1)

    # each burst project waited as long as Retry-After asked, every time
    attempts = {}
    for pid in burst:
        attempts[pid] = [r.at for r in log if r.endpoint == "sessions" and r.project_id == pid]
        faults_seen = [r.fault for r in log if r.endpoint == "sessions" and r.project_id == pid]
        assert faults_seen[: len(BURST)] == BURST, faults_seen
        gaps = [later - earlier for earlier, later in zip(attempts[pid], attempts[pid][1:])][: len(BURST)]
        assert all(gap >= 0.99 for gap in gaps), f"project {pid} retried after {gaps} s"

    longest_chain = float(len(BURST))  # one project's Retry-After waits, back to back
    assert wall >= longest_chain, f"run took {wall:.1f} s, less than one project's Retry-After waits"

    # Overlapping, not one after another: at some moment two or more burst projects were both
    # waiting out a Retry-After (from the arrival of a 429 to the arrival of the retry it asked
    # for). Waits taken one after another (one worker at a time, project by project) never
    # overlap. No bound on how long anything took: the first wave's requests start within the
    # night's first second (api/pacing.py's FIRST_SLOTS), so their waits of a second overlap
    # unless the machine holds a worker back for longer than that.
    waits = [(times[k], times[k + 1]) for times in attempts.values() for k in range(len(BURST))]
    assert most_at_once(waits) >= 2, f"the burst's {len(waits)} waits were taken one after another: {sorted(waits)}"


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals (start, end) open at one moment; an interval ending as another starts
    does not overlap it."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))
    most = open_now = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most
