"""Where one dataset's tables live: the schema names of the default dataset and of `--dataset NAME`.

The default dataset keeps the names users know: `cekura_raw` (dlt's), `cekura_raw_staging` (dlt's
staging for merges), `staging` (the models' staging views), `analytics` (the models) and
`cekura_meta` (bookkeeping). The dataset `acme` lives in `acme`, `acme_staging` (dlt names it so),
`acme_analytics_staging`, `acme_analytics` and `acme_meta`, so a second organisation's key loads
beside the first in one database and the two never touch each other's tables, models or run lock.

The SQL we write (the model files, the checks, the run's bookkeeping) names the default schemas.
A connection opened for another dataset rewrites those names in each statement it runs
(`Dataset.sql`): one text serves every dataset, and this module is the only place that knows how
a dataset's schemas are named. Statement parameters are never rewritten (they carry data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

import duckdb

from cekura_sessions import settings

DEFAULT_DATASET = settings.RAW_SCHEMA
MAX_NAME_LENGTH = 40  # the longest schema made from it (`<name>_analytics_staging`) stays within PostgreSQL's 63
# dlt names the staging dataset of a merge `<dataset>_staging` (its `staging_dataset_name_layout`)
_DLT_STAGING = "{}_staging"
# what each default schema is called in the dataset `name`
_LAYOUT = {
    f"{DEFAULT_DATASET}_staging": _DLT_STAGING,
    DEFAULT_DATASET: "{}",
    settings.META_SCHEMA: "{}_meta",
    settings.ANALYTICS_SCHEMA: "{}_analytics",
    settings.STAGING_SCHEMA: "{}_analytics_staging",
}
# a default schema's name as a whole identifier: not part of a longer one (`cekura_raw` inside
# `cekura_raw_staging`) nor a column after a dot (`s.staging`); longest first
_DEFAULT_NAME = re.compile(
    r"(?<![\w.$])(" + "|".join(sorted(map(re.escape, _LAYOUT), key=len, reverse=True)) + r")(?![\w$])"
)
_VALID_NAME = re.compile(r"[a-z][a-z0-9_]*")
# names a dataset may not take: the default dataset's other schemas, the engines' own (DuckDB's
# catalogs `system` and `temp` make a schema of that name ambiguous), and the endings of another
# dataset's schemas (the dataset `acme_meta` would load into acme's bookkeeping)
_TAKEN = frozenset({*_LAYOUT, "main", "public", "information_schema", "pg_catalog", "pg_toast", "temp",
                    "system"}) - {DEFAULT_DATASET}
_TAKEN_ENDINGS = ("_staging", "_meta", "_analytics")
# PostgreSQL's reserved words (pg_get_keywords(), catcode R or T) that DuckDB's lists leave out
_POSTGRES_KEYWORDS = frozenset({"current_catalog", "current_date", "current_role", "current_schema", "current_time",
                                "current_timestamp", "current_user", "grant", "localtime", "localtimestamp",
                                "session_user", "system_user", "user"})


class DatasetNameError(ValueError):
    """`--dataset`/CEKURA_DATASET is not a name a dataset can have; the message says what to pass."""


@dataclass(frozen=True)
class Dataset:
    """One dataset of a database. `name`: the raw schema dlt loads (`--dataset`, CEKURA_DATASET);
    every other schema of the dataset is named from it. Raises DatasetNameError for a name that is
    not a lowercase identifier of at most MAX_NAME_LENGTH characters, or that another schema uses."""

    name: str = DEFAULT_DATASET

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_DATASET

    @property
    def raw(self) -> str:
        return self.name

    @property
    def analytics(self) -> str:
        return self.schema(settings.ANALYTICS_SCHEMA)

    @property
    def staging(self) -> str:
        return self.schema(settings.STAGING_SCHEMA)

    @property
    def meta(self) -> str:
        return self.schema(settings.META_SCHEMA)

    @property
    def pipeline_name(self) -> str:
        """dlt's pipeline: `cekura_sessions` for the default dataset (`dlt pipeline cekura_sessions
        info` works from the shell), `cekura_sessions_<name>` for another, so each keeps its own
        state and load packages in the database's dlt folder."""
        return settings.PIPELINE_NAME if self.is_default else f"{settings.PIPELINE_NAME}_{self.name}"

    def schemas(self) -> list[str]:
        """Every schema of this dataset, dlt's staging included (the README's grants name them)."""
        return [self.schema(default) for default in _LAYOUT]

    def schema(self, default: str) -> str:
        """What the default dataset's schema `default` is called in this one (any other name as is)."""
        layout = _LAYOUT.get(default)
        return default if layout is None or self.is_default else layout.format(self.name)

    def sql(self, text: str) -> str:
        """`text` with the default dataset's schema names replaced by this dataset's."""
        if self.is_default:
            return text
        return _DEFAULT_NAME.sub(lambda found: self._names[found.group(1)], text)

    @cached_property
    def _names(self) -> dict[str, str]:
        return {default: layout.format(self.name) for default, layout in _LAYOUT.items()}


def check_name(name: str) -> None:
    """Raises DatasetNameError (one line, saying what to pass) unless `name` can be a dataset."""
    if name == DEFAULT_DATASET:
        return
    hint = "lowercase letters, digits and underscores, starting with a letter, at most " \
           f"{MAX_NAME_LENGTH} characters"
    if not isinstance(name, str) or not _VALID_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        suggestion = re.sub(r"[^a-z0-9_]+", "_", str(name).strip().lower()).strip("_")[:MAX_NAME_LENGTH]
        better = f"; for example {suggestion!r}" if suggestion and _VALID_NAME.fullmatch(suggestion) else ""
        raise DatasetNameError(f"the dataset name {name!r} cannot be used: it must be {hint}{better}; "
                               "check --dataset or CEKURA_DATASET")
    if name in _keywords():
        raise DatasetNameError(f"the dataset name {name!r} is an SQL keyword, which neither engine takes as a schema's "
                               f"name without quotes; choose another with --dataset or CEKURA_DATASET, e.g. "
                               f"{name}_data")
    if name in _TAKEN or name.startswith("pg_") or name.endswith(_TAKEN_ENDINGS):
        raise DatasetNameError(f"the dataset name {name!r} is taken: it is, or could be, another schema's name "
                               f"(the default dataset's schemas, the engine's, names starting with pg_ or ending in "
                               f"{', '.join(_TAKEN_ENDINGS)}); choose another with --dataset or CEKURA_DATASET")


@cache
def _keywords() -> frozenset[str]:
    """The words that are no schema's name unquoted (`create schema order` is a syntax error): DuckDB's
    reserved words and type or function names (its parser is PostgreSQL's), and PostgreSQL's few more."""
    with duckdb.connect() as con:
        listed = con.execute("select keyword_name from duckdb_keywords() "
                             "where keyword_category in ('reserved', 'type_function')").fetchall()
    return frozenset(word for (word,) in listed) | _POSTGRES_KEYWORDS
