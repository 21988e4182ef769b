"""The shapes a listing answer may take: a JSON array (the spec), or a DRF page
`{"count", "next", "previous", "results"}` (Cekura's other list endpoints). A body of the
wrong shape is a MalformedBody, which the client retries."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from cekura_sessions.api.errors import MalformedBody


class Page(NamedTuple):
    rows: list[Any]  # the sessions as delivered (parsed JSON, unchecked)
    next_url: str | None  # DRF's `next` link, absolute or relative
    count: Any  # DRF's `count` as delivered (None for an array)


def parse(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        raise MalformedBody(f"answer is not valid JSON ({error})") from None


def read_array(content: bytes) -> list[Any]:
    """An answer that must be a JSON array (the projects list)."""
    body = parse(content)
    if not isinstance(body, list):
        raise MalformedBody("answer is not a JSON array")
    return body


def read_first_page(content: bytes) -> Page:
    """A listing's answer: a JSON array, or the first page of `results`."""
    body = parse(content)
    if isinstance(body, list):
        return Page(body, None, None)
    return _page(body, "neither a JSON array nor a page")


def read_later_page(content: bytes) -> Page:
    """A `next` link's answer: a page of `results` (an array here is malformed)."""
    return _page(parse(content), "not a page")


def _page(body: Any, shape: str) -> Page:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise MalformedBody(f"answer is {shape} with `results`")
    return Page(body["results"], body.get("next"), body.get("count"))
