"""Delivered rows -> the raw tables' Arrow tables, checked against the contract on one path.

Each field's values become one Arrow column at once, and a per-row validity mask records the
rows the contract may not accept: a value of the wrong type (its cell is left NULL), a missing
id, a timestamp that is not plainly RFC 3339. Only the flagged rows are put to the per-row rule
(contract.session_rejection), which gives their reason and has the last word: a flagged row it
accepts loads as delivered. So the rule is written once and no second conversion exists.

Arrow tables go straight to dlt's parquet writer, skipping dlt's row-by-row normalizer, where
most of a large night's time would otherwise go (docs/upstream-behaviour.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from cekura_sessions.extract import contract

SESSIONS_SCHEMA = contract.SESSIONS.arrow_schema()
SCENARIO_IDS_SCHEMA = contract.SCENARIO_IDS.arrow_schema()
PROJECT_LISTINGS_SCHEMA = contract.PROJECT_LISTINGS.arrow_schema()

_NONE = type(None)
_INT_LIST = pa.list_(pa.int64())


@dataclass(frozen=True)
class Converted:
    """Rows converted in delivery order. `sessions` has one row per delivered row (a flagged
    row's unacceptable cells NULL); `scenario_ids` one row per list element, `parents` the
    index of its session row; `reasons` why each row that cannot load cannot."""

    sessions: pa.Table
    scenario_ids: pa.Table
    parents: np.ndarray
    reasons: dict[int, str]

    def select(self, keep: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """(sessions, scenario ids) of the rows where the boolean `keep` is true."""
        if keep.all():  # the usual flush: nothing to filter
            return self.sessions, self.scenario_ids
        return self.sessions.filter(keep), self.scenario_ids.filter(keep[self.parents])


@dataclass(frozen=True)
class Columns:
    """A listing's rows as columns: the delivered fields typed as stored (message_count as
    text, scenario_ids as list<int64>), any unknown field as text under its delivered name;
    `bad` flags the rows with a value the contract does not accept (its cell left NULL)."""

    table: pa.Table
    bad: np.ndarray


def convert_sessions(rows: list[Any], project_ids: np.ndarray) -> Converted:
    """`rows` as delivered (parsed JSON), `project_ids` the listing each came from (int64)."""
    return convert(python_columns(rows), project_ids, rows.__getitem__)


def convert(columns: Columns, project_ids: np.ndarray, raw_row: Callable[[int], Any]) -> Converted:
    """The one conversion: `columns` (python_columns, arrow_columns, listings_columns) to the
    raw tables, with the reason of every row that cannot load.
    `raw_row(i)`: row i as delivered, asked only for the flagged rows."""
    table = columns.table
    flagged = columns.bad | pc.is_null(table["id"]).to_numpy(zero_copy_only=False)
    for name in contract.TIMESTAMP_FIELDS:
        flagged |= _not_plain_timestamps(table[name])
    reasons = {}
    for index in np.flatnonzero(flagged).tolist():
        reason = contract.session_rejection(raw_row(index))
        if reason is not None:
            reasons[index] = reason
    extra = [name for name in table.column_names if name not in _COLUMNS.names]
    sessions = pa.table(
        {
            **{name: table[name] for name in SESSIONS_SCHEMA.names if name in _COLUMNS.names},
            "project_id": pa.array(project_ids, pa.int64()),
            contract.TOMBSTONE_COLUMN: pa.nulls(table.num_rows, pa.bool_()),
        },
        schema=SESSIONS_SCHEMA,
    )
    taken = list(SESSIONS_SCHEMA.names)
    for field_name in extra:  # named here, once for all the listings converted together
        taken.append(extra_column_name(field_name, taken))
        sessions = sessions.append_column(taken[-1], table[field_name])
    scenario_ids, parents = _scenario_ids(sessions, table["scenario_ids"].combine_chunks())
    return Converted(sessions, scenario_ids, parents, reasons)


# the delivered fields as the conversion types them
_COLUMNS = contract.DELIVERED_SCHEMA


def python_columns(rows: list[Any]) -> Columns:
    """Columns of rows parsed into Python objects, each value checked against the contract."""
    objects = [row if type(row) is dict else {} for row in rows]
    bad = np.fromiter((type(row) is not dict for row in rows), dtype=bool, count=len(rows))
    columns: dict[str, pa.Array] = {}
    for name, accepts, type_ in _SCALARS:
        columns[name], bad_values = _column([row.get(name) for row in objects], accepts, type_)
        bad |= bad_values
    columns["message_count"], bad_values = _message_counts([row.get("message_count") for row in objects])
    bad |= bad_values
    columns["scenario_ids"], bad_values = _scenario_id_lists([row.get("scenario_ids") for row in objects])
    bad |= bad_values
    table = pa.table(columns, schema=_COLUMNS)
    for name, values in _extra_fields(objects).items():  # as delivered; convert names their columns
        table = table.append_column(name, _as_text(values))
    return Columns(table, bad)


def arrow_columns(rows: pa.Table) -> Columns:
    """Columns of rows Arrow's JSON reader typed strictly (extract/read.py): every value is of
    its field's JSON type already; a null inside a scenario_ids list is the one thing left."""
    columns = {
        field.name: rows[field.name].cast(field.type) if field.name in rows.column_names
        else pa.nulls(rows.num_rows, field.type)
        for field in _COLUMNS
    }
    lists = columns["scenario_ids"].combine_chunks()
    bad = np.zeros(rows.num_rows, dtype=bool)
    values = lists.flatten()
    if values.null_count:  # such a list is left NULL, as python_columns leaves it
        parents = pc.list_parent_indices(lists).to_numpy()
        bad[parents[pc.is_null(values).to_numpy(zero_copy_only=False)]] = True
        columns["scenario_ids"] = pc.if_else(pa.array(bad), pa.nulls(len(bad), lists.type), lists)
    return Columns(pa.table(columns, schema=_COLUMNS), bad)


