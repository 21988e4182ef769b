"""DRF's throttle (a sliding window per key, `Retry-After` rounded up) on the fake API,
and the client pacing to it: every listing exact, few requests refused, no tight loop, the
night's time budget the only thing that ends a throttled request. Real loopback servers; what
is refused is counted from the server's own request log."""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import pytest
import urllib3
from cekura_sessions.api.client import CekuraClient
from cekura_sessions.api.endpoints import API_KEY_HEADER, PROJECTS_PATH
from cekura_sessions.api.errors import ConfigError, ThrottledTooLong
from cekura_sessions.api.pacing import Pacer, Throttle
from cekura_sessions.api.responses import Quota, parse_quota
from cekura_sessions.api.transport import Answer
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected
from support.settings import API_KEY, TEST_RETRY
from support.throttling import fetch_listings, refused

NEVER_LIFTS = Faults(random_rate=1.0, random_kinds=("429:0",))  # every request: 429, Retry-After: 0


@pytest.fixture(scope="module")
def many():
    # 300 listings at 60/s: long enough that the workers' first requests, all refused when the
    # window fills, are a small share (they cost at most one per worker, 16)
    return generate(DataSpec(projects=300, sessions_per_project=3, seed=5, oddities=False))


def _get(server: FakeCekuraApi, http: urllib3.PoolManager) -> urllib3.BaseHTTPResponse:
    return http.request("GET", server.url + PROJECTS_PATH, headers={API_KEY_HEADER: API_KEY}, retries=False)


# --- the fake's throttle -------------------------------------------------------------------------


