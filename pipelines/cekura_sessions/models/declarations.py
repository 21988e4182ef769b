"""The models' declarations in `sql/models.toml`, read and checked for shape.

One TOML table per mart (`[<mart>]`) and per staging view (`[staging.<view>]`) gives its
description, grain, key, every column's meaning and the generic rules (not null, accepted values,
accepted range, relationships, expression) that checks are generated from; the file's header
comment describes the format. Accepted values may name a tuple of the row contract
(`"contract:SESSION_STATUSES"`), so the enum is written once, in extract/contract.py.

Only the file itself is checked here; whether the declared columns are the model's columns is
checked against the built tables and views (dictionary.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cekura_sessions.extract import contract
from cekura_sessions.logs import one_line
from cekura_sessions.settings import ANALYTICS_SCHEMA, SQL_DIR, STAGING_SCHEMA

DECLARATIONS_FILE = "models.toml"
SEVERITIES = ("error", "warning")
CONTRACT_PREFIX = "contract:"
STAGING = "staging"  # the models.toml table of the staging views, named like their folder
# the tuples of the row contract that accepted values may name
CONTRACT_VALUES: dict[str, tuple[str, ...]] = {
    "SESSION_STATUSES": contract.SESSION_STATUSES,
    "TERMINAL_STATUSES": contract.TERMINAL_STATUSES,
}

_RULE_KEYS = {
    "not_null": {"severity", "description"},
    "accepted_values": {"values", "severity", "description"},
    "accepted_range": {"min", "max", "null_where", "severity", "description"},
    "relationships": {"to", "severity", "description"},
    "expression": {"expression", "severity", "description"},
}
_MODEL_KEYS = {"description", "grain", "key", "columns", *_RULE_KEYS}


class DeclarationError(ValueError):
    """models.toml is malformed, or disagrees with a built model; `detail` says where and how,
    the message is `models.toml: <detail>`."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{DECLARATIONS_FILE}: {detail}")


@dataclass(frozen=True)
class Rule:
    """One generic rule, on one column but for an expression. `values` for accepted_values
    (resolved from the contract where the file names it), `low`/`high` and `null_where` for
    accepted_range, `to` for relationships as (table, column) with the schema given,
    `expression` for an expression."""

    kind: str  # one of _RULE_KEYS
    subject: str  # the column the rule is on; an expression's name (its check is <model>_<name>)
    severity: str
    description: str | None  # None: the default sentence for the kind
    values: tuple[str, ...] = ()
    to: tuple[str, str] | None = None
    low: int | float | None = None  # accepted_range's bounds, inclusive; None: unbounded
    high: int | float | None = None
    null_where: str | None = None  # accepted_range: SQL condition under which NULL is accepted
    expression: str | None = None  # a boolean SQL expression every row must not make false


@dataclass(frozen=True)
class ModelDeclaration:
    name: str
    schema: str  # where the model is: the analytics schema (a mart) or the staging one
    description: str
    grain: str
    key: tuple[str, ...]
    columns: dict[str, str]  # column -> its meaning, in the file's order
    rules: tuple[Rule, ...]

    @property
    def table(self) -> str:
        """`<schema>.<name>`"""
        return f"{self.schema}.{self.name}"

    @property
    def opening(self) -> str:
        """How models.toml opens the model's table, without the closing bracket: `[<mart>` or
        `[staging.<view>`; messages name it, or one of its sub-tables."""
        return _opening(self.name, self.schema)


def load_declarations(sql_dir: Path = SQL_DIR, staging: bool = False) -> dict[str, ModelDeclaration]:
    """{mart name: its declaration}, in the file's order; with `staging`, the staging views' after
    them (a staging view and a mart never share a name). Raises DeclarationError when the file
    is missing, is not TOML, or breaks the format (unknown keys, a rule on an undeclared column,
    an unknown contract name or target model, an empty description, ...), whichever is asked for."""
    path = sql_dir / DECLARATIONS_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeclarationError(one_line(exc)) from exc
    views = _table(data.pop(STAGING, {}), f"[{STAGING}]")
    models = {name: _model(name, table, ANALYTICS_SCHEMA) for name, table in data.items()}
    for name, table in views.items():
        _expect(name not in models, f"[{STAGING}.{name}]", f"has the name of the mart [{name}]")
        models[name] = _model(name, table, STAGING_SCHEMA)
    for model in models.values():
        for rule in model.rules:
            _check_target(model, rule, models)
    return {name: model for name, model in models.items() if staging or model.schema == ANALYTICS_SCHEMA}


