"""Cache-clearing panel: what is cached, and a Clear that asks before it deletes."""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as ipw
from traitlets import Bool, Dict, Int

from ..cache import DATA_TABLES
from . import _view
from ._base import PanelModel
from .login import describe_removed

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
        if read != self._reads or session is not self.session:
            return counts  # a newer read (or a sign-out) superseded this one
        # Held: views re-render once per change, and must never show half an update.
        with self.hold_trait_notifications():
            self.counts = counts
            self.organisations = overview.height
            if not self.confirming:
                self.say("info", "The cache is empty." if not self.total else
                         "Clearing deletes every cached row and sync timestamp on this machine.")
        return counts

    def ask(self) -> None:
        """Ask for confirmation (the Clear button's path)."""
        if self.session is None:
            self.say("error", "Sign in first.")
            return
        self.confirming = True
        self.say("warn", f"Delete {describe_removed(self.counts)} from "
                 f"{self.organisations} organisation{'' if self.organisations == 1 else 's'}? "
                 "The server is not touched; the next sync fetches them again.")

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
        self.confirming = False
        self.busy = True
        self.say("busy", "Clearing the cache…")
        try:
            removed = await session.repository.clear_cache()
        finally:
            self.busy = False
        self.removed = removed
        counts = await self.refresh()
        self.say("ok", f"Cleared: removed {describe_removed(removed)}. Now cached: "
                 f"{describe_removed(counts)}.")
        return removed


class ClearingPanel(ipw.VBox):  # type: ignore[misc]
    """The view of a `ClearingModel`: counts, Clear, then Confirm / Cancel."""

    def __init__(self, model: ClearingModel, **kwargs: Any) -> None:
        self.model = model
        self.summary = _view.tag(ipw.HTML(), "csk-cached")
        self.clear_button = ipw.Button(description="Clear cache…", button_style="danger",
                                       icon="trash", tooltip="Asks before deleting")
        self.clear_button.on_click(lambda _: model.ask())
        self.confirm_button = ipw.Button(description="Yes, delete", button_style="danger")
        self.confirm_button.on_click(
            lambda _: model.schedule(model.clear(confirm=True), what="Clearing the cache"))
        self.cancel_button = ipw.Button(description="Cancel")
        self.cancel_button.on_click(lambda _: model.cancel())
        _view.tag(self.clear_button, "csk-clear")
        _view.tag(self.confirm_button, "csk-confirm")
        _view.tag(self.cancel_button, "csk-cancel")
        self.confirm_box = ipw.HBox([self.confirm_button, self.cancel_button])
        self.status = ipw.HTML()
        super().__init__(children=[_view.card(
            "5 · Clear the cache",
            "Removes every cached contact, note, assignment and sync timestamp on this "
            "machine. Signing out does this too.",
            self.summary, self.clear_button, self.status, self.confirm_box)], **kwargs)
        model.observe(self._render, names=["session", "busy", "counts", "organisations",
                                           "confirming", "status", "tone"])
        self._render()

    def _render(self, _change: object = None) -> None:
        model = self.model
        counts = model.counts
        if model.session is None:
            self.summary.value = ""
        else:
            self.summary.value = _view.facts_html([
                ("Cached now", _view.esc(
                    f"{describe_removed({t: int(counts.get(t, 0)) for t in DATA_TABLES})}")),
                ("Organisations", f"{model.organisations:,}"),
            ])
        self.clear_button.disabled = (model.session is None or model.busy or model.confirming)
        self.confirm_box.layout.display = "" if model.confirming else "none"
        self.status.value = _view.status_html(model.tone, model.status)
