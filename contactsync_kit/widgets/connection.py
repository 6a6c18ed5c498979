"""Whether the server answers: one short probe, one state, one sentence for the console.

Every panel that talks to the server reports what happened here (`ServerStatusModel.failed`,
`answered`); the console shows the outage in one place, in words, and works from the
cache meanwhile. While the server does not answer, it is probed every `probe_interval_s`
seconds with a short timeout; as soon as it answers, `back_online` callbacks run (the
console reloads the organisations and refreshes the picked one's copy, and says so).

An outage is a failure to connect, no answer in time, or a gateway saying its upstream is
down (502 / 504): never the fault of a sync, and never a reason to delete the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import httpx
from traitlets import Instance, Unicode

from ..bootstrap import UserSession
from ..clock import Clock, SystemClock
from ..results import SyncError, SyncErrorKind
from ..session import bearer_token
from ._base import PanelModel

__all__ = [
    "PROBE_TIMEOUT_S",
    "Prober",
    "ServerStatusModel",
    "is_outage",
    "probe_server",
]

__io__ = "ui, network"

#: The probe's whole budget: an outage is stated well within 5 s.
PROBE_TIMEOUT_S: Final = 3.0
#: What a gateway answers when the server behind it is down or overloaded.
_UPSTREAM_DOWN: Final = frozenset({502, 504})

#: Asks the server one cheap question; None when it answered, else what went wrong (words).
Prober = Callable[[UserSession], Awaitable[str | None]]


def is_outage(error: SyncError | None) -> bool:
    """True when `error` says the server did not answer (not that it refused or failed us)."""
    if error is None:
        return False
    if error.kind in (SyncErrorKind.NETWORK, SyncErrorKind.TIMEOUT):
        return True
    return error.kind is SyncErrorKind.REMOTE and error.status in _UPSTREAM_DOWN


async def probe_server(session: UserSession, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Ask the server for one organisation id, with a short timeout and no retry.

    None when the server answered (any answer but a gateway's "upstream down"); otherwise a
    short technical reason ("no answer within 3 s", "connection refused", "HTTP 502").
    """
    client = session.client
    url = f"{str(client.supabase_url).rstrip('/')}/rest/v1/organisations"
    headers = {"apikey": str(client.supabase_key)}
    token = bearer_token(client)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0))
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.get(url, params={"select": "id", "limit": "1"}, headers=headers)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"could not connect ({type(exc).__name__})"
    if response.status_code in _UPSTREAM_DOWN:
        return f"the gateway answered HTTP {response.status_code}: the server behind it is down"
    return None


class ServerStatusModel(PanelModel):
    """``state`` is ``"unknown"``, ``"online"`` or ``"offline"``; `since` when it went offline.

    `failed(detail)` marks the server as not answering (and starts probing it);
    `answered()` marks it as answering. `back_online` callbacks run when an outage ends.
    """

    state = Unicode("unknown", help="unknown, online or offline.")
    detail = Unicode("", help="Why the server is taken as offline (technical, short).")
    since = Instance(datetime, allow_none=True, help="When the outage was first noticed.")
    recovered = Unicode("", help="What happened when the server answered again.")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        prober: Prober | None = None,
        probe_interval_s: float = 5.0,
        **kwargs: Any,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._prober: Prober = prober or probe_server
        self.probe_interval_s = probe_interval_s
        self.back_online: list[Callable[[], object]] = []
        self._watching = False
        self._watcher: asyncio.Task[None] | None = None
        super().__init__(**kwargs)
        self.observe(self._on_session, names="session")

    @property
    def offline(self) -> bool:
        """True while the server is taken as not answering."""
        return self.state == "offline"

    def _on_session(self, change: dict[str, Any]) -> None:
        with self.hold_trait_notifications():
            self.state, self.detail, self.since, self.recovered = "unknown", "", None, ""

    async def probe(self) -> bool:
        """Ask the server now; True when it answered. Updates the state either way."""
        session = self.session
        if session is None:
            return False
        problem = await self._prober(session)
        if session is not self.session:
            return False
        if problem is None:
            self.answered()
            return True
        self.failed(problem)
        return False

    def failed(self, detail: str) -> None:
        """The server did not answer: note it and probe until it does."""
        if self.session is None:
            return
        with self.hold_trait_notifications():
            if self.state != "offline":
                self.since = self.clock.now()
                self.recovered = ""
            self.state = "offline"
            self.detail = detail
        self._watch()

    def answered(self) -> None:
        """The server answered: an outage is over (the `back_online` callbacks run)."""
        was_offline = self.state == "offline"
        with self.hold_trait_notifications():
            self.state = "online"
            self.detail = ""
        if was_offline:
            for callback in list(self.back_online):
                callback()

    def _watch(self) -> None:
        if self._watching:
            return
        self._watching = True
        # Not `schedule`d: waiting for the server is not work anyone awaits (`wait()` returns
        # while it runs); the task is kept here so it is not garbage-collected.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop()
        self._watcher = loop.create_task(self._until_answered())

    async def _until_answered(self) -> None:
        session = self.session
        try:
            while session is not None and session is self.session and self.offline:
                await asyncio.sleep(self.probe_interval_s)
                if session is not self.session or not self.offline:
                    return
                if await self.probe():
                    return
        finally:
            self._watching = False
