"""Interim home of the row-by-row conversion (to be replaced by one Arrow path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

from cekura_sessions.extract import contract
from cekura_sessions.extract.contract import DELIVERED_FIELD_SET as SESSION_FIELD_SET
from cekura_sessions.extract.contract import is_integer

_NAMING = NamingConvention()
SESSIONS_SCHEMA = contract.SESSIONS.arrow_schema()
SCENARIO_IDS_SCHEMA = contract.SCENARIO_IDS.arrow_schema()
PROJECTS_SCHEMA = contract.PROJECTS.arrow_schema()
PROJECT_LISTINGS_SCHEMA = pa.schema([*contract.PROJECT_LISTINGS.arrow_schema(), ("page_chain", pa.string())])


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
        columns[contract.TOMBSTONE_COLUMN].extend([None] * count)
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
        columns[contract.TOMBSTONE_COLUMN][-1] = True
        for values in self.extra_fields.values():
            values.append(None)
        self._add_scenario_ids(-project_id, project_id, [None], True)

    def _add_scenario_ids(self, session_id: int, project_id: int, values: list[Any], tomb: bool | None) -> None:
        columns, count = self.scenario_ids, len(values)
        columns["session_id"].extend([session_id] * count)
        columns["project_id"].extend([project_id] * count)
        columns["position"].extend(range(count))
        columns["value"].extend(values)
        columns[contract.TOMBSTONE_COLUMN].extend([tomb] * count)

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
