"""The staging views generated from the row contract rather than read from a file, so that no SQL
file types the status enum again: `staging.stg_session_statuses`, one row per status of the API's
enum (`SESSION_STATUSES`) and whether it is terminal (`TERMINAL_STATUSES`). The marts join it
where they need the whole list (a session's `is_terminal`, a project's `sessions_other`); a count
of one status keeps its literal (`status = 'completed'`), which is what defines that column.

The runner builds these before the staging files, as views like theirs; models.toml declares
them like the others (key, columns), so their keys are checked.
"""

from __future__ import annotations

from cekura_sessions.extract.contract import SESSION_STATUSES, TERMINAL_STATUSES

SESSION_STATUSES_VIEW = "stg_session_statuses"


def generated_views() -> dict[str, str]:
    """{view name (in the staging schema): its SELECT (DuckDB's dialect, portable like a model file's)}."""
    rows = ",\n        ".join(f"({_literal(status)}, {str(status in TERMINAL_STATUSES).lower()})"
                              for status in SESSION_STATUSES)
    select = (f"-- {SESSION_STATUSES_VIEW}: the status enum of the row contract (extract/contract.py), generated.\n"
              f"-- Grain: one row per status of the API's enum. Key: status.\n"
              f"select * from (\n    values\n        {rows}\n) as statuses (status, is_terminal)")
    return {SESSION_STATUSES_VIEW: select}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
