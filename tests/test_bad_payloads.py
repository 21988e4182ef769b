"""Bad payloads: malformed pages, rows that break the contract, and schema drift.

Every case runs the real pipeline against the fake API on loopback into a real DuckDB file;
what must be stored is computed in plain Python from the served dataset. Families of cases whose
anomalies cannot meet share one night (see "nights several cases share" below).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from cekura_sessions.fake.data import FakeDataset, generate
from cekura_sessions.fake.server import FakeCekuraApi, Faults, bad_rows
from support import expected, nights
from support.first_night import FirstNights
from support.settings import API_KEY, DATASET_SPEC, TEST_RETRY

if TYPE_CHECKING:
    from cekura_sessions.run.night import RunOutcome

pytestmark = pytest.mark.e2e  # the real pipeline (dlt) against the fake API

BAD_PAGE_KINDS = ["html", "truncated", "object", "no_results"]
NEW_ID = 990_001  # far above any id fake_data hands out
_MISSING = object()  # "leave this key out of the row"


def _read(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def _project_state(db_path: Path, project_id: int) -> tuple[set[tuple], list[tuple]]:
    with _read(db_path) as con:
        return (
            expected.loaded_sessions(con, f"project_id = {project_id}"),
            expected.loaded_scenario_ids(con, f"project_id = {project_id}"),
        )


def _assert_projects_hold(db_path: Path, dataset: FakeDataset, project_ids: list[int]) -> None:
    """The listed projects' rows in the database are exactly the dataset's, nothing more."""
    where = f"project_id in ({', '.join(map(str, project_ids))})"
    with _read(db_path) as con:
        got = expected.loaded_sessions(con, where)
        got_ids = expected.loaded_scenario_ids(con, where)
    want = expected.sessions(dataset, project_ids)
    assert got == want, f"missing {sorted(want - got)[:3]}, extra {sorted(got - want)[:3]}"
    want_ids = expected.scenario_ids(dataset, project_ids)
    assert got_ids == want_ids, f"{len(got_ids)} scenario-id rows, want {len(want_ids)}"


def _rejected(db_path: Path) -> list[tuple]:
    with _read(db_path) as con:
        return con.execute(
            "select run_id, project_id, raw_json, reason, rejected_at from cekura_raw.rejected_rows order by all"
        ).fetchall()


def _variant_columns(db_path: Path) -> list[tuple]:
    with _read(db_path) as con:
        return con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'cekura_raw' and column_name like '%\\_\\_v\\_%' escape '\\'"
        ).fetchall()


def _columns(db_path: Path, table: str = "scenario_improvement_sessions") -> dict[str, str]:
    with _read(db_path) as con:
        return dict(con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'cekura_raw' and table_name = ?", [table],
        ).fetchall())


def _living(today: FakeDataset, tomorrow: FakeDataset) -> list[int]:
    """The listed projects that have sessions on both nights."""
    return [p for p in expected.listed_project_ids(tomorrow) if today.sessions.get(p) and tomorrow.sessions.get(p)]


def _living_victim(today: FakeDataset, tomorrow: FakeDataset) -> tuple[int, list[int]]:
    """A listed project that has sessions on both nights, and every other listed project."""
    victim = _living(today, tomorrow)[0]
    return victim, [p for p in expected.listed_project_ids(tomorrow) if p != victim]


def _bad_row(template: dict, changes: dict[str, Any]) -> dict:
    row = {**template, "id": NEW_ID}
    for key, value in changes.items():
        if value is _MISSING:
            del row[key]
        else:
            row[key] = value
    return row


# --- nights several cases share ---------------------------------------------------------------
# A night costs about a second of CPU, most of this module's. The cases of a family below each add
# one anomaly to the suite's data where no other case's can reach it: on a project of its own, or
# in a row with an id of its own. The family runs them all in one night, once per module (once per
# worker under xdist, which sends the module whole to one with --dist loadscope), and each case
# asserts its own part of that night, so a failure still names the case; and that the other
# cases left its part alone (what the night set aside, failed or retried is the family's, no more).


@dataclasses.dataclass
class _Night:
    """A night that several cases share, and what they need to judge their part of it."""

    outcome: RunOutcome
    db_path: Path
    server: FakeCekuraApi  # the fake API it read, stopped: its request log is kept
    served: FakeDataset  # the data it was served, every case's anomaly in it
    logged: list[logging.LogRecord]  # what `cekura_sessions` logged meanwhile, INFO and above
    before_path: Path | None = None  # a copy of the database as the night found it (a second night)
    placed: list[_Placed] = dataclasses.field(default_factory=list)  # the cases' bad rows
    want: FakeDataset | None = None  # what the listed projects must hold after it
    victims: dict[str, int] = dataclasses.field(default_factory=dict)  # case -> the project it is on


@dataclasses.dataclass(frozen=True)
class _Placed:
    """A case's bad row in a shared night: the case's changes, the project whose listing serves
    the row, and the row."""

    changes: dict[str, Any]
    project: int
    row: dict[str, Any]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """What logger `name` and its children log meanwhile at INFO and above, as caplog.at_level
    gathers it for one test (caplog is a test's; a shared night is the module's)."""
    handler, logger = _Records(), logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _shared_night(folder: Path, served: FakeDataset, faults: Faults | None = None, page_size: int | None = None,
                  first_nights: FirstNights | None = None, **overrides: Any) -> _Night:
    """A night of `served` into `folder`, read from a fake API of its own (`faults`, `page_size`),
    with the settings of conftest's `load` (`overrides` as `load`'s; build_models=True builds the
    models, as `run_night` does). `first_nights` (the session's): the night is a second one, after
    a plain first night of the suite's data, copied as the `first_night` fixture copies it."""
    db_path, before_path = folder / "cekura.duckdb", None

    def run(**settings: Any) -> RunOutcome:  # conftest's `run_night`, into `folder`
        return nights.run(**{"db": db_path, "pipelines_dir": str(folder / "pipelines"), **settings})

    if first_nights is not None:
        first_nights.copy_to(db_path, folder / "pipelines", run, {"build_models": False})
        before_path = Path(shutil.copy(db_path, folder / "before.duckdb"))
    with (FakeCekuraApi(served, api_key=API_KEY, page_size=page_size, faults=faults or Faults()) as server,
          _logged("cekura_sessions") as logged):
        outcome = run(base_url=server.url, **{"build_models": False, **overrides})
    return _Night(outcome, db_path, server, served, logged, before_path)


def _with_sessions(dataset: FakeDataset) -> list[int]:
    """The listed projects that have sessions, in the projects list's order."""
    return [p for p in expected.listed_project_ids(dataset) if dataset.sessions.get(p)]


def _place(served: FakeDataset, family: list[dict[str, Any]], projects: list[int]) -> list[_Placed]:
    """Add each case's bad row (`family`: the cases' changes) to the end of a listing of `served`,
    taking `projects` in turn; each row is the first session of that listing with the case's
    changes and an id of its own (NEW_ID + its place: a repeated id would be set aside as a repeat)."""
    placed = []
    for n, changes in enumerate(family):
        project = projects[n % len(projects)]
        row = _bad_row(served.sessions[project][0], {"id": NEW_ID + n, **changes})
        served.sessions[project].append(row)
        placed.append(_Placed(changes, project, row))
    return placed


def _canonical(row: Any) -> str:
    return json.dumps(row, sort_keys=True)


def _assert_set_aside(night: _Night, changes: dict[str, Any], named: str) -> None:
    """The case's bad row (the one `changes` made) was set aside once, by the night's run, under
    the project whose listing served it, with a reason that names `named`; and the night set aside
    exactly its cases' bad rows, each so: no case's row was lost, or joined, by another's."""
    run_id, rejected = night.outcome.report.run_id, _rejected(night.db_path)
    [own] = [p for p in night.placed if p.changes == changes]
    mine = [r for r in rejected if _canonical(json.loads(r[2])) == _canonical(own.row)]
    assert [(r[0], r[1]) for r in mine] == [(run_id, own.project)], \
        f"the case's row was not set aside once, under project {own.project}: {mine}"
    assert named in mine[0][3], f"reason {mine[0][3]!r} does not name {named}"
    got = sorted((r[0], r[1], _canonical(json.loads(r[2]))) for r in rejected)
    want = sorted((run_id, p.project, _canonical(p.row)) for p in night.placed)
    assert got == want, f"set aside besides the cases' rows {sorted(set(got) - set(want))}, " \
                        f"cases' rows not set aside so {sorted(set(want) - set(got))}"


# --- malformed pages --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transient_bad_pages_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night where each kind of BAD_PAGE_KINDS answers a project of its own twice, then
    the listing."""
    served = generate(DATASET_SPEC)
    projects = _with_sessions(served)
    assert len(projects) >= len(BAD_PAGE_KINDS), f"{len(projects)} projects with sessions for {BAD_PAGE_KINDS}"
    victims = dict(zip(BAD_PAGE_KINDS, projects))
    faults = Faults(script={("sessions", victim): [kind, kind] for kind, victim in victims.items()})
    night = _shared_night(tmp_path_factory.mktemp("transient-bad-pages"), served, faults)
    night.victims = victims
    return night


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in BAD_PAGE_KINDS])
def test_transient_bad_page_ends_with_exact_data(transient_bad_pages_night, kind):
    night = transient_bad_pages_night
    outcome, victim, listed = night.outcome, night.victims[kind], expected.listed_project_ids(night.served)

    assert outcome.exit_code == 0, outcome.message
    _assert_projects_hold(night.db_path, night.served, listed)
    assert night.server.request_count(endpoint="sessions", project_id=victim) == 3
    # two retries for each case's project, none for another: every other listing was asked for once
    assert outcome.report.stats.retries == 2 * len(night.victims)
    others = [p for p in listed if p not in night.victims.values()]
    assert [night.server.request_count(endpoint="sessions", project_id=p) for p in others] == [1] * len(others)
    assert outcome.report.rows_rejected == 0


LATER_PAGE_KINDS = ["truncated", "no_results"]
LATER_PAGE_SIZE = 7


def _pages(sessions: int) -> list[int]:
    """The pages of a listing of `sessions` rows (an empty listing is one page)."""
    return list(range(1, max(1, -(-sessions // LATER_PAGE_SIZE)) + 1))


@pytest.fixture(scope="module")
def transient_bad_later_pages_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night of pages, where each kind of LATER_PAGE_KINDS answers page 2 of a project of
    its own once."""
    served = generate(DATASET_SPEC)
    victims = dict(zip(LATER_PAGE_KINDS, _with_sessions(served)))
    assert len(victims) == len(LATER_PAGE_KINDS), victims
    # "slow:0" is a no-op fault: page 1 answers normally, page 2 is bad once
    faults = Faults(script={("sessions", victim): ["slow:0", kind] for kind, victim in victims.items()})
    night = _shared_night(tmp_path_factory.mktemp("transient-bad-later-pages"), served, faults, LATER_PAGE_SIZE)
    night.victims = victims
    return night


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in LATER_PAGE_KINDS])
def test_transient_bad_later_page_is_retried_alone(transient_bad_later_pages_night, kind):
    night = transient_bad_later_pages_night
    victim, listed = night.victims[kind], expected.listed_project_ids(night.served)
    pages = {p: [r.page for r in night.server.requests_log if r.endpoint == "sessions" and r.project_id == p]
             for p in listed}

    assert night.outcome.exit_code == 0, night.outcome.message
    _assert_projects_hold(night.db_path, night.served, listed)
    want_pages = _pages(len(night.served.sessions[victim]))
    assert pages[victim] == [1, 2, *want_pages[1:]], f"pages requested {pages[victim]}"
    # no other case's retry reached another listing: each other was read once, page by page
    others = [p for p in listed if p not in night.victims.values()]
    assert {p: pages[p] for p in others} == {p: _pages(len(night.served.sessions.get(p, []))) for p in others}


