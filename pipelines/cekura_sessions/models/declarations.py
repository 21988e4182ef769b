"""The models' declarations in `sql/models.toml`, read and checked for shape.

One TOML table per model gives its description, grain, key, every column's meaning and the
generic rules (not null, accepted values, relationships) that checks are generated from; the
file's header comment describes the format. Accepted values may name a tuple of the row contract
(`"contract:SESSION_STATUSES"`), so the enum is written once, in extract/contract.py.

Only the file itself is checked here; whether the declared columns are the model's columns is
checked against the built tables (dictionary.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cekura_sessions.extract import contract
from cekura_sessions.logs import one_line
from cekura_sessions.settings import ANALYTICS_SCHEMA, SQL_DIR

DECLARATIONS_FILE = "models.toml"
SEVERITIES = ("error", "warning")
CONTRACT_PREFIX = "contract:"
# the tuples of the row contract that accepted values may name
CONTRACT_VALUES: dict[str, tuple[str, ...]] = {
    "SESSION_STATUSES": contract.SESSION_STATUSES,
    "TERMINAL_STATUSES": contract.TERMINAL_STATUSES,
}

_MODEL_KEYS = {"description", "grain", "key", "columns", "not_null", "accepted_values", "relationships"}
_RULE_KEYS = {
    "not_null": {"severity", "description"},
    "accepted_values": {"values", "severity", "description"},
    "relationships": {"to", "severity", "description"},
}


class DeclarationError(ValueError):
    """models.toml is malformed, or disagrees with a built model; `detail` says where and how,
    the message is `models.toml: <detail>`."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{DECLARATIONS_FILE}: {detail}")


@dataclass(frozen=True)
class Rule:
    """One generic rule on one column. `values` for accepted_values (resolved from the contract
    where the file names it), `to` for relationships as (table, column) with the schema given."""

    kind: str  # "not_null" | "accepted_values" | "relationships"
    column: str
    severity: str
    description: str | None  # None: the default sentence for the kind
    values: tuple[str, ...] = ()
    to: tuple[str, str] | None = None


@dataclass(frozen=True)
class ModelDeclaration:
    name: str
    description: str
    grain: str
    key: tuple[str, ...]
    columns: dict[str, str]  # column -> its meaning, in the file's order
    rules: tuple[Rule, ...]


def load_declarations(sql_dir: Path = SQL_DIR) -> dict[str, ModelDeclaration]:
    """{model name: its declaration}, in the file's order. Raises DeclarationError when the file
    is missing, is not TOML, or breaks the format (unknown keys, a rule on an undeclared column,
    an unknown contract name or target model, an empty description, ...)."""
    path = sql_dir / DECLARATIONS_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeclarationError(one_line(exc)) from exc
    models = {name: _model(name, table) for name, table in data.items()}
    for model in models.values():
        for rule in model.rules:
            _check_target(model, rule, models)
    return models


def _model(name: str, table: Any) -> ModelDeclaration:
    where = f"[{name}]"
    _expect(isinstance(table, dict), where, "must be a table")
    unknown = set(table) - _MODEL_KEYS
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}; expected some of {sorted(_MODEL_KEYS)}")
    columns = table.get("columns")
    _expect(isinstance(columns, dict) and columns, f"[{name}.columns]", "must list the model's columns")
    for column, meaning in columns.items():
        _expect(_is_line(meaning), f"[{name}.columns] {column}", "must be a one-line description")
    key = table.get("key")
    _expect(isinstance(key, list) and key and all(isinstance(c, str) for c in key), f"{where} key",
            "must be a non-empty list of column names")
    _expect_declared(columns, key, f"{where} key")
    rules = tuple(
        _rule(name, kind, column, options, columns)
        for kind in _RULE_KEYS
        for column, options in _table(table.get(kind, {}), f"[{name}.{kind}]").items()
    )
    return ModelDeclaration(
        name=name,
        description=_line(table, "description", where),
        grain=_line(table, "grain", where),
        key=tuple(key),
        columns=dict(columns),
        rules=rules,
    )


def _rule(model: str, kind: str, column: str, options: Any, columns: dict[str, str]) -> Rule:
    where = f"[{model}.{kind}.{column}]"
    options = _table(options, where)
    unknown = set(options) - _RULE_KEYS[kind]
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}; expected some of {sorted(_RULE_KEYS[kind])}")
    _expect_declared(columns, [column], where)
    severity = options.get("severity", "error")
    _expect(severity in SEVERITIES, f"{where} severity", f"must be one of {', '.join(SEVERITIES)}")
    description = options.get("description")
    _expect(description is None or _is_line(description), f"{where} description", "must be one line")
    values, to = (), None
    if kind == "accepted_values":
        values = _values(options.get("values"), f"{where} values")
    if kind == "relationships":
        to = _target(options.get("to"), f"{where} to")
    return Rule(kind, column, severity, description, values, to)


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
    """A relationship to another analytics model must name a declared model and column; one to
    another schema is checked when the check runs."""
    if rule.to is None or not rule.to[0].startswith(f"{ANALYTICS_SCHEMA}."):
        return
    where = f"[{model.name}.relationships.{rule.column}] to"
    target = models.get(rule.to[0].removeprefix(f"{ANALYTICS_SCHEMA}."))
    _expect(target is not None, where, f"{rule.to[0]} is not a declared model")
    _expect(rule.to[1] in target.columns, where, f"{rule.to[0]} declares no column {rule.to[1]}")


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