def listings_columns(listings: list[pa.Table | list[Any]]) -> Columns:
    """The columns of several listings' rows, in order, each as extract/read.py read it: the
    Arrow-read ones that follow each other converted in one go (fewer, larger Arrow calls hand
    the GIL to the fetch threads less often), the parsed ones value by value. An unknown field
    is NULL on the rows without it."""
    parts: list[Columns] = []
    run: list[pa.Table] = []
    for rows in [*listings, None]:
        if isinstance(rows, pa.Table):
            run.append(rows)
            continue
        if run:
            parts.append(arrow_columns(pa.concat_tables(run, promote_options="default")))
            run = []
        if rows is not None:
            parts.append(python_columns(rows))
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables([part.table for part in parts], promote_options="default")
    return Columns(table, np.concatenate([part.bad for part in parts]))


def _accepts_int(value: Any) -> bool:
    return value is None or contract.is_integer(value)


def _accepts_text(value: Any) -> bool:
    return value is None or type(value) is str


# (field, the values the contract accepts, Arrow type): a timestamp's None is accepted here and
# flagged by _not_plain_timestamps in convert, so the rule gives the reason
_SCALARS = (
    ("id", _accepts_int, pa.int64()),
    ("title", _accepts_text, pa.string()),
    ("project", _accepts_int, pa.int64()),
    ("status", _accepts_text, pa.string()),
    ("created_at", _accepts_text, pa.string()),
    ("updated_at", _accepts_text, pa.string()),
)
_PLAIN_TYPES = {pa.int64(): {int, _NONE}, pa.string(): {str, _NONE}}


