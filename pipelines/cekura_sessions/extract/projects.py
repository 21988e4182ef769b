"""The projects list as loaded: the contract's allow-list of columns only; members, emails,
webhooks and keys stay behind."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cekura_sessions.extract import contract

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
        columns["created_at"].append(_text(project.get("created_at")))
        columns["updated_at"].append(_text(project.get("updated_at")))
    return pa.Table.from_pydict(columns, schema=PROJECTS_SCHEMA)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if contract.is_integer(value) else None
