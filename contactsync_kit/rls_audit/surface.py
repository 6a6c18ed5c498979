"""The exposed surface: which objects to probe, and the diff against the expected surface.
Pure (reading and writing the expected-surface file is in `files`).

The expected-surface file is plain text kept in the project's repository, one entry a line::

    # comments and blank lines are ignored
    table public.chapters authenticated
    view public.chapter_overview anon,authenticated
    function public.search_chapters(text) authenticated

i.e. ``<kind> <schema>.<name> <roles>``: the kind (``table``, ``view``,
``materialized_view``, ``foreign_table``, ``function``), the object (a function with its
argument types) and the API roles that reach it, comma-separated. A function's line goes on
with its security attribute, owner and search_path::

    function public.f(p_id uuid) authenticated invoker owner=postgres search_path=""

An object that becomes reachable, or reachable by one more role, or a function whose
security, owner or search_path changes, is a new line: the audit fails until someone adds it
to the file (`surface_lines` prints the current lines). A ``SECURITY DEFINER`` function the
API roles may call is a lint error unless its line, ``definer`` included, is accepted here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from ..schemas import SYNCED_TABLES, TableSpec
from .frames import SURFACE_DIFF_SCHEMA, audit_tables, root_of

__all__ = [
    "FunctionTarget",
    "SurfaceTarget",
    "argument_kind",
    "function_targets",
    "parse_surface_lines",
    "surface_diff",
    "surface_line",
    "surface_lines",
    "surface_targets",
]
__io__ = "none"


@dataclass(frozen=True)
class SurfaceTarget:
    """An exposed object the probes read: its label in the matrix, its API path, the columns."""

    label: str
    path: str
    columns: str


def _label(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def surface_targets(
    surface: pl.DataFrame,
    exposed_schemas: Iterable[str],
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> tuple[list[SurfaceTarget], dict[str, str]]:
    """(objects to probe, label -> why an object is not probed).

    Probed: every reachable relation and every set-returning function without required
    arguments whose rows carry an ``id``, in the first exposed schema (the API's default
    profile), except the app tables (the scoping tables and the synced `tables`), which the
    matrix probes in every way already.
    """
    schemas = list(exposed_schemas)
    default = schemas[0] if schemas else "public"
    app_tables = set(audit_tables(tables))
    targets: list[SurfaceTarget] = []
    skipped: dict[str, str] = {}
    for obj in surface.iter_rows(named=True):
        label = _label(obj["schema"], obj["name"])
        columns = list(obj["columns"] or [])
        is_function = obj["kind"] == "function"
        if obj["schema"] == default and obj["name"] in app_tables and not is_function:
            continue
        reason = (
            f"schema {obj['schema']} is not the default profile"
            if obj["schema"] != default
            else "takes required arguments (called with foreign ids when they are ids)"
            if is_function and obj["required_args"]
            else "returns no set of rows"
            if is_function and not obj["returns_set"]
            else "its rows have no id column"
            if "id" not in columns
            else None
        )
        if reason is not None:
            skipped[label] = reason
            continue
        path = f"rpc/{obj['name'].split('(')[0]}" if is_function else obj["name"]
        targets.append(
            SurfaceTarget(
                label, path, "id, organisation_id" if "organisation_id" in columns else "id"
            )
        )
    return targets, skipped


def surface_line(obj: Mapping[str, Any]) -> str:
    """One exposed object (a `SURFACE_SCHEMA` row as a dict) as its expected-surface line."""
    line = f"{obj['kind'].replace(' ', '_')} {obj['schema']}.{obj['name']} " + ",".join(
        obj["roles"] or []
    )
    if obj["kind"] == "function":
        security = "definer" if obj.get("security_definer") else "invoker"
        path = obj.get("search_path")
        line += (
            f" {security} owner={obj.get('owner') or '?'} "
            f"search_path={'unset' if path is None else path}"
        )
    return line


def surface_lines(surface: pl.DataFrame) -> list[str]:
    """The surface as expected-surface lines, sorted (what to paste to accept it)."""
    return sorted(surface_line(obj) for obj in surface.iter_rows(named=True))


def parse_surface_lines(text: str) -> list[str]:
    """The entries of an expected-surface file: comments and blank lines dropped, spacing
    normalised.
    """
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return sorted(" ".join(line.split()) for line in lines if line)


def surface_diff(surface: pl.DataFrame, expected: Iterable[str]) -> pl.DataFrame:
    """`SURFACE_DIFF_SCHEMA`: entries reachable but not accepted (``added``, failing) and
    accepted but no longer reachable (``removed``).
    """
    now, accepted = set(surface_lines(surface)), set(expected)
    rows = [("added", e) for e in sorted(now - accepted)] + [
        ("removed", e) for e in sorted(accepted - now)
    ]
    return pl.DataFrame(rows, schema=SURFACE_DIFF_SCHEMA, orient="row")


#: What an argument's name says it identifies -> the scoping table its value comes from.
_SCOPE_ARGUMENTS: Final = (
    (re.compile(r"org|tenant|team|workspace|account"), "organisations"),
    (re.compile(r"user|member|owner|author|profile|uid"), "organisation_members"),
    (re.compile(r"chapter"), "chapters"),
)
#: A bare row id: the root table's.
_ROW_ID: Final = re.compile(r"^(p_|_)?(id|row_id|record_id)$")


def _word(spec: TableSpec) -> str:
    """The word that names one row of the table: its name's last word, singular
    (``order_items`` -> ``item``).
    """
    return spec.name.rsplit("_", 1)[-1].removesuffix("s")


def _id_arguments(tables: Sequence[TableSpec]) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, universe table) in the order tried: the scoping tables, the child tables,
    then the root (whose word children's names often contain, and which a bare id means).
    """
    root = root_of(tables)
    children = [spec for spec in tables if spec.parent is not None]
    return [
        *_SCOPE_ARGUMENTS,
        *((re.compile(rf"(^|_){_word(spec)}"), spec.name) for spec in children),
        (re.compile(rf"(^|_){_word(root)}|{_ROW_ID.pattern}"), root.name),
    ]


