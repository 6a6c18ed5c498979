"""Who the audit probes as: each caller's plan, its client, and what its probes collected.

A caller is a test user or the anon key; `CallerPlan` says what it probes and `Collected`
gathers what it saw, as ids only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..schemas import SYNCED_TABLES, TableSpec
from .surface import SurfaceTarget

if TYPE_CHECKING:
    from ..remote import RemoteReader

__all__ = ["CallerPlan", "Collected", "RequestCounter", "anon_reader"]
__io__ = "none"


async def anon_reader(
    url: str,
    key: str,
    counter: RequestCounter | None = None,
) -> RemoteReader:
    """A `RemoteReader` on a client holding only the anon (publishable) key — no sign-in.

    Refuses RLS-bypassing keys like `session.sign_in` does. `counter` counts its requests.
    """
    from ..remote import RemoteReader
    from ..session import anonymous_client

    client = await anonymous_client(url, key)
    if counter is not None:
        client.postgrest.session.event_hooks["request"].append(counter)
    return RemoteReader(client)


class RequestCounter:
    """An httpx request hook counting the HTTP requests the audit makes."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, request: Any) -> None:
        """Count one request (httpx calls this before sending it)."""
        self.count += 1


@dataclass
class Collected:
    """What the probes saw, as rows of `RUNS_SCHEMA`, `OBSERVED_SCHEMA`, `REQUESTED_SCHEMA`."""

    runs: list[tuple[Any, ...]] = field(default_factory=list)
    observed: list[tuple[Any, ...]] = field(default_factory=list)
    requested: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class CallerPlan:
    """What one caller probes: the audited organisations, those where it should see rows (its
    memberships), the ids it must not see per (organisation, table), the search pattern, the
    exposed objects beyond the app tables and the synced tables (the spec's, by default).
    """

    user: str
    orgs: Sequence[str]
    member_orgs: frozenset[str] = frozenset()
    foreign: Mapping[tuple[str, str], Sequence[str]] = field(default_factory=dict)
    search_pattern: str = "*a*"
    surface: Sequence[SurfaceTarget] = ()
    tables: Sequence[TableSpec] = SYNCED_TABLES