PERSISTENT_BAD_PAGES = [
    *[pytest.param(kind, None, id=f"{kind}-array") for kind in BAD_PAGE_KINDS],
    pytest.param("no_results", 7, id="no_results-paged"),
]


@pytest.fixture(scope="module")
def persistent_bad_pages(tmp_path_factory: pytest.TempPathFactory,
                         first_nights: FirstNights) -> Callable[[str], _Night]:
    """The night where a kind of BAD_PAGE_KINDS answers every request of a living project's
    listing, after a plain first night, on tomorrow's data (seed 3), listings served whole:
    `night(kind)`. The kinds share nights, each on a living project of its own, as many to a night
    as leave one living project healthy, so each night still shows that the rest loads (the
    data has three living projects: two nights of two kinds)."""
    today = generate(DATASET_SPEC)
    tomorrow = today.next_night(seed=3)
    living = _living(today, tomorrow)
    per_night = len(living) - 1
    assert per_night >= 1, f"living projects {living}"
    nights: dict[str, _Night] = {}

    def night(kind: str) -> _Night:
        if kind not in nights:
            start = BAD_PAGE_KINDS.index(kind) // per_night * per_night
            victims = dict(zip(BAD_PAGE_KINDS[start:start + per_night], living))
            shared = _shared_night(tmp_path_factory.mktemp("persistent-bad-pages"), tomorrow,
                                   Faults(always={victim: k for k, victim in victims.items()}),
                                   first_nights=first_nights)
            shared.victims = victims
            nights.update(dict.fromkeys(victims, shared))
        return nights[kind]

    return night


