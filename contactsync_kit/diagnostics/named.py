"""The rows that differ, named: which table, which row, which contact, and how it differs.

A `Diagnosis` holds ids and timestamps only (it goes into the support bundle). For the
person at the screen, `name_differences` joins the contact names this computer's cache
holds — and, optionally, the names the server shows now — onto the row diff. Pure: frames
in, a frame out. `differing_rows` reads the names from a cache (the one disk step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import polars as pl

from ..schemas import EMBEDDED_TABLES, ROOT_TABLE, SYNCED_TABLES, TABLES
from .frames import DIFF_SCHEMA, DiffStatus

if TYPE_CHECKING:
    from ..cache import ContactCache
    from .diagnosis import Diagnosis

__all__ = [
    "DIFF_WORDS",
    "NAMED_DIFF_SCHEMA",
    "TABLE_WORDS",
    "differing_rows",
    "name_differences",
]

__io__ = "none"

#: Each difference in the words a support person reads.
DIFF_WORDS: Final[Mapping[str, str]] = {
    DiffStatus.MISSING_LOCALLY.value: "missing here: on the server, not cached",
    DiffStatus.GONE_FROM_SERVER.value: "extra here: cached, gone from the server",
    DiffStatus.NEWER_ON_SERVER.value: "newer on the server than the cached copy",
}

#: Each cached table as one of its rows is called (the spec's `TableSpec.noun`).
TABLE_WORDS: Final[Mapping[str, str]] = {spec.name: spec.noun for spec in SYNCED_TABLES}

#: `name_differences`' output: the diff plus the contact's id and names, and the words.
NAMED_DIFF_SCHEMA: Final = pl.Schema(
    {
        "organisation_id": pl.String(),
        "table": pl.String(),
        "row": pl.String(),
        "id": pl.String(),
        "contact_id": pl.String(),
        "contact": pl.String(),
        "name_on_server": pl.String(),
        "status": pl.String(),
        "difference": pl.String(),
        "local_updated_at": DIFF_SCHEMA["local_updated_at"],
        "server_updated_at": DIFF_SCHEMA["server_updated_at"],
    }
)

_CONTACT_OF: Final = pl.Schema({"id": pl.String(), "contact_id": pl.String()})
_NAMES: Final = pl.Schema({"contact_id": pl.String(), "contact": pl.String()})


def name_differences(
    differences: pl.DataFrame,
    contacts: pl.DataFrame,
    children: pl.DataFrame | None = None,
    server_names: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """`differences` (`DIFF_SCHEMA`) with the contact each row belongs to, named.

    `contacts` holds the cached root rows' ``id`` and ``full_name``; `children` the cached
    embedded rows' ``id`` and ``contact_id`` (their parent's id); `server_names` contact id →
    the name the server shows now (a renamed contact reads "cached name" with its new name
    beside it). A row whose contact is not cached has an empty ``contact``. Returns
    `NAMED_DIFF_SCHEMA`.
    """
    diff = differences.select(
        [
            (pl.col(k) if k in differences.columns else pl.lit(None)).cast(v).alias(k)
            for k, v in DIFF_SCHEMA.items()
        ]
    )
    owners, names, server = _owners_and_names(contacts, children, server_names)
    joined = (
        diff.join(owners.rename({"contact_id": "_owner"}), on="id", how="left")
        .with_columns(
            pl.when(pl.col("table") == ROOT_TABLE)
            .then(pl.col("id"))
            .otherwise(pl.col("_owner"))
            .alias("contact_id")
        )
        .join(names, on="contact_id", how="left")
        .join(server, on="contact_id", how="left")
    )
    return (
        joined.with_columns(
            pl.col("table")
            .replace_strict(TABLE_WORDS, default=pl.col("table"), return_dtype=pl.String())
            .alias("row"),
            pl.col("status")
            .replace_strict(DIFF_WORDS, default=pl.col("status"), return_dtype=pl.String())
            .alias("difference"),
        )
        .select(list(NAMED_DIFF_SCHEMA))
        .cast(NAMED_DIFF_SCHEMA)
    )


def _owners_and_names(
    contacts: pl.DataFrame,
    children: pl.DataFrame | None,
    server_names: Mapping[str, str] | None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Each child row's contact, each cached contact's name, each name the server shows."""
    owners = (
        children.select(pl.col("id").cast(pl.String()), pl.col("contact_id").cast(pl.String()))
        if children is not None and not children.is_empty()
        else pl.DataFrame(schema=_CONTACT_OF)
    )
    names = (
        contacts.select(
            pl.col("id").cast(pl.String()).alias("contact_id"),
            pl.col("full_name").cast(pl.String()).alias("contact"),
        )
        if {"id", "full_name"} <= set(contacts.columns)
        else pl.DataFrame(schema=_NAMES)
    )
    server = pl.DataFrame(
        {
            "contact_id": list((server_names or {}).keys()),
            "name_on_server": list((server_names or {}).values()),
        },
        schema={"contact_id": pl.String(), "name_on_server": pl.String()},
    )
    return owners, names, server


def differing_rows(
    diagnosis: Diagnosis,
    cache: ContactCache,
    server_names: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The diagnosis's differing rows named from `cache` (blocking: run it on a thread).

    Names are read for the organisations that differ only, and never stored in the
    diagnosis or a bundle. Returns `NAMED_DIFF_SCHEMA`.
    """
    differences = diagnosis.differences
    orgs = sorted({str(o) for o in differences.get_column("organisation_id").to_list() if o})
    contacts = [cache.read_table(ROOT_TABLE, org, ("id", "full_name")) for org in orgs]
    children = [
        cache.read_table(table, org, ("id", parent)).rename({parent: "contact_id"})
        for org in orgs
        for table in EMBEDDED_TABLES
        for parent, _ in [TABLES[table].parent or ("contact_id", ROOT_TABLE)]
    ]
    return name_differences(
        differences,
        pl.concat(contacts) if contacts else pl.DataFrame(),
        pl.concat(children) if children else None,
        server_names,
    )
