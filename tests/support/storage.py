"""Which DuckDB releases can open a database file, read from the file's header."""

from __future__ import annotations

import struct
from pathlib import Path

# what the `duckdb-cli` 1.5.x shell reads, in its own words: "we can only read versions between
# 64 and 68"; DuckDB 2.0 writes 69 unless storage_compatibility_version is set
SHELL_1_5_READS = range(64, 69)


def storage_version(db_path: Path) -> int:
    """The storage version number in DuckDB's main header: after an 8-byte checksum, the magic
    bytes `DUCK`, then the version as a little-endian 64-bit integer."""
    header = db_path.read_bytes()[:20]
    assert header[8:12] == b"DUCK", f"{db_path} is not a DuckDB file: {header!r}"
    return struct.unpack("<Q", header[12:20])[0]
