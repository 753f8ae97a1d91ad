"""Targeting charts as PNG files: calibration, cumulative gain, Qini/uplift curves and feature attributions.

Each function draws on its own `Figure` (no pyplot, no global backend change), writes the PNG atomically
and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mapwise.pages import save_png

_RANDOM = {"color": "#8c959f", "linestyle": "--", "linewidth": 1}


def _axes(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6, 4.5)) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def reliability_plot(tables: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """Observed rate against mean predicted probability per bin, one line per model (`metrics.reliability`
    tables), with the diagonal of perfect calibration."""
    fig, ax = _axes(title, "mean predicted probability", "observed rate")
    ax.plot([0, 1], [0, 1], label="perfectly calibrated", **_RANDOM)
    for name, rows in tables.items():
        ax.plot([r["mean_predicted"] for r in rows], [r["observed_rate"] for r in rows], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    return save_png(fig, path)


def gain_plot(gains: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """Cumulative share of positives captured against share of customers contacted, one line per model
    (`metrics.lift_table` tables), with the random diagonal."""
    fig, ax = _axes(title, "share of customers (by score, best first)", "share of positives captured")
    ax.plot([0, 1], [0, 1], label="random", **_RANDOM)
    for name, rows in gains.items():
        share = [0.0] + [r["cumulative_share"] for r in rows]
        gain = [0.0] + [r["cumulative_gain"] for r in rows]
        ax.plot(share, gain, marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend()
    return save_png(fig, path)


def uplift_curves_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str, kind: str = "Qini"
) -> Path:
    """Qini or uplift curves `(x, values)`, one line per model, with the random line from (0, 0) to the
    first curve's last point."""
    fig, ax = _axes(title, "customers targeted (by predicted uplift, best first)", f"{kind} (incremental outcome)")
    for name, (x, values) in curves.items():
        ax.plot(x, values, label=name)
    if curves:
        x, values = next(iter(curves.values()))
        ax.plot([0, x[-1]], [0, values[-1]], label="random", **_RANDOM)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend()
    return save_png(fig, path)


def attribution_plot(attributions: dict[str, float], path: str | Path, title: str, top: int = 15) -> Path:
    """Horizontal bars of mean |attribution| per feature, the `top` largest, largest on top."""
    ranked = sorted(attributions.items(), key=lambda item: abs(item[1]), reverse=True)[:top]
    fig, ax = _axes(title, "mean |attribution|", "", size=(6, 0.35 * len(ranked) + 1.2))
    names = [name for name, _ in reversed(ranked)]
    ax.barh(names, [abs(value) for _, value in reversed(ranked)], color="#0969da")
    ax.grid(axis="y", visible=False)
    return save_png(fig, path)


def note_plot(text: str, path: str | Path, title: str) -> Path:
    """A figure that only says something (e.g. why a stage had nothing to plot)."""
    fig, ax = _axes(title, "", "")
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return save_png(fig, path)