def _paged_persistent_bad_page(load, dataset: FakeDataset, db_path: Path, kind: str, page_size: int) -> _Night:
    """The night of a persistent bad page `kind` in pages of `page_size`, after a first night in
    the same pages, which a copied first night cannot be (support/first_night.py): its own two."""
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=page_size) as server:
        assert load(base_url=server.url).exit_code == 0
        tomorrow = dataset.next_night(seed=3)
        victim, _ = _living_victim(dataset, tomorrow)
        before_path = Path(shutil.copy(db_path, db_path.with_name("before.duckdb")))
        server.dataset = tomorrow
        server.faults = Faults(always={victim: kind})
        server.reset_log()

        outcome = load(base_url=server.url)
    return _Night(outcome, db_path, server, tomorrow, [], before_path, victims={kind: victim})


@pytest.mark.parametrize(("kind", "page_size"), PERSISTENT_BAD_PAGES)
def test_persistent_bad_page_fails_its_project_only(persistent_bad_pages, load, dataset, db_path, kind, page_size):
    if page_size is None:  # listings served whole: the kinds share nights (persistent_bad_pages)
        night = persistent_bad_pages(kind)
    else:
        night = _paged_persistent_bad_page(load, dataset, db_path, kind, page_size)
    outcome, victim = night.outcome, night.victims[kind]
    attempts = night.server.request_count(endpoint="sessions", project_id=victim)

    assert outcome.exit_code == 1, outcome.message
    assert f"project {victim}" in outcome.message, outcome.message
    assert victim in outcome.report.projects_failed, outcome.report.projects_failed
    # no project failed but the night's cases', each with its own kind
    assert sorted(outcome.report.projects_failed) == sorted(night.victims.values())
    assert attempts == TEST_RETRY.max_attempts, f"{attempts} attempts at a {kind} page"
    before = _project_state(night.before_path, victim)
    assert _project_state(night.db_path, victim) == before, "the failed project's earlier rows changed"
    healthy = [p for p in expected.listed_project_ids(night.served) if p not in night.victims.values()]
    assert [p for p in healthy if night.served.sessions.get(p)], "no project with sessions left to show the rest loads"
    _assert_projects_hold(night.db_path, night.served, healthy)


