"""`Panel[PM]`: the one base of every panel, a thin view over one `PanelModel`.

In the style of aiidalab-qe's generic ``Panel[PM]``: the model holds the state and the
coroutines; the panel builds its widgets once (`build`), shows them in a card with the
panel's `title` and `help_text`, and shows the model's state again (`render`) whenever the
model's session, status, tone, busy flag or one of the panel's `watched` traits changes.
Tests drive the model, or click the panel's buttons (``panel.sync_button.click()``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import ipywidgets as ipw

from . import _view
from ._base import PanelModel, ThresholdModel
from .static import StaticFallback

__all__ = [
    "Panel",
    "button",
    "cancel_controls",
    "scheduled",
    "side_by_side",
    "threshold_field",
]

__io__ = "ui"

PM = TypeVar("PM", bound=PanelModel)

#: What every panel re-renders on, besides its own `watched` traits.
_ALWAYS: tuple[str, ...] = ("session", "busy", "status", "tone")


class Panel(StaticFallback, ipw.VBox, Generic[PM]):  # type: ignore[misc]
    """A card over `model`: `build` makes the widgets, `render` shows the model's state.

    `status` is the model's status line, already rendered; `status_css` tags it for browser
    tests, `css` the whole panel. A subclass sets `title`, `help_text` and `watched`, and
    overrides `build` / `render`.
    """

    title: ClassVar[str] = ""
    help_text: ClassVar[str] = ""
    watched: ClassVar[tuple[str, ...]] = ()
    status_css: ClassVar[str] = ""
    #: A CSS class for the whole panel (empty: none).
    css: ClassVar[str] = ""

    def __init__(self, model: PM, **kwargs: Any) -> None:
        self.model: PM = model
        self.status = ipw.HTML()
        if self.status_css:
            self.status.add_class(self.status_css)
        children = self.build()
        super().__init__(children=[_view.card(self.title, self.help_text, *children)], **kwargs)
        if self.css:
            self.add_class(self.css)
        model.observe(self._render, names=[*_ALWAYS, *self.watched])
        self._render()

    def build(self) -> Sequence[Any]:
        """Make the panel's widgets; return the card's children (`status` among them)."""
        return [self.status]

    def render(self) -> None:
        """Show the model's state in the widgets (the status line is already shown)."""

    def _render(self, _change: object = None) -> None:
        self.status.value = _view.status_html(self.model.tone, self.model.status)
        self.render()


def button(
    label: str,
    css: str,
    on_click: Callable[[], object],
    icon: str = "",
    tip: str = "",
    style: str = "",
    **kwargs: Any,
) -> ipw.Button:
    """A button tagged with the CSS class `css` (none when empty), calling `on_click()`.

    `icon` is a FontAwesome name, `tip` the tooltip, `style` the button style ("primary",
    "danger", …); other keyword arguments go to `ipywidgets.Button`.
    """
    widget = ipw.Button(description=label, icon=icon, tooltip=tip, button_style=style, **kwargs)
    if css:
        widget.add_class(css)
    widget.on_click(lambda _: on_click())
    return widget


def cancel_controls(
    on_click: Callable[[], object], css: str, what: str
) -> tuple[ipw.Button, ipw.HTML]:
    """Cancel (``<css>-cancel``) for long work, and where its elapsed time shows
    (``<css>-elapsed``); `what` is the work, as in "Stop the sync".
    """
    cancel = button("Cancel", f"{css}-cancel", on_click, "stop", f"Stop {what}")
    return cancel, _view.tag(ipw.HTML(), f"{css}-elapsed")


def scheduled(
    model: PanelModel, work: Callable[[], Coroutine[Any, Any, Any]], what: str
) -> Callable[[], object]:
    """A click handler that schedules `work()` on `model` (``what`` names it if it fails)."""
    return lambda: model.schedule(work(), what=what)


def side_by_side(*widgets: Any) -> ipw.HBox:
    """Widgets side by side, centred on one line."""
    return ipw.HBox(list(widgets), layout=ipw.Layout(align_items="center"))


def threshold_field(model: ThresholdModel) -> ipw.BoundedFloatText:
    """The "Stale after … hours" box, kept equal to `model.threshold_hours`.

    Edits go to the model, which refuses values that are not above 0 (and says so): the
    box then shows the kept value again.
    """
    field = ipw.BoundedFloatText(
        description="Stale after",
        value=model.threshold_hours,
        min=0.0,
        max=24 * 365,
        step=1.0,
        layout=ipw.Layout(width="14em"),
        style={"description_width": "7em"},
    )

    def edited(change: dict[str, Any]) -> None:
        model.threshold_hours = float(change["new"])
        if model.threshold_hours != change["new"]:  # refused: show the kept value again
            field.value = model.threshold_hours

    def changed(change: dict[str, Any]) -> None:
        if field.value != change["new"]:
            field.value = change["new"]

    field.observe(edited, names="value")
    model.observe(changed, names="threshold_hours")
    return field
