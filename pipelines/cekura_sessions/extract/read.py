"""A changed listing's answers read into columns, in the fetch thread that fetched them.

Arrow's JSON reader reads an answer in C++ without holding the GIL, so the fetch threads read
while the main thread converts and hands batches to dlt (a full night's extract at M: 1.76 s
with every answer parsed into Python objects, against the figures in docs/architecture.md).
It types the contract's fields strictly: a value of another JSON type (a float or `true` for an
id, a number for a title), a field the spec does not list, or `message_count` typed apart, and
it gives up on the whole answer, which is then parsed into Python objects. Either way the rows
go through the same conversion (extract/convert.py): reading only decides how the columns are
built, never which rows are valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from cekura_sessions.api import pages
from cekura_sessions.extract import contract, drift

# the contract's fields as a plain answer has them; message_count (a string in the spec, an
# integer in practice) is inferred, and so is any field the spec does not list
_ROW = pa.struct([field for field in contract.DELIVERED_SCHEMA if field.name != "message_count"])
_MESSAGE_COUNT_TYPES = (pa.int64(), pa.string(), pa.null())
_ARRAY = pa.schema([("rows", pa.list_(_ROW))])  # an array, wrapped: {"rows": [...]}
_PAGE = pa.schema([("results", pa.list_(_ROW))])
_OPTIONS = pa_json.ReadOptions(use_threads=False, block_size=1 << 30)  # one block: the whole answer


def read_rows(contents: tuple[bytes, ...]) -> pa.Table | list[Any]:
    """The rows of a listing's answers: a table of the contract's fields when Arrow's reader
    typed every answer strictly, else the rows as parsed JSON (Python objects)."""
    arrays = [_arrow_rows(content) for content in contents]
    if all(array is not None for array in arrays):
        try:  # pages typed apart (message_count) cannot be one column
            rows = pa.Table.from_struct_array(pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return python_rows(contents)
        if "message_count" in rows.column_names:
            # as text, the column the contract stores it in, so listings read apart concatenate
            index = rows.schema.get_field_index("message_count")
            rows = rows.set_column(index, "message_count", rows["message_count"].cast(pa.string()))
        return rows
    return python_rows(contents)


def row_ids(rows: pa.Table | list[Any]) -> np.ndarray:
    """The integer ids of `rows` as read_rows returned them (int64, in listing order); a row
    without one (set aside later) has none here."""
    if isinstance(rows, pa.Table):
        return pc.drop_null(rows["id"]).to_numpy()
    ids = [row["id"] for row in rows if isinstance(row, dict) and contract.is_integer(row.get("id"))]
    return np.array([i for i in ids if -(2**63) <= i < 2**63], dtype=np.int64)


class Rows(list):  # type: ignore[type-arg]
    """Parsed rows; `coerced`: how many values came as strings holding integers (or a list as
    a JSON string) and were put back (extract/drift.py), for the night's one warning."""

    coerced: int = 0


def python_rows(contents: tuple[bytes, ...]) -> Rows:
    """The rows as delivered, as Python objects (missing keys stay missing), with drifted types
    put back (extract/drift.py) so the contract judges what the values mean."""
    rows = Rows(row for content in contents for row in pages.page_rows(content))
    rows.coerced = sum(drift.coerce_session(row) for row in rows)
    return rows


def _arrow_rows(content: bytes) -> pa.StructArray | None:
    array = content.lstrip()[:1] == b"["
    table = _read(b'{"rows":' + content + b"}" if array else content, _ARRAY if array else _PAGE)
    if table is None or table.num_rows != 1:
        return None
    lists = table["rows" if array else "results"].combine_chunks()
    if lists.null_count:
        return None
    rows = lists.flatten()
    if rows.null_count or not _plain(rows.type):  # a null row, an unknown field, an odd message_count
        return None
    return rows


def _read(content: bytes, schema: pa.Schema) -> pa.Table | None:
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer", newlines_in_values=True)
    try:
        return pa_json.read_json(pa.BufferReader(content), read_options=_OPTIONS, parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _plain(row: pa.StructType) -> bool:
    for i in range(row.num_fields):
        field = row.field(i)
        if field.name not in contract.DELIVERED_FIELD_SET:
            return False
        if field.name == "message_count" and field.type not in _MESSAGE_COUNT_TYPES:
            return False
    return True
