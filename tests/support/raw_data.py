"""Raw rows for the model and check tests, in the form dlt loads them into `cekura_raw`.

Timestamps and message_count are text as Cekura delivers them; scenario_ids lists are exploded
into nested-table rows (session_id, project_id, position, value) like the loader does.
Nothing here runs the SQL under test: the tests compute expectations from these lists in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
from cekura_sessions.extract.contract import (
    PROJECTS_TABLE,
    RAW_SCHEMA,
    SCENARIO_IDS_TABLE,
    SESSIONS_TABLE,
    raw_tables_ddl,
)

Row = dict[str, Any]


@dataclass
class RawData:
    projects: list[Row] = field(default_factory=list)
    sessions: list[Row] = field(default_factory=list)
    scenario_ids: list[Row] = field(default_factory=list)


def parse_timestamp(text: str | None) -> datetime | None:
    """Raw timestamp text -> aware datetime; no offset means UTC; unparsable -> None."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def parse_message_count(text: str | None) -> int | None:
    """Raw message_count text -> int when it is a plain integer within INTEGER's range."""
    if text is None or not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        return None
    value = int(text.strip())
    return value if -(2**31) <= value < 2**31 else None


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The raw tables the models read, empty, as the contract declares them."""
    con.execute(raw_tables_ddl())


def insert_raw(
    con: duckdb.DuckDBPyConnection,
    projects: list[Row] = (),
    sessions: list[Row] = (),
    scenario_ids: list[Row] = (),
) -> None:
    """Insert raw rows; a key missing from a row is NULL. The raw tables must exist."""
    for table, rows in (
        (PROJECTS_TABLE, projects),
        (SESSIONS_TABLE, sessions),
        (SCENARIO_IDS_TABLE, scenario_ids),
    ):
        if not rows:
            continue
        columns = [
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [RAW_SCHEMA, table],
            ).fetchall()
        ]
        unknown = {key for row in rows for key in row} - set(columns)
        assert not unknown, f"{table} has no columns {sorted(unknown)}"
        placeholders = ", ".join("?" for _ in columns)
        con.executemany(
            f"insert into {RAW_SCHEMA}.{table} ({', '.join(columns)}) values ({placeholders})",
            [[row.get(column) for column in columns] for row in rows],
        )


def load(con: duckdb.DuckDBPyConnection, data: RawData) -> None:
    insert_raw(con, data.projects, data.sessions, data.scenario_ids)


def project(
    project_id: int,
    name: str,
    timezone: str | None,
    is_deleted: bool | None = False,
    is_listed: bool | None = True,
    organization_id: int = 1,
    created_at: str | None = "2023-06-01T09:00:00Z",
    updated_at: str | None = "2024-01-15T16:00:00.000001+05:30",
) -> Row:
    return {
        "id": project_id,
        "name": name,
        "organization_id": organization_id,
        "organization_name": f"Org {organization_id}",
        "timezone": timezone,
        "is_deleted": is_deleted,
        "is_listed": is_listed,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def session(
    session_id: int,
    project_id: int,
    status: str | None,
    created_at: str | None,
    updated_at: str | None,
    message_count: str | None = "4",
    project: int | None | str = "same",
) -> Row:
    return {
        "id": session_id,
        "title": f"Session {session_id}",
        "project": project_id if project == "same" else project,
        "status": status,
        "created_at": created_at,
        "updated_at": updated_at,
        "message_count": message_count,
        "project_id": project_id,
    }


def explode(sessions: list[Row], lists: dict[int, list[int | None] | None]) -> list[Row]:
    """Nested-table rows for each session's scenario_ids list (None and [] give no rows)."""
    by_id = {row["id"]: row for row in sessions}
    return [
        {
            "session_id": session_id,
            "project_id": by_id[session_id]["project_id"],
            "position": position,
            "value": value,
        }
        for session_id, values in lists.items()
        for position, value in enumerate(values or [])
    ]


