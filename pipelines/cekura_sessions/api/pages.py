"""One project's listing as the API answered it: each page read by Arrow when plain
(json_arrow.py), else by orjson, with its shape checked; a wrong shape is a MalformedBody,
which the client retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from cekura_sessions.api.errors import MalformedBody
from cekura_sessions.extract import json_arrow

# (fingerprint of the pages so far, that page's `next` link) for each page but the last
PageChain = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Listing:
    """One project's sessions, and a fingerprint of the answers' bytes: an identical answer
    means an unchanged listing, which the load can skip. `rows` is None when the answer was
    byte for byte the one already loaded (it is then not even parsed); an Arrow StructArray
    when Arrow's JSON reader read every page (json_arrow.py), with the answers' bytes kept in
    `contents` for python_rows(); else the parsed rows."""

    rows: list[Any] | pa.StructArray | None
    fingerprint: str
    contents: tuple[bytes, ...] = field(default=(), repr=False)
    chain: PageChain = ()

    def python_rows(self) -> list[Any]:
        """The rows as Python objects, exactly as delivered (missing keys stay missing)."""
        if not isinstance(self.rows, pa.StructArray):
            return self.rows or []
        return [row for content in self.contents for row in _page_rows(_parse(content))]


class Page(NamedTuple):
    rows: list[Any] | pa.StructArray | None  # None: the same bytes as last time, not parsed
    next_url: str | None
    count: Any
    content: bytes


def _parse(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        raise MalformedBody(f"answer is not valid JSON ({error})") from None


def read_array(content: bytes) -> list[Any]:
    body = _parse(content)
    if not isinstance(body, list):
        raise MalformedBody("answer is not a JSON array")
    return body


def read_first_page(content: bytes) -> Page:
    """A listing's answer: a JSON array, or the first page of `results`."""
    return _read_page(content, array_allowed=True)


def read_later_page(content: bytes) -> Page:
    """A `next` link's answer: a page of `results` (an array here is malformed)."""
    return _read_page(content, array_allowed=False)


def _read_page(content: bytes, array_allowed: bool) -> Page:
    fast = json_arrow.read_page(content) if array_allowed or content.lstrip()[:1] == b"{" else None
    if fast is not None:
        return Page(*fast, content)
    body = _parse(content)
    if array_allowed and isinstance(body, list):
        return Page(body, None, None, content)
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        shape = "neither a JSON array nor a page" if array_allowed else "not a page"
        raise MalformedBody(f"answer is {shape} with `results`")
    return Page(body["results"], body.get("next"), body.get("count"), content)


def _page_rows(body: Any) -> list[Any]:
    return body if isinstance(body, list) else body["results"]


def listing_from_pages(pages: list[Page], fingerprint: str, chain: PageChain = ()) -> Listing:
    """One Listing from its pages: Arrow rows when Arrow read every page, else Python rows."""
    if all(isinstance(page.rows, pa.StructArray) for page in pages):
        try:
            rows = pa.concat_arrays([page.rows for page in pages])
            return Listing(rows, fingerprint, tuple(page.content for page in pages), chain)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # pages typed apart (message_count)
            pass
    rows = [row for page in pages for row in (
        _page_rows(_parse(page.content)) if isinstance(page.rows, pa.StructArray) else page.rows
    )]
    return Listing(rows, fingerprint, chain=chain)
