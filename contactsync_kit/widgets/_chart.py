"""The cache-age bar chart, rendered off-screen to PNG (no pyplot, no global state)."""

from __future__ import annotations

import io
from typing import Any

import polars as pl

__all__ = ["age_chart_png"]

__io__ = "ui"

_OK = "#2da44e"
_STALE = "#cf222e"


def age_chart_png(
    report: pl.DataFrame, threshold_hours: float, *, label_column: str = "label"
) -> bytes:
    """Horizontal bars of cache age (hours) per organisation, with the stale threshold line.

    `report` is `assess_staleness` output with a `label_column` of display names. Organisations
    that never synced get no bar and read "never synced".
    """
    # Imported here: matplotlib takes a noticeable moment to import and most users of the
    # kit never draw a chart.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [str(v) for v in report.get_column(label_column).to_list()]
    ages = [None if s is None else s / 3600 for s in report.get_column("age_s").to_list()]
    texts = [str(v) for v in report.get_column("age").to_list()]
    stale = report.get_column("stale").to_list()
    height = 1.5 + 0.42 * max(len(labels), 1)
    fig = Figure(figsize=(6.4, height), dpi=96)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    widths = [a if a is not None else 0.0 for a in ages]
    colours = [_STALE if s else _OK for s in stale]
    longest = max([threshold_hours, *widths]) if widths else threshold_hours
    # A just-synced organisation still gets a visible stub of a bar, in its colour.
    stub = longest * 0.006
    drawn = [0.0 if a is None else max(w, stub) for a, w in zip(ages, widths, strict=True)]
    ax.barh(positions, drawn, color=colours, height=0.6)
    for y, age, text in zip(positions, ages, texts, strict=True):
        ax.text((age or 0.0) + longest * 0.015, y, text, va="center", fontsize=8, color="#1f2328")
    ax.axvline(threshold_hours, color="#9a6700", linestyle="--", linewidth=1.2)
    _legend(ax, threshold_hours)
    _axes(ax, labels, longest)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _legend(ax: Any, threshold_hours: float) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    threshold = f"stale after {threshold_hours:g} h"
    ax.legend(
        handles=[
            Patch(color=_OK, label="fresh"),
            Patch(color=_STALE, label="stale"),
            Line2D([], [], color="#9a6700", linestyle="--", label=threshold),
        ],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=3,
        frameon=False,
        fontsize=8,
    )


def _axes(ax: Any, labels: list[str], longest: float) -> None:
    """Organisations down the side (the first on top), hours along the bottom."""
    ax.set_yticks(list(range(len(labels))), labels=labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, longest * 1.25)
    ax.set_ylim(len(labels) - 0.4 if labels else 1, -0.6)
    ax.set_xlabel("hours since the last successful sync", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not labels:
        ax.text(0.5, 0.5, "nothing cached", transform=ax.transAxes, ha="center", color="#57606a")
