"""Rows as the API delivers them -> validated columns -> Arrow tables.

Arrow tables go straight to dlt's parquet writer, skipping dlt's row-by-row normalizer, which
is where most of a large night's time would otherwise go (see GOTCHAS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

from cekura_sessions import settings

_NAMING = NamingConvention()

SESSION_FIELDS = ("id", "title", "project", "scenario_ids", "status", "created_at", "updated_at", "message_count")
SESSION_FIELD_SET = frozenset(SESSION_FIELDS)

SESSIONS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("title", pa.string()),
        ("project", pa.int64()),
        ("status", pa.string()),
        ("created_at", pa.string()),
        ("updated_at", pa.string()),
        ("message_count", pa.string()),
        pa.field("project_id", pa.int64(), nullable=False),
        (settings.TOMBSTONE_COLUMN, pa.bool_()),
    ]
)
SCENARIO_IDS_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("project_id", pa.int64(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
        ("value", pa.int64()),
        (settings.TOMBSTONE_COLUMN, pa.bool_()),
    ]
)
# The contract's allow-list: only these project fields ever reach the database; members, emails,
# webhook URLs and key-like fields stay behind.
PROJECTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("name", pa.string()),
        ("organization_id", pa.int64()),
        ("organization_name", pa.string()),
        ("timezone", pa.string()),
        ("is_deleted", pa.bool_()),
        ("created_at", pa.string()),
        ("updated_at", pa.string()),
    ]
)


PROJECT_LISTINGS_SCHEMA = pa.schema(
    [
        pa.field("project_id", pa.int64(), nullable=False),
        ("listing_digest", pa.string()),
        ("sessions_listed", pa.int64()),
        ("listed_at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
        # paged listings: JSON [[fingerprint of the pages so far, next link], ...] (listing.PageChain)
        ("page_chain", pa.string()),
    ]
)


_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1



def is_integer(value: Any) -> bool:
    """An integer that fits BIGINT; bool is an int subclass in Python, but `true` is not an id."""
    return isinstance(value, int) and not isinstance(value, bool) and _BIGINT_MIN <= value <= _BIGINT_MAX


def _is_timestamp(value: Any) -> bool:
    """An RFC 3339 date-time (the spec's `format: date-time`), offset optional. fromisoformat
    alone also takes week dates, basic forms and comma fractions that DuckDB cannot read; the
    separator checks rule those out (this runs twice per row, so it avoids a regex)."""
    if type(value) is not str or len(value) < 16 or "," in value:
        return False
    if value[4] != "-" or value[7] != "-" or value[10] not in "Tt " or value[13] != ":":
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # well-formed but impossible, such as month 13
        return False
    return True


def _all_integers(values: list[Any]) -> bool:
    for value in values:  # type() rather than isinstance: `true` is not a scenario id
        if type(value) is not int or not _BIGINT_MIN <= value <= _BIGINT_MAX:
            return False
    return True


def session_rejection(row: Any) -> str | None:
    """Why this row breaks the contract, or None when it may load as delivered."""
    if not isinstance(row, dict):
        return "row is not a JSON object"
    if "id" not in row:
        return "id is missing"
    if not is_integer(row["id"]):
        return f"id is not an integer: {row['id']!r:.40}"
    for name in ("created_at", "updated_at"):
        if not _is_timestamp(row.get(name)):
            return f"{name} is not an ISO-8601 timestamp: {row.get(name)!r:.40}"
    scenario_ids = row.get("scenario_ids")
    if scenario_ids is not None:
        if not isinstance(scenario_ids, list):
            return f"scenario_ids is not a list: {scenario_ids!r:.40}"
        if not _all_integers(scenario_ids):
            return "scenario_ids holds something other than integers"
    if row.get("project") is not None and not is_integer(row["project"]):
        return f"project is not an integer: {row['project']!r:.40}"
    for name in ("title", "status"):
        if row.get(name) is not None and not isinstance(row[name], str):
            return f"{name} is not a string: {row[name]!r:.40}"
    message_count = row.get("message_count")
    if message_count is not None and not (isinstance(message_count, str) or is_integer(message_count)):
        return f"message_count is neither a string nor an integer: {message_count!r:.40}"
    return None


@dataclass
class SessionBatch:
    """Column buffers for the sessions table and its scenario-id child table."""

    sessions: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in SESSIONS_SCHEMA.names})
    scenario_ids: dict[str, list[Any]] = field(
        default_factory=lambda: {n: [] for n in SCENARIO_IDS_SCHEMA.names}
    )
    extra_fields: dict[str, list[Any]] = field(default_factory=dict)
    # listings converted whole by arrow_listing: (sessions, scenario ids)
    tables: list[tuple[pa.Table, pa.Table]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sessions["id"]) + sum(sessions.num_rows for sessions, _ in self.tables)

    def add_tables(self, sessions: pa.Table, scenario_ids: pa.Table) -> None:
        self.tables.append((sessions, scenario_ids))

    def add_sessions(self, project_id: int, rows: list[dict[str, Any]]) -> None:
        """Append one listing's valid rows, column by column (a listing at a time is several
        times faster than a row at a time in Python)."""
        columns = self.sessions
        start, count = len(columns["id"]), len(rows)
        columns["id"].extend([row["id"] for row in rows])
        for name in ("title", "project", "status", "created_at", "updated_at"):
            columns[name].extend([row.get(name) for row in rows])
        # the spec says string; an integer is the same fact, kept in the same text column
        columns["message_count"].extend(
            [None if (count_ := row.get("message_count")) is None else str(count_) for row in rows]
        )
        columns["project_id"].extend([project_id] * count)
        columns[settings.TOMBSTONE_COLUMN].extend([None] * count)
        self._add_extra_fields(rows, start)
        for row in rows:
            values = row.get("scenario_ids")
            if values:
                self._add_scenario_ids(row["id"], project_id, values, None)

    def add_tombstone(self, project_id: int) -> None:
        """A marker row that makes the merge clear a project whose listing is now empty;
        dlt deletes by it and never inserts it (hard_delete)."""
        columns = self.sessions
        for name in SESSIONS_SCHEMA.names:
            columns[name].append(None)
        columns["id"][-1] = -project_id
        columns["project_id"][-1] = project_id
        columns[settings.TOMBSTONE_COLUMN][-1] = True
        for values in self.extra_fields.values():
            values.append(None)
        self._add_scenario_ids(-project_id, project_id, [None], True)

    def _add_scenario_ids(self, session_id: int, project_id: int, values: list[Any], tomb: bool | None) -> None:
        columns, count = self.scenario_ids, len(values)
        columns["session_id"].extend([session_id] * count)
        columns["project_id"].extend([project_id] * count)
        columns["position"].extend(range(count))
        columns["value"].extend(values)
        columns[settings.TOMBSTONE_COLUMN].extend([tomb] * count)

    def _add_extra_fields(self, rows: list[dict[str, Any]], start: int) -> None:
        end = start + len(rows)
        for values in self.extra_fields.values():
            values.extend([None] * len(rows))
        for offset, row in enumerate(rows):
            if row.keys() <= SESSION_FIELD_SET:
                continue
            for name, value in row.items():
                if name not in SESSION_FIELD_SET:
                    self.extra_fields.setdefault(name, [None] * end)[start + offset] = value

    def sessions_table(self) -> pa.Table:
        table = pa.Table.from_pydict(self.sessions, schema=SESSIONS_SCHEMA)
        for name, values in self.extra_fields.items():
            table = table.append_column(extra_column_name(name, table.column_names), _extra_column(values))
        # fields only some rows carry become columns that are NULL in the others
        return pa.concat_tables([table, *(sessions for sessions, _ in self.tables)], promote_options="default")

    def scenario_ids_table(self) -> pa.Table:
        table = pa.Table.from_pydict(self.scenario_ids, schema=SCENARIO_IDS_SCHEMA)
        return pa.concat_tables([table, *(ids for _, ids in self.tables)])


def _extra_column(values: list[Any]) -> pa.Array:
    """A field the spec does not know, as text (strings as delivered, anything else as JSON):
    its type may change from one night to the next without breaking the load."""
    return pa.array(
        [v if isinstance(v, str) or v is None else orjson.dumps(v, default=str).decode() for v in values],
        pa.string(),
    )


def extra_column_name(field_name: str, taken: list[str]) -> str:
    """The column for a field the spec does not know; one whose name would land on a column
    already there once dlt normalizes it (`project_id`, `createdAt`) gets an `_extra` suffix."""
    normalized = _NAMING.normalize_identifier(field_name)
    taken_normalized = {_NAMING.normalize_identifier(name) for name in taken}
    if normalized not in taken_normalized:
        return field_name
    suffix = 1
    candidate = f"{normalized}_extra"
    while candidate in taken_normalized:
        suffix += 1
        candidate = f"{normalized}_extra{suffix}"
    return candidate


def projects_table(projects: list[dict[str, Any]]) -> pa.Table:
    """Only the contract's allow-list of project fields; members, emails, webhooks and keys stay behind."""
    columns: dict[str, list[Any]] = {name: [] for name in PROJECTS_SCHEMA.names}
    for project in projects:
        organization = project.get("organization") if isinstance(project.get("organization"), dict) else {}
        columns["id"].append(project["id"])
        columns["name"].append(_text(project.get("name")))
        columns["organization_id"].append(_int_or_none(organization.get("id", project.get("organization_id"))))
        columns["organization_name"].append(_text(organization.get("name")))
        columns["timezone"].append(_text(project.get("timezone")))
        columns["is_deleted"].append(bool(project.get("is_deleted")))
        columns["created_at"].append(_text(project.get("created_at")))
        columns["updated_at"].append(_text(project.get("updated_at")))
    return pa.Table.from_pydict(columns, schema=PROJECTS_SCHEMA)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if is_integer(value) else None


def rejected_row(run_id: str, project_id: int | None, row: Any, reason: str, at: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "project_id": project_id,
        "raw_json": orjson.dumps(row, default=str).decode(),
        "reason": reason,
        "rejected_at": at,
    }
