"""Every data check as SQL: generated from the declarations in `sql/models.toml` (key unique
and not null, not null, accepted values, relationships), or read from the business-rule files
in `sql/checks/`.

A check file: line 1 `-- severity: error|warning`, line 2 `-- <description>`, then a SELECT
returning the offending rows. A generated check's SELECT is written in the same style, so a
generated and a hand-written check read and count alike: zero rows is a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cekura_sessions.destination.warehouse import WarehouseError
from cekura_sessions.models.declarations import (
    SEVERITIES,
    DeclarationError,
    ModelDeclaration,
    Rule,
    load_declarations,
)
from cekura_sessions.settings import ANALYTICS_SCHEMA, SQL_DIR

_SEVERITY_LINE = re.compile(r"--\s*severity:\s*(\w+)\s*$", re.IGNORECASE)


class CheckError(WarehouseError):
    """A check is malformed or its SQL does not run (named by where it is defined:
    `checks/<file>.sql` or `models.toml`)."""


@dataclass(frozen=True)
class Check:
    name: str
    severity: str  # "error" | "warning"
    description: str  # one sentence
    query: str  # a SELECT of the offending rows
    origin: str  # where it is defined, for error messages


def all_checks(sql_dir: Path = SQL_DIR) -> list[Check]:
    """The declared and the hand-written checks, by name. Raises CheckError on a malformed
    models.toml or check file, or when two checks share a name."""
    try:
        declarations = load_declarations(sql_dir)
    except DeclarationError as exc:
        raise CheckError(str(exc)) from exc
    checks = [check for model in declarations.values() for check in generic_checks(model)]
    checks += [file_check(path) for path in sorted((sql_dir / "checks").glob("*.sql"))]
    seen: dict[str, str] = {}
    for check in checks:
        if check.name in seen:
            raise CheckError(f"{check.origin}: check {check.name} is also defined by {seen[check.name]}")
        seen[check.name] = check.origin
    return sorted(checks, key=lambda c: c.name)


def file_check(path: Path) -> Check:
    """A business-rule check file, named by its stem."""
    origin = f"checks/{path.name}"
    lines = path.read_text().splitlines()
    match = _SEVERITY_LINE.fullmatch(lines[0].strip()) if lines else None
    if match is None or match.group(1).lower() not in SEVERITIES:
        raise CheckError(f"{origin}: line 1 must be '-- severity: error|warning'")
    if len(lines) < 2 or not lines[1].startswith("--") or not lines[1].strip("- \t"):
        raise CheckError(f"{origin}: line 2 must be '-- <one-sentence description>'")
    query = "\n".join(lines[2:]).strip().rstrip(";")
    return Check(path.stem, match.group(1).lower(), lines[1].lstrip("-").strip(), query, origin)


def generic_checks(model: ModelDeclaration) -> list[Check]:
    """The model's key check, then one check per declared rule."""
    origin = f"models.toml [{model.name}]"
    key = model.key[0] if len(model.key) == 1 else f"({', '.join(model.key)})"
    checks = [Check(
        f"{model.name}_key_unique_not_null",
        "error",
        f"Every {ANALYTICS_SCHEMA}.{model.name} row has a {key} and no two rows share one.",
        _key_query(model.name, model.key),
        origin,
    )]
    for rule in model.rules:
        name, default, query = _RULES[rule.kind](model.name, rule)
        description = (rule.description or default).replace("{values}", ", ".join(rule.values))
        checks.append(Check(name, rule.severity, description, query, f"{origin} {rule.kind}.{rule.column}"))
    return checks


def _key_query(model: str, key: tuple[str, ...]) -> str:
    nulls = " or ".join(f"{column} is null" for column in key)
    return f"""with keyed as (
    select
        *,
        count(*) over (partition by {', '.join(key)}) as rows_with_key,
    from {ANALYTICS_SCHEMA}.{model}
),

final as (
    select * from keyed
    where {nulls}
        or rows_with_key > 1
)

select * from final"""


def _not_null(model: str, rule: Rule) -> tuple[str, str, str]:
    return (
        f"{model}_{rule.column}_not_null",
        f"Every {ANALYTICS_SCHEMA}.{model} row has a {rule.column}.",
        _filter_query(model, f"{rule.column} is null"),
    )


def _accepted_values(model: str, rule: Rule) -> tuple[str, str, str]:
    values = ", ".join(_literal(v) for v in rule.values)
    return (
        f"{model}_{rule.column}_in_enum",
        f"Every {ANALYTICS_SCHEMA}.{model} row's {rule.column} is one of: {{values}}.",
        _filter_query(model, f"{rule.column} is null\n        or {rule.column} not in ({values})"),
    )


def _relationship(model: str, rule: Rule) -> tuple[str, str, str]:
    table, column = rule.to
    query = f"""with children as (
    select * from {ANALYTICS_SCHEMA}.{model}
),

parents as (
    select * from {table}
),

final as (
    select children.*
    from children
    left join parents
        on children.{rule.column} = parents.{column}
    where parents.{column} is null
)

select * from final"""
    return (
        f"{model}_{rule.column.removesuffix('_id')}_exists",
        f"Every {ANALYTICS_SCHEMA}.{model} row's {rule.column} is a {column} in {table}.",
        query,
    )


_RULES = {"not_null": _not_null, "accepted_values": _accepted_values, "relationships": _relationship}


def _filter_query(model: str, condition: str) -> str:
    return f"""with {model} as (
    select * from {ANALYTICS_SCHEMA}.{model}
),

final as (
    select * from {model}
    where {condition}
)

select * from final"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
