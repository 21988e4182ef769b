"""What each listing loads, sets aside, carries and clears, decided the same wherever a flush
falls (extract/batch.py), on listings written out by hand."""

from __future__ import annotations

import pytest
from cekura_sessions.extract import batch as batch_module
from cekura_sessions.extract.batch import ListingBatch
from cekura_sessions.extract.fetch import FetchedListing
from cekura_sessions.extract.report import RunReport
from cekura_sessions.extract.seen import SeenSessions

GOOD = {"id": 1, "title": "t", "project": None, "scenario_ids": [3], "status": "completed",
        "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00Z", "message_count": 2}
# `project` null: a row counts under the listing that delivered it (a row of another project does not)
STORED = {**GOOD, "title": "as stored last night", "message_count": "2", "scenario_ids": [9]}


def _listing(rows):
    return FetchedListing(rows, f"digest-{id(rows)}", len(rows))


def _run(listings, flush_rows, monkeypatch, stored=None):
    """Every table the batch yields, its rejected rows and its report, for these (project, rows)."""
    monkeypatch.setattr(batch_module, "FLUSH_ROWS", flush_rows)
    stored = stored or {}
    batch = ListingBatch(RunReport(), SeenSessions(),
                         lambda project_id, ids: [stored[(project_id, i)] for i in ids if (project_id, i) in stored])
    sessions, ids = [], []
    for project_id, rows in listings:
        batch.add(project_id, _listing(rows))
        if batch.full:
            tables = batch.flush()
            if tables:
                sessions += tables[0].to_pylist()
                ids += tables[1].to_pylist()
    for tables in (batch.flush(), batch.finish()):
        if tables:
            sessions += tables[0].to_pylist()
            ids += tables[1].to_pylist()
    loaded = sorted((s["project_id"], s["id"], s["title"], bool(s["_cekura_tombstone"])) for s in sessions)
    return loaded, [(r["project_id"], r["reason"]) for r in batch.rejected], batch.report


@pytest.mark.parametrize("flush_rows", [1, 2, 20_000], ids=["each-listing-its-own-flush", "two", "one-flush"])
def test_a_set_aside_session_loads_where_another_listing_has_it_valid(flush_rows, monkeypatch):
    """Project 7's version of session 1 breaks the contract, and 7 stored it last night; project 8
    lists it valid (it moved): 8's version loads, the stored one is not carried back."""
    listings = [
        (7, [{**GOOD, "created_at": "not a date"}, {**GOOD, "id": 2}]),
        (8, [{**GOOD, "title": "moved", "project": 8}]),
    ]

    loaded, rejected, report = _run(listings, flush_rows, monkeypatch, stored={(7, 1): STORED})

    assert loaded == [(7, 2, "t", False), (8, 1, "moved", False)]
    assert rejected == [(7, "created_at is not an ISO-8601 timestamp: 'not a date'")]
    assert report.sessions_written == 2


@pytest.mark.parametrize("flush_rows", [1, 20_000], ids=["each-listing-its-own-flush", "one-flush"])
def test_a_set_aside_session_no_listing_has_keeps_its_stored_version(flush_rows, monkeypatch):
    listings = [(7, [{**GOOD, "created_at": "not a date"}]), (8, [{**GOOD, "id": 5}])]

    loaded, rejected, _ = _run(listings, flush_rows, monkeypatch, stored={(7, 1): STORED})

    assert loaded == [(7, 1, "as stored last night", False), (8, 5, "t", False)]
    assert rejected == [(7, "created_at is not an ISO-8601 timestamp: 'not a date'")]


@pytest.mark.parametrize("flush_rows", [1, 20_000], ids=["each-listing-its-own-flush", "one-flush"])
def test_a_listing_left_with_nothing_clears_its_project(flush_rows, monkeypatch):
    """Nothing stored to carry: project 7 is cleared (a tombstone, id -7); an empty listing too."""
    listings = [(7, [{**GOOD, "created_at": "not a date"}]), (9, []), (8, [{**GOOD, "id": 5}])]

    loaded, _, _ = _run(listings, flush_rows, monkeypatch)

    assert loaded == [(7, -7, None, True), (8, 5, "t", False), (9, -9, None, True)]


def test_a_repeat_across_flushes_loads_once_as_first_listed(monkeypatch):
    listings = [(7, [dict(GOOD)]), (8, [{**GOOD, "title": "again"}, {**GOOD, "id": 3}])]

    loaded, rejected, _ = _run(listings, 1, monkeypatch)

    assert loaded == [(7, 1, "t", False), (8, 3, "t", False)]
    assert rejected == [(8, "session 1 was already listed under project 7 in this run; that row was loaded")]
