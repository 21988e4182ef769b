"""Arrow's reading of an answer equals orjson's, and anything not plain goes back to orjson."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from cekura_sessions.api.errors import MalformedBody
from cekura_sessions.api.pages import Listing
from cekura_sessions.extract import json_arrow
from cekura_sessions.fake.data import DataSpec, generate

GOOD = {"id": 1, "title": "t", "project": 7, "scenario_ids": [3, 4], "status": "completed",
        "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00+05:30", "message_count": 2}


@pytest.mark.parametrize("oddities", [False, True], ids=["clean", "with-oddities"])
def test_every_plain_answer_reads_as_orjson_reads_it(oddities):
    dataset = generate(DataSpec(projects=10, sessions_per_project=40, seed=11, oddities=oddities))
    read = 0
    for rows in dataset.sessions.values():
        page = json_arrow.read_page(orjson.dumps(rows))
        if page is None:
            continue
        read += 1
        assert page.next_url is None and page.count is None
        # Arrow has every field in every row: a key a row lacks reads as None
        want = [{**{name: None for name in page.rows.type.names}, **row} for row in rows]
        assert page.rows.to_pylist() == want
    if not oddities:
        assert read == len(dataset.sessions), "a clean listing was not read by Arrow"


def test_a_page_gives_its_rows_next_link_and_count():
    body = {"count": 3, "next": "https://api.example/x/?page=2", "previous": None, "results": [GOOD, {**GOOD, "id": 2}]}

    page = json_arrow.read_page(orjson.dumps(body, option=orjson.OPT_INDENT_2))  # pretty-printed too

    assert (page.next_url, page.count) == ("https://api.example/x/?page=2", 3)
    assert [row["id"] for row in page.rows.to_pylist()] == [1, 2]


@pytest.mark.parametrize("body", [
    pytest.param(b"[" + orjson.dumps({**GOOD, "extra": 1}) + b"]", id="field-the-spec-does-not-list"),
    pytest.param(orjson.dumps([GOOD, {**GOOD, "id": 2, "message_count": "3"}]), id="message-count-int-and-text"),
    pytest.param(orjson.dumps([GOOD, {**GOOD, "id": 1.5}]), id="float-id"),
    pytest.param(orjson.dumps([GOOD, {**GOOD, "id": True}]), id="boolean-id"),
    pytest.param(orjson.dumps([GOOD, {**GOOD, "scenario_ids": "1,2"}]), id="text-list"),
    pytest.param(orjson.dumps([GOOD, {**GOOD, "title": 5}]), id="number-title"),
    pytest.param(orjson.dumps([GOOD, None]), id="null-row"),
    pytest.param(orjson.dumps([GOOD, [1, 2]]), id="array-row"),
    pytest.param(b'[{"id": 1, "message_count": NaN}]', id="nan"),
    pytest.param(b'[{"id": 9223372036854775808}]', id="id-beyond-bigint"),
    pytest.param(orjson.dumps([GOOD]) + b" trailing", id="trailing-garbage"),
    pytest.param(orjson.dumps([GOOD])[:-5], id="truncated"),
    pytest.param(orjson.dumps({"count": 1, "next": None}), id="page-without-results"),
    pytest.param(orjson.dumps({"results": [GOOD], "next": 7}), id="next-not-text"),
    pytest.param(b"<html>busy</html>", id="html"),
    pytest.param(b'"text"', id="json-string"),
])
def test_anything_not_plain_is_left_to_orjson(body):
    assert json_arrow.read_page(body) is None


def test_python_rows_are_the_rows_as_delivered_with_missing_keys_missing():
    delivered = [{"id": 1, "created_at": "2026-09-01T10:00:00Z"}, {**GOOD, "id": 2}]
    content = orjson.dumps(delivered)
    page = json_arrow.read_page(content)
    assert page is not None

    listing = Listing(page.rows, "digest", (content,))

    assert listing.python_rows() == delivered


def test_python_rows_of_bytes_orjson_refuses_is_a_malformed_body():
    listing = Listing(pa.array([{"id": 1}]), "digest", (b"[{'id': 1}]",))
    with pytest.raises(MalformedBody):
        listing.python_rows()


def test_arrow_reads_each_field_as_a_type_the_fast_path_accepts():
    """json_arrow types the spec's fields; arrow_listing accepts a set of types per field: the
    two lists must agree, or plain listings would silently take the slow path."""
    from cekura_sessions.extract import arrow_listing

    typed = {field.name: field.type for field in json_arrow._ROW}
    typed_message_counts = json_arrow._MESSAGE_COUNT_TYPES
    assert set(typed) | {"message_count"} == set(arrow_listing._ACCEPTED)
    assert all(typed[name] in arrow_listing._ACCEPTED[name] for name in typed)
    assert set(typed_message_counts) <= set(arrow_listing._ACCEPTED["message_count"])
