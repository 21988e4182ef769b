"""Run the data checks and keep their answers.

The checks are the ones generated from `sql/models.toml` and the business-rule files in
`sql/checks/` (check_sql.py); each counts its offending rows, zero is a pass. The results are
recorded with the inputs fingerprint of the models they ran on, so a night whose inputs did not
change reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from cekura_sessions.models.check_sql import Check, CheckError, all_checks
from cekura_sessions.settings import META_SCHEMA, SQL_DIR

__all__ = ["CheckError", "CheckResult", "record_checks", "recorded_checks", "run_checks"]

CHECKS_TABLE = f"{META_SCHEMA}._checks"  # the last check results, with the inputs they ran on


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
    """Run every check, by name; each result says how many rows broke the rule. Raises
    CheckError naming the check's origin when one is malformed or its SQL fails."""
    return [_run_check(con, check) for check in all_checks(sql_dir)]


def record_checks(con: duckdb.DuckDBPyConnection, fingerprint: str, results: list[CheckResult]) -> None:
    """Keep these results as the checks' answer on the models built from `fingerprint`'s inputs
    (which cover models.toml and sql/checks too): the same inputs give the same answer."""
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


def _run_check(con: duckdb.DuckDBPyConnection, check: Check) -> CheckResult:
    try:
        # the newline keeps a trailing line comment from swallowing the closing parenthesis
        row = con.execute(f"select count(*) from (\n{check.query}\n)").fetchone()
    except duckdb.Error as exc:
        raise CheckError(f"{check.origin}: {' '.join(str(exc).split())}") from exc
    return CheckResult(check.name, check.severity, check.description, int(row[0]))
