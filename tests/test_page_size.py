"""A night in as few requests as the server allows: `page_size` asked for on a listing's first
request (page numbers and cursors keep it in their `next` links), `limit` on a limit/offset
`next` link; the server grants up to its max_page_size, and one that takes no page size from
clients answers its own. Every pagination class loads exactly, on a first night and on a night
with deletions. Expected requests come from the fake's data in plain Python."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest
from cekura_sessions.fake.data import DataSpec, generate
from cekura_sessions.fake.server import FakeCekuraApi
from support import expected, nights
from support.first_night import FILE, copy_night
from support.processes import run_cli
from support.settings import API_KEY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

SERVER_PAGE = 7  # the server's own page size (DRF's PAGE_SIZE; limit/offset's default limit)
PAGINATIONS = ("page_number", "limit_offset", "cursor")


@pytest.fixture(scope="module")
def data():
    dataset = generate(DataSpec(projects=4, sessions_per_project=120, seed=5))
    assert max(len(s) for s in dataset.sessions.values()) > 100, "the test data needs listings of several pages"
    return dataset


def _night(tmp_path, api: FakeCekuraApi, **overrides: object):
    # details=False (support/nights.py): the listings' requests are counted; no models: what
    # reaches the raw tables (conftest.py's load)
    return nights.load(**{"db": tmp_path / FILE, "base_url": api.url, "pipelines_dir": str(tmp_path / "pipelines"),
                          **overrides})


def _pages(rows: int, pagination: str, granted: int) -> int:
    """Requests one listing of `rows` sessions takes: limit/offset's first page is the server's
    default limit (no `limit` is sent on a first request), the links after it `granted` rows."""
    if pagination == "limit_offset":
        return 1 + math.ceil(max(0, rows - SERVER_PAGE) / granted)
    return max(1, math.ceil(rows / granted))


def _loaded(tmp_path) -> tuple[set, list]:
    with duckdb.connect(str(tmp_path / "cekura.duckdb"), read_only=True) as con:
        return expected.loaded_sessions(con), expected.loaded_scenario_ids(con)


def _want(dataset) -> tuple[set, list]:
    listed = expected.listed_project_ids(dataset)
    return expected.sessions(dataset, listed), expected.scenario_ids(dataset, listed)


@dataclass(frozen=True)
class FirstNight:
    """A first night against a paged server, and what its tests read of it, taken at once."""

    folder: Path  # its DuckDB file and dlt's folder (`_night`)
    api: FakeCekuraApi  # its server, still serving: a later night's pages are compared with these
    outcome: RunOutcome
    asked: dict[int, int]  # requests of each listed project's sessions
    loaded: tuple[set, list]  # `_loaded` right after it


@pytest.fixture(scope="module")
def paged_first_nights(tmp_path_factory: pytest.TempPathFactory, data) -> Iterator[Callable[..., FirstNight]]:
    """`first(pagination, page_size, max_page_size)`: the first night of `data` against a server
    paging by `pagination` in pages of SERVER_PAGE rows that grants a client up to `max_page_size`
    (None: takes no page size from clients), `page_size` asked for (None: the night's default);
    run once, on first use. Each is a test_each_listing_takes_the_pages_the_granted_size_needs
    case's subject, and the [default-1000-capped-at-50] ones are also the first nights of
    test_a_night_with_deletions_ends_exact, which goes on from a copy (support/first_night.py) instead of
    running its own. The servers serve until the module ends: the night after goes to the same
    server, as a night compares its pages with the last night's, whose links name the server."""
    made: dict[tuple, FirstNight] = {}
    with ExitStack() as servers:

        def first(pagination: str, page_size: int | None, max_page_size: int | None) -> FirstNight:
            key = (pagination, page_size, max_page_size)
            if key not in made:
                folder = tmp_path_factory.mktemp(f"first-night-{pagination}")
                api = servers.enter_context(FakeCekuraApi(data, api_key=API_KEY, page_size=SERVER_PAGE,
                                                          pagination=pagination, max_page_size=max_page_size))
                outcome = _night(folder, api, **({"page_size": page_size} if page_size else {}))
                listed = expected.listed_project_ids(data)
                asked = {p: api.request_count(endpoint="sessions", project_id=p) for p in listed}
                made[key] = FirstNight(folder, api, outcome, asked, _loaded(folder))
            return made[key]

        yield first


@pytest.mark.parametrize("pagination", PAGINATIONS)
@pytest.mark.parametrize("page_size, max_page_size, granted", [
    pytest.param(None, 50, 50, id="default-1000-capped-at-50"),
    pytest.param(20, 50, 20, id="asked-20-of-50"),
    pytest.param(None, None, SERVER_PAGE, id="server-takes-no-page-size"),
])
def test_each_listing_takes_the_pages_the_granted_size_needs(paged_first_nights, data, pagination, page_size,
                                                             max_page_size, granted):
    if pagination == "limit_offset" and max_page_size is None:
        granted = 1000  # no max_limit: the `limit` the client sets on the link is granted whole
    listed = expected.listed_project_ids(data)
    night = paged_first_nights(pagination, page_size, max_page_size)
    outcome = night.outcome

    assert outcome.exit_code == 0, outcome.message
    want = {p: _pages(len(data.sessions[p]), pagination, granted) for p in listed}
    assert night.asked == want, (pagination, granted)
    assert outcome.report.stats.requests == 1 + sum(want.values())
    assert night.loaded == _want(data)


# the bare array's two nights with deletions are test_paged_listings.py's [bare-array]
@pytest.mark.parametrize("pagination", PAGINATIONS)
def test_a_night_with_deletions_ends_exact(tmp_path, paged_first_nights, data, pagination):
    first = paged_first_nights(pagination, None, 50)  # the server grants up to 50 rows a page, the default asked
    assert first.outcome.exit_code == 0, first.outcome.message
    copy_night(first.folder, tmp_path / FILE, tmp_path / "pipelines")
    api = first.api
    tomorrow = copy.deepcopy(data)
    busiest = max(expected.listed_project_ids(data), key=lambda p: len(data.sessions[p]))
    del tomorrow.sessions[busiest][3:60:4]  # deleted upstream, across the granted pages
    tomorrow.sessions[busiest][-1]["status"] = "cancelled"
    api.dataset = tomorrow
    try:
        outcome = _night(tmp_path, api)
    finally:
        api.dataset = data  # the first night's server serves its data again

    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.rows_rejected == 0
    assert _loaded(tmp_path) == _want(tomorrow)


def test_the_array_the_spec_shows_takes_one_request_per_project(tmp_path, data):
    listed = expected.listed_project_ids(data)
    with FakeCekuraApi(data, api_key=API_KEY) as api:
        outcome = _night(tmp_path, api, page_size=5)
        asked = {p: api.request_count(endpoint="sessions", project_id=p) for p in listed}

    assert outcome.exit_code == 0, outcome.message
    assert asked == dict.fromkeys(listed, 1)
    assert _loaded(tmp_path) == _want(data)


@pytest.mark.parametrize("how", ["option", "config"])
def test_page_size_comes_from_the_option_or_the_config_key(tmp_path, data, how):
    listed = expected.listed_project_ids(data)
    args = ["--page-size", "30"] if how == "option" else []
    env = {"SOURCES__CEKURA__PAGE_SIZE": "30"} if how == "config" else {}
    with FakeCekuraApi(data, api_key=API_KEY, page_size=SERVER_PAGE, max_page_size=50) as api:
        result = run_cli(tmp_path, "run", "--base-url", api.url, "--db", str(tmp_path / "cekura.duckdb"), "--no-models",
                         *args, **env)
        asked = {p: api.request_count(endpoint="sessions", project_id=p) for p in listed}

    assert result.returncode == 0, result.stderr
    assert asked == {p: math.ceil(len(data.sessions[p]) / 30) for p in listed}
    assert _loaded(tmp_path) == _want(data)


@pytest.mark.parametrize("args, env, says", [
    pytest.param(["--page-size", "1001"], {}, "argument --page-size: must be a whole number from 1 to 1000, got '1001'",
                 id="option-over-1000"),
    pytest.param(["--page-size", "0"], {}, "argument --page-size: must be a whole number from 1 to 1000, got '0'",
                 id="option-zero"),
    pytest.param([], {"SOURCES__CEKURA__PAGE_SIZE": "5000"},
                 "the page size must be a whole number from 1 to 1000, not 5000; check --page-size or page_size "
                 "in [sources.cekura]", id="config-over-1000"),
])
def test_a_page_size_out_of_range_is_one_line_and_asks_nothing(tmp_path, data, args, env, says):
    with FakeCekuraApi(data, api_key=API_KEY) as api:
        result = run_cli(tmp_path, "run", "--base-url", api.url, "--db", str(tmp_path / "cekura.duckdb"), *args, **env)
        asked = api.request_count()

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("cekura-sessions: ") and says in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert asked == 0
