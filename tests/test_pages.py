"""The shapes a listing answer may take, and the bodies that are retried as malformed."""

from __future__ import annotations

import math

import orjson
import pytest
from cekura_sessions.api import pages
from cekura_sessions.api.errors import MalformedBody

GOOD = {"id": 1, "title": "t", "project": 7, "scenario_ids": [3, 4], "status": "completed",
        "created_at": "2026-09-01T10:00:00Z", "updated_at": "2026-09-01T11:00:00+05:30", "message_count": 2}


def test_an_array_is_the_whole_listing():
    rows = [GOOD, {**GOOD, "id": 2, "message_count": "3", "extra": {"x": 1}}, None]
    content = orjson.dumps(rows)

    assert pages.read_first_page(content) == pages.Page(content, 3, None, None)
    assert pages.page_rows(content) == rows


def test_a_page_gives_its_rows_next_link_and_count():
    body = {"count": 3, "next": "https://api.example/x/?page=2", "previous": None, "results": [GOOD, {**GOOD, "id": 2}]}

    content = orjson.dumps(body, option=orjson.OPT_INDENT_2)  # pretty-printed too

    page = pages.read_first_page(content)

    assert page == pages.Page(content, 2, "https://api.example/x/?page=2", 3)
    assert pages.read_later_page(content) == page
    assert pages.page_rows(content) == [GOOD, {**GOOD, "id": 2}]


@pytest.mark.parametrize("body, message", [
    pytest.param(orjson.dumps([GOOD]) + b" trailing", "answer is not valid JSON", id="trailing-garbage"),
    pytest.param(orjson.dumps([GOOD])[:-5], "answer is not valid JSON", id="truncated"),
    pytest.param(b"<html>busy</html>", "answer is not valid JSON", id="html"),
    pytest.param(orjson.dumps({"count": 1, "next": None}), "answer is neither a JSON array nor a page with `results`",
                 id="page-without-results"),
    pytest.param(b'"text"', "answer is neither a JSON array nor a page with `results`", id="json-string"),
    pytest.param(b'[{"id": 1}, ]', "answer is not valid JSON", id="trailing-comma"),
    pytest.param(b'[{"id": 1}] [{"id": 2}]', "answer is not valid JSON", id="two-documents"),
    pytest.param(orjson.dumps({"results": "none"}), "answer is neither a JSON array nor a page with `results`",
                 id="results-not-a-list"),
])
def test_a_body_of_no_listing_shape_is_malformed(body, message):
    with pytest.raises(MalformedBody) as raised:
        pages.read_first_page(body)
    assert str(raised.value).startswith(message), raised.value


def test_a_later_page_must_be_a_page():
    with pytest.raises(MalformedBody, match="answer is not a page with `results`"):
        pages.read_later_page(orjson.dumps([GOOD]))


def test_the_projects_list_must_be_an_array():
    assert pages.read_array(b"[]") == []
    with pytest.raises(MalformedBody, match="answer is not a JSON array"):
        pages.read_array(orjson.dumps({"results": []}))


def test_an_integer_beyond_64_bits_is_json_all_the_same():
    # simdjson refuses it; orjson reads it (as a float), so the row's own checks decide
    content = b'[{"id": 1, "tracking": 123456789012345678901}]'
    assert pages.read_first_page(content) == pages.Page(content, 1, None, None)


@pytest.mark.parametrize("envelope, want", [
    pytest.param({"next": None, "count": {"total": 1}}, (None, None), id="count-not-a-number"),
    pytest.param({"next": None, "count": "1"}, (None, None), id="count-as-text"),
    pytest.param({"next": "?page=2", "count": 1}, ("?page=2", 1), id="relative-next"),
])
def test_a_page_keeps_only_plain_next_and_count(envelope, want):
    page = pages.read_first_page(orjson.dumps({**envelope, "results": [GOOD]}))
    assert (page.next_url, page.count) == want


def test_a_next_that_is_not_a_link_is_malformed_and_the_thread_reads_on():
    with pytest.raises(MalformedBody, match="`next` is not a link"):
        pages.read_first_page(orjson.dumps({"count": 1, "next": {"href": "x"}, "results": [GOOD]}))
    # the check's parser is reused by this thread: nothing of the refused answer holds it
    content = orjson.dumps([GOOD])
    assert pages.read_first_page(content) == pages.Page(content, 1, None, None)


def test_a_byte_order_mark_is_malformed():
    with pytest.raises(MalformedBody, match="byte order mark"):
        pages.read_first_page(b"\xef\xbb\xbf" + orjson.dumps([GOOD]))


def test_a_lone_surrogate_escape_becomes_the_replacement_character():
    content = b'[{"id": 1, "title": "cut \\ud83d", "note": "whole \\ud83d\\ude00"}]'

    assert pages.read_first_page(content) == pages.Page(content, 1, None, None)
    assert pages.page_rows(content) == [{"id": 1, "title": "cut \ufffd", "note": "whole \U0001f600"}]


def test_a_lone_surrogate_does_not_let_other_non_json_through():
    with pytest.raises(MalformedBody):
        pages.page_rows(b'[{"title": "cut \\ud83d", "n": 1}] trailing')


def test_a_bare_nan_or_infinity_is_read_as_a_float():
    # Python's json writes them bare (issue 19): the contract refuses them in a known field and
    # keeps them as text in an unknown one; the answer itself is not malformed
    content = b'[{"id": 1, "score": NaN, "peak": Infinity, "low": -Infinity}]'

    assert pages.read_first_page(content) == pages.Page(content, 1, None, None)
    row = pages.page_rows(content)[0]
    assert (row["id"], math.isnan(row["score"]), row["peak"], row["low"]) == (1, True, math.inf, -math.inf)


def test_a_byte_that_is_not_utf8_becomes_the_replacement_character_in_its_string_only():
    content = b'[{"id": 1, "title": "Caf\xe9 au lait"}, {"id": 2, "title": "na\xc3\xafve"}]'

    page = pages.read_first_page(content)

    assert page.content == content.replace(b"\xe9", "\ufffd".encode()), "the rows' readers read the repaired bytes"
    assert pages.page_rows(page.content) == [{"id": 1, "title": "Caf\ufffd au lait"}, {"id": 2, "title": "na\u00efve"}]
    assert pages.read_array(content)[0]["title"] == "Caf\ufffd au lait"  # the projects list alike
