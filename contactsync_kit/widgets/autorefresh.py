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
from .sync import SyncModel

__all__ = ["AutoRefreshModel", "Probe", "server_reachable"]

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
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._probe: Probe = probe or server_reachable
        self.probe_interval_s = probe_interval_s
        self._watching = False
        super().__init__(sync=sync, **kwargs)

    @observe("session", "organisation_id", "enabled")
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

    async def check(self) -> bool:
        """Refresh the picked organisation if its copy is stale; True when a refresh ran."""
        session, org = self.session, self.organisation_id
        if not self.enabled or session is None or not org or self.sync.running:
            return False
        synced_at = await asyncio.to_thread(session.cache.last_synced_at, org)
        now = self.clock.now()
        age = None if synced_at is None else now - synced_at
        if age is None or age <= timedelta(hours=self.threshold_hours):
            return False  # fresh, or never synced here: a first sync is the person's choice
        if session is not self.session or org != self.organisation_id:
            return False  # signed out or another pick while reading
        why = f"it was {format_age(age.total_seconds())} old"
        name = self.organisation_name or org
        self.say("busy", f"Refreshing {name} automatically because {why}…")
        result = await self.sync.run()
        if result is None or session is not self.session:
            return False
        at = f"{self.clock.now():%H:%M} UTC"
        if isinstance(result, SyncFailure) and result.error is not None:
            if result.error.kind is SyncErrorKind.IN_PROGRESS:
                return False
            self.offline = result.error.kind in _OFFLINE
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
        self.say("ok", f"Refreshed {name} automatically at {at} because {why}.")
        return True

    def _watch(self) -> None:
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
