"""A paged listing identical to last night's writes nothing; one that changed on a later page
is read whole again, exactly.

Most tests here are about a second night; their first night, read in pages, is only setup. It
is run once per pagination, against a server this module keeps (`_PagedServers`), and copied
into each test's place the way support/first_night.py copies a first night. support's own copies
cannot serve here: their listings were served whole, by a server of their own. A paged answer
names its next page by the server's address, and a night compares its answers byte for byte
with the last night's, so a copy of a paged night is good only against the server that paged
it; the test's next night runs against that server.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import duckdb
import pytest
from cekura_sessions.fake.data import FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults
from support import expected, nights
from support.first_night import FILE, FirstNights
from support.settings import API_KEY, DATASET_SPEC, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

PAGE_SIZE = 7


def _pages(dataset, project_id: int) -> int:
    return max(1, -(-len(dataset.sessions[project_id]) // PAGE_SIZE))


def _serve_afresh(server: FakeCekuraApi, dataset: FakeDataset) -> None:
    """The shared server as a test's own would start: serving `dataset`, no faults, an empty log."""
    server.dataset = dataset
    server.faults = Faults()
    server.reset_log()


class _PagedFirstNights(FirstNights):
    """support/first_night.py's copies of a plain first night, but of one read in pages from
    `server`: good only for later nights against that same server."""

    def __init__(self, folder: Path, server: FakeCekuraApi) -> None:
        folder.mkdir()
        super().__init__(folder)
        self.server = server

    def _server(self) -> AbstractContextManager[FakeCekuraApi]:
        return nullcontext(self.server)


class _PagedServers(ExitStack):
    """A server per DRF pagination, PAGE_SIZE sessions a page, each with its plain first night,
    made on first use."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.firsts: dict[str, _PagedFirstNights] = {}

    def first_night(self, pagination: str, db: Path, pipelines_dir: Path, dataset: FakeDataset) -> FakeCekuraApi:
        """Put the first night `pagination`'s server paged at `db`, its dlt folder in
        `pipelines_dir`; that server, serving `dataset` afresh, is returned for the next night."""
        if pagination not in self.firsts:
            server = self.enter_context(FakeCekuraApi(generate(DATASET_SPEC), api_key=API_KEY, page_size=PAGE_SIZE,
                                                      pagination=pagination))
            self.firsts[pagination] = _PagedFirstNights(self.folder / pagination, server)
        firsts = self.firsts[pagination]
        _serve_afresh(firsts.server, generate(DATASET_SPEC))  # a first night is of the suite's data
        firsts.copy_to(db, pipelines_dir, nights.load, {})
        _serve_afresh(firsts.server, dataset)
        return firsts.server


@pytest.fixture(scope="module")
def paged_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_PagedServers]:
    with _PagedServers(tmp_path_factory.mktemp("paged-first-nights")) as servers:
        yield servers


@pytest.fixture
def paged(paged_servers: _PagedServers, dataset: FakeDataset, db_path: Path, tmp_path: Path) -> FakeCekuraApi:
    """The module's page-number server, after a plain first night it paged into the test's
    database (where `load` writes): the test runs the next night with `load(base_url=paged.url)`."""
    assert dataset == generate(DATASET_SPEC), "the first night was of the suite's data, unchanged"
    return paged_servers.first_night("page_number", db_path, tmp_path / "pipelines", dataset)


def test_an_unchanged_paged_night_writes_nothing(load, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    assert any(_pages(dataset, p) > 1 for p in listed), "the test data has no listing of more than one page"
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


def _want(dataset, project_ids: list[int] | None = None) -> tuple[set, list]:
    """What `_raw` must read: the sessions and scenario ids of `project_ids` (the listed projects
    when None; none when empty)."""
    wanted = expected.listed_project_ids(dataset) if project_ids is None else project_ids
    if not wanted:
        return set(), []
    return expected.sessions(dataset, wanted), expected.scenario_ids(dataset, wanted)


def _rows_of(raw: tuple[set, list], project: Callable[[int], bool]) -> tuple[set, list]:
    """`_raw`'s rows of the projects `project` (given a project id) picks."""
    sessions, scenario_ids = raw
    return {s for s in sessions if project(s[7])}, [r for r in scenario_ids if project(r[1])]


