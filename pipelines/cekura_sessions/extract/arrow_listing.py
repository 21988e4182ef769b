"""The fast path for listings whose every row is plainly valid: Arrow converts and checks them
in C++ instead of a Python loop per row (about 5x faster at 200,000 sessions). Many listings go
through at once: each Arrow call hands the GIL to the fetch threads and waits to get it back, so
fewer, larger calls keep the main thread from queueing (extract at M 2.1 s -> 1.7 s).

Anything unusual (a field the spec does not list, a wrong type, a float where an integer belongs,
an odd timestamp) returns None, and the listing takes the row-by-row path in contract.py, which
says exactly what is wrong with which row. So both paths load exactly the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cekura_sessions.extract import contract, convert

# RFC 3339 date-time with an optional offset, field ranges included; contract.is_timestamp
# accepts the same forms (it also rejects impossible dates such as 30 February, which this lets
# through to staging, where they become NULL and a warning check reports them)
_DATE_TIME = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d"
    r"(:[0-5]\d(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)

# the Arrow types inference may give each field when every row is valid (null: all missing)
_ACCEPTED = {
    "id": (pa.int64(),),
    "title": (pa.string(), pa.null()),
    "project": (pa.int64(), pa.null()),
    "scenario_ids": (pa.list_(pa.int64()), pa.list_(pa.null()), pa.null()),
    "status": (pa.string(), pa.null()),
    "created_at": (pa.string(),),
    "updated_at": (pa.string(),),
    "message_count": (pa.string(), pa.int64(), pa.null()),
}


def plain_listing_tables(listings: list[tuple[int, list[Any] | pa.StructArray]]) -> tuple[pa.Table, pa.Table] | None:
    """(sessions, scenario ids) of these (project id, rows) listings in records' schemas, or None
    when any of them needs a closer look. Rows are Python objects, or Arrow's own reading of
    the answer (json_arrow.py)."""
    tables = [_rows_table(rows) for _, rows in listings]
    if not tables or any(table is None for table in tables):
        return None
    try:  # a field all NULL in one listing takes the type it has in the others
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not table.num_rows or not _only_known_fields(table) or not _types_accepted(table):
        return None
    if not _required_present(table) or not _timestamps_plain(table):
        return None
    if pc.count_distinct(table["id"]).as_py() != table.num_rows:  # a repeated id: set aside row by row
        return None
    project_ids = np.repeat(
        np.array([project_id for project_id, _ in listings], dtype=np.int64), [len(rows) for _, rows in listings]
    )
    scenario_ids = _scenario_ids(table, project_ids)
    if scenario_ids is None:  # a null inside a list: not a scenario id
        return None
    return _sessions(table, project_ids), scenario_ids


def _rows_table(rows: list[Any] | pa.StructArray) -> pa.Table | None:
    if not isinstance(rows, pa.StructArray):
        try:
            rows = pa.array(rows)  # infers one type per field over every row
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            return None
        # a struct's fields are the union of every row's keys
        if not pa.types.is_struct(rows.type):
            return None
    if rows.null_count:
        return None
    return pa.Table.from_struct_array(rows)


def _only_known_fields(table: pa.Table) -> bool:
    # a field the spec does not list is kept as text by the row-by-row path
    return set(table.column_names) <= contract.DELIVERED_FIELD_SET


def _types_accepted(table: pa.Table) -> bool:
    return all(field.type in _ACCEPTED[field.name] for field in table.schema)


def _required_present(table: pa.Table) -> bool:
    names = table.column_names
    return all(name in names and table[name].null_count == 0 for name in ("id", "created_at", "updated_at"))


def _timestamps_plain(table: pa.Table) -> bool:
    return all(pc.all(pc.match_substring_regex(table[name], _DATE_TIME)).as_py() for name in ("created_at", "updated_at"))


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray:
    if name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, type_)])
    return table[name].cast(type_)


def _sessions(table: pa.Table, project_ids: np.ndarray) -> pa.Table:
    count = table.num_rows
    columns: dict[str, Any] = {
        name: _column(table, name, convert.SESSIONS_SCHEMA.field(name).type)
        for name in ("id", "title", "project", "status", "created_at", "updated_at", "message_count")
    }
    columns["project_id"] = pa.array(project_ids)
    columns[contract.TOMBSTONE_COLUMN] = pa.nulls(count, pa.bool_())
    return pa.table(columns, schema=convert.SESSIONS_SCHEMA)


def _scenario_ids(table: pa.Table, project_ids: np.ndarray) -> pa.Table | None:
    if "scenario_ids" not in table.column_names or table["scenario_ids"].type == pa.null():
        return convert.SCENARIO_IDS_SCHEMA.empty_table()
    lists = table["scenario_ids"].cast(pa.list_(pa.int64())).combine_chunks()
    values = lists.flatten()
    if values.null_count:
        return None
    parents = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    # position within its list: index in the flattened values minus where that list starts
    positions = np.arange(len(values), dtype=np.int64) - (offsets[parents] - offsets[0])
    count = len(values)
    return pa.table(
        {
            "session_id": table["id"].combine_chunks().take(pa.array(parents)),
            "project_id": pa.array(project_ids[parents]),
            "position": pa.array(positions),
            "value": values,
            contract.TOMBSTONE_COLUMN: pa.nulls(count, pa.bool_()),
        },
        schema=convert.SCENARIO_IDS_SCHEMA,
    )
