"""PNG plots for the static report, drawn with matplotlib's Agg backend.

Figures are built with ``matplotlib.figure.Figure`` on an explicit
``FigureCanvasAgg`` rather than through ``pyplot``: no GUI backend is ever selected, no
global pyplot state is touched (safe in threads, tests and headless CI), and figures are
freed when they go out of scope.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["curves", "heatmap", "sparsity_curves"]

_DPI = 100


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: render with Agg, explicitly
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str],
            path: str | Path, title: str, vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """Write a heatmap of ``matrix`` (``len(rows)`` x ``len(cols)``) to the PNG ``path``.

    Each cell is annotated with its value to 2 decimals (``"n/a"`` for NaN / None, drawn
    blank); the colour scale runs from ``vmin`` to ``vmax`` with a colour bar.  Typical use:
    skills x evaluation worlds accuracy, or the overlap of localisation masks.
    Returns ``path``.
    """
    values = [[math.nan if v is None else float(v) for v in row] for row in matrix]
    shape = (len(rows), len(cols))
    if len(values) != shape[0] or any(len(row) != shape[1] for row in values):
        raise ValueError(f"matrix is not {shape[0]} x {shape[1]} (rows x cols labels)")
    if 0 in shape:
        raise ValueError("heatmap needs at least one row and one column")
    arr = np.array(values, dtype=np.float64).reshape(shape)
    if not vmin < vmax:
        raise ValueError(f"need vmin < vmax, got {vmin}, {vmax}")

    n_rows, n_cols = arr.shape
    fig = _new_figure(max(4.0, 1.0 + 0.8 * n_cols), max(3.0, 1.0 + 0.5 * n_rows))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(arr), cmap="viridis", vmin=vmin, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(n_cols), labels=[str(c) for c in cols], rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n_rows), labels=[str(r) for r in rows])
    ax.set_title(title)
    mid = (vmin + vmax) / 2
    for i in range(n_rows):
        for j in range(n_cols):
            v = arr[i, j]
            if math.isnan(v):
                ax.text(j, i, "n/a", ha="center", va="center", color="black", fontsize=9)
            else:  # light text on the dark (low) end of viridis, dark text on the bright end
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if v < mid else "black")
    return _save(fig, path)


def curves(series: Mapping[str, Sequence[tuple[int, float]]], path: str | Path, title: str,
           xlabel: str, ylabel: str, logy: bool = False, logx: bool = False) -> Path:
    """Write line plots of several ``name -> [(x, y), ...]`` series to the PNG ``path``.

    E.g. training loss per skill against step.  Points are sorted by ``x``; empty series
    are skipped; ``logy=True`` uses a log y-axis (non-positive values are then not drawn),
    ``logx=True`` a log x-axis (model sizes).
    Returns ``path``.
    """
    fig = _new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    drawn = 0
    marker = "." if max((len(p) for p in series.values()), default=0) < 30 else None
    for name, points in series.items():
        pts = sorted((float(x), float(y)) for x, y in points)
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, label=str(name), marker=marker)
        drawn += 1
    if logy:
        ax.set_yscale("log", nonpositive="mask")
    if logx:
        ax.set_xscale("log", nonpositive="mask")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def sparsity_curves(series: Mapping[str, Sequence[tuple[float, float | None]]], path: str | Path,
                    title: str, xlabel: str = "sparsity (fraction of eligible parameters)",
                    ylabel: str = "relative gain", target: float | None = None) -> Path:
    """Like :func:`curves` with a log x-axis (sparsity 1e-4 … 1e-1) and an optional dashed
    horizontal ``target`` line; points whose y is None are skipped. Returns ``path``."""
    fig = _new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    drawn = 0
    for name, points in series.items():
        pts = sorted((float(x), float(y)) for x, y in points if y is not None and x > 0)
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, label=str(name), marker="o")
        drawn += 1
    ax.set_xscale("log")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)
