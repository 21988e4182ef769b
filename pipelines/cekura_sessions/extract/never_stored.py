"""Fields never stored from a listing (contract.NEVER_STORED_FIELDS: a session's
`conversation_history`, which may hold customers' words): should the list endpoint start
sending them, they are dropped from the sessions' Arrow table before dlt writes anything, and
from a set-aside row's `raw_json`. The details (extract/details.py) are the one way the
conversation is read, and its text is kept only with --conversation-text."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from cekura_sessions.extract import contract


def is_never_stored(column: str) -> bool:
    """A column made from a never-stored field (extract/convert.py names an unknown field's
    column after it, with an `_extra` suffix when the name is taken)."""
    return any(column == name or column.startswith(f"{name}_extra") for name in contract.NEVER_STORED_FIELDS)


def without_never_stored(sessions: pa.Table) -> pa.Table:
    """The sessions' table less any column of a never-stored field."""
    dropped = [name for name in sessions.column_names if is_never_stored(name)]
    return sessions.drop_columns(dropped) if dropped else sessions


def rejected_without_never_stored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set-aside rows (`raw_json`: the row as delivered, as JSON) less the never-stored fields."""
    return [{**row, "raw_json": _without_fields(row["raw_json"])} for row in rows]


def _without_fields(raw_json: str) -> str:
    if not any(name in raw_json for name in contract.NEVER_STORED_FIELDS):
        return raw_json
    try:
        value = orjson.loads(raw_json)
    except orjson.JSONDecodeError:
        return raw_json
    if not isinstance(value, dict):
        return raw_json
    return orjson.dumps({k: v for k, v in value.items() if k not in contract.NEVER_STORED_FIELDS},
                        default=str).decode()