def argument_kind(argument: str, tables: Sequence[TableSpec] = SYNCED_TABLES) -> str | None:
    """What an input argument (``"<name> <type>"``) identifies, as the universe table whose
    ids fill it (``organisation_members`` for a user id); None when it is not an id.

    A name mentioning a synced table's row word (``p_note_id``) takes that table's ids; a
    bare ``id`` or any other uuid, the root table's.
    """
    name, _, kind = argument.partition(" ")
    if kind not in ("uuid", "text", "character varying", "bigint", "integer") and not (
        kind.endswith("[]") or kind == ""
    ):
        return None
    for pattern, table in _id_arguments(tables):
        if pattern.search(name.lower()):
            return table
    return root_of(tables).name if kind == "uuid" else None


@dataclass(frozen=True)
class FunctionTarget:
    """An exposed function taking ids: its label, API name, and each argument to fill
    (name, the universe table its id comes from, whether the type is an array).
    """

    label: str
    rpc: str
    arguments: tuple[tuple[str, str, bool], ...]


def function_targets(
    surface: pl.DataFrame,
    exposed_schemas: Iterable[str],
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> tuple[list[FunctionTarget], dict[str, str]]:
    """(functions the probes call with ids the caller must not see, label -> why not).

    A function of the default profile qualifies when every required argument is an id
    (`argument_kind` over the synced `tables`); optional id arguments are filled too, the
    others left to their defaults.
    """
    schemas = list(exposed_schemas)
    default = schemas[0] if schemas else "public"
    targets: list[FunctionTarget] = []
    skipped: dict[str, str] = {}
    functions = surface.filter(pl.col("kind") == "function")
    for obj in functions.iter_rows(named=True):
        label = _label(obj["schema"], obj["name"])
        arguments = list(obj["arguments"] or [])
        required = arguments[: obj["required_args"] or 0]
        kinds = [argument_kind(a, tables) for a in arguments]
        if obj["schema"] != default or not any(kinds):
            continue
        unfillable = [a for a, k in zip(required, kinds, strict=False) if k is None]
        if unfillable or any(not a.partition(" ")[0] for a in arguments):
            skipped[label] = "takes arguments the audit cannot fill: " + ", ".join(
                unfillable or arguments
            )
            continue
        targets.append(
            FunctionTarget(
                label,
                obj["name"].split("(")[0],
                tuple(
                    (a.partition(" ")[0], k, a.endswith("[]"))
                    for a, k in zip(arguments, kinds, strict=True)
                    if k is not None
                ),
            )
        )
    return targets, skipped
