"""Bad payloads: malformed pages, rows that break the contract, and schema drift.

Every case runs the real pipeline against the fake API on loopback into a real DuckDB file;
what must be stored is computed in plain Python from the served dataset.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cekura_sessions.fake.data import FakeDataset
from cekura_sessions.fake.server import FakeCekuraApi, Faults, bad_rows
from support import expected
from support.settings import API_KEY, TEST_RETRY

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


def _living_victim(today: FakeDataset, tomorrow: FakeDataset) -> tuple[int, list[int]]:
    """A listed project that has sessions on both nights, and every other listed project."""
    listed = expected.listed_project_ids(tomorrow)
    victim = next(p for p in listed if today.sessions.get(p) and tomorrow.sessions.get(p))
    return victim, [p for p in listed if p != victim]


def _bad_row(template: dict, changes: dict[str, Any]) -> dict:
    row = {**template, "id": NEW_ID}
    for key, value in changes.items():
        if value is _MISSING:
            del row[key]
        else:
            row[key] = value
    return row


# --- malformed pages --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in BAD_PAGE_KINDS])
def test_transient_bad_page_ends_with_exact_data(load, api, dataset, db_path, kind):
    victim = expected.listed_project_ids(dataset)[0]
    api.faults = Faults(script={("sessions", victim): [kind, kind]})

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_projects_hold(db_path, dataset, expected.listed_project_ids(dataset))
    assert outcome.report.stats.retries == 2
    assert api.request_count(endpoint="sessions", project_id=victim) == 3
    assert outcome.report.rows_rejected == 0


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in ["truncated", "no_results"]])
def test_transient_bad_later_page_is_retried_alone(load, dataset, db_path, kind):
    victim = expected.listed_project_ids(dataset)[0]
    # "slow:0" is a no-op fault: page 1 answers normally, page 2 is bad once
    faults = Faults(script={("sessions", victim): ["slow:0", kind]})
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=7, faults=faults) as paged:
        outcome = load(base_url=paged.url)
        pages = [r.page for r in paged.requests_log if r.endpoint == "sessions" and r.project_id == victim]

    assert outcome.exit_code == 0, outcome.message
    _assert_projects_hold(db_path, dataset, expected.listed_project_ids(dataset))
    want_pages = list(range(1, -(-len(dataset.sessions[victim]) // 7) + 1))
    assert pages == [1, 2, *want_pages[1:]], f"pages requested {pages}"


PERSISTENT_BAD_PAGES = [
    *[pytest.param(kind, None, id=f"{kind}-array") for kind in BAD_PAGE_KINDS],
    pytest.param("no_results", 7, id="no_results-paged"),
]


@pytest.mark.parametrize(("kind", "page_size"), PERSISTENT_BAD_PAGES)
def test_persistent_bad_page_fails_its_project_only(load, first_night, dataset, db_path, kind, page_size):
    with FakeCekuraApi(dataset, api_key=API_KEY, page_size=page_size) as server:
        if page_size is None:  # a copied first night needs listings served whole (support/first_night.py)
            first_night(build_models=False)
        else:
            assert load(base_url=server.url).exit_code == 0
        tomorrow = dataset.next_night(seed=3)
        victim, others = _living_victim(dataset, tomorrow)
        before = _project_state(db_path, victim)
        server.dataset = tomorrow
        server.faults = Faults(always={victim: kind})
        server.reset_log()

        outcome = load(base_url=server.url)
        attempts = server.request_count(endpoint="sessions", project_id=victim)

    assert outcome.exit_code == 1, outcome.message
    assert f"project {victim}" in outcome.message, outcome.message
    assert list(outcome.report.projects_failed) == [victim]
    assert attempts == TEST_RETRY.max_attempts, f"{attempts} attempts at a {kind} page"
    assert _project_state(db_path, victim) == before, "the failed project's earlier rows changed"
    _assert_projects_hold(db_path, tomorrow, others)


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


@pytest.mark.parametrize(("changes", "field"), IDENTIFIABLE_BAD_ROWS)
def test_bad_row_is_set_aside_and_the_rest_loads(load, api, dataset, db_path, changes, field):
    victim = expected.listed_project_ids(dataset)[0]
    clean = copy.deepcopy(dataset)
    bad = _bad_row(dataset.sessions[victim][0], changes)
    dataset.sessions[victim].append(bad)
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert "set aside in cekura_raw.rejected_rows" in outcome.message, outcome.message
    assert outcome.report.projects_failed == {}
    assert outcome.report.rows_rejected == 1
    rejected = _rejected(db_path)
    assert [(r[0], r[1]) for r in rejected] == [(outcome.report.run_id, victim)], rejected
    assert json.loads(rejected[0][2]) == bad
    assert field in rejected[0][3], f"reason {rejected[0][3]!r} does not name {field}"
    _assert_projects_hold(db_path, clean, expected.listed_project_ids(dataset))


def _nothing_removed(dataset: FakeDataset, tomorrow: FakeDataset, victim: int, valid: list[dict]) -> FakeDataset:
    """What the victim must hold when a row of its listing names no session (issue 19): its
    valid rows as listed, and every stored session the listing lacks, as stored."""
    want = copy.deepcopy(tomorrow)
    listed = {s["id"] for s in valid}
    want.sessions[victim] = valid + [s for s in dataset.sessions[victim] if s["id"] not in listed]
    return want


@pytest.mark.parametrize("changes", UNIDENTIFIABLE_BAD_ROWS)
def test_row_without_integer_id_is_set_aside_and_removes_nothing(load, first_night, api, dataset, db_path, changes):
    """Only that row is set aside: the project's other rows load, and no stored session of it
    is removed this night (the row could stand for any of them)."""
    first_night(build_models=False)
    tomorrow = dataset.next_night(seed=5)
    victim, others = _living_victim(dataset, tomorrow)
    valid = list(tomorrow.sessions[victim])
    assert {s["id"] for s in dataset.sessions[victim]} - {s["id"] for s in valid}, "the night removes something"
    bad = _bad_row(tomorrow.sessions[victim][0], changes)
    tomorrow.sessions[victim].append(bad)
    api.dataset = tomorrow

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert outcome.report.projects_failed == {}
    rejected = _rejected(db_path)
    assert [(r[0], r[1]) for r in rejected] == [(outcome.report.run_id, victim)], rejected
    assert json.loads(rejected[0][2]) == bad
    assert "id" in rejected[0][3], rejected[0][3]
    _assert_projects_hold(db_path, _nothing_removed(dataset, tomorrow, victim, valid), [victim, *others])


def test_boolean_message_count_is_set_aside(load, api, dataset, db_path):
    victim = expected.listed_project_ids(dataset)[0]
    clean = copy.deepcopy(dataset)
    bad = _bad_row(dataset.sessions[victim][0], {"message_count": True})
    dataset.sessions[victim].append(bad)
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert [json.loads(r[2]) for r in _rejected(db_path)] == [bad]
    _assert_projects_hold(db_path, clean, expected.listed_project_ids(dataset))


@pytest.mark.parametrize("changes", [
    pytest.param({"id": 2**63}, id="id"),
    pytest.param({"project": 2**63}, id="project"),
    pytest.param({"scenario_ids": [1, 2**63]}, id="scenario_ids"),
])
def test_integer_beyond_bigint_is_set_aside_not_fatal(load, api, dataset, db_path, changes):
    victim, *others = expected.listed_project_ids(dataset)
    clean = copy.deepcopy(dataset)
    bad = _bad_row(dataset.sessions[victim][0], changes)
    dataset.sessions[victim].append(bad)
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code == 1, outcome.message
    assert [json.loads(r[2]) for r in _rejected(db_path)] == [bad]
    _assert_projects_hold(db_path, clean, others)
    if "id" not in changes:
        _assert_projects_hold(db_path, clean, [victim])


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


@pytest.mark.parametrize("created_at", [
    pytest.param("20260901T100000Z", id="basic-format"),
    pytest.param("2026-W36-2T10:00:00Z", id="week-date"),
    pytest.param("2026-09-01T10:00:00,5Z", id="comma-fraction"),
])
def test_timestamp_the_records_accept_is_one_the_models_read(run_night, api, dataset, db_path, created_at):
    victim = expected.listed_project_ids(dataset)[0]
    bad = _bad_row(dataset.sessions[victim][0], {"created_at": created_at, "updated_at": "2026-09-02T00:00:00Z"})
    dataset.sessions[victim].append(bad)
    api.dataset = dataset

    outcome = run_night()

    rejected = [json.loads(r[2]) for r in _rejected(db_path)] if "rejected_rows" in _tables(db_path) else []
    if rejected:  # refused at the door: fine, as long as it says so
        assert rejected == [bad] and outcome.exit_code == 1, outcome.message
    else:  # accepted: then the models must read it
        assert outcome.exit_code == 0, outcome.message
        with _read(db_path) as con:
            got = con.execute("select created_at from analytics.sessions where session_id = ?", [NEW_ID]).fetchone()
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


def test_new_field_loads_as_a_new_column_and_is_logged(load, api, dataset, db_path, caplog):
    victim = expected.listed_project_ids(dataset)[0]
    colors = {}
    for n, session in enumerate(dataset.sessions[victim]):
        if n % 3:
            session["color"] = colors[session["id"]] = f"shade-{n}"
    api.dataset = dataset

    with caplog.at_level(logging.INFO, logger="cekura_sessions"):
        outcome = load()

    assert outcome.exit_code == 0, outcome.message
    _assert_projects_hold(db_path, dataset, expected.listed_project_ids(dataset))
    assert _columns(db_path).get("color") == "VARCHAR", _columns(db_path)
    with _read(db_path) as con:
        got = dict(con.execute(
            "select id, color from cekura_raw.scenario_improvement_sessions where color is not null"
        ).fetchall())
    assert got == colors
    notes = [r for r in caplog.records if "sessions carry fields the spec does not list" in r.getMessage()]
    assert [(r.levelno, "color" in r.getMessage()) for r in notes] == [(logging.INFO, True)], caplog.text
    assert _variant_columns(db_path) == []


def test_new_nested_field_loads_as_json_text(load, api, dataset, db_path):
    victim = expected.listed_project_ids(dataset)[0]
    meta = {s["id"]: {"source": "ui", "tags": [s["id"], "x"]} for s in dataset.sessions[victim]}
    for session in dataset.sessions[victim]:
        session["meta"] = meta[session["id"]]
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code == 0, outcome.message
    with _read(db_path) as con:
        got = dict(con.execute(
            "select id, meta from cekura_raw.scenario_improvement_sessions where meta is not null"
        ).fetchall())
    assert {k: json.loads(v) for k, v in got.items()} == meta
    assert _variant_columns(db_path) == []


def test_integer_message_count_loads_as_its_text_and_casts_in_the_model(run_night, api, dataset, db_path):
    victim = expected.listed_project_ids(dataset)[0]
    for n, session in enumerate(dataset.sessions[victim]):
        session["message_count"] = n * 7
    api.dataset = dataset

    outcome = run_night()

    assert outcome.exit_code == 0, outcome.message
    _assert_projects_hold(db_path, dataset, expected.listed_project_ids(dataset))
    with _read(db_path) as con:
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
    want = {s["id"]: n * 7 for n, s in enumerate(dataset.sessions[victim])}
    assert raw == {k: str(v) for k, v in want.items()}
    assert modelled == want
    assert model_type == ("INTEGER",)
    assert _columns(db_path)["message_count"] == "VARCHAR"


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


@pytest.mark.parametrize("name", [
    pytest.param("project_id", id="project_id"),
    pytest.param("createdAt", id="camel-case-twin-of-created_at"),
])
def test_new_field_named_like_a_loaded_column_does_not_stop_the_load(load, api, dataset, db_path, name):
    victim = expected.listed_project_ids(dataset)[0]
    for session in dataset.sessions[victim]:
        session[name] = 1
    api.dataset = dataset

    outcome = load()

    assert outcome.exit_code in (0, 1), outcome.message
    _assert_projects_hold(db_path, dataset, expected.listed_project_ids(dataset))
    assert _variant_columns(db_path) == []


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
    retry = dataclasses.replace(TEST_RETRY, answer_deadline_seconds=0.5, max_attempts=2)

    outcome = load(retry=retry)

    assert outcome.exit_code == 1, outcome.message
    assert list(outcome.report.projects_failed) == [other]
    assert "the answer took longer than 0.5 s" in outcome.report.projects_failed[other]
    assert api.request_count(endpoint="sessions", project_id=victim) == 2
    assert api.request_count(endpoint="sessions", project_id=other) == 2
    _assert_projects_hold(db_path, dataset, [p for p in listed if p != other])
