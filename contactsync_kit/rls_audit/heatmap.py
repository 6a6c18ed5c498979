"""The audit's heat map: the matrix pivoted to one row per user x organisation and one column
per table/probe (`heatmap_frame`, pure polars) and drawn with matplotlib, imported on use
(`plot_heatmap`, `heatmap_png`). Nothing here touches the disk or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from .frames import probe_rank, table_rank

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["heatmap_frame", "heatmap_png", "plot_heatmap"]
__io__ = "ui"

_STATUS_CODES: Final = {"pass": 0, "missing": 1, "leaked": 2, "error": 3}
#: Each status's colour, in status-code order.
_COLOURS: Final = {"pass": "#2e9e4f", "missing": "#f0a020", "leaked": "#d62728", "error": "#8c8c8c"}
#: Tick labels at 10 pt: about 14 px at `heatmap_png`'s 100 dpi (7 pt at 80 dpi was ~5 px).
_LABEL_PT: Final = 10


def heatmap_frame(
    matrix: pl.DataFrame,
    organisation_names: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The matrix pivoted for a heat map: one row per user x organisation, one column per
    table/probe, the cell a status code (0 pass, 1 missing, 2 leaked, 3 error; null when the
    probe was not run). Pure.
    """
    names = organisation_names or {}
    status = (
        pl.when(pl.col("verdict") == "error")
        .then(_STATUS_CODES["error"])
        .when(pl.col("leaked").fill_null(0) > 0)
        .then(_STATUS_CODES["leaked"])
        .when(pl.col("missing").fill_null(0) > 0)
        .then(_STATUS_CODES["missing"])
        .otherwise(_STATUS_CODES["pass"])
    )
    long = matrix.with_columns(
        pl.format(
            "{} · {}",
            pl.col("user"),
            pl.col("organisation_id").replace_strict(
                names, default=pl.col("organisation_id").str.slice(0, 8)
            ),
        ).alias("row"),
        pl.format("{}/{}", pl.col("table"), pl.col("probe")).alias("cell"),
        status.alias("status"),
    )
    columns = (
        long.select("table", "probe", "cell")
        .unique()
        .sort(table_rank(pl.col("table")), "table", probe_rank(pl.col("probe")))
        .get_column("cell")
        .to_list()
    )
    wide = long.pivot(
        on="cell", index="row", values="status", aggregate_function="max", maintain_order=True
    )
    return wide.select("row", *[c for c in columns if c in wide.columns])


def _draw_cells(ax: Axes, values: Any, rows: list[str], cells: list[str]) -> None:
    """The status codes as coloured cells (white where not probed), with labelled ticks."""
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(list(_COLOURS.values())).with_extremes(bad="#ffffff")
    ax.imshow(values, cmap=colours, vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cells)), cells, rotation=60, ha="right", fontsize=_LABEL_PT)
    ax.set_yticks(range(len(rows)), rows, fontsize=_LABEL_PT)
    ax.set_xticks([x - 0.5 for x in range(1, len(cells))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="#ffffff", linewidth=0.6)
    ax.tick_params(which="minor", length=0)


def plot_heatmap(
    matrix: pl.DataFrame,
    organisation_names: Mapping[str, str] | None = None,
    *,
    title: str = "RLS audit",
) -> Figure:
    """A heat map of the matrix: green pass, orange missing, red leaked, grey error, white
    not probed; failing cells are annotated with ``+leaked`` / ``-missing`` row counts.

    Built on `matplotlib.figure.Figure` directly (no pyplot state, so no inline backend
    needed); in a notebook show ``IPython.display.Image(heatmap_png(...))``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    wide = heatmap_frame(matrix, organisation_names)
    rows = wide.get_column("row").to_list()
    cells = [c for c in wide.columns if c != "row"]
    fig = Figure(
        figsize=(max(6.5, 0.5 * len(cells) + 4.5), max(2.8, 0.32 * len(rows) + 3.0)),
        layout="constrained",
    )
    ax = fig.add_subplot()
    failing = int(matrix.filter(pl.col("verdict") != "pass").height)
    ax.set_title(f"{title}: {matrix.height} probe cells, {failing} failing", fontsize=10)
    if not rows or not cells:
        ax.text(0.5, 0.5, "nothing probed", ha="center", va="center", transform=ax.transAxes)
        return fig
    _draw_cells(ax, wide.select(cells).to_numpy().astype(float), rows, cells)
    labels = _cell_labels(matrix, organisation_names)
    for (y, row), (x, cell) in ((r, c) for r in enumerate(rows) for c in enumerate(cells)):
        text = labels.get((row, cell))
        if text:
            ax.text(x, y, text, ha="center", va="center", fontsize=_LABEL_PT - 1, color="#ffffff")
    fig.legend(
        handles=[Patch(color=colour, label=status) for status, colour in _COLOURS.items()],
        loc="outside lower center",
        ncol=4,
        frameon=False,
        fontsize=8,
    )
    return fig


def _cell_labels(
    matrix: pl.DataFrame,
    organisation_names: Mapping[str, str] | None,
) -> dict[tuple[str, str], str]:
    names = organisation_names or {}
    labels: dict[tuple[str, str], str] = {}
    for row in matrix.filter(pl.col("verdict") != "pass").iter_rows(named=True):
        org = names.get(row["organisation_id"], row["organisation_id"][:8])
        parts = [
            f"+{row['leaked']}" if row["leaked"] else "",
            f"-{row['missing']}" if row["missing"] else "",
        ]
        labels[(f"{row['user']} · {org}", f"{row['table']}/{row['probe']}")] = (
            " ".join(p for p in parts if p) or "err"
        )
    return labels


def heatmap_png(
    matrix: pl.DataFrame,
    organisation_names: Mapping[str, str] | None = None,
    *,
    title: str = "RLS audit",
    dpi: int = 100,
) -> bytes:
    """`plot_heatmap` rendered off-screen to PNG bytes (for widgets, notebooks and files)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_heatmap(matrix, organisation_names, title=title)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
