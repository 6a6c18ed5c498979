"""Shared look of the panels: cards, status lines, fact tables. HTML strings only."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any, Final

import ipywidgets as ipw

__all__ = [
    "COLOURS",
    "CSS",
    "card",
    "details_html",
    "esc",
    "facts_html",
    "ms",
    "pill",
    "replace_children",
    "status_html",
    "table_html",
    "tag",
]

__io__ = "ui"

#: Text colours per tone, dark enough to read on white (WCAG AA).
COLOURS: Final = {
    "info": "#3d4a5c",
    "busy": "#1d4ed8",
    "ok": "#1a7f37",
    "warn": "#9a6700",
    "error": "#b42318",
}
# FontAwesome (it ships with ipywidgets), not emoji: an emoji draws as an empty box where
# no emoji font is installed. Where the icon font is missing, the text still reads alone.
_ICONS: Final = {
    "info": "fa-info-circle",
    "busy": "fa-spinner fa-spin",
    "ok": "fa-check-circle",
    "warn": "fa-exclamation-triangle",
    "error": "fa-times-circle",
}
_BACKGROUNDS: Final = {
    "info": "#f6f8fa",
    "busy": "#eff6ff",
    "ok": "#edf7ef",
    "warn": "#fff8e1",
    "error": "#fdecea",
}

# One style sheet; every card carries it so a panel displayed on its own looks the same.
# Repeated <style> blocks with the same rules are harmless.
CSS: Final = """<style>
.csk-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px 12px 14px;
  margin: 0 0 12px 0; background: #ffffff; }
.csk-title { font-size: 15px; font-weight: 600; color: #1f2328; margin: 0 0 2px 0; }
.csk-help { font-size: 12px; color: #57606a; margin: 0 0 8px 0; line-height: 1.35; }
.csk-status { border-radius: 6px; padding: 6px 10px; margin: 4px 0; line-height: 1.4;
  font-size: 13px; }
.csk-facts { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
.csk-facts th { text-align: left; color: #57606a; font-weight: 500; padding: 2px 14px 2px 0;
  vertical-align: top; white-space: nowrap; }
.csk-facts td { padding: 2px 0; color: #1f2328; }
.csk-table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.csk-table th { text-align: left; border-bottom: 2px solid #d0d7de; padding: 3px 12px 3px 0;
  color: #57606a; font-weight: 600; white-space: nowrap; }
.csk-table td { border-bottom: 1px solid #eaeef2; padding: 3px 12px 3px 0;
  white-space: nowrap; }
table.csk-table th, table.csk-table td { text-align: left; }
table.csk-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.csk-pill { border-radius: 10px; padding: 1px 8px; font-size: 12px; font-weight: 600; }
.csk-mono { font-family: monospace; font-size: 12px; color: #57606a; }
.csk-details { font-size: 12px; color: #57606a; margin: 4px 0; }
.csk-details summary { cursor: pointer; }
.csk-scroll { overflow-x: auto; max-width: 100%; }
.csk-table td.wrap { white-space: normal; min-width: 12em; }
.csk-download { display: inline-block; padding: 6px 12px; border-radius: 6px;
  background: #1d4ed8; color: #ffffff !important; text-decoration: none; font-weight: 600; }
</style>"""


def esc(text: object) -> str:
    """HTML-escape anything shown to people."""
    return html.escape(str(text))


def status_html(tone: str, text: str) -> str:
    """A coloured status line with an icon; empty text gives an empty string."""
    if not text:
        return ""
    colour = COLOURS.get(tone, COLOURS["info"])
    background = _BACKGROUNDS.get(tone, _BACKGROUNDS["info"])
    icon = _ICONS.get(tone, "")
    # Announced by screen readers when it appears: errors at once, the rest politely.
    role = (
        'role="alert" aria-live="assertive"'
        if tone == "error"
        else 'role="status" aria-live="polite"'
    )
    return (
        f'<div class="csk-status" {role} aria-atomic="true" style="color:{colour};'
        f'background:{background};border-left:4px solid {colour}">'
        f'<i class="fa {icon}" aria-hidden="true"></i> {esc(text)}</div>'
    )


def details_html(rows: Iterable[tuple[str, str]], summary: str = "Details") -> str:
    """Technical facts (timings, codes, ids) folded away under a "Details" disclosure.

    `rows` are label → value pairs; values are HTML (escape them first). Empty rows give "".
    """
    rows = list(rows)
    if not rows:
        return ""
    return (
        f'<details class="csk-details"><summary>{esc(summary)}</summary>'
        f"{facts_html(rows)}</details>"
    )


def pill(tone: str, text: str) -> str:
    """A small coloured label (e.g. "stale", "fresh")."""
    colour = COLOURS.get(tone, COLOURS["info"])
    background = _BACKGROUNDS.get(tone, _BACKGROUNDS["info"])
    return (
        f'<span class="csk-pill" style="color:{colour};background:{background};'
        f'border:1px solid {colour}">{esc(text)}</span>'
    )


def facts_html(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of label → value; values are HTML (escape them first)."""
    body = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="csk-facts">{body}</table>'


def table_html(
    header: Iterable[str],
    rows: Iterable[Iterable[str]],
    numeric: Iterable[int] = (),
    wrap: Iterable[int] = (),
) -> str:
    """A data table; cells are HTML (escape them first); `numeric` columns align right and
    `wrap` columns wrap their text. Wider than its card, only the table scrolls sideways.
    """
    right, wrapped = set(numeric), set(wrap)

    def cell(i: int, c: str) -> str:
        classes = " ".join(n for n, on in (("num", i in right), ("wrap", i in wrapped)) if on)
        return f'<td class="{classes}">{c}</td>' if classes else f"<td>{c}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="csk-scroll"><table class="csk-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def card(title: str, help_text: str, *children: Any) -> ipw.VBox:
    """A titled, bordered box holding `children`."""
    header = ipw.HTML(
        f'{CSS}<div class="csk-title">{esc(title)}</div>'
        f'<div class="csk-help">{esc(help_text)}</div>'
    )
    box = ipw.VBox([header, *children], layout=ipw.Layout(width="100%"))
    box.add_class("csk-card")
    return box


def replace_children(box: Any, children: list[Any]) -> None:
    """Show `children` in `box`, closing the widgets it showed before.

    Closed, because their models would otherwise stay alive in the kernel and the page after
    every re-render.
    """
    old = list(box.children)
    box.children = children
    for widget in old:
        if widget not in children:
            widget.close()


def tag(widget: Any, css_class: str) -> Any:
    """Give `widget` a stable CSS class (for browser tests and custom styling); return it."""
    widget.add_class(css_class)
    return widget


def ms(value: int) -> str:
    """Milliseconds for people: ``"850 ms"``, ``"1.24 s"``."""
    return f"{value:,} ms" if value < 1000 else f"{value / 1000:.2f} s"
