"""`audit_rls`: sign every test user in, run their probes and the anon key's, lint, evaluate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..clock import Clock, SystemClock
from .database import lint_database
from .frames import ANON_USER, PROBES_BY_TABLE, UNIVERSE_SCHEMA
from .probes import Collected, anon_reader, probe_user
from .report import AuditReport, evaluate
from .truth import AuditUser, GroundTruth

__all__ = ["audit_rls"]


async def audit_rls(
    url: str,
    anon_key: str,
    users: Iterable[Any],
    organisation_ids: Sequence[str],
    ground_truth: GroundTruth,
    *,
    database_url: str | None = None,
    include_anon: bool = True,
    foreign_sample: int = 25,
    concurrency: int = 4,
    organisation_names: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    sign_in: Callable[..., Any] | None = None,
) -> AuditReport:
    """Run the audit: every user x organisation x table x probe, checks, and the lint.

    Each user signs in with email and password through `session.sign_in` with the publishable
    /anon `anon_key` (service-role keys are refused). A user who cannot sign in gets ``error``
    cells. With `include_anon` the same probes run with the anon key alone, expecting nothing.
    `database_url` (catalog read access) adds the policy lint. `sign_in` replaces the sign-in
    function (for tests).
    """
    from ..remote import RemoteReader
    from ..session import SignInError
    from ..session import sign_in as default_sign_in

    clock = clock or SystemClock()
    do_sign_in = sign_in or default_sign_in
    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    expected = ground_truth.expected_rows()
    universe = ground_truth.universe.select(list(UNIVERSE_SCHEMA)).cast(UNIVERSE_SCHEMA)
    limit = asyncio.Semaphore(max(1, concurrency))
    out = Collected()

    async def audit_user(user: AuditUser) -> None:
        try:
            client = await do_sign_in(url, anon_key, email=user.email, password=user.password)
        except SignInError as exc:
            for org in orgs:
                for table, probes in PROBES_BY_TABLE.items():
                    for probe in probes:
                        out.runs.append((user.name, org, table, probe.value, None, "sign_in",
                                         str(exc.status) if exc.status else None, False))
            return
        await probe_user(user.name, RemoteReader(client), orgs, universe, expected,
                     ground_truth.search_pattern, foreign_sample=foreign_sample, limit=limit,
                     out=out)

    jobs = [audit_user(user) for user in audit_users]
    if include_anon:
        reader = await anon_reader(url, anon_key)
        jobs.append(probe_user(ANON_USER, reader, orgs, universe, expected,
                           ground_truth.search_pattern, foreign_sample=foreign_sample,
                           limit=limit, out=out))
    await asyncio.gather(*jobs)
    lint = (await asyncio.to_thread(lint_database, database_url)
            if database_url is not None else None)
    return evaluate(out.runs, out.observed, out.requested, ground_truth, lint=lint,
                    generated_at=clock.now(), organisation_names=organisation_names)

