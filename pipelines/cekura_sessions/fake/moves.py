"""Listings that change while they are paged: what a live DRF list does between two page reads.

DRF pages a query, not a snapshot: page 2 is cut from the listing as it stands when page 2 is
asked for. So a session created or deleted after page 1 went out shifts every later row, and a
client reading page by page sees one row twice, or never sees one. Each move here is applied to
the dataset right after a page-1 answer of its project went out (fake/server.py), and it stays:
the sessions really were created or deleted.
"""

from __future__ import annotations

import copy
import math

from cekura_sessions.fake.data import FakeDataset

# insert-first: a new session at the front (newest first): the last row of page 1 comes again
#   on page 2, and `count` grows;
# delete-first: the first session deleted: the first row of page 2 slides onto page 1, unread,
#   and `count` shrinks;
# swap: the first session deleted and a new one appended at the end (oldest first ordering):
#   `count` does not change, yet a session that still exists is never read;
# shrink: sessions deleted from the front until the listing has one page fewer: the last `next`
#   link answers 404 "Invalid page.".
MOVES = ("insert-first", "delete-first", "swap", "shrink")


def validate_move(move: str) -> str:
    if move not in MOVES:
        raise ValueError(f"unknown listing move {move!r}; one of {', '.join(MOVES)}")
    return move


def moved(dataset: FakeDataset, project_id: int, move: str, page_size: int) -> FakeDataset:
    """A copy of `dataset` with `project_id`'s listing changed by `move` (MOVES); new sessions
    take fresh ids (never reused), deleted ones are gone for good."""
    after = copy.copy(dataset)
    after.sessions = dict(dataset.sessions)
    rows = list(dataset.sessions.get(project_id, []))
    if move in ("insert-first", "swap") and rows:
        new = {**copy.deepcopy(rows[0]), "id": after.next_session_id, "title": f"created mid-read {after.next_session_id}"}
        after.next_session_id += 1
    if move == "insert-first" and rows:
        rows.insert(0, new)
    elif move == "delete-first" and rows:
        rows.pop(0)
    elif move == "swap" and rows:
        rows = [*rows[1:], new]
    elif move == "shrink" and rows:
        pages = math.ceil(len(rows) / page_size)
        keep = (pages - 1) * page_size
        rows = rows[len(rows) - keep:] if keep else []
    after.sessions[project_id] = rows
    return after
