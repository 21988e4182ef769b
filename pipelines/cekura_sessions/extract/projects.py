"""The projects list as loaded: the contract's allow-list of columns only; members, emails,
webhooks and keys stay behind. A project the list no longer returns stays, marked unlisted."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cekura_sessions.extract import contract
from cekura_sessions.extract.removals import RemovalGuard
from cekura_sessions.extract.report import RunReport

PROJECTS_SCHEMA = contract.PROJECTS.arrow_schema()


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
        columns["is_listed"].append(True)
        columns["created_at"].append(_text(project.get("created_at")))
        columns["updated_at"].append(_text(project.get("updated_at")))
    return pa.Table.from_pydict(columns, schema=PROJECTS_SCHEMA)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if contract.is_integer(value) else None


def with_unlisted(listed: pa.Table, stored: dict[int, tuple[Any, ...]], report: RunReport | None = None,
                  guard: RemovalGuard | None = None) -> pa.Table:
    """`listed` plus each stored project it no longer holds, as stored but with is_listed false.

    `stored`: {id: row in PROJECTS_SCHEMA's order} (extract/state.py NightState.projects). The
    merge on id then updates the unlisted projects instead of leaving them looking current: raw
    keeps them as history, and the models leave them out (README, the tables and models).
    A project stays as stored (listed, if it was) when the list held a row that could not be
    read (`report.projects_unreadable`: it may be that one), or when the `guard` holds the
    unlisting of too many projects at once (recorded in `report.unlistings_held`)."""
    listed_ids = set(listed.column("id").to_pylist())
    gone = [row for project_id, row in stored.items() if project_id not in listed_ids]
    if not gone:
        return listed
    at = PROJECTS_SCHEMA.get_field_index("is_listed")
    newly_gone = [row for row in gone if row[at] is not False]
    listed_before = sum(1 for row in stored.values() if row[at] is not False)
    if report is not None:
        report.projects_listed_before = listed_before
        held = guard is not None and guard.unlisting_held(listed_before, len(newly_gone))
        if report.projects_unreadable or held:
            if held:
                report.unlistings_held = sorted(row[0] for row in newly_gone)
            gone = [row for row in gone if row[at] is False]  # the newly gone stay as stored
            kept = [dict(zip(PROJECTS_SCHEMA.names, row)) for row in newly_gone]
            rows = [dict(zip(PROJECTS_SCHEMA.names, (*row[:at], False, *row[at + 1:]))) for row in gone]
            return pa.concat_tables([listed, pa.Table.from_pylist(kept + rows, schema=PROJECTS_SCHEMA)])
    rows = [dict(zip(PROJECTS_SCHEMA.names, (*row[:at], False, *row[at + 1:]))) for row in gone]
    return pa.concat_tables([listed, pa.Table.from_pylist(rows, schema=PROJECTS_SCHEMA)])
