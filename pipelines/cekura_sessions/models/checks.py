"""Run the data checks and keep their answers.

The checks are the ones generated from `sql/models.toml` and the business-rule files in
`sql/checks/` (check_sql.py); each counts its offending rows, zero is a pass. The results are
recorded with the inputs fingerprint of the models they ran on, so a night whose inputs did not
change reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cekura_sessions.destination.warehouse import Warehouse, WarehouseError, as_warehouse
from cekura_sessions.logs import one_line
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


def run_checks(con: Any, sql_dir: Path = SQL_DIR) -> list[CheckResult]:
    """Run every check, by name; each result says how many rows broke the rule. Raises
    CheckError naming the check's origin when one is malformed or its SQL fails. `con`: a
    DuckDB or psycopg2 connection, or a Warehouse."""
    warehouse = as_warehouse(con)
    return [_run_check(warehouse, check) for check in all_checks(sql_dir)]


def record_checks(con: Any, fingerprint: str, results: list[CheckResult]) -> None:
    """Keep these results as the checks' answer on the models built from `fingerprint`'s inputs
    (which cover models.toml and sql/checks too): the same inputs give the same answer."""
    warehouse = as_warehouse(con)
    with warehouse.transaction():
        warehouse.execute(f"create schema if not exists {META_SCHEMA}")
        # emptied, not dropped: a table of ours others may have been granted, or built on
        warehouse.execute(f"create table if not exists {CHECKS_TABLE} (inputs_fingerprint text, name text, "
                          "severity text, description text, offending_rows bigint)")
        warehouse.execute(f"delete from {CHECKS_TABLE}")
        warehouse.executemany(f"insert into {CHECKS_TABLE} values (?, ?, ?, ?, ?)",
                              [(fingerprint, r.name, r.severity, r.description, r.offending_rows) for r in results])


def recorded_checks(con: Any, fingerprint: str) -> list[CheckResult] | None:
    """The results record_checks kept for this fingerprint, or None."""
    warehouse = as_warehouse(con)
    if not warehouse.has_table(*CHECKS_TABLE.split(".")):
        return None
    rows = warehouse.execute(f"select name, severity, description, offending_rows from {CHECKS_TABLE} "
                             "where inputs_fingerprint = ? order by name", [fingerprint]).fetchall()
    return [CheckResult(*row) for row in rows] or None


def _run_check(warehouse: Warehouse, check: Check) -> CheckResult:
    try:
        # the newline keeps a trailing line comment from swallowing the closing parenthesis
        query = warehouse.select_sql(check.query)
        row = warehouse.execute(f"select count(*) from (\n{query}\n) as offending").fetchone()
    except WarehouseError as exc:
        raise CheckError(f"{check.origin}: {exc}") from exc
    except ValueError as exc:  # sqlglot cannot read it (a PostgreSQL destination only)
        raise CheckError(f"{check.origin}: {one_line(exc)}") from exc
    return CheckResult(check.name, check.severity, check.description, int(row[0]))