def _model(name: str, table: Any, schema: str) -> ModelDeclaration:
    opening = _opening(name, schema)
    where = f"{opening}]"
    _expect(isinstance(table, dict), where, "must be a table")
    unknown = set(table) - _MODEL_KEYS
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}; expected some of {sorted(_MODEL_KEYS)}")
    columns = table.get("columns")
    _expect(isinstance(columns, dict) and columns, f"{opening}.columns]", "must list the model's columns")
    for column, meaning in columns.items():
        _expect(_is_line(meaning), f"{opening}.columns] {column}", "must be a one-line description")
    key = table.get("key")
    _expect(isinstance(key, list) and key and all(isinstance(c, str) for c in key), f"{where} key",
            "must be a non-empty list of column names")
    _expect_declared(columns, key, f"{where} key")
    rules = tuple(
        _rule(f"{opening}.{kind}.{subject}]", kind, subject, options, columns)
        for kind in _RULE_KEYS
        for subject, options in _table(table.get(kind, {}), f"{opening}.{kind}]").items()
    )
    return ModelDeclaration(
        name=name,
        schema=schema,
        description=_line(table, "description", where),
        grain=_line(table, "grain", where),
        key=tuple(key),
        columns=dict(columns),
        rules=rules,
    )


def _rule(where: str, kind: str, subject: str, options: Any, columns: dict[str, str]) -> Rule:
    options = _table(options, where)
    unknown = set(options) - _RULE_KEYS[kind]
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}; expected some of {sorted(_RULE_KEYS[kind])}")
    if kind == "expression":
        _expect(subject.isidentifier(), where, "must be named by a word (letters, digits, _): the check's name")
    else:
        _expect_declared(columns, [subject], where)
    severity = options.get("severity", "error")
    _expect(severity in SEVERITIES, f"{where} severity", f"must be one of {', '.join(SEVERITIES)}")
    description = options.get("description")
    _expect(description is None or _is_line(description), f"{where} description", "must be one line")
    rule = Rule(kind, subject, severity, description)
    if kind == "accepted_values":
        rule = replace(rule, values=_values(options.get("values"), f"{where} values"))
    if kind == "relationships":
        rule = replace(rule, to=_target(options.get("to"), f"{where} to"))
    if kind == "accepted_range":
        rule = _range(rule, options, where)
    if kind == "expression":
        expression = options.get("expression")
        _expect(_is_line(expression), f"{where} expression", "must be one line of SQL: a boolean every row holds")
        rule = replace(rule, expression=expression)
    return rule


def _range(rule: Rule, options: dict[str, Any], where: str) -> Rule:
    low, high = options.get("min"), options.get("max")
    for name, bound in (("min", low), ("max", high)):
        _expect(bound is None or (isinstance(bound, int | float) and not isinstance(bound, bool)),
                f"{where} {name}", "must be a number")
    _expect(low is not None or high is not None, where, "needs min, max or both")
    _expect(low is None or high is None or low <= high, where, "min must not be above max")
    null_where = options.get("null_where")
    _expect(null_where is None or _is_line(null_where), f"{where} null_where", "must be one line of SQL")
    return replace(rule, low=low, high=high, null_where=null_where)


def _values(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str) and raw.startswith(CONTRACT_PREFIX):
        name = raw.removeprefix(CONTRACT_PREFIX)
        _expect(name in CONTRACT_VALUES, where, f"{raw!r} is not one of {sorted(CONTRACT_VALUES)}")
        return CONTRACT_VALUES[name]
    _expect(isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw), where,
            f'must be a non-empty list of strings or "{CONTRACT_PREFIX}<NAME>"')
    return tuple(raw)


def _target(raw: Any, where: str) -> tuple[str, str]:
    """"model.column" -> ("analytics.model", "column"); "schema.view.column" -> ("schema.view", "column")."""
    parts = raw.split(".") if isinstance(raw, str) else []
    _expect(len(parts) in (2, 3) and all(p.isidentifier() for p in parts), where,
            'must be "<model>.<column>" or "<schema>.<view>.<column>"')
    table = ".".join(parts[:-1]) if len(parts) == 3 else f"{ANALYTICS_SCHEMA}.{parts[0]}"
    return table, parts[-1]


def _check_target(model: ModelDeclaration, rule: Rule, models: dict[str, ModelDeclaration]) -> None:
    """A relationship to another model or staging view must name a declared one and its column;
    one to another schema is checked when the check runs."""
    if rule.to is None or rule.to[0].split(".")[0] not in (ANALYTICS_SCHEMA, STAGING_SCHEMA):
        return
    where = f"{model.opening}.relationships.{rule.subject}] to"
    target = next((m for m in models.values() if m.table == rule.to[0]), None)
    _expect(target is not None, where, f"{rule.to[0]} is not a declared model")
    _expect(rule.to[1] in target.columns, where, f"{rule.to[0]} declares no column {rule.to[1]}")


def _opening(name: str, schema: str) -> str:
    return f"[{name}" if schema == ANALYTICS_SCHEMA else f"[{STAGING}.{name}"


def _table(raw: Any, where: str) -> dict[str, Any]:
    _expect(isinstance(raw, dict), where, "must be a table")
    return raw


def _line(table: dict[str, Any], key: str, where: str) -> str:
    _expect(_is_line(table.get(key)), f"{where} {key}", "must be a one-line text")
    return table[key]


def _is_line(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\n" not in value


def _expect_declared(columns: dict[str, str], names: list[str], where: str) -> None:
    missing = [c for c in names if c not in columns]
    _expect(not missing, where, f"names columns not in the model's columns: {', '.join(missing)}")


def _expect(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise DeclarationError(f"{where} {message}")
