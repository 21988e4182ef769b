"""Run the data checks in `sql/checks/` and keep their answers.

Each check file: line 1 `-- severity: error|warning`, line 2 `-- <description>`, then a SELECT
returning the offending rows; zero rows is a pass. The results are recorded with the inputs
fingerprint of the models they ran on, so a night whose inputs did not change reuses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cekura_sessions.settings import META_SCHEMA, SQL_DIR

CHECKS_TABLE = f"{META_SCHEMA}._checks"  # the last check results, with the inputs they ran on
SEVERITIES = ("error", "warning")

_SEVERITY_LINE = re.compile(r"--\s*severity:\s*(\w+)\s*$", re.IGNORECASE)


class CheckError(duckdb.Error):
    """A check file is malformed or its SQL does not run (a duckdb.Error, named by its file)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    severity: str
    description: str
    offending_rows: int

    @property
    def passed(self) -> bool:
        """True when the check found no offending rows, whatever its severity."""
        return self.offending_rows == 0


def run_checks(con: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> list[CheckResult]:
    """Run every check file, alphabetically; each result says how many rows broke the rule."""
    return [_run_check(con, path) for path in sorted((sql_dir / "checks").glob("*.sql"))]


def record_checks(con: duckdb.DuckDBPyConnection, fingerprint: str, results: list[CheckResult]) -> None:
    """Keep these results as the checks' answer on the models built from `fingerprint`'s inputs
    (which cover sql/checks too): the same inputs give the same answer."""
    con.execute(f"create schema if not exists {META_SCHEMA}")
    con.execute(f"create or replace table {CHECKS_TABLE} (inputs_fingerprint text, name text, severity text, "
                "description text, offending_rows bigint)")
    con.executemany(f"insert into {CHECKS_TABLE} values (?, ?, ?, ?, ?)",
                    [(fingerprint, r.name, r.severity, r.description, r.offending_rows) for r in results])


def recorded_checks(con: duckdb.DuckDBPyConnection, fingerprint: str) -> list[CheckResult] | None:
    """The results record_checks kept for this fingerprint, or None."""
    try:
        rows = con.execute(f"select name, severity, description, offending_rows from {CHECKS_TABLE} "
                           "where inputs_fingerprint = ? order by name", [fingerprint]).fetchall()
    except duckdb.CatalogException:
        return None
    return [CheckResult(*row) for row in rows] or None


def _run_check(con: duckdb.DuckDBPyConnection, path: Path) -> CheckResult:
    severity, description, query = _parse_check(path)
    try:
        # the newline keeps a trailing line comment from swallowing the closing parenthesis
        row = con.execute(f"select count(*) from (\n{query}\n)").fetchone()
    except duckdb.Error as exc:
        raise CheckError(f"checks/{path.name}: {' '.join(str(exc).split())}") from exc
    return CheckResult(path.stem, severity, description, int(row[0]))


def _parse_check(path: Path) -> tuple[str, str, str]:
    lines = path.read_text().splitlines()
    match = _SEVERITY_LINE.fullmatch(lines[0].strip()) if lines else None
    if match is None or match.group(1).lower() not in SEVERITIES:
        raise CheckError(f"checks/{path.name}: line 1 must be '-- severity: error|warning'")
    if len(lines) < 2 or not lines[1].startswith("--") or not lines[1].strip("- \t"):
        raise CheckError(f"checks/{path.name}: line 2 must be '-- <one-sentence description>'")
    query = "\n".join(lines[2:]).strip().rstrip(";")
    return match.group(1).lower(), lines[1].lstrip("-").strip(), query