# Time zones are chosen so that 23:50 UTC falls on a different local date in some of them.
PROJECTS = [
    project(101, "Support bot", "America/New_York"),  # UTC-5 / -4
    project(102, "Sales agent", "Asia/Kolkata", is_deleted=None),  # +05:30; NULL = not deleted
    project(103, "Scheduler", "Australia/Sydney", organization_id=2),  # +11 / +10
    project(104, "Island line", "Pacific/Kiritimati"),  # +14
    project(105, "Legacy IVR", "Mars/Olympus_Mons", created_at="2022-12-31", updated_at="soon"),  # unknown zone -> UTC
    project(106, "Unzoned", None, is_deleted=None, updated_at=None),  # no zone -> UTC
    project(107, "Empty project", ""),  # no sessions; empty zone
    project(108, "Retired bot", "Europe/Berlin", is_deleted=True),  # deleted, has sessions
    project(109, "Blank zone", ""),  # empty zone -> UTC
    project(110, "Unlisted bot", "UTC", is_listed=False),  # no longer listed, has sessions
    project(111, "Old listing", "UTC", is_listed=None),  # loaded before is_listed: counts as listed
]

SESSIONS = [
    # project 101: every status, several durations for the percentiles, timestamp forms
    session(1001, 101, "completed", "2024-03-01T08:00:00Z", "2024-03-01T08:01:00Z", "12"),
    session(1002, 101, "completed", "2024-03-01T09:00:00.250000+00:00", "2024-03-01T09:02:05.750000+00:00", None),
    session(1003, 101, "completed", "2024-03-02T13:30:00+05:30", "2024-03-02T08:05:00Z", "7"),
    session(1004, 101, "completed", "2024-03-02T16:00:00-08:00", "2024-03-03T00:15:00.25+00:00", "n/a"),
    session(1005, 101, "completed", "2024-03-03T23:50:00Z", "2024-03-04T00:50:00Z", " 3 "),
    # updated before created: clock skew, NULL duration but still a session
    session(1006, 101, "completed", "2024-03-04T10:00:00Z", "2024-03-04T09:59:00Z", "2"),
    session(1007, 101, "failed", "2024-03-04T11:00:00.123456Z", "2024-03-04T11:00:30.654321Z", "0"),
    session(1008, 101, "failed", "2024-03-05T11:00:00Z", "2024-03-05T11:10:00Z", "12.5"),
    session(1009, 101, "cancelled", "2024-03-05T12:00:00Z", "2024-03-05T12:00:00Z", "1", project=None),
    session(1010, 101, "in_progress", "2024-03-06T12:00:00", "2024-03-06T12:30:00", "99999999999"),
    session(1011, 101, "pending", "2024-03-06T13:00:00Z", None, ""),
    session(1012, 101, "archived", "2024-03-07T01:00:00-08:00", "2024-03-07T10:00:00Z"),  # not in enum
    # project 102
    session(1013, 102, "completed", "2024-03-01T23:50:00Z", "2024-03-02T00:20:00Z", "5"),
    session(1014, 102, "completed", "2024-03-02T10:00:00+05:30", "2024-03-02T10:45:30+05:30", "9"),
    session(1015, 102, "completed", "2024-03-02T04:00:00Z", "2024-03-02T06:00:00Z", "15"),
    session(1016, 102, "failed", "2024-03-03T04:00:00Z", None, "2"),  # no updated_at
    session(1017, 102, "failed", "2024-03-03T05:00:00Z", "2024-03-03T05:20:00Z", "3"),
    session(1018, 102, "cancelled", "2024-03-03T06:00:00Z", "2024-03-03T06:01:00Z", "1"),
    session(1019, 102, "pending", "garbage", "2024-03-03T07:00:00Z", None),  # unparsable created_at
    session(1020, 102, None, "2024-03-04T07:00:00Z", "2024-03-04T07:05:00Z", "2"),  # NULL status
    # project 103
    session(1021, 103, "completed", "2024-03-01T23:50:00Z", "2024-03-02T01:50:00Z", "8"),
    session(1022, 103, "completed", "2024-03-01T13:00:00Z", "2024-03-01T13:40:00Z", "6"),
    session(1023, 103, "failed", "2024-03-02T13:00:00Z", "2024-03-02T13:00:10Z", "4"),
    session(1024, 103, "in_progress", "2024-03-02T14:00:00Z", "2024-03-02T14:10:00Z", "4"),
    session(1025, 103, "COMPLETED", "2024-03-02T15:00:00Z", "2024-03-02T15:10:00Z", "4"),  # case matters
    session(1026, 103, "cancelled", "2024-03-02T15:30:00Z", "2024-03-02T15:31:00Z", "4"),
    # the other time zones: created 23:50 UTC
    session(1027, 104, "completed", "2024-03-01T23:50:00Z", "2024-03-01T23:55:00Z", "2"),
    session(1028, 104, "in_progress", "2024-03-02T09:00:00Z", "2024-03-02T09:05:00Z", "2"),
    session(1029, 105, "completed", "2024-03-01T23:50:00Z", "2024-03-01T23:59:00Z", "2"),
    session(1030, 106, "failed", "2024-03-01T23:50:00Z", "2024-03-02T00:10:00Z", "2"),
    session(1031, 101, "completed", "2024-03-01T23:50:00Z", "2024-03-02T00:00:00Z", "2"),
    # 00:10 UTC: the UTC date is the next day, which any zone west of UTC would not give
    session(1034, 105, "failed", "2024-03-02T00:10:00Z", "2024-03-02T00:20:00Z", "2"),
    session(1035, 106, "completed", "2024-03-02T00:10:00Z", "2024-03-02T00:40:00Z", "2"),
    session(1036, 109, "completed", "2024-03-02T00:10:00Z", "2024-03-02T00:25:00Z", "2"),
    # a deleted project's sessions
    session(1032, 108, "completed", "2024-03-01T23:50:00Z", "2024-03-02T00:30:00Z", "3"),
    session(1033, 108, "failed", "2024-03-02T08:00:00Z", "2024-03-02T08:30:00Z", "3"),
    # a project no longer listed, and one loaded before listing was recorded
    session(1037, 110, "completed", "2024-03-02T08:00:00Z", "2024-03-02T08:30:00Z", "3"),
    session(1038, 111, "completed", "2024-03-02T09:00:00Z", "2024-03-02T09:30:00Z", "3"),
]

