"""The profile report: one self-contained HTML page (inline CSS, figures as base64 PNG) for marketers."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter
from rich.console import Console
from rich.table import Table

from mapwise import columns as c
from mapwise.atomic import write_text
from mapwise.pages import inline_figure, page
from mapwise.profiles.build import SEGMENT_OF_RF
from mapwise.report import name_column
from mapwise.terminal import DataConsole

SEGMENT_NOTES = {
    "champions": "bought very recently and often — reward them, early access, ask for reviews",
    "loyal": "buy often, fairly recently — upsell, loyalty programme",
    "potential_loyalists": "recent, a few orders — membership, personal recommendations",
    "new": "first orders very recently — onboarding, welcome series",
    "promising": "recent, but few baskets so far — build the habit with a small offer",
    "need_attention": "middling recency, few orders — time-limited, relevant offers",
    "at_risk": "used to buy often, not lately — personal win-back",
    "cant_lose": "top past buyers, gone quiet — win them back first",
    "hibernating": "few orders, long ago — low-cost reminders",
    "lost": "few orders, longest ago — revive cheaply or let go",
}
_COLOURS = dict(zip(c.SEGMENTS, (
    "#1a7f37", "#2da44e", "#6fdd8b", "#54aeff", "#0969da", "#d4a72c", "#fb8f44", "#cf222e", "#8c959f", "#57606a",
), strict=True))
_SKEW_RATIO = 10  # log axis when the 99th percentile exceeds this many medians
def _money(value: float) -> str:
    return f"{value:,.0f}"


def _histogram(ax: Axes, values: np.ndarray, title: str, xlabel: str) -> None:
    """Histogram with a median line; heavy-tailed positive values on a log axis (others noted)."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("customers")
    if values.size == 0:
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    positive = values[values > 0]
    log = positive.size > 1 and np.quantile(positive, 0.99) > _SKEW_RATIO * np.median(positive)
    shown = positive if log else values
    bins = np.geomspace(shown.min(), shown.max(), 30) if log else 30
    ax.hist(shown, bins=bins, color="#0969da", alpha=0.8)
    median = float(np.median(values))
    ax.axvline(median, color="#cf222e", linestyle="--", label=f"median {median:,.1f}")
    ax.legend(frameon=False, loc="upper right")
    if log:
        ax.set_xscale("log")
        if hidden := values.size - positive.size:
            ax.set_xlabel(f"{xlabel}\nlog scale; {hidden:,} customers at or below 0 not shown")


def _distributions(profiles: pl.DataFrame) -> Figure:
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (column, title, xlabel) in zip(axes, (
        (c.RECENCY_DAYS, "Recency", "days since last purchase"),
        (c.FREQUENCY, "Frequency", "baskets bought"),
        (c.MONETARY, "Monetary", "net value (purchases − returns)"),
    ), strict=True):
        _histogram(ax, profiles[column].to_numpy(), title, xlabel)
    return fig


def _segment_bars(summary: pl.DataFrame) -> Figure:
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    names = summary[c.SEGMENT].to_list()
    colours = [_COLOURS[name] for name in names]
    for ax, (column, title) in zip(fig.subplots(1, 3, sharey=True), (
        ("customers", "Customers"), ("total", "Total net value"), ("mean", "Mean net value per customer"),
    ), strict=True):
        values = summary[column].to_list()
        ax.barh(names, values, color=colours)
        ax.set_title(title, fontsize=11)
        ax.invert_yaxis()
        ax.bar_label(ax.containers[0], labels=[_money(v) for v in values], fontsize=8, padding=2)
        ax.margins(x=0.25)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    return fig


def _rf_grid(profiles: pl.DataFrame) -> Figure:
    """Customers per (recency score, frequency score) cell, labelled with the cell's segment."""
    counts = np.zeros((5, 5), dtype=int)
    for r, f, n in profiles.group_by(c.R_SCORE, c.F_SCORE).len().iter_rows():
        counts[5 - r, f - 1] = n
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="customers")
    ax.set_xticks(range(5), [str(f) for f in range(1, 6)])
    ax.set_yticks(range(5), [str(r) for r in range(5, 0, -1)])
    ax.set_xlabel("frequency score (5 = most baskets)")
    ax.set_ylabel("recency score (5 = most recent)")
    ax.set_title("Customers by recency and frequency score", fontsize=11)
    dark = counts.max() * 0.6
    for row in range(5):
        for col in range(5):
            segment = SEGMENT_OF_RF[(5 - row) * 10 + col + 1].replace("_", "\n")
            ax.text(col, row, f"{segment}\n{counts[row, col]:,}", ha="center", va="center", fontsize=7,
                    color="white" if counts[row, col] > dark else "#1f2328")
    return fig


