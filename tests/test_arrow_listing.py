"""The Arrow fast path loads exactly what the row-by-row path loads, and steps aside for
anything the row-by-row path must look at."""

from __future__ import annotations

import pytest
from cekura_sessions.extract import arrow_listing
from cekura_sessions.extract import contract, convert
records = convert  # interim: SessionBatch lives in convert until the one conversion path lands
records.session_rejection = contract.session_rejection
from cekura_sessions.fake.data import DataSpec, generate


def _row_by_row(project_id, rows):
    batch = records.SessionBatch()
    batch.add_sessions(project_id, rows)
    return batch.sessions_table(), batch.scenario_ids_table()


@pytest.mark.parametrize("oddities", [False, True], ids=["clean", "with-oddities"])
def test_fast_path_equals_row_by_row_path(oddities):
    dataset = generate(DataSpec(projects=8, sessions_per_project=50, seed=5, oddities=oddities))
    used = 0
    for project_id, rows in dataset.sessions.items():
        valid = [row for row in rows if records.session_rejection(row) is None]
        fast = arrow_listing.plain_listing_tables([(project_id, rows)])
        if fast is None:
            continue
        used += 1
        assert valid == rows, f"project {project_id}: the fast path took a listing with invalid rows"
        want_sessions, want_ids = _row_by_row(project_id, rows)
        assert fast[0].to_pylist() == want_sessions.to_pylist()
        assert fast[1].to_pylist() == want_ids.to_pylist()
        assert fast[0].schema == want_sessions.schema and fast[1].schema == want_ids.schema
    if not oddities:
        assert used == sum(1 for rows in dataset.sessions.values() if rows), "a clean listing missed the fast path"


GOOD = {"id": 1, "title": "t", "project": 7, "scenario_ids": [3, 4], "status": "completed",
        "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00+05:30", "message_count": "2"}


@pytest.mark.parametrize("change", [
    pytest.param({"id": 1.0}, id="float-id"),
    pytest.param({"id": True}, id="bool-id"),
    pytest.param({"id": "1"}, id="text-id"),
    pytest.param({"id": 2**63}, id="id-beyond-bigint"),
    pytest.param({"project": 7.5}, id="float-project"),
    pytest.param({"scenario_ids": [1, None]}, id="null-inside-list"),
    pytest.param({"scenario_ids": [1, 2.0]}, id="float-inside-list"),
    pytest.param({"scenario_ids": "1,2"}, id="text-list"),
    pytest.param({"created_at": "2026-W36-2T10:00:00Z"}, id="week-date"),
    pytest.param({"created_at": None}, id="null-timestamp"),
    pytest.param({"message_count": 2.5}, id="float-message-count"),
    pytest.param({"message_count": True}, id="bool-message-count"),
    pytest.param({"new_field": 1}, id="unknown-field"),
])
def test_anything_unusual_takes_the_row_by_row_path(change):
    rows = [dict(GOOD), {**GOOD, "id": 2, **change}]
    assert arrow_listing.plain_listing_tables([(7, rows)]) is None


def test_many_listings_at_once_equal_each_alone():
    dataset = generate(DataSpec(projects=8, sessions_per_project=50, seed=5, oddities=False))
    listings = [(project_id, rows) for project_id, rows in dataset.sessions.items() if rows]
    alone = [arrow_listing.plain_listing_tables([listing]) for listing in listings]

    together = arrow_listing.plain_listing_tables(listings)

    assert together[0].to_pylist() == [row for sessions, _ in alone for row in sessions.to_pylist()]
    assert together[1].to_pylist() == [row for _, ids in alone for row in ids.to_pylist()]


@pytest.mark.parametrize("second", [
    pytest.param({**GOOD, "id": 2, "message_count": 2}, id="type-differs-between-listings"),
    pytest.param(dict(GOOD), id="id-in-both-listings"),
])
def test_one_listing_that_needs_a_closer_look_sends_the_whole_batch_back(second):
    assert arrow_listing.plain_listing_tables([(7, [dict(GOOD)])]) is not None
    assert arrow_listing.plain_listing_tables([(8, [second])]) is not None
    assert arrow_listing.plain_listing_tables([(7, [dict(GOOD)]), (8, [second])]) is None


def test_missing_id_or_non_object_takes_the_row_by_row_path():
    without_id = {k: v for k, v in GOOD.items() if k != "id"}
    assert arrow_listing.plain_listing_tables([(7, [dict(GOOD), without_id])]) is None
    assert arrow_listing.plain_listing_tables([(7, [dict(GOOD), [1, 2]])]) is None
    assert arrow_listing.plain_listing_tables([(7, [])]) is None


def test_batch_mixing_both_paths_keeps_extra_fields_on_their_rows():
    batch = records.SessionBatch()
    plain = arrow_listing.plain_listing_tables([(1, [dict(GOOD)])])
    batch.add_tables(*plain)
    batch.add_sessions(2, [{**GOOD, "id": 2, "score": 5}, {**GOOD, "id": 3}])
    batch.add_tables(*arrow_listing.plain_listing_tables([(4, [{**GOOD, "id": 4}])]))

    table = batch.sessions_table()

    scores = dict(zip(table["id"].to_pylist(), table["score"].to_pylist()))
    assert scores == {1: None, 2: "5", 3: None, 4: None}
    assert len(batch) == 4 == table.num_rows