SCENARIO_LISTS: dict[int, list[int | None] | None] = {
    1001: [1, 2, 3],
    1002: [2],
    1003: [2, 2, 5],  # a repeated id: two rows, one session
    1004: [],
    1005: None,
    1006: [3, 1],
    1007: [1],
    1008: [4, 2],
    1009: [5],
    1012: [9],
    1013: [11, 12],
    1014: [11],
    1016: [12, 13],
    1017: [None, 13],  # a NULL element: a row in session_scenarios, not in scenario_stats
    1019: [11],
    1020: [14],
    1021: [21],
    1022: [21, 22],
    1025: [21],
    1026: [22, 22, 22],
    1027: [41],
    1029: [51],
    1030: [61],
    1032: [81],
    1033: [81, 82],
    1037: [81],
    1038: [81],
}

# a row left under the project session 1013 was listed under before it moved to 102: the models
# count a session's scenarios under its current project only
MOVED_SESSION_LEFTOVER = {"session_id": 1013, "project_id": 101, "position": 5, "value": 99}
VARIED = RawData(PROJECTS, SESSIONS, [*explode(SESSIONS, SCENARIO_LISTS), MOVED_SESSION_LEFTOVER])

# The same shape without anything a check warns about: enum statuses only, parsable timestamps,
# no clock skew, no NULL list elements. Every check passes on it.
CLEAN_PROJECTS = [
    project(201, "Alpha", "Europe/Paris"),
    project(202, "Beta", None),
    project(203, "Gone", "UTC", is_deleted=True),
]
CLEAN_SESSIONS = [
    session(2001, 201, "completed", "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z", "4"),
    session(2002, 201, "failed", "2024-05-01T11:00:00+02:00", "2024-05-01T09:30:00Z", "6"),
    session(2003, 201, "pending", "2024-05-02T08:00:00Z", None, None),
    session(2004, 202, "completed", "2024-05-02T09:00:00Z", "2024-05-02T09:01:00Z", "2"),
    session(2005, 202, "cancelled", "2024-05-03T09:00:00Z", "2024-05-03T09:10:00Z", "2"),
    session(2006, 202, "in_progress", "2024-05-03T10:00:00Z", "2024-05-03T10:10:00Z", "2"),
    session(2007, 203, "completed", "2024-05-03T11:00:00Z", "2024-05-03T11:10:00Z", "2"),
]
CLEAN_LISTS: dict[int, list[int | None] | None] = {
    2001: [1, 2],
    2002: [2],
    2004: [3, 3],
    2005: [],
    2007: [4],
}
CLEAN = RawData(CLEAN_PROJECTS, CLEAN_SESSIONS, explode(CLEAN_SESSIONS, CLEAN_LISTS))