def test_persistent_bad_later_page_keeps_the_project_whole(load, dataset, db_path):
    """Page 1 arrives, page 2 never does: none of page 1's rows may replace what is stored."""
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=7) as paged:
        assert load(base_url=paged.url).exit_code == 0
        tomorrow = dataset.next_night(seed=3)
        victim, others = _living_victim(dataset, tomorrow)
        assert len(tomorrow.sessions[victim]) > 7, "the victim needs a second page"
        before = _project_state(db_path, victim)
        paged.dataset = tomorrow
        paged.faults = Faults(script={("sessions", victim): ["slow:0"] + ["truncated"] * TEST_RETRY.max_attempts})

        outcome = load(base_url=paged.url)

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [victim]
    assert _project_state(db_path, victim) == before
    _assert_projects_hold(db_path, tomorrow, others)


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in ["html", "truncated"]])
def test_bad_projects_list_is_fatal_and_touches_nothing(load, first_night, api, dataset, db_path, kind):
    first_night(build_models=False)
    with _read(db_path) as con:
        before = expected.snapshot(con)
    api.dataset = dataset.next_night(seed=3)
    api.faults = Faults(script={("projects", None): [kind] * TEST_RETRY.max_attempts})

    outcome = load()

    assert outcome.exit_code == 2, outcome.message
    assert outcome.message.startswith("nothing loaded: ") and "\n" not in outcome.message, outcome.message
    # the first night was copied (it asked another server): these are the failed night's alone
    assert api.request_count(endpoint="projects") == TEST_RETRY.max_attempts
    assert api.request_count(endpoint="sessions") == 0
    with _read(db_path) as con:
        assert expected.snapshot(con) == before


# --- rows that break the contract -------------------------------------------------------------

IDENTIFIABLE_BAD_ROWS = [
    pytest.param({"created_at": "not a date"}, "created_at", id="created_at-not-a-date"),
    pytest.param({"updated_at": 1700000000}, "updated_at", id="updated_at-epoch-integer"),
    pytest.param({"scenario_ids": "1,2,3"}, "scenario_ids", id="scenario_ids-text"),
    pytest.param({"scenario_ids": [1, {"x": 2}]}, "scenario_ids", id="scenario_ids-holds-object"),
    pytest.param({"scenario_ids": [1, True]}, "scenario_ids", id="scenario_ids-holds-bool"),
    pytest.param({"project": "p"}, "project", id="project-text"),
    pytest.param({"title": 5}, "title", id="title-number"),
    pytest.param({"message_count": {"n": 1}}, "message_count", id="message_count-object"),
]

UNIDENTIFIABLE_BAD_ROWS = [
    pytest.param({"id": _MISSING}, id="id-missing"),
    pytest.param({"id": "abc"}, id="id-text"),
    pytest.param({"id": 12.5}, id="id-float"),
]


BOOLEAN_MESSAGE_COUNT = {"message_count": True}  # bool is an int subclass in Python, but `true` is not a count


@pytest.fixture(scope="module")
def bad_rows_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night of the suite's data with each case's bad row of IDENTIFIABLE_BAD_ROWS and
    BOOLEAN_MESSAGE_COUNT, each with an id of its own, spread over the projects' listings."""
    served = generate(DATASET_SPEC)
    clean = copy.deepcopy(served)
    family = [*(case.values[0] for case in IDENTIFIABLE_BAD_ROWS), BOOLEAN_MESSAGE_COUNT]
    placed = _place(served, family, _with_sessions(served))
    night = _shared_night(tmp_path_factory.mktemp("bad-rows"), served)
    night.placed, night.want = placed, clean
    return night


@pytest.mark.parametrize(("changes", "field"), IDENTIFIABLE_BAD_ROWS)
def test_bad_row_is_set_aside_and_the_rest_loads(bad_rows_night, changes, field):
    night = bad_rows_night
    outcome = night.outcome

    assert outcome.exit_code == 1, outcome.message
    assert "set aside in cekura_raw.rejected_rows" in outcome.message, outcome.message
    assert outcome.report.projects_failed == {}
    _assert_set_aside(night, changes, field)
    assert outcome.report.rows_rejected == len(night.placed)  # one for each case of the night
    _assert_projects_hold(night.db_path, night.want, expected.listed_project_ids(night.served))


def _nothing_removed(dataset: FakeDataset, tomorrow: FakeDataset, victim: int, valid: list[dict]) -> FakeDataset:
    """What the victim must hold when a row of its listing names no session (issue 19): its
    valid rows as listed, and every stored session the listing lacks, as stored."""
    want = copy.deepcopy(tomorrow)
    listed = {s["id"] for s in valid}
    want.sessions[victim] = valid + [s for s in dataset.sessions[victim] if s["id"] not in listed]
    return want


@pytest.fixture(scope="module")
def unidentifiable_night(tmp_path_factory: pytest.TempPathFactory, first_nights: FirstNights) -> _Night:
    """After a plain first night, tomorrow's data (seed 5) with each case's row of
    UNIDENTIFIABLE_BAD_ROWS in the listing of a living project of its own, from which the night
    removes sessions: such a row holds its own project's removals, and no other's."""
    today = generate(DATASET_SPEC)
    tomorrow = today.next_night(seed=5)
    family = [case.values[0] for case in UNIDENTIFIABLE_BAD_ROWS]
    victims = _living(today, tomorrow)[:len(family)]
    assert len(victims) == len(family), f"living projects {victims} for {len(family)} cases"
    want = tomorrow
    for victim in victims:
        valid = list(tomorrow.sessions[victim])
        removed = {s["id"] for s in today.sessions[victim]} - {s["id"] for s in valid}
        assert removed, f"the night removes nothing of project {victim}"
        want = _nothing_removed(today, want, victim, valid)
    placed = _place(tomorrow, family, victims)
    night = _shared_night(tmp_path_factory.mktemp("unidentifiable"), tomorrow, first_nights=first_nights)
    night.placed, night.want = placed, want
    return night


