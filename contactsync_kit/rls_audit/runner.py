"""`audit_rls`: read the catalog, sign every test user in, probe each caller once across all
organisations (and a sample of organisations per organisation), probe the claims a user can
edit, call the functions that take ids, lint, diff the exposed surface, evaluate.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..clock import Clock, SystemClock
from .callers import Collected, RequestCounter
from .database import fetch_policy_catalog
from .files import load_expected_surface
from .frames import Probe
from .lint import PolicyCatalog, lint_policies
from .plan import CallerPlan, ScalePlan, scale_plan
from .report import AuditReport, evaluate
from .stopping import AuditProgress, stop_on_signals
from .surface import surface_diff
from .sweep import Api, call_functions, sweep
from .truth import AuditUser, GroundTruth

__all__ = ["AuditProgress", "ClaimsTokens", "audit_rls"]
__io__ = "none"

#: Mints the claims probe's tokens: given {user id: user_metadata}, a context manager that
#: yields {user id: access token} issued the way the auth server would after the user's
#: updateUser(data=user_metadata), and undoes the update on exit.
ClaimsTokens = Callable[
    [Mapping[str, Mapping[str, Any]]], AbstractContextManager[Mapping[str, str]]
]


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
    sample_organisations: int | None = None,
    claims_tokens: ClaimsTokens | None = None,
    claims: Literal["auto", "all", "off"] = "auto",
    progress: Callable[[AuditProgress], None] | None = None,
    handle_signals: bool | None = None,
) -> AuditReport:
    """Run the audit and return its `AuditReport`.

    Every caller (each user, signed in by the password grant with the publishable/anon
    `anon_key`, and with `include_anon` the anon key alone) is probed once across all
    organisations: every row of every app table it can see (keyset-paged, counted in the
    same request), every exposed view and function without arguments, and every exposed
    function taking ids called with the ids of an organisation it must not see. Rows are
    compared with `ground_truth`, so a leak is named with its organisation wherever it is.

    Per organisation (select, count, search, embedded, foreign ids, for the heat map's
    matrix) only `sample_organisations` of `organisation_ids` are probed, by the callers who
    belong to them and anon; by default all when there are at most 10, none beyond.

    With `claims_tokens` (see `ClaimsTokens`; the local stack's is
    ``stack.user_metadata_tokens``) each user is probed again with a token whose
    user_metadata names another organisation: any row of it is a leak. `claims` ``"auto"``
    probes every user when the catalog shows something that reads JWT claims (or there is
    no catalog), else the sampled users only; ``"all"`` always every user, ``"off"`` none.

    `database_url` (catalog read access) adds the exposed-surface inventory, its probes and
    the lint; `expected_surface` (a file path, or its lines) the diff against the accepted
    surface. `concurrency` bounds requests in flight and pooled connections. `progress` is
    called as callers finish. SIGTERM / Ctrl-C (`handle_signals`, by default when running
    in the main thread) end the audit promptly with a partial report (`AuditReport.complete`
    false). `sign_in` replaces the sign-in (for tests; called like `session.sign_in`).
    """
    clock = clock or SystemClock()
    audit_users = [AuditUser.of(u) for u in users]
    catalog = (
        await asyncio.to_thread(fetch_policy_catalog, database_url)
        if database_url is not None
        else None
    )
    plan = scale_plan(
        audit_users,
        organisation_ids,
        ground_truth,
        catalog,
        sample_organisations=sample_organisations,
        foreign_sample=foreign_sample,
        claims=claims if claims_tokens is not None else "off",
        include_anon=include_anon,
    )
    run = _Run(plan, Collected(), RequestCounter(), progress, max(1, concurrency))
    await run.everyone(url, anon_key, sign_in, claims_tokens, handle_signals)
    accepted = _accepted(expected_surface)
    return evaluate(
        run.out.runs,
        run.out.observed,
        run.out.requested,
        ground_truth,
        generated_at=clock.now(),
        organisation_names=organisation_names,
        requests=run.counter.count,
        audited_organisations=plan.orgs,
        surface_not_probed=plan.not_probed,
        complete=not run.stopped,
        callers=run.done,
        claims_probed=run.claims_done,
        sampled_organisations=plan.sample,
        **_catalog_results(catalog, accepted),
    )


def _accepted(expected_surface: str | Path | Iterable[str] | None) -> list[str] | None:
    if expected_surface is None:
        return None
    if isinstance(expected_surface, str | Path):
        return load_expected_surface(expected_surface)
    return list(expected_surface)


def _catalog_results(catalog: PolicyCatalog | None, accepted: list[str] | None) -> dict[str, Any]:
    if catalog is None:
        return {}
    results: dict[str, Any] = {
        "lint": lint_policies(catalog, accepted or ()),
        "surface": catalog.surface,
        "policies": catalog.policies,
        "tables": catalog.tables,
    }
    if accepted is not None:
        results["surface_diff"] = surface_diff(catalog.surface, accepted)
    return results


@dataclass
class _Run:
    plan: ScalePlan
    out: Collected
    counter: RequestCounter
    progress: Callable[[AuditProgress], None] | None
    concurrency: int
    done: int = 0
    claims_done: int = 0
    stopped: bool = False

    async def everyone(
        self,
        url: str,
        anon_key: str,
        sign_in: Callable[..., Any] | None,
        claims_tokens: ClaimsTokens | None,
        handle_signals: bool | None,
    ) -> None:
        """Probe every caller, then (with `claims_tokens`) the claims, on one pooled client;
        SIGTERM / Ctrl-C stop it early (`stopped`).
        """
        plan, width = self.plan, self.concurrency
        tls = await asyncio.to_thread(_tls_context)
        async with Api(url, anon_key, connections=width, counter=self.counter, tls=tls) as api:
            with stop_on_signals(handle_signals) as stop:
                await self.callers(api, sign_in, asyncio.Semaphore(width), stop)
                if plan.claims_users and not stop.is_set() and claims_tokens is not None:
                    await self.claims(api, claims_tokens, asyncio.Semaphore(width), stop)

    def _tick(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(AuditProgress(phase, done, total, self.counter.count))

    async def _pool(
        self,
        jobs: Sequence[Callable[[], Any]],
        workers: int,
        stop: asyncio.Event,
        phase: str,
    ) -> int:
        """Run `jobs` on `workers` tasks; stop taking jobs (and cancel those running) when
        `stop` is set. Returns how many finished.
        """
        pending = iter(jobs)
        finished = 0

        async def worker() -> None:
            nonlocal finished
            for job in pending:
                if stop.is_set():
                    return
                await job()
                finished += 1
                if finished % 50 == 0 or finished == len(jobs):
                    self._tick(phase, finished, len(jobs))

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stopper in done or all(t.done() for t in tasks):
                    break
        finally:
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        self.stopped = self.stopped or stop.is_set()
        failures = [task.exception() for task in tasks if not task.cancelled()]
        for failure in failures:
            if failure is not None:
                raise failure
        return finished

    async def _call_functions(
        self,
        caller: CallerPlan,
        client: Any,
        limit: asyncio.Semaphore,
        probe: Probe = Probe.FOREIGN_ARGS,
    ) -> None:
        """The function probes of `caller`: each exposed function with ids it must not see."""
        plan = self.plan
        await call_functions(
            caller,
            client,
            plan.functions,
            plan.foreign_ids,
            plan.named_org.get(caller.user),
            limit=limit,
            out=self.out,
            probe=probe,
        )

    async def callers(
        self,
        api: Api,
        sign_in: Callable[..., Any] | None,
        limit: asyncio.Semaphore,
        stop: asyncio.Event,
    ) -> None:
        plan = self.plan

        async def one(caller: CallerPlan, user: AuditUser | None) -> None:
            token: str | None = None
            if user is not None:
                try:
                    token = await _token(api, user, sign_in, limit)
                except Exception as exc:
                    plan.sign_in_failed(caller, exc, self.out)
                    return
            client = api.postgrest(token)
            if caller.orgs:
                from ..remote import RemoteReader
                from .probes import probe_caller

                await probe_caller(caller, RemoteReader(client), limit=limit, out=self.out)  # type: ignore[arg-type]
            else:
                await sweep(caller, client, limit=limit, out=self.out, page_size=api.page_size)
            await self._call_functions(caller, client, limit)

        jobs = [(lambda c=caller, u=user: one(c, u)) for caller, user in plan.callers()]
        self.done = await self._pool(jobs, 2 * self.concurrency, stop, "callers")

    async def claims(
        self, api: Api, claims_tokens: ClaimsTokens, limit: asyncio.Semaphore, stop: asyncio.Event
    ) -> None:
        plan = self.plan
        metadata = plan.claims_metadata()
        manager = await asyncio.to_thread(claims_tokens, metadata)
        tokens = await asyncio.to_thread(manager.__enter__)
        try:

            async def one(caller: CallerPlan, user_id: str) -> None:
                client = api.postgrest(tokens[user_id])
                await sweep(
                    caller,
                    client,
                    limit=limit,
                    out=self.out,
                    probe=Probe.CLAIMS,
                    page_size=api.page_size,
                )
                await self._call_functions(caller, client, limit, Probe.CLAIMS_ARGS)

            jobs = [
                (lambda c=caller, u=user_id: one(c, u))
                for caller, user_id in plan.claims_callers()
                if user_id in tokens
            ]
            self.claims_done = await self._pool(jobs, 2 * self.concurrency, stop, "claims")
        finally:
            await asyncio.to_thread(manager.__exit__, None, None, None)


async def _token(
    api: Api, user: AuditUser, sign_in: Callable[..., Any] | None, limit: asyncio.Semaphore
) -> str:
    async with limit:
        if sign_in is None:
            return await api.sign_in(user.email, user.password)
        client = await sign_in(
            api.url, api.key, email=user.email, password=user.password, http_client=api.http
        )
        session = await client.auth.get_session()
        return str(session.access_token)


def _tls_context() -> ssl.SSLContext:
    """The certificate checks httpx makes by default (certifi's CA bundle), built once."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
