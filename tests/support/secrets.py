"""Where a secret could hide in files: raw bytes, gzip, parquet values and dlt's compressed
pipeline state, so a test can tell that a key or a password never reached any of them."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from dlt.common.versioned_state import decompress_state


def decoded_views(path: Path) -> Iterator[tuple[str, bytes]]:
    """The file's raw bytes, plus every decoded form a compressed store would hide text in."""
    data = path.read_bytes()
    yield "raw", data
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
        yield "gunzipped", data
    if path.suffix == ".parquet":
        yield "parquet values", repr(pq.read_table(path).to_pylist()).encode()
    for blob in re.findall(rb"eN[A-Za-z0-9+/=]{16,}", data):  # dlt's zlib+base64 pipeline state
        try:
            yield "dlt state", repr(decompress_state(blob.decode())).encode()
        except Exception:  # noqa: BLE001 - not every match is a state blob
            continue


def files_holding(root: Path, *needles: bytes) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for view, data in decoded_views(path):
            found += [f"{path.relative_to(root)} ({view}): {needle!r}" for needle in needles if needle in data]
    return found
