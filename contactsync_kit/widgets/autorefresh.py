"""Refresh when stale: the seed's "refresh on foreground when connectivity is detected".

When the console opens a session, when another organisation is picked, or when the server
becomes reachable again after a network failure, and the signed-in person's copy of the
picked organisation is older than the threshold, the console syncs it
in the background. A visible switch (`enabled`) turns this off. A failed refresh says why
and leaves the cache as it was (the repository's all-or-nothing write guarantees that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final

from traitlets import Bool, Float, Instance, Unicode, observe

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..remote import RemoteFailure, RemoteReader
from ..results import SyncErrorKind, SyncFailure
from ..staleness import format_age
from ._base import PanelModel
from .connection import ServerStatusModel, is_outage
from .sync import SyncModel
from .table_words import ROOT

__all__ = ["AutoRefreshModel", "Probe", "server_reachable"]

__io__ = "ui"

#: Tells whether the server answers this session; `server_reachable` unless a test injects.
Probe = Callable[[UserSession], Awaitable[bool]]

_OFFLINE: Final = (SyncErrorKind.NETWORK, SyncErrorKind.TIMEOUT)


async def server_reachable(session: UserSession) -> bool:
    """True when the server answers a cheap request (any answer but a network failure)."""
    try:
        await RemoteReader(session.client).count("organisations")
    except RemoteFailure as exc:
        return exc.error.kind not in _OFFLINE
    return True


class AutoRefreshModel(PanelModel):
    """Syncs the picked organisation in the background when its copy is stale.

    `enabled` is the visible switch; `threshold_hours` is linked to the freshness panel's.
    `status` says what happened last ("Refreshed automatically at 09:12 UTC because …").
    While the server is unreachable, it is probed every `probe_interval_s` seconds and the
    check runs again as soon as it answers.
    """

    enabled = Bool(True, help="Refresh stale copies automatically.")
    threshold_hours = Float(24.0, help="Older than this many hours is stale.")
    organisation_id = Unicode(None, allow_none=True)
    organisation_name = Unicode("")
    offline = Bool(False, help="True while the server could not be reached.")
    sync = Instance(SyncModel)

    def __init__(
        self,
        *,
        sync: SyncModel,
        clock: Clock | None = None,
        probe: Probe | None = None,
        probe_interval_s: float = 20.0,
        server: ServerStatusModel | None = None,
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._probe: Probe = probe or server_reachable
        self.probe_interval_s = probe_interval_s
        self.server = server
        self._watching = False
        self._checking = False
        super().__init__(sync=sync, **kwargs)

    @observe("session", "organisation_id", "enabled", "threshold_hours")
    def _on_change(self, change: dict[str, Any]) -> None:
        if self.session is None:
            self.offline = False
            self.say("info", "")
            return
        if change["name"] == "enabled" and not change["new"]:
            self.say("info", "Automatic refresh is off: sync by hand when the copy is old.")
            return
        if self.enabled and self.organisation_id:
            self.schedule(self.check(), what="Refreshing automatically")

    def reconnected(self) -> None:
        """The server answers again: refresh the picked organisation's copy (the seed's
        "refresh on reconnect"), whatever its age, and say what was done.
        """
        if self.enabled and self.session is not None and self.organisation_id:
            self.schedule(
                self.check(because="the server answers again"), what="Refreshing automatically"
            )

    async def check(self, because: str | None = None) -> bool:
        """Refresh the picked organisation if its copy is stale (or, given `because`, if
        there is a copy at all); True when a refresh ran.
        """
        session, org = self.session, self.organisation_id
        if not self.enabled or session is None or not org or self.sync.running:
            return False
        if self._checking or (self.server is not None and self.server.offline and not because):
            return False  # one at a time; while the server is silent, its return triggers one
        self._checking = True
        try:
            return await self._check(session, org, because)
        finally:
            self._checking = False

    async def _check(self, session: UserSession, org: str, because: str | None) -> bool:
        synced_at = await asyncio.to_thread(session.cache.last_synced_at, org)
        now = self.clock.now()
        age = None if synced_at is None else now - synced_at
        if age is None:
            return False  # never synced here: a first sync is the person's choice
        if because is None and age <= timedelta(hours=self.threshold_hours):
            return False  # fresh
        if session is not self.session or org != self.organisation_id:
            return False  # signed out or another pick while reading
        why = because or f"it was {format_age(age.total_seconds())} old"
        name = self.organisation_name or org
        self.say("busy", f"Refreshing {name} automatically because {why}…")
        result = await self.sync.run()
        if result is None or session is not self.session:
            return False
        at = f"{self.clock.now():%H:%M} UTC"
        if isinstance(result, SyncFailure) and result.error is not None:
            if result.error.kind in (SyncErrorKind.IN_PROGRESS, SyncErrorKind.CANCELLED):
                self.say(
                    "info",
                    f"The automatic refresh of {name} did not finish: {result.error.message}.",
                )
                return False
            self.offline = is_outage(result.error) or result.error.kind in _OFFLINE
            self.say(
                "error",
                f"Tried to refresh {name} automatically at {at} because {why}, "
                f"but it did not work ({result.error.message.rstrip('.')}). The copy "
                "on this computer was left as it was."
                + (" The console will try again when the server answers." if self.offline else ""),
            )
            if self.offline:
                self._watch()
            return True
        self.offline = False
        how = (
            f"{result.rows_changed:,} row(s) changed, {result.rows_deleted:,} removed"
            if result.mode == "delta"
            else f"{result.items_synced:,} {ROOT.plural} fetched"
        )
        proof = ", verified ✓" if result.verified else ""
        self.say("ok", f"Refreshed {name} automatically at {at} because {why}: {how}{proof}.")
        return True

    def _watch(self) -> None:
        if self.server is not None:
            return  # the console's server status probes, and calls `reconnected`
        if not self._watching:
            self._watching = True
            self.schedule(self._until_reachable(), what="Waiting for the server")

    async def _until_reachable(self) -> None:
        session = self.session
        try:
            while self.enabled and session is not None and session is self.session:
                await asyncio.sleep(self.probe_interval_s)
                if await self._probe(session):
                    self.offline = False
                    await self.check()
                    return
        finally:
            self._watching = False
