"""The one conversion path: what it loads, what it flags, and the values it writes, checked
against rows and values written out by hand (or built in plain Python from the generated data)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from cekura_sessions.extract import contract, convert, read
from cekura_sessions.fake.data import DataSpec, generate
from hypothesis import given, settings
from hypothesis import strategies as st

GOOD = {"id": 1, "title": "t", "project": 7, "scenario_ids": [3, 4], "status": "completed",
        "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00+05:30", "message_count": "2"}


def _convert(rows, project_id=7):
    return convert.convert_sessions(rows, np.full(len(rows), project_id, dtype=np.int64))


def _loaded(converted):
    keep = np.ones(converted.sessions.num_rows, dtype=bool)
    keep[list(converted.reasons)] = False
    sessions, ids = converted.select(keep)
    return sessions.to_pylist(), ids.to_pylist()


def _want_session(row, project_id=7):
    """The raw sessions row a delivered row becomes, in plain Python."""
    count = row.get("message_count")
    return {
        "id": row["id"], "title": row.get("title"), "project": row.get("project"), "status": row.get("status"),
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "message_count": None if count is None else str(count),
        "project_id": project_id, contract.TOMBSTONE_COLUMN: None,
    }


def _want_ids(row, project_id=7):
    return [{"session_id": row["id"], "project_id": project_id, "position": i, "value": v,
             contract.TOMBSTONE_COLUMN: None} for i, v in enumerate(row.get("scenario_ids") or [])]


@pytest.mark.parametrize("change, reason", [
    pytest.param({"id": 1.0}, "id is not an integer: 1.0", id="float-id"),
    pytest.param({"id": True}, "id is not an integer: True", id="bool-id"),
    pytest.param({"id": "2"}, "id is not an integer: '2'", id="text-id"),
    pytest.param({"id": 2**63}, f"id is not an integer: {2**63}", id="id-beyond-bigint"),
    pytest.param({"project": 7.5}, "project is not an integer: 7.5", id="float-project"),
    pytest.param({"project": 2**64}, f"project is not an integer: {2**64}", id="project-beyond-bigint"),
    pytest.param({"scenario_ids": [1, None]}, "scenario_ids holds something other than integers", id="null-inside-list"),
    pytest.param({"scenario_ids": [1, 2.0]}, "scenario_ids holds something other than integers", id="float-inside-list"),
    pytest.param({"scenario_ids": [1, True]}, "scenario_ids holds something other than integers", id="bool-inside-list"),
    pytest.param({"scenario_ids": "1,2"}, "scenario_ids is not a list: '1,2'", id="text-list"),
    pytest.param({"created_at": "2026-W36-2T10:00:00Z"}, "created_at is not an ISO-8601 timestamp: '2026-W36-2T10:00:00Z'",
                 id="week-date"),
    pytest.param({"created_at": "2026-02-30T10:00:00Z"}, "created_at is not an ISO-8601 timestamp: '2026-02-30T10:00:00Z'",
                 id="impossible-day"),
    pytest.param({"created_at": "2026-02-29T10:00:00Z"}, "created_at is not an ISO-8601 timestamp: '2026-02-29T10:00:00Z'",
                 id="29-february-of-a-common-year"),
    pytest.param({"updated_at": "2026-09-01t10:00:00z"}, "updated_at is not an ISO-8601 timestamp: '2026-09-01t10:00:00z'",
                 id="lower-case-separators"),
    pytest.param({"updated_at": "2026-09-01T10:00:00+24:00"},
                 "updated_at is not an ISO-8601 timestamp: '2026-09-01T10:00:00+24:00'", id="offset-beyond-a-day"),
    pytest.param({"created_at": None}, "created_at is not an ISO-8601 timestamp: None", id="null-timestamp"),
    pytest.param({"updated_at": 1756720800}, "updated_at is not an ISO-8601 timestamp: 1756720800", id="epoch-timestamp"),
    pytest.param({"title": 5}, "title is not a string: 5", id="number-title"),
    pytest.param({"status": ["completed"]}, "status is not a string: ['completed']", id="list-status"),
    pytest.param({"message_count": 2.5}, "message_count is neither a string nor an integer: 2.5", id="float-message-count"),
    pytest.param({"message_count": True}, "message_count is neither a string nor an integer: True", id="bool-message-count"),
])
def test_a_row_that_breaks_the_contract_is_flagged_with_its_reason(change, reason):
    rows = [dict(GOOD), {**GOOD, "id": 2, **change}]

    converted = _convert(rows)

    assert converted.reasons == {1: reason}
    sessions, ids = _loaded(converted)
    assert sessions == [_want_session(GOOD)]
    assert ids == _want_ids(GOOD)


@pytest.mark.parametrize("row, reason", [
    pytest.param(None, "row is not a JSON object", id="null-row"),
    pytest.param([1, 2], "row is not a JSON object", id="array-row"),
    pytest.param({k: v for k, v in GOOD.items() if k != "id"}, "id is missing", id="no-id"),
])
def test_a_row_that_names_no_session_is_flagged(row, reason):
    converted = _convert([dict(GOOD), row])
    assert converted.reasons == {1: reason}
    assert not contract.is_identifiable(row)


@pytest.mark.parametrize("change", [
    pytest.param({"message_count": 2}, id="message-count-integer"),
    pytest.param({"message_count": None}, id="message-count-null"),
    pytest.param({"scenario_ids": None}, id="no-scenario-list"),
    pytest.param({"scenario_ids": []}, id="empty-scenario-list"),
    pytest.param({"project": None, "title": None, "status": None}, id="nullable-fields-null"),
    pytest.param({"created_at": "2026-09-01 10:00:00"}, id="space-separator-no-offset"),
    pytest.param({"created_at": "2026-09-01T10:00Z"}, id="no-seconds"),
    pytest.param({"created_at": "2026-09-01T10:00:00.123456789+0530"}, id="nanoseconds-compact-offset"),
    pytest.param({"created_at": "2024-02-29T10:00:00Z"}, id="leap-day"),
    # outside the vectorised check's plain forms, so put to the rule, which accepts it
    pytest.param({"updated_at": "2026-09-01t10:00:00Z"}, id="lower-case-t"),
    pytest.param({"status": "archived"}, id="status-outside-the-enum"),
])
def test_rows_the_contract_accepts_load_as_delivered(change):
    rows = [dict(GOOD), {**GOOD, "id": 2, **change}]

    sessions, ids = _loaded(_convert(rows))

    assert sessions == [_want_session(row) for row in rows]
    assert ids == [i for row in rows for i in _want_ids(row)]


def test_message_counts_mixing_numbers_and_text_load_together_as_text():
    rows = [{**GOOD, "id": i, "message_count": value} for i, value in enumerate([3, "4", None, 0, "12"], start=1)]

    converted = _convert(rows)

    assert converted.reasons == {}
    assert converted.sessions["message_count"].to_pylist() == ["3", "4", None, "0", "12"]


def test_fields_the_spec_does_not_list_become_text_columns_on_their_rows():
    rows = [{**GOOD, "score": 5}, {**GOOD, "id": 2, "project_id": 99, "notes": {"a": [1]}}, {**GOOD, "id": 3}]

    sessions = _convert(rows).sessions

    # `project_id` would land on the listing's own column: it gets a suffix
    assert sessions["score"].to_pylist() == ["5", None, None]
    assert sessions["project_id_extra"].to_pylist() == [None, "99", None]
    assert sessions["notes"].to_pylist() == [None, '{"a":[1]}', None]
    assert sessions["project_id"].to_pylist() == [7, 7, 7]


def test_scenario_ids_keep_list_order_and_positions_across_many_listings():
    rows = [{**GOOD, "id": 1, "scenario_ids": [9, 8, 9]}, {**GOOD, "id": 2, "scenario_ids": []},
            {**GOOD, "id": 3, "scenario_ids": [5]}]

    converted = convert.convert_sessions(rows, np.array([7, 7, 8], dtype=np.int64))

    assert converted.scenario_ids.select(["session_id", "project_id", "position", "value"]).to_pylist() == [
        {"session_id": 1, "project_id": 7, "position": 0, "value": 9},
        {"session_id": 1, "project_id": 7, "position": 1, "value": 8},
        {"session_id": 1, "project_id": 7, "position": 2, "value": 9},
        {"session_id": 3, "project_id": 8, "position": 0, "value": 5},
    ]


@pytest.mark.parametrize("oddities", [False, True], ids=["clean", "with-oddities"])
def test_generated_listings_load_exactly_as_built_by_hand(oddities):
    dataset = generate(DataSpec(projects=8, sessions_per_project=50, seed=5, oddities=oddities))
    rows = [row for project_rows in dataset.sessions.values() for row in project_rows]
    project_ids = np.array([p for p, project_rows in dataset.sessions.items() for _ in project_rows], dtype=np.int64)
    assert rows, "the generated data has no sessions"

    converted = convert.convert_sessions(rows, project_ids)
    sessions, ids = _loaded(converted)

    # the generator's rows all keep the contract, oddities included (they are the spec's)
    assert converted.reasons == {}
    assert sessions == [_want_session(row, int(p)) for row, p in zip(rows, project_ids)]
    assert ids == [i for row, p in zip(rows, project_ids) for i in _want_ids(row, int(p))]
    if oddities:  # the oddities really are there, and really went through
        counts = [row.get("message_count") for row in rows]
        assert any(type(c) is str for c in counts) and any(type(c) is int for c in counts)
        assert any(row.get("scenario_ids") is None for row in rows)
        assert any(row.get("project") is None for row in rows)


_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
_timestamp = st.one_of(_scalar, st.sampled_from([
    "2026-09-01T10:00:00Z", "2026-09-01T10:00:00.5+05:30", "2026-09-01 10:00", "2026-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z", "2026-09-01T24:00:00Z", "2026-09-01T10:00:00+24:00", "2026-09-01t10:00:00z",
    "2026-09-01T10:00:00,5Z", "20260901T100000Z", "2026-09-01T10:00:00-08", " 2026-09-01T10:00:00Z",
]))
_row = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.integers(min_value=-(2**64), max_value=2**64), _scalar),
        "title": _scalar, "project": _scalar, "status": _scalar, "message_count": _scalar,
        "created_at": _timestamp, "updated_at": _timestamp,
        "scenario_ids": st.one_of(_scalar, st.lists(st.one_of(st.integers(min_value=-(2**64), max_value=2**64), _scalar),
                                                    max_size=3)),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_row, st.just(None)), max_size=6))
def test_the_rows_loaded_are_exactly_the_rows_the_rule_accepts(rows):
    converted = _convert(rows)

    want = {i: contract.session_rejection(row) for i, row in enumerate(rows)}
    assert converted.reasons == {i: why for i, why in want.items() if why is not None}
    sessions, ids = _loaded(converted)
    accepted = [row for i, row in enumerate(rows) if want[i] is None]
    assert sessions == [_want_session(row) for row in accepted]
    assert ids == [i for row in accepted for i in _want_ids(row)]


# --- reading: Arrow's reader or Python objects, the same columns -----------------------------


def _both_readers(rows):
    """(columns by the reader the pipeline takes, columns from Python objects) of one answer."""
    content = json.dumps(rows).encode()  # orjson refuses integers beyond 64 bits
    read_rows = read.read_rows((content,))
    columns = convert.arrow_columns(read_rows) if isinstance(read_rows, pa.Table) else convert.python_columns(read_rows)
    # the parsed-JSON reading, as the pipeline reads it when Arrow gives up (type drift put back)
    return isinstance(read_rows, pa.Table), columns, convert.python_columns(read.python_rows((content,)))


def _converted(columns, rows):
    converted = convert.convert(columns, np.full(len(rows), 7, dtype=np.int64), rows.__getitem__)
    return converted.sessions.to_pylist(), converted.scenario_ids.to_pylist(), converted.reasons


def test_a_plain_generated_listing_is_read_by_arrow_and_converts_alike():
    dataset = generate(DataSpec(projects=8, sessions_per_project=50, seed=5, oddities=False))
    for project_id, rows in dataset.sessions.items():
        by_arrow, columns, by_python = _both_readers(rows)
        assert by_arrow, f"project {project_id}: Arrow's reader gave up on a plain listing"
        assert _converted(columns, rows) == _converted(by_python, rows)


@pytest.mark.parametrize("rows, by_arrow", [
    pytest.param([GOOD, {**GOOD, "id": 2, "message_count": 3}], False, id="message-count-text-and-number"),
    pytest.param([GOOD, {**GOOD, "id": 2, "score": 5}], False, id="unknown-field"),
    pytest.param([GOOD, {**GOOD, "id": 2.0}], False, id="float-id"),
    pytest.param([GOOD, {**GOOD, "id": 2, "scenario_ids": [1, None]}], True, id="null-inside-a-list"),
    pytest.param([GOOD, {k: v for k, v in GOOD.items() if k != "id"}], True, id="no-id"),
    pytest.param([GOOD, {**GOOD, "id": 2, "created_at": "2026-02-30T10:00:00Z"}], True, id="impossible-day"),
])
def test_either_reader_gives_the_same_rows_and_reasons(rows, by_arrow):
    arrow_read, columns, by_python = _both_readers(rows)

    assert arrow_read == by_arrow
    assert _converted(columns, rows) == _converted(by_python, rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(_row, max_size=6))
def test_the_reader_never_changes_what_loads(rows):
    _, columns, by_python = _both_readers(rows)
    assert _converted(columns, rows) == _converted(by_python, rows)
