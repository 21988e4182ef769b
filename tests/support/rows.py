"""A model's rows keyed as models.toml declares its key, and the one comparison of built rows
with the rows expected in plain Python (support/model_expectations.py)."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from cekura_sessions.models.declarations import load_declarations
from cekura_sessions.settings import ANALYTICS_SCHEMA, SQL_DIR


@cache
def model_key(model: str) -> tuple[str, ...]:
    """The key models.toml declares for `model` (an analytics mart)."""
    return load_declarations()[model].key


def declared_marts() -> list[str]:
    """Every mart (a file in marts/) models.toml declares, in the file's order."""
    marts = {path.stem for path in (SQL_DIR / "marts").glob("*.sql")}
    return [name for name in load_declarations() if name in marts]


def keyed_rows(con: Any, model: str, key: tuple[str, ...] | None = None) -> dict[Any, dict[str, Any]]:
    """Every row of `model` ("<schema>.<relation>", or a mart's name in analytics) as a dict,
    by its key: the value for a one-column key, else a tuple (as model_expectations keys them).
    `key`: the columns, for a relation models.toml does not declare. A key seen twice fails."""
    relation = model if "." in model else f"{ANALYTICS_SCHEMA}.{model}"
    columns = key or model_key(model.rsplit(".", 1)[-1])
    cursor = con.execute(f"select * from {relation}")
    names = [d[0] for d in cursor.description]
    out: dict[Any, dict[str, Any]] = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values))
        k = row[columns[0]] if len(columns) == 1 else tuple(row[c] for c in columns)
        assert k not in out, f"{relation}: key {k} twice"
        out[k] = row
    return out


def assert_same_rows(got: dict, want: dict, what: str, *, rel: float = 1e-9, abs_: float = 1e-6,
                     exact_columns: bool = False) -> None:
    """`got` holds exactly `want`'s keys, and each row `want`'s values (floats within `rel` /
    `abs_`; 0 and 0: equal). `exact_columns`: and no column `want` does not name."""
    missing, extra = sorted(want.keys() - got.keys(), key=repr), sorted(got.keys() - want.keys(), key=repr)
    assert not missing and not extra, f"{what}: keys differ: missing {missing[:3]}, extra {extra[:3]}"
    for key, want_row in want.items():
        have_row = got[key]
        if exact_columns:
            assert have_row.keys() == want_row.keys(), f"{what} {key}: columns {list(have_row)} != {list(want_row)}"
        else:
            assert have_row.keys() >= want_row.keys(), f"{what} {key}: columns {list(have_row)} lack some of {want_row}"
        for column, value in want_row.items():
            have = have_row[column]
            if isinstance(value, float) and isinstance(have, float | int) and not isinstance(have, bool):
                assert math.isclose(have, value, rel_tol=rel, abs_tol=abs_), f"{what} {key} {column}: {have} != {value}"
            else:
                assert have == value, f"{what} {key} {column}: {have!r} != {value!r}"
