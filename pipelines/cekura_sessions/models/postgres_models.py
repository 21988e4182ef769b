"""A model materialised on PostgreSQL without dropping what others built on it.

A team's database holds views on the models (`bi.completed_sessions` on `analytics.sessions`),
grants to readers and comments. `drop table ... cascade` followed by `create table` would drop
those views and lose the grants, every night, without a word. So, inside the build's transaction:

- a table whose columns (names and types) are unchanged is refreshed in place: `delete` then
  `insert` (not `truncate`: its ACCESS EXCLUSIVE lock waits for every reader and is not MVCC-safe;
  readers keep reading the old rows until the build commits, and are never blocked);
- a column the model gained is `alter table ... add column`, then the same refresh;
- a view keeps its name through `create or replace view` while its old columns lead the new ones
  (PostgreSQL's own rule);
- only a dropped, renamed or retyped column replaces the object, and then the objects that depend
  on it (views and materialized views, through pg_depend, transitively) other than our own models
  are never dropped silently: HasDependents names them, unless `drop_dependents`.
"""

from __future__ import annotations

from cekura_sessions.destination.warehouse import Warehouse

# the views and materialized views that depend on a relation, transitively (a view depends on a
# table through its rewrite rule), with their kind
_DEPENDENTS_SQL = """
with recursive dependents(oid) as (
    select to_regclass(?)::oid
    union
    select r.ev_class
    from pg_depend d
    join pg_rewrite r on r.oid = d.objid
    join dependents on d.refobjid = dependents.oid
    where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass and r.ev_class <> d.refobjid
)
select n.nspname || '.' || c.relname, c.relkind
from dependents
join pg_class c on c.oid = dependents.oid
join pg_namespace n on n.oid = c.relnamespace
where dependents.oid <> to_regclass(?)::oid
order by 1
"""

_KIND = {"r": "table", "v": "view", "m": "materialized view", "p": "table"}


class HasDependents(Exception):
    """A model must be replaced and objects of others depend on it. `message`: one line naming the
    model, why it must be replaced, and the dependents."""


def materialise(con: Warehouse, name: str, kind: str, select: str, ours: set[str], drop_dependents: bool) -> str:
    """Make `select` (PostgreSQL's dialect) the `kind` ("table" or "view") `name` ("schema.name"),
    inside the caller's transaction. `ours`: the qualified names of every model (rebuilt in this
    transaction, so never counted as another's dependent). Returns a line to log when objects of
    others were dropped (`drop_dependents`), else "". Raises HasDependents, WarehouseError."""
    # the names as this connection's dataset has them: they are also passed as parameters, which
    # the connection does not rewrite (destination/dataset.py)
    name, ours = con.dataset.sql(name), {con.dataset.sql(model) for model in ours}
    new = _select_columns(con, select)
    old, old_kind = _columns(con, name)
    if not old:
        con.execute(f"create {kind} {name} as\n{select}")
        return ""
    why = _incompatible(old, new)
    if old_kind != kind:
        why = f"it is a {old_kind} and the model makes a {kind}"
    elif kind == "view" and not why and new[:len(old)] != old:
        why = "its columns moved (a view's old columns must lead its new ones)"
    if why:
        return _replace(con, name, kind, select, why, ours, drop_dependents)
    if kind == "view":
        con.execute(f"create or replace view {name} as\n{select}")
    else:
        _refresh_in_place(con, name, select, old, new)
    return ""


def dependents(con: Warehouse, name: str) -> list[tuple[str, str]]:
    """(qualified name, kind) of every view or materialized view depending on `name`, transitively."""
    return [(dependent, _KIND.get(relkind, relkind))
            for dependent, relkind in con.execute(_DEPENDENTS_SQL, [name, name]).fetchall()]


def _refresh_in_place(con: Warehouse, name: str, select: str, old: list[tuple[str, int]],
                      new: list[tuple[str, int]]) -> None:
    present = {column for column, _ in old}
    for column, type_oid in new:
        if column not in present:
            (type_name,) = con.execute("select format_type(?, null)", [type_oid]).fetchone()
            con.execute(f'alter table {name} add column "{column}" {type_name}')
    columns = ", ".join(f'"{column}"' for column, _ in new)
    con.execute(f"delete from {name}")
    con.execute(f"insert into {name} ({columns})\nselect {columns} from (\n{select}\n) as model")


def _replace(con: Warehouse, name: str, kind: str, select: str, why: str, ours: set[str],
             drop_dependents: bool) -> str:
    others = [(dependent, what) for dependent, what in dependents(con, name) if dependent not in ours]
    named = ", ".join(f"{what} {dependent}" for dependent, what in others)
    if others and not drop_dependents:
        raise HasDependents(f"{name} must be replaced ({why}), which would drop {named} built on it; "
                            "nothing was changed: drop or adapt them first, or rebuild with --drop-dependents")
    old_kind = _columns(con, name)[1]
    con.execute(f"drop {old_kind} {name} cascade")
    con.execute(f"create {kind} {name} as\n{select}")
    return f"{name} was replaced ({why}); --drop-dependents dropped {named}" if others else ""


def _incompatible(old: list[tuple[str, int]], new: list[tuple[str, int]]) -> str:
    """Why the old columns cannot stay ("" when each is in the new ones with its type)."""
    types = dict(new)
    gone = [column for column, _ in old if column not in types]
    retyped = [column for column, type_oid in old if column in types and types[column] != type_oid]
    reasons = ([f"column(s) {', '.join(gone)} dropped or renamed"] if gone else []) + \
              ([f"column(s) {', '.join(retyped)} of another type"] if retyped else [])
    return "; ".join(reasons)


def _select_columns(con: Warehouse, select: str) -> list[tuple[str, int]]:
    """(name, type oid) of each column `select` returns, in order, without running it."""
    cursor = con.execute(f"select * from (\n{select}\n) as model limit 0")
    return [(column.name, column.type_code) for column in cursor.description]


def _columns(con: Warehouse, name: str) -> tuple[list[tuple[str, int]], str]:
    """(name, type oid) of the existing relation's columns in order, and its kind; ([], "") when
    there is none."""
    row = con.execute("select relkind from pg_class where oid = to_regclass(?)", [name]).fetchone()
    if row is None:
        return [], ""
    columns = con.execute(
        "select attname, atttypid::bigint from pg_attribute where attrelid = to_regclass(?) "
        "and attnum > 0 and not attisdropped order by attnum", [name]).fetchall()
    return [(column, int(type_oid)) for column, type_oid in columns], _KIND.get(row[0], row[0])