class _StoppedClock:
    """The fake throttle's timer, standing still until a test moves it: which requests share a
    window is then the test's choice, not the machine's speed."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_fake_throttle_refuses_past_the_window_and_does_not_count_refusals(dataset):
    http = urllib3.PoolManager()
    clock = _StoppedClock()
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=Faults(throttle="3/s"), clock=clock) as server:
        first = [_get(server, http) for _ in range(5)]
        clock.now += 1.05  # the window's three requests have left it
        # had the two refusals been counted, they would still fill the window
        second = [_get(server, http) for _ in range(4)]

    assert [r.status for r in first] == [200, 200, 200, 429, 429]
    # DRF's Throttled rounds the wait up (math.ceil): at 3/s it always says 1, never 0
    assert [r.headers.get("Retry-After") for r in first[3:]] == ["1", "1"]
    assert first[3].json() == {"detail": "Request was throttled. Expected available in 1 second."}
    assert [r.status for r in second] == [200, 200, 200, 429]
    assert all("RateLimit-Remaining" not in r.headers for r in first), "headers sent without the switch"


@pytest.mark.parametrize("style, prefix", [("ratelimit", "RateLimit-"), ("x-ratelimit", "X-RateLimit-")])
def test_fake_throttle_headers_say_limit_remaining_and_reset(dataset, style, prefix):
    http = urllib3.PoolManager()
    clock = _StoppedClock()
    faults = Faults(throttle="3/m", throttle_headers=style)
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=faults, clock=clock) as server:
        answers = [_get(server, http) for _ in range(4)]

    assert [r.status for r in answers] == [200, 200, 200, 429]
    assert [r.headers[prefix + "Limit"] for r in answers] == ["3"] * 4
    assert [r.headers[prefix + "Remaining"] for r in answers] == ["2", "1", "0", "0"]
    resets = [int(r.headers[prefix + "Reset"]) for r in answers]
    if style == "ratelimit":
        assert resets == [60] * 4, "seconds until the oldest request leaves a 60 s window, rounded up"
    else:
        assert resets == [math.ceil(clock.now + 60)] * 4, f"Unix times {resets}"
    assert answers[3].headers["Retry-After"] == "60", "rounded up"


def test_fake_throttle_rate_must_read_as_drf_writes_it():
    for rate in ("10/s", "100/min", "1000/day", "5/hour"):
        Faults(throttle=rate)
    for rate in ("ten/s", "10/fortnight", "10", "0/s"):
        with pytest.raises(ValueError):
            Faults(throttle=rate)


# --- the client pacing to it ---------------------------------------------------------------------


def test_a_throttled_listing_of_many_projects_completes_exactly_with_at_most_a_tenth_refused(many):
    listed = expected.listed_project_ids(many)
    with FakeCekuraApi(many, api_key=API_KEY, faults=Faults(throttle="60/s")) as server:
        client = CekuraClient(server.url, API_KEY, policy=TEST_RETRY)
        got = fetch_listings(client, listed)
        log = list(server.requests_log)

    want = {pid: [s["id"] for s in many.sessions[pid]] for pid in listed}
    assert got == want
    assert refused(log) > 0, "the throttle never refused: the test paced nothing"
    assert refused(log) <= 0.1 * len(log), f"{refused(log)} of {len(log)} requests refused"
    assert client.stats.requests == len(log)


@pytest.mark.parametrize("style", ["ratelimit", "x-ratelimit"])
def test_rate_limit_headers_pace_the_client_before_it_is_refused(many, style, caplog):
    """The headers teach the throttle from the first answer, before any 429 could. Not a count
    of refusals: the fake's throttle is DRF's, whose history is read and written without a lock,
    so on a busy machine racing server threads can refuse a request the headers allowed; what
    the client decides is what is asserted."""
    listed = expected.listed_project_ids(many)
    faults = Faults(throttle="60/s", throttle_headers=style)
    with FakeCekuraApi(many, api_key=API_KEY, faults=faults) as server, \
            caplog.at_level(logging.INFO, logger="cekura_sessions.api"):
        client = CekuraClient(server.url, API_KEY, policy=TEST_RETRY)
        got = fetch_listings(client, listed)
        log = list(server.requests_log)

    assert got == {pid: [s["id"] for s in many.sessions[pid]] for pid in listed}
    accepted = len(log) - refused(log)
    assert accepted == len(listed), "every listing asked once"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("cekura_sessions.api")]
    assert "the API's rate-limit headers say 60 requests per second (60.00 requests/s): requests are paced to " \
           "that window" in lines, lines
    assert not [line for line in lines if line.startswith("the API throttles (HTTP 429")], \
        "the throttle was learned from a refusal, not from the headers"
    assert client.gate.throttle == Throttle(60, 1.0), "the pace is the headers' limit and window"
    # pacing to them refuses none or almost none on a quiet machine; a busy one can add the
    # server's races, never the tenth refused that not knowing the throttle costs
    assert refused(log) <= 0.1 * len(log), f"{refused(log)} of {len(log)} requests refused"


def test_retry_after_zero_never_makes_a_tight_loop(dataset):
    # the budget leaves the second request two seconds to spare, so a busy machine still sends it
    budget = 3.0
    policy = dataclasses.replace(TEST_RETRY, time_budget_seconds=budget)
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=NEVER_LIFTS) as server:
        client = CekuraClient(server.url, API_KEY, policy=policy)
        with pytest.raises(ThrottledTooLong):
            client.list_projects()
        asked = server.request_count()

    # a pause that grows by half from a second on, within 3 s: requests at 0, 1 and 2.5 s (a slow
    # machine sends fewer, never more than four); a tight loop would be thousands
    assert 2 <= asked <= 4, f"{asked} requests in the budget's {budget:g} s"


def test_a_429_storm_within_the_budget_does_not_fail_the_project(many):
    victim = expected.listed_project_ids(many)[0]
    storm = ["429:0"] * (TEST_RETRY.max_attempts + 2)  # more refusals than any other failure may have
    with FakeCekuraApi(many, api_key=API_KEY, faults=Faults(script={("sessions", victim): list(storm)})) as server:
        client = CekuraClient(server.url, API_KEY, policy=TEST_RETRY)
        for _ in range(20):  # answers accepted in the last second: the rate the pacer starts from
            client.list_projects()
        listing = client.list_sessions(victim)
        log = [r for r in server.requests_log if r.endpoint == "sessions"]

    assert [r.status for r in log] == [429] * len(storm) + [200]
    assert listing.sessions == len(many.sessions[victim])


def test_the_time_budget_ends_a_night_the_throttle_never_lifts_with_one_message(dataset, caplog):
    listed = expected.listed_project_ids(dataset)
    policy = dataclasses.replace(TEST_RETRY, time_budget_seconds=1.0)
    faults = Faults(always={pid: "429:0" for pid in listed})
    with FakeCekuraApi(dataset, api_key=API_KEY, faults=faults) as server, caplog.at_level(logging.INFO):
        client = CekuraClient(server.url, API_KEY, policy=policy)
        got = fetch_listings(client, listed, workers=4)
        asked = server.request_count(endpoint="sessions")

    assert all(isinstance(error, ThrottledTooLong) for error in got.values()), got
    assert {str(error) for error in got.values()} == {
        "not fetched: the API still throttled (HTTP 429) when the night's time budget of 1 s ran out"
    }
    budget_lines = [r for r in caplog.records if "time budget" in r.getMessage()]
    assert len(budget_lines) == 1 and budget_lines[0].levelno == logging.ERROR, [r.getMessage() for r in budget_lines]
    assert asked <= 4 + len(listed), f"{asked} requests: the projects asked after the budget were sent"


def test_a_time_budget_that_is_not_positive_is_refused():
    with pytest.raises(ConfigError, match="time budget"):
        CekuraClient("http://127.0.0.1:1", API_KEY, policy=dataclasses.replace(TEST_RETRY, time_budget_seconds=0))


# --- reading the headers -------------------------------------------------------------------------


@pytest.mark.parametrize("headers, want", [
    pytest.param({"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "1"},
                 Quota(10, 3, 1.0), id="ietf-draft"),
    pytest.param({"RateLimit-Limit": "10, 10;w=1", "RateLimit-Remaining": "0", "RateLimit-Reset": "2"},
                 Quota(10, 0, 2.0), id="draft-with-policy"),
    pytest.param({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "30"},
                 Quota(60, 59, 30.0), id="x-seconds"),
    pytest.param({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "x", "X-RateLimit-Reset": "30"},
                 None, id="not-a-number"),
    pytest.param({"RateLimit-Limit": "10", "RateLimit-Reset": "1"}, None, id="no-remaining"),
    pytest.param({}, None, id="none"),
])
def test_quota_is_read_from_either_header_family(headers, want):
    assert parse_quota(urllib3.HTTPHeaderDict(headers)) == want


def test_a_unix_time_reset_is_read_as_seconds_from_now():
    reset = int(time.time()) + 30
    quota = parse_quota(urllib3.HTTPHeaderDict(
        {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}))
    assert quota is not None and 28 <= quota.reset_seconds <= 30, quota


@pytest.mark.parametrize(("retry_after", "learned"), [
    pytest.param("3", Throttle(6, 60.0), id="delta-seconds-teach-the-drf-period"),
    # as a 429 without Retry-After: the answers of the last second, a guessed 1 s window
    pytest.param("http-date", Throttle(6, 1.0), id="a-date-teaches-as-none"),
    pytest.param(None, Throttle(6, 1.0), id="none"),
])
def test_only_a_retry_after_in_seconds_teaches_the_window(retry_after, learned):
    """DRF sends Retry-After in seconds. A date (a proxy's) comes in whole seconds of another
    clock: 1.3 s ahead would read as 2 s, so a 60 s window; it is waited out and teaches as a
    429 without Retry-After does."""
    import email.utils

    clock = [0.0]
    pacer = Pacer(connections=1, max_pause_seconds=30.0, budget_seconds=600.0, clock=lambda: clock[0])
    for _ in range(6):  # six answers accepted in the night's first half second
        started = pacer.turn()
        clock[0] += 0.08
        pacer.answered(started, Answer("http://api/x", 200, urllib3.HTTPHeaderDict(), b"[]"))
    header = email.utils.formatdate(time.time() + 3, usegmt=True) if retry_after == "http-date" else retry_after
    started = pacer.turn()
    clock[0] += 0.08
    headers = urllib3.HTTPHeaderDict({"Retry-After": header} if header else {})
    pacer.answered(started, Answer("http://api/x", 429, headers, b"{}"))

    assert pacer.throttle == learned


def _answer(status: int) -> Answer:
    """An answer of `status`; a 429 says Retry-After: 1, as DRF's throttle of a second does."""
    headers = urllib3.HTTPHeaderDict({"Retry-After": "1"} if status == 429 else {})
    return Answer("http://api/x", status, headers, b"[]")


def test_a_lone_429_at_the_last_place_lowers_the_window_only_when_it_comes_twice_in_a_row():
    """Paced to 4 a second, every fourth request takes the window's last place. A window of 3
    refuses it every time it fills; a 429 there just after the last place was answered is a
    stray (a proxy's, a fault) and lowers nothing, so stray 429s cannot walk a night down to one
    request a second. Two in a row do lower it, as a window one smaller would refuse them."""
    clock = [0.0]
    pacer = Pacer(connections=1, max_pause_seconds=30.0, budget_seconds=600.0, clock=lambda: clock[0],
                  start=Throttle(4, 1.0))

    def window(last_status: int) -> None:
        """One window: three answered requests, then the last place answered `last_status`."""
        for status in (200, 200, 200, last_status):
            started = pacer.turn()
            clock[0] += 0.01
            pacer.answered(started, _answer(status))
        clock[0] += 1.5  # the window, and the refused request's Retry-After, have passed

    window(200)
    window(429)  # the last place was answered the window before: a stray
    assert pacer.throttle == Throttle(4, 1.0)
    window(200)
    window(429)
    window(200)
    assert pacer.throttle == Throttle(4, 1.0), "stray 429s between answered last places lowered the window"
    window(429)
    window(429)  # twice in a row at the last place: the window holds one fewer
    assert pacer.throttle == Throttle(3, 1.0)


def test_a_window_paced_too_many_is_corrected_at_its_first_fill():
    """Paced to 6 a second where the API allows 4: six requests in flight at once, of which the
    fifth and the sixth (the last place) are refused. The last place's 429 teaches the window its
    4 answers at once, where one fewer per fill would cost a refusal more at each of the next
    fills."""
    import threading

    clock = [0.0]
    pacer = Pacer(connections=6, max_pause_seconds=30.0, budget_seconds=600.0, clock=lambda: clock[0],
                  start=Throttle(6, 1.0))
    turned = threading.Semaphore(0)

    def request(status: int, go: threading.Event) -> None:
        started = pacer.turn()
        turned.release()
        go.wait(timeout=5)
        pacer.answered(started, _answer(status))

    workers = []
    for status in (200, 200, 200, 200, 429, 429):  # each takes its place in the window in this order
        go = threading.Event()
        worker = threading.Thread(target=request, args=(status, go))
        worker.start()
        assert turned.acquire(timeout=5), "a request waited for a place the window had"
        workers.append((worker, go))
    for worker, go in workers:  # answered in the same order, 10 ms apart
        clock[0] += 0.01
        go.set()
        worker.join(timeout=5)

    assert pacer.throttle == Throttle(4, 1.0)
