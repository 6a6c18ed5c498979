"""A panel as plain HTML: what a notebook exported to HTML shows where no widget can render.

ipywidgets need a kernel (or their JavaScript and saved state, fetched from a CDN); an HTML
file opened offline shows nothing for them. `static_html` renders a widget tree as it looks
now — cards, status lines, tables, fields, buttons, the chart — into one HTML string, and
`StaticFallback._ipython_display_` displays it right after the live widget. A style rule
hides the copy wherever the live widget did render (JupyterLab, Voilà), so people see it
only where it is needed.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import ipywidgets as ipw

from . import _view

__all__ = ["StaticFallback", "static_html"]

__io__ = "ui"

# Hidden when the output just before it holds a rendered widget box: the live view is there.
_HIDE_WHEN_LIVE: Final = (
    "<style>.jp-OutputArea-child:has(.widget-box) + .jp-OutputArea-child .csk-static,"
    ".output_area:has(.widget-box) + .output_area .csk-static{display:none}</style>"
)


#: The class-name prefix of the static copy (the live panels' is ``csk-``).
_COPY: Final = "cskcopy-"


def _hidden(widget: Any) -> bool:
    layout = getattr(widget, "layout", None)
    return (
        getattr(layout, "display", None) == "none"
        or getattr(layout, "visibility", None) == "hidden"
    )


def _field(widget: Any, value: str) -> str:
    label = _view.esc(getattr(widget, "description", "") or "")
    shown = f"<b>{label}</b> " if label else ""
    return f'<div style="margin:2px 0">{shown}<span class="csk-mono">{value}</span></div>'


def static_html(widget: Any) -> str:
    """`widget` and its children as plain HTML, as they show now (hidden parts left out)."""
    if widget is None or _hidden(widget):
        return ""
    if isinstance(widget, ipw.Tab):
        titles = list(widget.titles)
        return "".join(
            f'<h4 style="margin:14px 0 4px 0">{_view.esc(titles[i] if i < len(titles) else "")}'
            f"</h4>{static_html(child)}"
            for i, child in enumerate(widget.children)
        )
    if isinstance(widget, ipw.Box):
        inner = "".join(static_html(child) for child in widget.children)
        row = isinstance(widget, ipw.HBox)
        classes = " ".join(c for c in widget._dom_classes if c.startswith("csk-"))
        style = "display:flex;gap:8px;align-items:center;flex-wrap:wrap" if row else ""
        return f'<div class="{classes}" style="{style}">{inner}</div>'
    if isinstance(widget, ipw.HTML | ipw.HTMLMath | ipw.Label):
        return str(widget.value)
    if isinstance(widget, ipw.Button):
        return f'<button disabled style="margin:2px">{_view.esc(widget.description)}</button>'
    if isinstance(widget, ipw.Password):
        return _field(widget, "••••••" if widget.value else "")
    if isinstance(widget, ipw.Checkbox):
        mark = "[x]" if widget.value else "[ ]"
        return f"<div>{mark} {_view.esc(widget.description)}</div>"
    if isinstance(widget, ipw.Dropdown):
        return _field(widget, _view.esc(widget.label or ""))
    if isinstance(widget, ipw.Text | ipw.FloatText | ipw.BoundedFloatText | ipw.IntText):
        return _field(widget, _view.esc(widget.value))
    if isinstance(widget, ipw.FloatProgress):
        share = 0 if widget.max == widget.min else (widget.value - widget.min) / widget.max
        return f'<progress value="{share:.2f}" max="1"></progress>'
    if isinstance(widget, ipw.Image) and widget.value:
        encoded = base64.b64encode(bytes(widget.value)).decode("ascii")
        return (
            f'<img alt="chart" style="max-width:640px" '
            f'src="data:image/{widget.format};base64,{encoded}">'
        )
    return ""


class StaticFallback:
    """Displays the live widget (`_live_widget()`, default itself), then its static copy."""

    def _live_widget(self) -> Any:
        return self

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        live = self._live_widget()
        # Its own class names: the copy never answers for the live panel's (tests, styles).
        body = static_html(live).replace("csk-", _COPY)
        style = _view.CSS.replace("csk-", _COPY)
        copy = f'{_HIDE_WHEN_LIVE}{style}<div class="csk-static">{body}</div>'
        # The widget's own bundle (not `display(live)`, which would come back here).
        display(live._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call]
        display(HTML(copy))  # type: ignore[no-untyped-call]
