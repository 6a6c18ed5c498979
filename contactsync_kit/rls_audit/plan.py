"""What the audit probes, and as whom, derived from ground truth and the catalog. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from ..schemas import SYNCED_TABLES, TableSpec
from .callers import CallerPlan, Collected
from .expressions import metadata_keys
from .frames import (
    ALL_ORGANISATIONS,
    ANON_USER,
    Probe,
    probes_by_table,
    unfiltered_by_table,
)
from .lint import PolicyCatalog, claims_readers
from .surface import FunctionTarget, SurfaceTarget, function_targets, surface_targets
from .truth import AuditUser, GroundTruth

__all__ = [
    "CLAIM_KEYS",
    "CallerPlan",
    "ForeignIds",
    "ScalePlan",
    "caller_plan",
    "foreign_sample",
    "scale_plan",
]
__io__ = "none"

#: Ids per ``id=in.(…)`` request (`probes` batches by it): keeps URLs short.
IDS_PER_REQUEST: Final = 150


def foreign_sample(
    universe: pl.DataFrame,
    expected: pl.DataFrame,
    user: str,
    orgs: Sequence[str],
    sample: int,
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> dict[tuple[str, str], list[str]]:
    """Per (audited organisation, table): up to `sample` ids the user must not see,
    deterministic.

    Every organisation with such rows keeps at least one id, but with many organisations the
    sample shrinks so that a caller's ids of one table fit one request (`IDS_PER_REQUEST`):
    the probe stays one per organisation and table, batched, at any scale.
    """
    probed = [t for t, probes in probes_by_table(tables).items() if Probe.FOREIGN_IDS in probes]
    hidden = (
        universe.filter(pl.col("table").is_in(probed), pl.col("organisation_id").is_in(list(orgs)))
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
    tables: Sequence[TableSpec] = SYNCED_TABLES,
) -> CallerPlan:
    """The probes of one caller (a user's matrix label, or `ANON_USER` with no members) on
    the scoping tables and the synced `tables`.
    """
    member_orgs = frozenset(
        members.filter(pl.col("user") == user).get_column("organisation_id").to_list()
    )
    return CallerPlan(
        user=user,
        orgs=list(orgs),
        member_orgs=member_orgs,
        foreign=foreign_sample(universe, expected, user, orgs, sample, tables),
        search_pattern=search_pattern,
        surface=list(surface),
        tables=tuple(tables),
    )


#: Default user_metadata keys the claims probe fills, beside those the catalog reads.
CLAIM_KEYS: Final = ("organisation_id", "organization_id", "org_id", "tenant_id")
#: Audits of up to this many organisations get the per-organisation matrix for all of them.
FULL_MATRIX_UP_TO: Final = 10
#: Users probed for claims when nothing in the catalog reads JWT claims ("auto").
CLAIMS_SAMPLE: Final = 25


class ForeignIds:
    """Per organisation, one id of each kind a function argument may take (from ground
    truth's universe): the organisation itself, a member's user id, a row of each table.
    """

    def __init__(self, universe: pl.DataFrame) -> None:
        first = (
            universe.sort(["organisation_id", "table", "id"])
            .group_by(["organisation_id", "table"], maintain_order=True)
            .agg(pl.col("id").first(), pl.col("user_id").first())
        )
        self.by_org: dict[str, dict[str, str]] = {}
        for org, table, row_id, user_id in first.rows():
            ids = self.by_org.setdefault(org, {})
            ids[table] = user_id if table == "organisation_members" else row_id

    def arguments(self, target: FunctionTarget, organisation_id: str) -> dict[str, Any] | None:
        """The call's arguments naming `organisation_id`'s ids; None if it lacks one."""
        ids = self.by_org.get(organisation_id, {})
        params: dict[str, Any] = {}
        for name, table, is_array in target.arguments:
            value = ids.get(table)
            if value is None:
                return None
            params[name] = [value] if is_array else value
        return params


@dataclass
class ScalePlan:
    """What the whole audit probes: the callers, the organisations sampled for the
    per-organisation matrix, the exposed objects, and for each user the organisation it
    must not see that the function and claims probes name (`named_org`).
    """

    users: list[AuditUser]
    orgs: list[str]
    sample: list[str]
    truth: GroundTruth
    expected: pl.DataFrame
    targets: list[SurfaceTarget]
    functions: list[FunctionTarget]
    not_probed: dict[str, str]
    foreign_ids: ForeignIds
    named_org: dict[str, str]
    member_orgs: dict[str, frozenset[str]]
    user_ids: dict[str, str]
    claims_users: list[str]
    claim_keys: tuple[str, ...]
    include_anon: bool = True
    foreign_sample: int = 25

    def caller(self, user: str) -> CallerPlan:
        """The plan of one caller: per-organisation probes over the sample when it belongs
        to a sampled organisation (anon always), else the sweep alone (``orgs`` empty).
        """
        members = self.member_orgs.get(user, frozenset())
        sampled = bool(self.sample) and (user == ANON_USER or bool(members & set(self.sample)))
        if sampled:
            return caller_plan(
                user,
                self.sample,
                self.truth.universe,
                self.expected,
                self.truth.members,
                search_pattern=self.truth.search_pattern,
                sample=self.foreign_sample,
                surface=self.targets,
                tables=self.truth.tables,
            )
        return self._sweep_plan(user, members)

    def _sweep_plan(self, user: str, members: frozenset[str]) -> CallerPlan:
        """A plan with no organisation of its own: the sweep across all organisations."""
        return CallerPlan(
            user=user,
            orgs=[],
            member_orgs=members,
            surface=list(self.targets),
            tables=self.truth.tables,
        )

    def callers(self) -> Iterator[tuple[CallerPlan, AuditUser | None]]:
        """Every caller's plan, with its user (None for the anon key), built lazily."""
        for user in self.users:
            yield self.caller(user.name), user
        if self.include_anon:
            yield self.caller(ANON_USER), None

    def claims_callers(self) -> Iterator[tuple[CallerPlan, str]]:
        """(plan for the claims sweep, user id) of every user the claims probe covers."""
        for name in self.claims_users:
            members = self.member_orgs.get(name, frozenset())
            yield self._sweep_plan(name, members), self.user_ids[name]

    def claims_metadata(self) -> dict[str, dict[str, Any]]:
        """{user id: the user_metadata naming the user's `named_org`} for the claims probe."""
        return {
            self.user_ids[name]: {key: self.named_org[name] for key in self.claim_keys}
            for name in self.claims_users
            if name in self.named_org
        }

    def sign_in_failed(self, plan: CallerPlan, exc: BaseException, out: Collected) -> None:
        """Every cell of a caller who could not sign in is an ``error`` cell."""
        status = getattr(exc, "status", None)
        code = str(status) if status else None
        cells: list[tuple[str, str, str]] = [
            (org, table, probe.value)
            for org in plan.orgs
            for table, probes in probes_by_table(plan.tables).items()
            for probe in probes
        ]
        cells += [
            (ALL_ORGANISATIONS, table, probe.value)
            for table, probes in unfiltered_by_table(plan.tables).items()
            for probe in probes
            if plan.orgs or probe in (Probe.ALL_ROWS, Probe.ALL_COUNT)
        ]
        cells += [(ALL_ORGANISATIONS, target.label, "surface") for target in plan.surface]
        named = self.named_org.get(plan.user)
        if named is not None:
            cells += [(named, f.label, Probe.FOREIGN_ARGS.value) for f in self.functions]
        out.runs.extend(
            (plan.user, org, table, probe, None, "sign_in", code, False)
            for org, table, probe in cells
        )


def _named_orgs(
    names: Sequence[str], member_orgs: Mapping[str, frozenset[str]], candidates: Sequence[str]
) -> dict[str, str]:
    """Each caller's organisation it must not see: the next candidate after its own."""
    if not candidates:
        return {}
    position = {org: i for i, org in enumerate(candidates)}
    named: dict[str, str] = {}
    for n, name in enumerate(names):
        own = sorted(member_orgs.get(name, frozenset()))
        start = position.get(own[0], n) + 1 if own else n
        for step in range(len(candidates)):
            org = candidates[(start + step) % len(candidates)]
            if org not in member_orgs.get(name, frozenset()):
                named[name] = org
                break
    return named


def _sampled(orgs: list[str], sample_organisations: int | None) -> list[str]:
    """The organisations probed one by one: all up to `FULL_MATRIX_UP_TO` by default."""
    size = (
        (len(orgs) if len(orgs) <= FULL_MATRIX_UP_TO else 0)
        if sample_organisations is None
        else sample_organisations
    )
    return sorted(orgs)[: max(0, size)] if size < len(orgs) else list(orgs)


def _targets(
    catalog: PolicyCatalog | None, truth: GroundTruth
) -> tuple[list[SurfaceTarget], list[FunctionTarget], dict[str, str]]:
    """(exposed objects to read, functions to call with ids, label -> why not probed)."""
    if catalog is None:
        return [], [], {}
    targets, not_probed = surface_targets(catalog.surface, catalog.exposed_schemas, truth.tables)
    functions, unfillable = function_targets(catalog.surface, catalog.exposed_schemas, truth.tables)
    for target in functions:
        not_probed.pop(target.label, None)
    return targets, functions, {**not_probed, **unfillable}


def _claims_users(
    claims: str,
    catalog: PolicyCatalog | None,
    candidates: list[str],
    member_orgs: Mapping[str, frozenset[str]],
    sample: list[str],
) -> list[str]:
    """Who the claims probe covers (see `audit_rls`'s `claims`)."""
    readers = claims_readers(catalog) if catalog is not None else ["(no catalog)"]
    if claims == "off":
        return []
    if claims == "all" or readers:
        return candidates
    in_sample = [n for n in candidates if member_orgs.get(n, frozenset()) & set(sample)]
    return in_sample or candidates[:CLAIMS_SAMPLE]


def _claim_keys(catalog: PolicyCatalog | None) -> tuple[str, ...]:
    """`CLAIM_KEYS` and every user_metadata key a policy, view or function reads."""
    keys = set(CLAIM_KEYS)
    if catalog is not None:
        texts = [*catalog.policies["using"].to_list(), *catalog.policies["with_check"].to_list()]
        texts += catalog.views["definition"].to_list() + catalog.routines["source"].to_list()
        for text in texts:
            keys |= metadata_keys(text)
    return tuple(sorted(keys))


def scale_plan(
    users: Sequence[AuditUser],
    organisation_ids: Sequence[str],
    truth: GroundTruth,
    catalog: PolicyCatalog | None,
    *,
    sample_organisations: int | None,
    foreign_sample: int,
    claims: str,
    include_anon: bool,
) -> ScalePlan:
    """Plan the whole audit (see `ScalePlan`). Pure."""
    orgs = [o.lower() for o in organisation_ids]
    sample = _sampled(orgs, sample_organisations)
    targets, functions, not_probed = _targets(catalog, truth)
    members = truth.members
    member_orgs: dict[str, frozenset[str]] = {}
    for name, org in members.select("user", "organisation_id").rows():
        member_orgs[name] = member_orgs.get(name, frozenset()) | {org}
    user_ids = {name: uid for name, uid in members.select("user", "user_id").unique().rows() if uid}
    user_ids.update({u.name: u.user_id for u in users if u.user_id})
    with_rows = sorted(
        set(truth.universe.filter(pl.col("table") != "organisations")["organisation_id"])
    )
    names = [u.name for u in users] + ([ANON_USER] if include_anon else [])
    named = _named_orgs(names, member_orgs, [o for o in with_rows if o in set(orgs)] or with_rows)
    candidates = [u.name for u in users if u.name in user_ids]
    return ScalePlan(
        users=list(users),
        orgs=orgs,
        sample=sample,
        truth=truth,
        expected=truth.expected_rows(),
        targets=targets,
        functions=functions,
        not_probed=not_probed,
        foreign_ids=ForeignIds(truth.universe),
        named_org=named,
        member_orgs=member_orgs,
        user_ids=user_ids,
        claims_users=_claims_users(claims, catalog, candidates, member_orgs, sample),
        claim_keys=_claim_keys(catalog),
        include_anon=include_anon,
        foreign_sample=foreign_sample,
    )