def _summary(profiles: pl.DataFrame) -> pl.DataFrame:
    """One row per segment present, in best-to-worst order."""
    total = profiles[c.MONETARY].sum()
    return (
        profiles.group_by(c.SEGMENT)
        .agg(
            pl.len().alias("customers"),
            pl.col(c.RECENCY_DAYS).mean().alias("recency"),
            pl.col(c.FREQUENCY).mean().alias("frequency"),
            pl.col(c.MONETARY).sum().alias("total"),
            pl.col(c.MONETARY).mean().alias("mean"),
            pl.col(c.RETURN_RATE).mean().alias("return_rate"),
            pl.col(c.TOP_CATEGORY).mode().sort().first().alias("interest"),
        )
        .with_columns(
            (pl.col("customers") / profiles.height).alias("share"),
            (pl.col("total") / total if total else pl.lit(None, pl.Float64)).alias("value_share"),
        )
        .sort(pl.col(c.SEGMENT).replace_strict({name: i for i, name in enumerate(c.SEGMENTS)}))
    )


def _table(summary: pl.DataFrame) -> str:
    head = ("segment", "what it means — what to do", "customers", "share", "mean days since purchase",
            "mean baskets", "mean net value", "total net value", "share of value", "return rate", "typical interest")
    rows = []
    for s in summary.iter_rows(named=True):
        value_share = "–" if s["value_share"] is None else f"{s['value_share']:.0%}"
        cells = (
            f'<span class="dot" style="background:{_COLOURS[s[c.SEGMENT]]}"></span>{html.escape(s[c.SEGMENT])}',
            html.escape(SEGMENT_NOTES[s[c.SEGMENT]]), f"{s['customers']:,}", f"{s['share']:.0%}",
            f"{s['recency']:,.0f}", f"{s['frequency']:,.1f}", _money(s["mean"]), _money(s["total"]), value_share,
            f"{s['return_rate']:.1%}", html.escape(s["interest"]),
        )
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def print_profile_summary(profiles: pl.DataFrame, console: Console | None = None) -> None:
    """Customers, cutoff and one row per segment (customers, share, net value) on the terminal."""
    console = console or DataConsole()
    as_of = profiles[c.AS_OF].max()
    console.print(f"profile: {profiles.height:,} customers as of {as_of:%Y-%m-%d %H:%M:%S.%f %Z}", highlight=False,
                  soft_wrap=True)
    table = Table()
    summary = _summary(profiles)
    name_column(table, "segment")
    for name in ("customers", "share", "total net value"):
        table.add_column(name, justify="right", overflow="fold")
    for s in summary.iter_rows(named=True):
        table.add_row(s[c.SEGMENT], f"{s['customers']:,}", f"{s['share']:.0%}", _money(s["total"]))
    console.print(table)


def write_profile_report(profiles: pl.DataFrame, path: Path) -> None:
    """Write the HTML report for a profiles table: key figures, RFM distributions, segments."""
    as_of = profiles[c.AS_OF].max()
    when = "–" if as_of is None else as_of.strftime("%Y-%m-%d %H:%M UTC")
    repeat = profiles.filter(pl.col(c.FREQUENCY) > 1).height / profiles.height if profiles.height else 0.0
    kpis = (
        (f"{profiles.height:,}", "customers with a purchase"),
        (_money(profiles[c.MONETARY].sum()), "total net value"),
        (f"{profiles[c.RECENCY_DAYS].median() or 0:,.0f}", "median days since last purchase"),
        (f"{repeat:.0%}", "bought more than one basket"),
    )
    summary = _summary(profiles)
    kpi_html = "".join(f'<div class="kpi"><b>{v}</b><span>{k}</span></div>' for v, k in kpis)
    body = f"""<div class="kpis">{kpi_html}</div>
<h2>Segments</h2>
<p class="note">Each customer gets a score from 1 to 5 (5 = best) for recency, frequency and monetary value,
by fifths of all customers (ties share the lower score). The segment comes from the recency and frequency scores
(grid below); net value is purchases minus returns.</p>
{_table(summary)}
{inline_figure(_segment_bars(summary))}
<h2>Recency, frequency, monetary</h2>
<p class="note">Heavy-tailed measures are drawn on a log scale; the dashed line is the median.</p>
{inline_figure(_distributions(profiles))}
<h2>How segments are assigned</h2>
{inline_figure(_rf_grid(profiles))}
"""
    intro = f"As of {html.escape(when)}: built only from events before this time."
    body = page(f"Customer profiles {when}", intro, body, heading="Customer profiles")
    write_text(path, body)
