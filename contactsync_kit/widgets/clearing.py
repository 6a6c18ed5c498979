"""Cache-clearing panel: what is cached, and a Clear that asks before it deletes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ipywidgets as ipw
from traitlets import Bool, Dict, Int

from ..bootstrap import UserSession
from ..cache import DATA_TABLES
from . import _view
from ._base import PanelModel
from .login import describe_removed
from .static import StaticFallback

__all__ = ["ClearingModel", "ClearingPanel"]


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
                    else "Clearing deletes this computer's copy of the contacts, notes and "
                    "assignments, and the sync log.",
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


class ClearingPanel(StaticFallback, ipw.VBox):  # type: ignore[misc]
    """The view of a `ClearingModel`: counts, Clear, then Confirm / Cancel."""

    def __init__(
        self,
        model: ClearingModel,
        *,
        on_export_first: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> None:
        self.model = model
        #: What "Export the bundle first" does (the console opens its export step).
        self.on_export_first: Callable[[], object] = on_export_first or model.cancel
        self.summary = _view.tag(ipw.HTML(), "csk-cached")
        self.clear_button = ipw.Button(
            description="Clear cache…",
            button_style="danger",
            icon="trash",
            tooltip="Asks before deleting",
        )
        self.clear_button.on_click(lambda _: model.ask())
        self.confirm_button = ipw.Button(description="Yes, delete", button_style="danger")
        self.confirm_button.on_click(lambda _: model.confirm())
        self.export_first_button = ipw.Button(
            description="Export the bundle first", icon="download"
        )
        self.export_first_button.on_click(lambda _: self.on_export_first())
        _view.tag(self.export_first_button, "csk-export-first")
        self.cancel_button = ipw.Button(description="Cancel")
        self.cancel_button.on_click(lambda _: model.cancel())
        _view.tag(self.clear_button, "csk-clear")
        _view.tag(self.confirm_button, "csk-confirm")
        _view.tag(self.cancel_button, "csk-cancel")
        self.confirm_box = ipw.HBox(
            [self.confirm_button, self.export_first_button, self.cancel_button]
        )
        self.status = ipw.HTML()
        super().__init__(
            children=[
                _view.card(
                    "Clear",
                    "Deletes this computer's copy of every organisation's contacts, notes and "
                    "assignments, and the sync log. Signing out does this too.",
                    self.summary,
                    self.clear_button,
                    self.status,
                    self.confirm_box,
                )
            ],
            **kwargs,
        )
        model.observe(
            self._render,
            names=[
                "session",
                "busy",
                "counts",
                "organisations",
                "confirming",
                "status",
                "tone",
                "log_entries",
            ],
        )
        self._render()

    def _render(self, _change: object = None) -> None:
        model = self.model
        counts = model.counts
        if model.session is None:
            self.summary.value = ""
        else:
            self.summary.value = _view.facts_html(
                [
                    (
                        "Cached now",
                        _view.esc(
                            f"{describe_removed({t: int(counts.get(t, 0)) for t in DATA_TABLES})}"
                        ),
                    ),
                    ("Organisations", f"{model.organisations:,}"),
                    (
                        "Sync log",
                        f"{model.log_entries:,} entr{'y' if model.log_entries == 1 else 'ies'}",
                    ),
                ]
            )
        self.clear_button.disabled = model.session is None or model.busy or model.confirming
        self.confirm_box.layout.display = "" if model.confirming else "none"
        self.status.value = _view.status_html(model.tone, model.status)
