"""`audit_rls`: read the catalog, sign every test user in, run their probes and the anon
key's, lint, diff the exposed surface, evaluate.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import Clock, SystemClock
from .callers import CallerPlan, Collected, RequestCounter, anon_reader
from .database import fetch_policy_catalog
from .files import load_expected_surface
from .frames import ALL_ORGANISATIONS, ANON_USER, PROBES_BY_TABLE, UNFILTERED_BY_TABLE
from .lint import PolicyCatalog, lint_policies
from .plan import caller_plan
from .probes import probe_caller
from .report import AuditReport, evaluate
from .surface import surface_diff, surface_targets
from .truth import AuditUser, GroundTruth

if TYPE_CHECKING:
    from ..session import SignInError

__all__ = ["audit_rls"]


async def audit_rls(
    url: str,
    anon_key: str,
    users: Iterable[Any],
    organisation_ids: Sequence[str],
    ground_truth: GroundTruth,
    *,
    database_url: str | None = None,
    expected_surface: str | Path | Iterable[str] | None = None,
    include_anon: bool = True,
    foreign_sample: int = 25,
    concurrency: int = 8,
    organisation_names: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    sign_in: Callable[..., Any] | None = None,
) -> AuditReport:
    """Run the audit: every caller x organisation x table x probe, the probes across all
    organisations, the exposed surface, the checks and the lint.

    Each user signs in with email and password through `session.sign_in` with the publishable
    /anon `anon_key` (service-role keys are refused). A user who cannot sign in gets ``error``
    cells. With `include_anon` the same probes run with the anon key alone, expecting nothing.
    `database_url` (catalog read access) adds the exposed-surface inventory, its probes and
    the policy lint; `expected_surface` (a file path, or its lines) adds the diff against the
    surface the team accepted. `concurrency` bounds requests in flight; the report counts
    them (`AuditReport.requests`). `sign_in` replaces the sign-in function (for tests; it is
    called like `session.sign_in`, with an ``http_client``).
    """
    clock = clock or SystemClock()
    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    catalog = (
        await asyncio.to_thread(fetch_policy_catalog, database_url)
        if database_url is not None
        else None
    )
    targets, not_probed = (
        surface_targets(catalog.surface, catalog.exposed_schemas)
        if catalog is not None
        else ([], {})
    )
    expected = ground_truth.expected_rows()

    def plan(user: str) -> CallerPlan:
        return caller_plan(
            user,
            orgs,
            ground_truth.universe,
            expected,
            ground_truth.members,
            search_pattern=ground_truth.search_pattern,
            sample=foreign_sample,
            surface=targets,
        )

    limit = asyncio.Semaphore(max(1, concurrency))
    out, counter = Collected(), RequestCounter()
    tls = await asyncio.to_thread(_tls_context)
    jobs = [
        _audit_user(url, anon_key, user, plan(user.name), sign_in, limit, out, counter, tls)
        for user in audit_users
    ]
    if include_anon:
        jobs.append(
            probe_caller(
                plan(ANON_USER), await anon_reader(url, anon_key, counter), limit=limit, out=out
            )
        )
    await asyncio.gather(*jobs)
    return evaluate(
        out.runs,
        out.observed,
        out.requested,
        ground_truth,
        generated_at=clock.now(),
        organisation_names=organisation_names,
        requests=counter.count,
        audited_organisations=orgs,
        surface_not_probed=not_probed,
        **_catalog_results(catalog, expected_surface),
    )


def _catalog_results(
    catalog: PolicyCatalog | None, expected_surface: str | Path | Iterable[str] | None
) -> dict[str, Any]:
    if catalog is None:
        return {}
    results: dict[str, Any] = {"lint": lint_policies(catalog), "surface": catalog.surface}
    if expected_surface is not None:
        accepted = (
            load_expected_surface(expected_surface)
            if isinstance(expected_surface, str | Path)
            else list(expected_surface)
        )
        results["surface_diff"] = surface_diff(catalog.surface, accepted)
    return results


async def _audit_user(
    url: str,
    anon_key: str,
    user: AuditUser,
    plan: CallerPlan,
    sign_in: Callable[..., Any] | None,
    limit: asyncio.Semaphore,
    out: Collected,
    counter: RequestCounter,
    tls: ssl.SSLContext,
) -> None:
    import httpx

    from ..remote import RemoteReader
    from ..session import SignInError
    from ..session import sign_in as default_sign_in

    # One HTTP client per user (supabase-py keeps the user's session headers on it), all
    # sharing one TLS context: loading the CA bundle per client costs ~70 ms each.
    async with httpx.AsyncClient(
        timeout=30.0, verify=tls, event_hooks={"request": [counter]}
    ) as http:
        try:
            async with limit:
                client = await (sign_in or default_sign_in)(
                    url, anon_key, email=user.email, password=user.password, http_client=http
                )
        except SignInError as exc:
            _sign_in_failed(plan, exc, out)
            return
        await probe_caller(plan, RemoteReader(client), limit=limit, out=out)


def _tls_context() -> ssl.SSLContext:
    """The certificate checks httpx makes by default (certifi's CA bundle), built once."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _sign_in_failed(plan: CallerPlan, exc: SignInError, out: Collected) -> None:
    """Every cell of a user who could not sign in is an ``error`` cell."""
    code = str(exc.status) if exc.status else None
    cells = [
        (org, table, probe.value)
        for org in plan.orgs
        for table, probes in PROBES_BY_TABLE.items()
        for probe in probes
    ]
    cells += [
        (ALL_ORGANISATIONS, table, probe.value)
        for table, probes in UNFILTERED_BY_TABLE.items()
        for probe in probes
    ]
    cells += [(ALL_ORGANISATIONS, target.label, "surface") for target in plan.surface]
    out.runs.extend(
        (plan.user, org, table, probe, None, "sign_in", code, False) for org, table, probe in cells
    )
