"""Every data check as SQL: generated from the declarations in `sql/models.toml` (key unique
and not null, not null, accepted values, accepted range, relationships, expression), or read
from the business-rule files in `sql/checks/`.

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
from cekura_sessions.settings import SQL_DIR

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
        declarations = load_declarations(sql_dir, staging=True)
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
    origin = f"models.toml {model.opening}]"
    key = model.key[0] if len(model.key) == 1 else f"({', '.join(model.key)})"
    checks = [Check(
        f"{model.name}_key_unique_not_null",
        "error",
        f"Every {model.table} row has a {key} and no two rows share one.",
        _key_query(model.table, model.key),
        origin,
    )]
    for rule in model.rules:
        name, default, query = _RULES[rule.kind](model, rule)
        description = (rule.description or default).replace("{values}", ", ".join(rule.values))
        checks.append(Check(name, rule.severity, description, query, f"{origin} {rule.kind}.{rule.subject}"))
    return checks


def _key_query(table: str, key: tuple[str, ...]) -> str:
    nulls = " or ".join(f"{column} is null" for column in key)
    return f"""with keyed as (
    select
        *,
        count(*) over (partition by {', '.join(key)}) as rows_with_key,
    from {table}
),

final as (
    select * from keyed
    where {nulls}
        or rows_with_key > 1
)

select * from final"""


def _not_null(model: ModelDeclaration, rule: Rule) -> tuple[str, str, str]:
    return (
        f"{model.name}_{rule.subject}_not_null",
        f"Every {model.table} row has a {rule.subject}.",
        _filter_query(model, f"{rule.subject} is null"),
    )


def _accepted_values(model: ModelDeclaration, rule: Rule) -> tuple[str, str, str]:
    values = ", ".join(_literal(v) for v in rule.values)
    return (
        f"{model.name}_{rule.subject}_in_enum",
        f"Every {model.table} row's {rule.subject} is one of: {{values}}.",
        _filter_query(model, f"{rule.subject} is null\n        or {rule.subject} not in ({values})"),
    )


def _accepted_range(model: ModelDeclaration, rule: Rule) -> tuple[str, str, str]:
    """NaN is outside the range (both engines sort it above every number), and so is NULL unless the
    row meets `null_where`."""
    column = rule.subject
    if rule.low is not None and rule.high is not None:
        within, words = f"{column} between {rule.low} and {rule.high}", f"within [{rule.low}, {rule.high}]"
    elif rule.low is not None:
        within, words = f"{column} >= {rule.low}", f"at least {rule.low}"
    else:
        within, words = f"{column} <= {rule.high}", f"at most {rule.high}"
    otherwise = f"({rule.null_where})" if rule.null_where else "false"
    nulls = f", or NULL where {rule.null_where}" if rule.null_where else ""
    return (
        f"{model.name}_{column}_in_range",
        f"Every {model.table} row's {column} is {words}{nulls}.",
        _filter_query(model, f"not coalesce({within}, {otherwise})"),
    )


def _relationship(model: ModelDeclaration, rule: Rule) -> tuple[str, str, str]:
    table, column = rule.to
    query = f"""with children as (
    select * from {model.table}
),

parents as (
    select * from {table}
),

final as (
    select children.*
    from children
    left join parents
        on children.{rule.subject} = parents.{column}
    where parents.{column} is null
)

select * from final"""
    return (
        f"{model.name}_{rule.subject.removesuffix('_id')}_exists",
        f"Every {model.table} row's {rule.subject} is a {column} in {table}.",
        query,
    )


def _expression(model: ModelDeclaration, rule: Rule) -> tuple[str, str, str]:
    """A row offends where the expression is false; NULL is no evidence either way (write
    `... is not null and ...` where it should be)."""
    return (
        f"{model.name}_{rule.subject}",
        f"Every {model.table} row satisfies {rule.expression}.",
        _filter_query(model, f"not ({rule.expression})"),
    )


_RULES = {
    "not_null": _not_null,
    "accepted_values": _accepted_values,
    "accepted_range": _accepted_range,
    "relationships": _relationship,
    "expression": _expression,
}


def _filter_query(model: ModelDeclaration, condition: str) -> str:
    return f"""with {model.name} as (
    select * from {model.table}
),

final as (
    select * from {model.name}
    where {condition}
)

select * from final"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
