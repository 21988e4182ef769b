"""A server that is down for a while (a deploy, a failover) costs the night only the wait: once
the server has answered this night, a request's refused or dropped connections and gateway
502/503/504s are retried for at least RetryPolicy.outage_seconds before its project fails. A
server never reached fails fast, as before. The outage here is the fake API stopped for about
3 s in the middle of a night and started again on the same port."""

from __future__ import annotations

import dataclasses
import threading
import time

import duckdb
import pytest
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.errors import Unreachable
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, nights
from support.ports import refused_port
from support.settings import API_KEY, TEST_RETRY

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

# far more than the 3 s down: the night waits only until the server is back, and a busy machine's
# slow restart must not end the window first
OUTAGE_RETRY = dataclasses.replace(TEST_RETRY, outage_seconds=30.0)
DOWN_SECONDS = 3.0


def _night(tmp_path, api: FakeCekuraApi, retry):
    """A night as conftest.py's `run_night` runs one (support/nights.py's settings: the listings'
    night), with `retry` and two requests at a time."""
    return nights.run(db=tmp_path / "cekura.duckdb", base_url=api.url, concurrency=2,
                      pipelines_dir=str(tmp_path / "pipelines"), retry=retry)


def _down_for_a_while(api: FakeCekuraApi, after_sessions_requests: int) -> threading.Thread:
    """Stops `api` once it has answered that many session requests, starts it again on the same
    port DOWN_SECONDS later; the thread ends when it is back."""

    def outage() -> None:
        while api.request_count(endpoint="sessions") < after_sessions_requests:
            time.sleep(0.005)
        api.stop()
        time.sleep(DOWN_SECONDS)
        api.start()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def _restarted_night(tmp_path, dataset, retry):
    """(outcome, requests the server had answered when it went down, requests in all)."""
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=7, faults=Faults(latency_ms=60)) as api:
        outage = _down_for_a_while(api, after_sessions_requests=3)
        outcome = _night(tmp_path, api, retry)
        outage.join(timeout=30)
        return outcome, api.request_count()


def test_a_server_restarted_mid_night_costs_only_the_wait(tmp_path, dataset):
    started = time.monotonic()
    outcome, requests = _restarted_night(tmp_path, dataset, OUTAGE_RETRY)

    assert outcome.exit_code == 0, outcome.message
    assert time.monotonic() - started >= DOWN_SECONDS, "the night ended before the server came back"
    assert outcome.report.stats.retries > 0, "the outage was never met"
    with duckdb.connect(str(tmp_path / "cekura.duckdb"), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset)
        assert expected.loaded_scenario_ids(con) == expected.scenario_ids(dataset)


def test_without_the_outage_window_the_same_restart_fails_projects(tmp_path, dataset):
    """The control: attempts alone (four, backoff from 0.02 s) end well within the 3 s."""
    outcome, _ = _restarted_night(tmp_path, dataset, dataclasses.replace(OUTAGE_RETRY, outage_seconds=0.0))

    assert outcome.exit_code in (1, 2), outcome.message
    assert outcome.report.projects_failed, "no project failed: the restart was not met"


def test_gateway_errors_past_the_attempts_are_waited_out_once_the_server_answered(tmp_path, dataset):
    victim = expected.listed_project_ids(dataset)[0]
    gateway = ["502", "503", "502", "503", "502", "503"]  # six in a row: more than TEST_RETRY's 4 attempts
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults(script={("sessions", victim): list(gateway)})) as api:
        outcome = _night(tmp_path, api, OUTAGE_RETRY)
        asked = api.request_count(endpoint="sessions", project_id=victim)

    assert outcome.exit_code == 0, outcome.message
    assert asked == len(gateway) + 1
    with duckdb.connect(str(tmp_path / "cekura.duckdb"), read_only=True) as con:
        assert expected.loaded_sessions(con) == expected.sessions(dataset)


def test_a_server_never_reached_fails_after_its_attempts(tmp_path):
    policy = dataclasses.replace(TEST_RETRY, outage_seconds=60.0)
    with refused_port() as port:
        client = CekuraClient(f"http://127.0.0.1:{port}", API_KEY, policy=policy)
        started = time.monotonic()
        with pytest.raises(Unreachable):
            client.list_projects()

    assert client.stats.requests == policy.max_attempts
    # the 60 s outage wait would take 60 s; its attempts take milliseconds, seconds on a busy machine
    assert time.monotonic() - started < 30, "a server that never answered was waited for as if restarting"