def _column(values: list[Any], accepts: Any, type_: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """One field's column and the mask of values the contract does not accept (left NULL).
    Checked per value only when the column's types are not all plain: bool is an int in
    Python and 1.0 converts silently to int64, so Arrow alone cannot be the judge."""
    if set(map(type, values)) <= _PLAIN_TYPES[type_]:
        try:
            return pa.array(values, type_), np.zeros(len(values), dtype=bool)
        except (OverflowError, pa.ArrowInvalid):  # an integer beyond BIGINT
            pass
    bad = np.fromiter((not accepts(v) for v in values), dtype=bool, count=len(values))
    return pa.array([None if b else v for v, b in zip(values, bad)], type_), bad


def _message_counts(values: list[Any]) -> tuple[pa.Array, np.ndarray]:
    """Text as the spec says; an integer (what the API sends in practice) is the same fact,
    kept in the same text column, so numbers and strings mixed in one listing load alike."""
    bad = np.fromiter((not (v is None or type(v) is str or contract.is_integer(v)) for v in values),
                      dtype=bool, count=len(values))
    text = [v if type(v) is str else None if v is None or b else str(v) for v, b in zip(values, bad)]
    return pa.array(text, pa.string()), bad


def _not_plain_timestamps(column: pa.Array) -> np.ndarray:
    """Rows whose timestamp is missing, not of TIMESTAMP_PATTERN's forms, or on a day that no
    year has (30 February): the rule decides those (contract.is_timestamp). 29 February is
    left to the rule too, which knows leap years; Arrow's strptime and casts let 30 February
    through or fail the whole column, so the month and day are looked up in a set."""
    plain = pc.fill_null(pc.match_substring_regex(column, contract.TIMESTAMP_PATTERN), False)
    real_day = pc.fill_null(pc.is_in(pc.utf8_slice_codeunits(column, 5, 10), value_set=_month_days()), False)
    return ~pc.and_(plain, real_day).to_numpy(zero_copy_only=False)


@cache
def _month_days() -> pa.Array:
    """"MM-DD" of every day of a common year (29 February: see _not_plain_timestamps); built on
    first use: pa.array imports pandas, 0.13 s a night where nothing changed need not pay."""
    return pa.array([f"{date:%m-%d}" for date in (datetime(2001, 1, 1) + timedelta(days=n) for n in range(365))])


def _scenario_id_lists(values: list[Any]) -> tuple[pa.Array, np.ndarray]:
    """`scenario_ids` as list<int64>; a value that is not a list of BIGINT integers is flagged."""
    if set(map(type, values)) <= {list, _NONE} and set(map(type, chain.from_iterable(filter(None, values)))) <= {int}:
        try:
            return pa.array(values, _INT_LIST), np.zeros(len(values), dtype=bool)
        except (OverflowError, pa.ArrowInvalid):
            pass
    bad = np.fromiter((not (v is None or contract.is_integer_list(v)) for v in values), dtype=bool, count=len(values))
    return pa.array([None if b else v for v, b in zip(values, bad)], _INT_LIST), bad


def _scenario_ids(sessions: pa.Table, lists: pa.Array) -> tuple[pa.Table, np.ndarray]:
    values = lists.flatten()
    parents = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    # position within its list: index in the flattened values minus where that list starts
    positions = np.arange(len(values), dtype=np.int64) - (offsets[parents] - offsets[0])
    table = pa.table(
        {
            "session_id": sessions["id"].take(pa.array(parents)),
            "project_id": sessions["project_id"].take(pa.array(parents)),
            "position": pa.array(positions),
            "value": values,
            contract.TOMBSTONE_COLUMN: pa.nulls(len(values), pa.bool_()),
        },
        schema=SCENARIO_IDS_SCHEMA,
    )
    return table, parents


def _extra_fields(objects: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A field the spec does not list becomes a text column (strings as delivered, anything
    else as JSON), NULL on the rows without it: its type may change from one night to the
    next without breaking the load."""
    known = contract.DELIVERED_FIELD_SET
    extra: dict[str, list[Any]] = {}
    for index, row in enumerate(objects):
        if row.keys() <= known:
            continue
        for name, value in row.items():
            if name not in known:
                extra.setdefault(name, [None] * len(objects))[index] = value
    return extra


def _as_text(values: list[Any]) -> pa.Array:
    return pa.array([v if isinstance(v, str) or v is None else _json_text(v) for v in values], pa.string())


def _json_text(value: Any) -> str:
    # a bare NaN or Infinity (api/pages.py reads them as floats) is kept as
    # written; orjson would write null, as if nothing had been sent
    if type(value) is float and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return orjson.dumps(value, default=str).decode()


def extra_column_name(field_name: str, taken: list[str]) -> str:
    """The column for a field the spec does not know; one whose name would land on a column
    already there once dlt normalizes it (`project_id`, `createdAt`) gets an `_extra` suffix."""
    # dlt's own naming, so the prediction is exact; imported here, where an unknown field
    # appears, so the conversion (and its fast tests) need no dlt otherwise
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    naming = NamingConvention()
    normalized = naming.normalize_identifier(field_name)
    taken_normalized = {naming.normalize_identifier(name) for name in taken}
    if normalized not in taken_normalized:
        return field_name
    suffix = 1
    candidate = f"{normalized}_extra"
    while candidate in taken_normalized:
        suffix += 1
        candidate = f"{normalized}_extra{suffix}"
    return candidate


def tombstones(project_ids: list[int]) -> tuple[pa.Table, pa.Table]:
    """Marker rows that make the merge clear projects whose listing is now empty; dlt deletes
    by them and never inserts them (hard_delete). Ids are -project_id: never a real session."""
    count = len(project_ids)
    sessions = {name: pa.nulls(count, field.type) for name, field in zip(SESSIONS_SCHEMA.names, SESSIONS_SCHEMA)}
    sessions.update(id=pa.array([-p for p in project_ids], pa.int64()), project_id=pa.array(project_ids, pa.int64()),
                    **{contract.TOMBSTONE_COLUMN: pa.array([True] * count)})
    scenario_ids = {
        "session_id": sessions["id"], "project_id": sessions["project_id"], "position": pa.array([0] * count, pa.int64()),
        "value": pa.nulls(count, pa.int64()), contract.TOMBSTONE_COLUMN: pa.array([True] * count),
    }
    return pa.table(sessions, schema=SESSIONS_SCHEMA), pa.table(scenario_ids, schema=SCENARIO_IDS_SCHEMA)
