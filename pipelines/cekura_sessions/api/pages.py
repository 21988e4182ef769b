"""The shapes a listing answer may take: a JSON array (the spec), or a DRF page
`{"count", "next", "previous", "results"}` (Cekura's other list endpoints). A body of the
wrong shape, or not JSON at all, is a MalformedBody, which the client retries.

Answers are checked with simdjson, which validates the whole document (structure, strings,
UTF-8, numbers) at about 2.5 GB/s without building Python objects (what it refuses, orjson
decides): at 200,000 sessions the check
costs 0.02 s where a parse into Python objects cost 0.45 s of a night's extract, most of it on a
night where nothing changed and the rows are never needed. The rows are read by the caller.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, NamedTuple

import orjson
import simdjson

from cekura_sessions.api.errors import MalformedBody

# a simdjson Parser is reused (its buffers are the speed) but serves one thread at a time
_PARSERS = threading.local()
log = logging.getLogger(__name__)


class Page(NamedTuple):
    content: bytes  # the answer as delivered; its rows are the caller's to read (page_rows)
    size: int  # rows in this answer
    next_url: str | None  # DRF's `next` link, absolute or relative
    count: Any  # DRF's `count` as delivered (None for an array)


def parse(content: bytes) -> Any:
    """The answer as Python objects (orjson); MalformedBody when it is not JSON. What orjson
    refuses but a drifting producer sends is read so that one value is lost, not the listing:
    a byte that is not UTF-8 becomes U+FFFD in its string (`repaired`); a lone surrogate escape
    (`"\\ud83d"`, a JavaScript producer cutting a string mid-emoji) becomes U+FFFD; a bare
    `NaN` or `Infinity` (Python's `json` writes them by default) is read as a float, which the
    contract refuses in a known field and keeps as text in an unknown one."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        first = error
    try:  # Python's reader takes NaN and a lone half, which orjson refuses
        body = json.loads(repaired(content))
    except ValueError:
        raise MalformedBody(f"answer is not valid JSON ({first})") from None
    return _without_lone_surrogates(body)


def repaired(content: bytes) -> bytes:
    """`content` with each byte that is not UTF-8 replaced by U+FFFD: such a byte can only stand
    inside a string of a JSON document, so only that string changes."""
    try:
        content.decode()
        return content
    except UnicodeDecodeError as error:
        log.warning("an answer holds bytes that are not UTF-8 (first at byte %d); each became U+FFFD",
                    error.start)
        return content.decode("utf-8", "replace").encode()


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(key): _without_lone_surrogates(item) for key, item in value.items()}
    return value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a pair is one character once read


def read_array(content: bytes) -> list[Any]:
    """An answer that must be a JSON array (the projects list), as Python objects."""
    body = parse(content)
    if not isinstance(body, list):
        raise MalformedBody("answer is not a JSON array")
    return body


def read_first_page(content: bytes) -> Page:
    """A listing's answer: a JSON array, or the first page of `results`."""
    return _checked(content, "neither a JSON array nor a page", array_allowed=True)


def read_later_page(content: bytes) -> Page:
    """A `next` link's answer: a page of `results` (an array here is malformed)."""
    return _checked(content, "not a page", array_allowed=False)


def page_rows(content: bytes) -> list[Any]:
    """The rows of an answer that read_first_page or read_later_page accepted."""
    body = parse(content)
    return body if isinstance(body, list) else body["results"]


def _checked(content: bytes, shape: str, array_allowed: bool) -> Page:
    parser = getattr(_PARSERS, "parser", None) or _new_parser()
    try:
        document = parser.parse(content)
    except (ValueError, RuntimeError):
        # simdjson also refuses what orjson reads (an integer beyond 64 bits) and gives no
        # position: orjson decides, and its message is the one people read
        return _checked_by_orjson(content, shape, array_allowed)
    try:
        if content[:3] == _BOM:  # simdjson skips it; the rows' readers would not
            raise MalformedBody("answer is not valid JSON (it starts with a byte order mark)")
        if isinstance(document, simdjson.Array) and array_allowed:
            return Page(content, len(document), None, None)
        results = document.get("results") if isinstance(document, simdjson.Object) else None
        if not isinstance(results, simdjson.Array):
            raise MalformedBody(f"answer is {shape} with `results`")
        return _page(content, len(results), document.get("next"), document.get("count"))
    finally:
        # the parser can be reused only once no proxy of its document is alive; one that held a
        # large answer keeps buffers of its size, so it is let go
        results = document = None
        if len(content) > _KEEP_PARSER_UP_TO:
            _PARSERS.parser = None


def _checked_by_orjson(content: bytes, shape: str, array_allowed: bool) -> Page:
    content = repaired(content)  # the rows' readers then read what the check read
    body = parse(content)
    if isinstance(body, list) and array_allowed:
        return Page(content, len(body), None, None)
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise MalformedBody(f"answer is {shape} with `results`")
    return _page(content, len(body["results"]), body.get("next"), body.get("count"))


def _page(content: bytes, size: int, next_url: Any, count: Any) -> Page:
    """A page's `next` must be a link (or null); a `count` that is not a whole number is
    ignored, as if absent. Only plain values leave here, never a simdjson proxy."""
    if next_url is not None and not isinstance(next_url, str):
        raise MalformedBody("answer's `next` is not a link")
    return Page(content, size, next_url, count if type(count) is int else None)


_BOM = b"\xef\xbb\xbf"
_KEEP_PARSER_UP_TO = 8 << 20  # bytes


def _new_parser() -> simdjson.Parser:
    _PARSERS.parser = simdjson.Parser()
    return _PARSERS.parser
