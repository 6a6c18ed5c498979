"""What each caller probes, derived from ground truth. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .callers import CallerPlan
from .frames import PROBES_BY_TABLE, Probe
from .probes import IDS_PER_REQUEST
from .surface import SurfaceTarget

__all__ = ["caller_plan", "foreign_sample"]


def foreign_sample(
    universe: pl.DataFrame, expected: pl.DataFrame, user: str, orgs: Sequence[str], sample: int
) -> dict[tuple[str, str], list[str]]:
    """Per (audited organisation, table): up to `sample` ids the user must not see,
    deterministic.

    Every organisation with such rows keeps at least one id, but with many organisations the
    sample shrinks so that a caller's ids of one table fit one request (`IDS_PER_REQUEST`):
    the probe stays one per organisation and table, batched, at any scale.
    """
    tables = [t for t, probes in PROBES_BY_TABLE.items() if Probe.FOREIGN_IDS in probes]
    hidden = (
        universe.filter(pl.col("table").is_in(tables), pl.col("organisation_id").is_in(list(orgs)))
        .join(
            expected.filter(pl.col("user") == user),
            on=["table", "organisation_id", "id"],
            how="anti",
        )
        .sort(["organisation_id", "table", "id"])
    )
    spread = max(1, hidden.get_column("organisation_id").n_unique())
    per_org = max(1, min(sample, IDS_PER_REQUEST // spread))
    picked = hidden.group_by(["organisation_id", "table"]).agg(pl.col("id").head(per_org))
    return {(org, table): ids for org, table, ids in picked.rows()}


def caller_plan(
    user: str,
    orgs: Sequence[str],
    universe: pl.DataFrame,
    expected: pl.DataFrame,
    members: pl.DataFrame,
    *,
    search_pattern: str,
    sample: int,
    surface: Sequence[SurfaceTarget] = (),
) -> CallerPlan:
    """The probes of one caller (a user's matrix label, or `ANON_USER` with no members)."""
    member_orgs = frozenset(
        members.filter(pl.col("user") == user).get_column("organisation_id").to_list()
    )
    return CallerPlan(
        user=user,
        orgs=list(orgs),
        member_orgs=member_orgs,
        foreign=foreign_sample(universe, expected, user, orgs, sample),
        search_pattern=search_pattern,
        surface=list(surface),
    )
