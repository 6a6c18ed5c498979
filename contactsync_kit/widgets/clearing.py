"""Cache-clearing panel: what is cached, and a Clear that asks before it deletes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ipywidgets as ipw
from traitlets import Bool, Dict, Int

from ..bootstrap import UserSession
from ..schemas import DATA_TABLES
from . import _view
from ._base import PanelModel
from ._panel import Panel, button
from .login_model import describe_removed
from .table_words import PLURALS

__all__ = ["ClearingModel", "ClearingPanel"]

__io__ = "ui"


class ClearingModel(PanelModel):
    """Shows what the cache holds and wipes it, after confirmation.

    `clear()` without ``confirm=True`` only asks (sets `confirming`); `clear(confirm=True)`
    wipes every table and every `last_synced_at` through the repository, which first stops
    any running sync so nothing is written back afterwards.
    """

    counts = Dict(help="Rows per data table in the cache now.")
    organisations = Int(0, help="Organisations with something in the cache.")
    confirming = Bool(False, help="True while the panel waits for Confirm or Cancel.")
    removed = Dict(help="Rows removed per table by the last clear.")
    log_entries = Int(0, help="Entries in the sync log (support's evidence), also cleared.")

    def __init__(self, **kwargs: Any) -> None:
        self._reads = 0  # reads finish out of order (threads); only the newest may land
        super().__init__(**kwargs)
        self.say("info", "Sign in to see what is cached.")
        self.observe(self._on_session, names="session")

    def _on_session(self, change: dict[str, Any]) -> None:
        self.confirming = False
        if change["new"] is None:
            self.counts, self.organisations = {}, 0
            self.say("info", "Sign in to see what is cached.")
        else:
            self.removed = {}
            self.schedule(self.refresh(), what="Reading the cache")

    @property
    def total(self) -> int:
        """All cached data rows."""
        return sum(int(v) for v in self.counts.values())

    async def refresh(self) -> dict[str, int]:
        """Read the row counts again; returns them."""
        session = self.session
        if session is None:
            return {}
        self._reads += 1
        read = self._reads
        counts = await asyncio.to_thread(session.cache.counts)
        overview = await asyncio.to_thread(session.cache.overview)
        log = await asyncio.to_thread(session.cache.read_table, "sync_log", None, ("id",))
        if read != self._reads or session is not self.session:
            return counts  # a newer read (or a sign-out) superseded this one
        # Held: views re-render once per change, and must never show half an update.
        with self.hold_trait_notifications():
            self.counts = counts
            self.organisations = overview.height
            self.log_entries = log.height
            if not self.confirming:
                self.say(
                    "info",
                    "Nothing is cached on this computer."
                    if not self.total
                    else f"Clearing deletes this computer's copy of the {PLURALS}, and the "
                    "sync log.",
                )
        return counts

    def ask(self) -> None:
        """Ask for confirmation (the Clear button's path)."""
        if self.session is None:
            self.say("error", "Sign in first.")
            return
        self.confirming = True
        entries = f"{self.log_entries:,} sync log entr{'y' if self.log_entries == 1 else 'ies'}"
        self.say(
            "warn",
            f"Delete {describe_removed(self.counts)} of "
            f"{self.organisations} organisation{'' if self.organisations == 1 else 's'}, "
            f"and the sync log ({entries}), from this computer? The sync log is what "
            "support uses to find out what went wrong: export the support bundle first "
            "if you may need it. The server is not touched; the next sync fetches the "
            "contacts again.",
        )

    def confirm(self) -> None:
        """The "Yes, delete" button's path: clear once, however often it is pressed.

        Only a pending question is answered, synchronously, so a second click (or a double
        click) finds nothing to confirm and starts nothing.
        """
        if not self.confirming or self.busy or self.session is None:
            return
        self.confirming = False
        self.busy = True
        self.schedule(self._wipe(self.session), what="Clearing the cache")

    def cancel(self) -> None:
        """Drop the pending confirmation."""
        self.confirming = False
        self.say("info", "Nothing was deleted.")

    async def clear(self, *, confirm: bool = False) -> dict[str, int] | None:
        """Wipe the cache; without `confirm` only ask. Returns the rows removed per table."""
        session = self.session
        if session is None:
            self.say("error", "Sign in first.")
            return None
        if not confirm:
            self.ask()
            return None
        if self.busy:
            return None  # "Yes, delete" pressed again while the first one runs
        self.confirming = False
        self.busy = True
        return await self._wipe(session)

    async def _wipe(self, session: UserSession) -> dict[str, int] | None:
        self.say("busy", "Clearing the cache…")
        try:
            removed = await session.repository.clear_cache()
        finally:
            self.busy = False
        self.removed = removed
        counts = await self.refresh()
        self.say(
            "ok",
            f"Cleared: removed {describe_removed(removed)}. Nothing is cached on this computer now."
            if not sum(counts.values())
            else f"Cleared: removed {describe_removed(removed)}.",
        )
        return removed


def _every_table(counts: dict[str, int]) -> dict[str, int]:
    """Rows per synced table, 0 for a table the counts leave out."""
    return {name: int(counts.get(name, 0)) for name in DATA_TABLES}


class ClearingPanel(Panel[ClearingModel]):
    """The view of a `ClearingModel`: counts, Clear, then Confirm / Cancel."""

    title = "Clear"
    help_text = (
        f"Deletes this computer's copy of every organisation's {PLURALS}, and the sync log. "
        "Signing out does this too."
    )
    watched = ("counts", "organisations", "confirming", "log_entries")

    def __init__(
        self,
        model: ClearingModel,
        *,
        on_export_first: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> None:
        #: What "Export the bundle first" does (the console opens its export step).
        self.on_export_first: Callable[[], object] = on_export_first or model.cancel
        super().__init__(model, **kwargs)

    def build(self) -> list[Any]:
        """What is cached, Clear, and the confirmation's buttons."""
        model = self.model
        self.summary = _view.tag(ipw.HTML(), "csk-cached")
        ask, danger = "Asks before deleting", "danger"
        self.clear_button = button("Clear cache…", "csk-clear", model.ask, "trash", ask, danger)
        self.confirm_button = button("Yes, delete", "csk-confirm", model.confirm, style=danger)
        self.export_first_button = button(
            "Export the bundle first",
            "csk-export-first",
            lambda: self.on_export_first(),
            "download",
        )
        self.cancel_button = button("Cancel", "csk-cancel", model.cancel)
        self.confirm_box = ipw.HBox(
            [self.confirm_button, self.export_first_button, self.cancel_button]
        )
        return [self.summary, self.clear_button, self.status, self.confirm_box]

    def render(self) -> None:
        """What is cached, and which buttons can be pressed."""
        model = self.model
        entries = model.log_entries
        self.summary.value = (
            ""
            if model.session is None
            else _view.facts_html(
                [
                    ("Cached now", _view.esc(describe_removed(_every_table(model.counts)))),
                    ("Organisations", f"{model.organisations:,}"),
                    ("Sync log", f"{entries:,} entr{'y' if entries == 1 else 'ies'}"),
                ]
            )
        )
        self.clear_button.disabled = model.session is None or model.busy or model.confirming
        self.confirm_box.layout.display = "" if model.confirming else "none"