MOVES = ("insert-first", "delete-first", "swap", "shrink")  # fake/moves.py's


class MovedNight(NamedTuple):
    """A second night in which each of MOVES changed its own project's listing."""

    movers: dict[str, int]  # move -> the project whose listing it changed
    before: FakeDataset  # served on night 1, and on night 2 until the moves
    after: FakeDataset  # served once every move was made
    outcome: RunOutcome  # night 2's
    raw: tuple[set, list]  # `_raw` after night 2


@pytest.fixture(scope="module")
def moved_nights(paged_servers: _PagedServers, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], MovedNight]:
    """`moved_nights(pagination)`: the MovedNight of that pagination's server, run on first use.

    The fake's moves are per project (Faults.moves, applied after that project's first page
    went out), so one night holds the four, each in a listing of its own: a case of the test
    below checks its own project, and the night's outcome."""
    made: dict[str, MovedNight] = {}

    def night(pagination: str) -> MovedNight:
        if pagination not in made:
            folder = tmp_path_factory.mktemp(f"moved-{pagination}")
            db, pipelines = folder / FILE, folder / "pipelines"
            before = generate(DATASET_SPEC)
            long = sorted(p for p in expected.listed_project_ids(before) if _pages(before, p) > 2)
            assert len(long) >= len(MOVES), "the test data needs a listing of three pages or more per move"
            movers = dict(zip(MOVES, long, strict=False))
            server = paged_servers.first_night(pagination, db, pipelines, before)
            server.faults = Faults(moves={project: [move] for move, project in movers.items()})
            try:
                outcome = nights.load(db=db, base_url=server.url, pipelines_dir=str(pipelines))
                after = server.dataset  # the moves really happened: the served data changed for good
            finally:
                _serve_afresh(server, generate(DATASET_SPEC))
            made[pagination] = MovedNight(movers, before, after, outcome, _raw(db))
        return made[pagination]

    return night


@pytest.mark.parametrize("pagination", ["page_number", "limit_offset"])
@pytest.mark.parametrize("move", MOVES)
def test_a_listing_that_moves_between_pages_ends_exact(moved_nights, pagination, move):
    """Night 1 loads; on night 2 a listing of three pages or more changes right after its first
    page went out. The night ends exact: no stored session that still exists is deleted, none is
    loaded twice, and nothing is set aside. The night is shared (`moved_nights`): this case's
    move changed one project, whose rows it checks."""
    night = moved_nights(pagination)
    project = night.movers[move]
    before = {s["id"] for s in night.before.sessions[project]}
    assert {s["id"] for s in night.after.sessions[project]} != before, "the move changed nothing"
    assert night.outcome.exit_code == 0, night.outcome.message
    assert night.outcome.report.rows_rejected == 0, "a row seen twice in a torn read was set aside"
    assert _rows_of(night.raw, lambda p: p == project) == _want(night.after, [project])
    # and beside the moved listings, exactly the other listed projects' rows
    moved = set(night.movers.values())
    unmoved = [p for p in expected.listed_project_ids(night.after) if p not in moved]
    assert _rows_of(night.raw, lambda p: p not in moved) == _want(night.after, unmoved)


def test_a_first_night_read_twice_by_a_shift_loads_each_session_once(load, dataset, db_path):
    busiest = max(expected.listed_project_ids(dataset), key=lambda p: len(dataset.sessions[p]))
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=PAGE_SIZE,
                       faults=Faults(moves={busiest: ["insert-first"]})) as api:
        outcome = load(base_url=api.url)
        after = api.dataset
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report.rows_rejected == 0
    assert _raw(db_path) == _want(after)


def test_a_listing_that_never_holds_still_fails_its_project_and_keeps_its_rows(load, paged, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    busiest = max(listed, key=lambda p: len(dataset.sessions[p]))
    kept = _raw(db_path)  # as the first night left it
    paged.faults = Faults(moves={busiest: ["swap"] * 100})  # a new session and a deletion on every read

    outcome = load(base_url=paged.url)

    reads = sum(1 for r in paged.requests_log if r.project_id == busiest and r.page == 1)  # this night's
    after = paged.dataset
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