@pytest.mark.parametrize("changes", UNIDENTIFIABLE_BAD_ROWS)
def test_row_without_integer_id_is_set_aside_and_removes_nothing(unidentifiable_night, changes):
    """Only that row is set aside: the project's other rows load, and no stored session of it
    is removed this night (the row could stand for any of them)."""
    night = unidentifiable_night

    assert night.outcome.exit_code == 1, night.outcome.message
    assert night.outcome.report.projects_failed == {}
    _assert_set_aside(night, changes, "id")
    # every case's project keeps what it stored (`want`), the other projects hold tomorrow's data
    _assert_projects_hold(night.db_path, night.want, expected.listed_project_ids(night.served))


def test_boolean_message_count_is_set_aside(bad_rows_night):
    night = bad_rows_night

    assert night.outcome.exit_code == 1, night.outcome.message
    _assert_set_aside(night, BOOLEAN_MESSAGE_COUNT, "message_count")
    _assert_projects_hold(night.db_path, night.want, expected.listed_project_ids(night.served))


BIGINT_ROWS = [
    pytest.param({"id": 2**63}, id="id"),
    pytest.param({"project": 2**63}, id="project"),
    pytest.param({"scenario_ids": [1, 2**63]}, id="scenario_ids"),
]


@pytest.fixture(scope="module")
def bigint_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night of the suite's data with each case's row of BIGINT_ROWS in the listing of a
    project of its own: a row whose id is beyond BIGINT names no session, and may fail its
    project (the case does not assert that project's rows), so it must not share one."""
    served = generate(DATASET_SPEC)
    clean = copy.deepcopy(served)
    family = [case.values[0] for case in BIGINT_ROWS]
    projects = _with_sessions(served)
    assert len(projects) >= len(family), f"projects {projects} for {len(family)} cases"
    placed = _place(served, family, projects)
    night = _shared_night(tmp_path_factory.mktemp("bigint"), served)
    night.placed, night.want = placed, clean
    return night


@pytest.mark.parametrize("changes", BIGINT_ROWS)
def test_integer_beyond_bigint_is_set_aside_not_fatal(bigint_night, changes):
    night = bigint_night
    [field] = changes
    # the projects whose rows a case does not vouch for: those serving a row with no usable id
    unvouched = {p.project for p in night.placed if "id" in p.changes}

    assert night.outcome.exit_code == 1, night.outcome.message
    _assert_set_aside(night, changes, field)
    assert set(night.outcome.report.projects_failed) <= unvouched, night.outcome.report.projects_failed
    holding = [p for p in expected.listed_project_ids(night.served) if p not in unvouched]
    _assert_projects_hold(night.db_path, night.want, holding)  # the case's own project, unless it is one
    if "id" not in changes:
        [own] = [p.project for p in night.placed if p.changes == changes]
        assert own in holding


# --- a session id listed twice in one night ---------------------------------------------------
# Ids are unique upstream, so the load declares its staged rows deduplicated; a repeat must be
# set aside by the source, never loaded twice nor picked at random by the merge.


def _ids_loaded_more_than_once(db_path: Path) -> list[tuple]:
    with _read(db_path) as con:
        return con.execute(
            "select id, count(*) from cekura_raw.scenario_improvement_sessions group by id having count(*) > 1"
        ).fetchall() + con.execute(
            "select session_id, position, count(*) from cekura_raw.scenario_improvement_sessions__scenario_ids "
            "group by all having count(*) > 1"
        ).fetchall()


@pytest.mark.parametrize("page_size", [pytest.param(None, id="array"), pytest.param(7, id="paged")])
def test_session_repeated_in_its_listing_loads_once(load, dataset, db_path, page_size):
    victim, *others = expected.listed_project_ids(dataset)
    clean = copy.deepcopy(dataset)
    first = dataset.sessions[victim][0]
    repeat = {**first, "title": "a second copy", "scenario_ids": [5, 6, 7, 8, 9]}
    dataset.sessions[victim].append(repeat)  # on the last page when paged

    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=page_size) as server:
        outcome = load(base_url=server.url)

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    rejected = _rejected(db_path)
    assert [(r[1], json.loads(r[2])) for r in rejected] == [(victim, repeat)], rejected
    assert "more than once" in rejected[0][3], rejected[0][3]
    assert _ids_loaded_more_than_once(db_path) == []
    _assert_projects_hold(db_path, clean, [victim, *others])  # the first copy, with its own list


def test_session_listed_under_two_projects_loads_once(load, api, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    owner, other = [p for p in listed if dataset.sessions.get(p)][:2]
    clean = copy.deepcopy(dataset)
    moved = {**dataset.sessions[owner][0], "project": other, "scenario_ids": [41, 42]}
    dataset.sessions[other].append(moved)
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    rejected = _rejected(db_path)
    assert len(rejected) == 1, rejected
    kept_under = owner if rejected[0][1] == other else other
    assert f"listed under project {kept_under}" in rejected[0][3], rejected[0][3]
    assert _ids_loaded_more_than_once(db_path) == []
    # whichever listing came first keeps the session, exactly as that listing has it
    want = copy.deepcopy(dataset if kept_under == other else clean)
    if kept_under == other:
        want.sessions[owner] = want.sessions[owner][1:]
    _assert_projects_hold(db_path, want, listed)

    # the next night rereads the listing that had the row set aside (it was not fingerprinted);
    # the other is unchanged and not parsed, so the merge moves the session to the reread one
    second = load()
    assert rejected[0][1] not in second.report.projects_unchanged
    assert _ids_loaded_more_than_once(db_path) == []
    with _read(db_path) as con:
        assert con.execute("select project_id from cekura_raw.scenario_improvement_sessions where id = ?",
                           [moved["id"]]).fetchall() == [(rejected[0][1],)]


MODEL_TIMESTAMPS = [
    pytest.param("20260901T100000Z", id="basic-format"),
    pytest.param("2026-W36-2T10:00:00Z", id="week-date"),
    pytest.param("2026-09-01T10:00:00,5Z", id="comma-fraction"),
]


@pytest.fixture(scope="module")
def timestamps_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night, models built, of the suite's data with a row for each created_at of
    MODEL_TIMESTAMPS, each with an id of its own in the listing of a project of its own."""
    served = generate(DATASET_SPEC)
    family = [{"created_at": case.values[0], "updated_at": "2026-09-02T00:00:00Z"} for case in MODEL_TIMESTAMPS]
    projects = _with_sessions(served)
    assert len(projects) >= len(family), f"projects {projects} for {len(family)} cases"
    placed = _place(served, family, projects)
    night = _shared_night(tmp_path_factory.mktemp("timestamps"), served, build_models=True)
    night.placed = placed
    return night


@pytest.mark.parametrize("created_at", MODEL_TIMESTAMPS)
def test_timestamp_the_records_accept_is_one_the_models_read(timestamps_night, created_at):
    night = timestamps_night
    outcome = night.outcome
    [bad] = [p.row for p in night.placed if p.changes["created_at"] == created_at]

    rejected = [json.loads(r[2]) for r in _rejected(night.db_path)] if "rejected_rows" in _tables(night.db_path) else []
    # the night set aside no row but the cases', each at most once, and fails for nothing else
    set_aside = [_canonical(row) for row in rejected]
    assert len(set(set_aside)) == len(set_aside), rejected
    assert set(set_aside) <= {_canonical(p.row) for p in night.placed}, rejected
    assert outcome.exit_code == (1 if rejected else 0), outcome.message
    assert outcome.report.projects_failed == {}
    assert [c.name for c in outcome.checks if not c.passed and c.severity == "error"] == [], outcome.message
    if bad in rejected:  # refused at the door: fine, as long as it says so
        assert outcome.exit_code == 1, outcome.message
    else:  # accepted: then the models must read it
        with _read(night.db_path) as con:
            got = con.execute("select created_at from analytics.sessions where session_id = ?", [bad["id"]]).fetchone()
        assert got == (datetime.fromisoformat(created_at),), got


def _tables(db_path: Path) -> set[str]:
    with _read(db_path) as con:
        return {t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'cekura_raw'"
        ).fetchall()}


def _carry_forward_setup(dataset: FakeDataset) -> tuple[FakeDataset, int, dict, dict]:
    """Tomorrow's data where one stored session's new version has a bad timestamp and other
    changes; returns (tomorrow, its project, the bad version, the good version)."""
    tomorrow = dataset.next_night(seed=7)
    victim, _ = _living_victim(dataset, tomorrow)
    stored_ids = {s["id"] for s in dataset.sessions[victim]}
    index, good = next(
        (i, s) for i, s in enumerate(tomorrow.sessions[victim])
        if s["id"] in stored_ids and isinstance(s["scenario_ids"], list) and len(s["scenario_ids"]) >= 2
    )
    bad = {**good, "updated_at": 1700000000, "title": "changed title", "status": "failed",
           "scenario_ids": [7, 8, 9, 10]}
    tomorrow.sessions[victim][index] = bad
    return tomorrow, victim, bad, good


def test_session_whose_new_version_is_bad_keeps_its_stored_version(load, first_night, api, dataset, db_path):
    first_night(build_models=False)
    tomorrow, victim, bad, good = _carry_forward_setup(dataset)
    stored = next(s for s in dataset.sessions[victim] if s["id"] == bad["id"])
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    # want: tomorrow's listing, except that the bad session keeps its night-1 version
    want = copy.deepcopy(tomorrow)
    want.sessions[victim] = [stored if s["id"] == bad["id"] else s for s in tomorrow.sessions[victim]]
    _assert_projects_hold(db_path, want, expected.listed_project_ids(tomorrow))
    rejected = _rejected(db_path)
    assert [json.loads(r[2]) for r in rejected] == [bad]
    assert "updated_at" in rejected[0][3]


def test_listing_with_bad_rows_is_reread_and_reported_every_night(load, first_night, api, dataset, db_path):
    first_night(build_models=False)
    tomorrow, victim, bad, good = _carry_forward_setup(dataset)
    api.dataset = tomorrow
    second = load()
    with _read(db_path) as con:
        after_second = {k: v for k, v in expected.snapshot(con).items() if k != "rejected_rows"}

    third = load()

    assert (second.exit_code, third.exit_code) == (1, 1), third.message
    assert victim not in third.report.projects_unchanged, "a listing with rejected rows was fingerprinted"
    assert third.report.rows_rejected == 1
    runs = [r[0] for r in _rejected(db_path)]
    assert sorted(runs) == sorted([second.report.run_id, third.report.run_id])
    with _read(db_path) as con:
        assert {k: v for k, v in expected.snapshot(con).items() if k != "rejected_rows"} == after_second

    fixed = copy.deepcopy(tomorrow)
    fixed.sessions[victim] = [good if s["id"] == bad["id"] else s for s in tomorrow.sessions[victim]]
    api.dataset = fixed
    fourth = load()

    assert fourth.exit_code == 0, fourth.message
    _assert_projects_hold(db_path, fixed, expected.listed_project_ids(fixed))


def test_bad_rows_fault_sets_aside_every_bad_row_and_removes_nothing(load, first_night, api, dataset, db_path):
    first_night(build_models=False)
    tomorrow = dataset.next_night(seed=9)
    victim, others = _living_victim(dataset, tomorrow)
    api.dataset = tomorrow
    api.faults = Faults(always={victim: "bad_rows"})

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    served_bad = bad_rows(victim)
    rejected = _rejected(db_path)
    got_rows = sorted(json.dumps(json.loads(r[2]), sort_keys=True) for r in rejected)
    assert got_rows == sorted(json.dumps(row, sort_keys=True) for row in served_bad), rejected
    assert {(r[0], r[1]) for r in rejected} == {(outcome.report.run_id, victim)}
    reasons = sorted(r[3].split(" ")[0] for r in rejected)
    assert reasons == ["created_at", "id", "id", "scenario_ids", "scenario_ids"], reasons
    want = _nothing_removed(dataset, tomorrow, victim, list(tomorrow.sessions[victim]))
    _assert_projects_hold(db_path, want, [victim, *others])

    api.faults = Faults()
    healed = load()

    assert healed.exit_code == 0, healed.message
    _assert_projects_hold(db_path, tomorrow, expected.listed_project_ids(tomorrow))


# --- schema drift -----------------------------------------------------------------------------


NAMED_LIKE_A_COLUMN = [
    pytest.param("project_id", id="project_id"),
    pytest.param("createdAt", id="camel-case-twin-of-created_at"),
]


@pytest.fixture(scope="module")
def new_fields_night(tmp_path_factory: pytest.TempPathFactory) -> _Night:
    """A first night, models built, of the suite's data with each test's drift below, each on a
    project of its own: a new field `color` on some sessions, a nested `meta` on all, each field
    named like a loaded column (NAMED_LIKE_A_COLUMN) on all; but the integer message counts, which
    share `color`'s project (the data has four projects with sessions), being another field of the
    same rows. A test's own checks read only its field, and each asserts that every project holds."""
    served = generate(DATASET_SPEC)
    first, second, *rest = _with_sessions(served)
    named = [case.values[0] for case in NAMED_LIKE_A_COLUMN]
    assert len(rest) >= len(named), f"projects {[first, second, *rest]} for {2 + len(named)} fields"
    victims = {"color": first, "meta": second, **dict(zip(named, rest)), "message_count": first}
    for n, session in enumerate(served.sessions[victims["color"]]):
        if n % 3:
            session["color"] = f"shade-{n}"
    for session in served.sessions[victims["meta"]]:
        session["meta"] = {"source": "ui", "tags": [session["id"], "x"]}
    for name in named:
        for session in served.sessions[victims[name]]:
            session[name] = 1
    for n, session in enumerate(served.sessions[victims["message_count"]]):
        session["message_count"] = n * 7
    night = _shared_night(tmp_path_factory.mktemp("new-fields"), served, build_models=True)
    night.victims = victims
    return night


def test_new_field_loads_as_a_new_column_and_is_logged(new_fields_night):
    night = new_fields_night
    victim = night.victims["color"]
    colors = {s["id"]: f"shade-{n}" for n, s in enumerate(night.served.sessions[victim]) if n % 3}

    assert night.outcome.exit_code == 0, night.outcome.message
    _assert_projects_hold(night.db_path, night.served, expected.listed_project_ids(night.served))
    assert _columns(night.db_path).get("color") == "VARCHAR", _columns(night.db_path)
    with _read(night.db_path) as con:
        got = dict(con.execute(
            "select id, color from cekura_raw.scenario_improvement_sessions where color is not null"
        ).fetchall())
    assert got == colors
    notes = [r for r in night.logged if "sessions carry fields the spec does not list" in r.getMessage()]
    assert [(r.levelno, "color" in r.getMessage()) for r in notes] == [(logging.INFO, True)], \
        [r.getMessage() for r in night.logged]
    assert _variant_columns(night.db_path) == []


def test_new_nested_field_loads_as_json_text(new_fields_night):
    night = new_fields_night
    meta = {s["id"]: {"source": "ui", "tags": [s["id"], "x"]} for s in night.served.sessions[night.victims["meta"]]}

    assert night.outcome.exit_code == 0, night.outcome.message
    with _read(night.db_path) as con:
        got = dict(con.execute(
            "select id, meta from cekura_raw.scenario_improvement_sessions where meta is not null"
        ).fetchall())
    assert {k: json.loads(v) for k, v in got.items()} == meta
    assert _variant_columns(night.db_path) == []


def test_integer_message_count_loads_as_its_text_and_casts_in_the_model(new_fields_night):
    night = new_fields_night
    victim = night.victims["message_count"]

    assert night.outcome.exit_code == 0, night.outcome.message
    _assert_projects_hold(night.db_path, night.served, expected.listed_project_ids(night.served))
    with _read(night.db_path) as con:
        raw = dict(con.execute(
            "select id, message_count from cekura_raw.scenario_improvement_sessions where project_id = ?", [victim]
        ).fetchall())
        modelled = dict(con.execute(
            "select session_id, message_count from analytics.sessions where project_id = ?", [victim]
        ).fetchall())
        model_type = con.execute(
            "select data_type from information_schema.columns "
            "where table_schema = 'analytics' and table_name = 'sessions' and column_name = 'message_count'"
        ).fetchone()
    want = {s["id"]: n * 7 for n, s in enumerate(night.served.sessions[victim])}
    assert raw == {k: str(v) for k, v in want.items()}
    assert modelled == want
    assert model_type == ("INTEGER",)
    assert _columns(night.db_path)["message_count"] == "VARCHAR"


def test_id_turning_into_text_loads_as_the_integer_it_holds(load, first_night, api, dataset, db_path, caplog):
    """Issue 19: ids sent as text holding integers (as Mastodon's and Mautic's APIs did) are
    those integers: the project loads whole, exit 0, one warning line; a fractional id is
    still set aside with its reason."""
    first_night(build_models=False)
    tomorrow = dataset.next_night(seed=5)
    victim, others = _living_victim(dataset, tomorrow)
    original = tomorrow.sessions[victim]
    tomorrow.sessions[victim] = [{**s, "id": str(s["id"])} for s in original]
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    assert (outcome.report.projects_failed, outcome.report.rows_rejected) == ({}, 0)
    tomorrow.sessions[victim] = original  # what must be stored: the integers the text held
    _assert_projects_hold(db_path, tomorrow, [victim, *others])
    drift_lines = [r for r in caplog.records if "came as text holding integers" in r.getMessage()]
    assert len(drift_lines) == 1 and drift_lines[0].levelname == "WARNING", [r.getMessage() for r in drift_lines]
    assert _variant_columns(db_path) == []

    fractional = {**original[0], "id": original[0]["id"] + 0.5}
    tomorrow.sessions[victim] = [fractional, *original[1:]]
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert [(json.loads(r[2])["id"], r[3][:20]) for r in _rejected(db_path)] == [(fractional["id"], "id is not an integer")]


def test_timestamps_turning_into_epoch_integers_are_refused_row_by_row(load, first_night, api, dataset, db_path):
    first_night(build_models=False)
    tomorrow = dataset.next_night(seed=5)
    victim, others = _living_victim(dataset, tomorrow)
    drifted = [{**s, "created_at": 1_790_000_000 + n} for n, s in enumerate(tomorrow.sessions[victim])]
    tomorrow.sessions[victim] = drifted
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    rejected = _rejected(db_path)
    assert sorted(json.loads(r[2])["id"] for r in rejected) == sorted(s["id"] for s in drifted)
    assert all(r[3].startswith("created_at is not an ISO-8601 timestamp") for r in rejected)
    # every stored session keeps its last good version; sessions new tonight cannot be stored yet
    kept = copy.deepcopy(dataset)
    kept.sessions[victim] = [s for s in dataset.sessions[victim] if s["id"] in {d["id"] for d in drifted}]
    _assert_projects_hold(db_path, kept, [victim])
    _assert_projects_hold(db_path, tomorrow, others)
    assert _columns(db_path)["created_at"] == "VARCHAR"
    assert _variant_columns(db_path) == []


def test_new_field_changing_type_between_nights_does_not_stop_the_load(load, api, dataset, db_path):
    victim = expected.listed_project_ids(dataset)[0]
    for session in dataset.sessions[victim]:
        session["score"] = 5
    api.dataset = dataset
    assert load().exit_code == 0
    tomorrow = dataset.next_night(seed=5)
    for session in tomorrow.sessions[victim]:
        session["score"] = "high"
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code in (0, 1), outcome.message
    _assert_projects_hold(db_path, tomorrow, expected.listed_project_ids(tomorrow))
    assert _variant_columns(db_path) == []


@pytest.mark.parametrize("name", NAMED_LIKE_A_COLUMN)
def test_new_field_named_like_a_loaded_column_does_not_stop_the_load(new_fields_night, name):
    night = new_fields_night
    assert all(s[name] == 1 for s in night.served.sessions[night.victims[name]])

    assert night.outcome.exit_code in (0, 1), night.outcome.message
    _assert_projects_hold(night.db_path, night.served, expected.listed_project_ids(night.served))
    assert _variant_columns(night.db_path) == []


def test_a_body_labelled_gzip_that_is_not_is_retried_then_named(load, api, dataset, db_path):
    listed = expected.listed_project_ids(dataset)
    victim, other = listed[0], listed[1]
    api.faults = Faults(script={("sessions", victim): ["gzip_lie"]}, always={other: "gzip_lie"})

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [other]
    assert "could not be decoded as gzip" in outcome.report.projects_failed[other]
    assert api.request_count(endpoint="sessions", project_id=victim) == 2
    _assert_projects_hold(db_path, dataset, [p for p in listed if p != other])


def test_an_answer_trickled_past_its_deadline_is_retried_then_named(load, api, dataset, db_path):
    """Headers at once, then a byte every 50 ms: each read is quick, the whole answer is not."""
    listed = expected.listed_project_ids(dataset)
    victim, other = listed[0], listed[1]
    api.faults = Faults(script={("sessions", victim): ["trickle:0.05"]}, always={other: "trickle:0.05"})
    # the deadline is every answer's: 2 s leaves an ordinary answer room on a busy machine, and a
    # trickled listing (thousands of bytes, one every 50 ms) still takes minutes
    retry = dataclasses.replace(TEST_RETRY, answer_deadline_seconds=2.0, max_attempts=2)

    outcome = load(retry=retry)

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [other]
    assert "the answer took longer than 2 s" in outcome.report.projects_failed[other]
    assert api.request_count(endpoint="sessions", project_id=victim) == 2
    assert api.request_count(endpoint="sessions", project_id=other) == 2
    _assert_projects_hold(db_path, dataset, [p for p in listed if p != other])
