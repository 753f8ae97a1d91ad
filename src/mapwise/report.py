"""Readable terminal summaries of stage reports.

They are read in a terminal and in logs (DVC, CI), where rich's console is 80 columns wide (or
$COLUMNS). Every table is laid out for the console's width: name columns are never wrapped while
other columns can give way, a cell too long for its column wraps or folds onto the next line (never an
ellipsis), and the quality table, too wide for 80 columns, is printed in two parts there.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from mapwise.terminal import DataConsole

_TOP_REASONS = 3


def name_column(table: Table, header: str, **options) -> None:
    """A column of names (models, sources, tables): never wrapped while the other columns can give way, and
    folded (never cut with an ellipsis) on a console too narrow even for that."""
    table.add_column(header, no_wrap=True, overflow="fold", **options)


def fits(console: Console, table: Table) -> bool:
    """Whether `table` fits the console's width with no cell wrapped."""
    return Measurement.get(console, console.options.update_width(1 << 16), table).maximum <= console.width


def print_packed(console: Console, head: str, parts: list[str], indent: str = "  ") -> None:
    """`head` then `parts` joined by ", ", broken only between parts so that no part is split across lines."""
    width = max(console.width, 20)
    lines, line = [], head
    for n, part in enumerate(parts):
        piece = part + ("," if n < len(parts) - 1 else "")
        if len(line) + 1 + len(piece) > width and line.strip():
            lines.append(line)
            line = indent + piece
        else:
            line = f"{line} {piece}" if line else piece
    lines.append(line)
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def print_ingest_report(report: dict, console: Console | None = None) -> None:
    """One row per source and table (read, accepted, quarantined, and forgotten when any), then the main reasons.

    Where source and table side by side are too wide for the console (80 columns: logs), each source heads its
    tables in one name column.
    """
    console = console or DataConsole()
    shown = ["read", "accepted", "quarantined"]
    if any(t.get("forgotten") for d in report["sources"].values() for t in d["tables"].values()):
        shown.append("forgotten")  # rows of customers who asked to be forgotten: left out, never written
    notes = []
    for source, detail in report["sources"].items():
        for name, counts in detail["tables"].items():
            for reason, n in list(counts["reasons"].items())[:_TOP_REASONS]:
                notes.append(f"  {source} -> {name}: {reason} ({n:,})")
        notes += [f"  {source}: {f['path']} {f['status']}" for f in detail["files"] if f["status"] != "ingested"]
    table = _ingest_table(report, shown, grouped=False)
    console.print(table if fits(console, table) else _ingest_table(report, shown, grouped=True))
    if notes:
        console.print("quarantined, main reasons (all rows and reasons in the quarantine tables):")
        console.print("\n".join(notes), markup=False, highlight=False)
    print_packed(console, "canonical rows:", [f"{name} {t['rows']:,}" for name, t in report["tables"].items()])


def _ingest_table(report: dict, shown: list[str], *, grouped: bool) -> Table:
    table = Table(title="ingest: rows per source and table", title_justify="left")
    for header in ("source / table",) if grouped else ("source", "table"):
        name_column(table, header)
    for name in shown:
        table.add_column(name, justify="right", no_wrap=True, overflow="fold")  # a count is never split
    for source, detail in report["sources"].items():
        if grouped:
            table.add_row(source, *([""] * len(shown)), style="bold")
        for name, counts in detail["tables"].items():
            table.add_row(*((f"  {name}",) if grouped else (source, name)), *(f"{counts.get(k, 0):,}" for k in shown))
    return table


def print_evaluate_report(report: dict, k: int = 10, console: Console | None = None) -> None:
    """The quality table per variant: headline NDCG with its interval, and each model against the best baseline.

    Where the console is too narrow for one table (80 columns: logs), the headline and its comparison come
    first and the other metrics at K in a second table.
    """
    console = console or DataConsole()
    headline = f"ndcg@{k}"
    for variant in ("all_items", "new_items"):
        part = report[variant]
        title = f"test, {variant.replace('_', ' ')} ({part['customers']:,} customers)"
        ranked = sorted(part["recommenders"].items(), key=lambda kv: -kv[1][headline])
        if not ranked:
            console.print(f"{title}: {part.get('note', 'nothing scored')}", highlight=False)
            continue
        rows = []
        for name, m in ranked:
            low, high = m[f"{headline}_ci"]
            vs = m.get(f"{headline}_vs_best_baseline")
            verdict = ""
            if vs:
                verdict = f"{vs['diff']:+.4f} [{vs['ci'][0]:+.4f}, {vs['ci'][1]:+.4f}]" + (" better" if vs["better"] else "")
            rows.append((name, f"{m[headline]:.4f} [{low:.4f}, {high:.4f}]", verdict, f"{m[f'recall@{k}']:.4f}",
                         f"{m[f'hr@{k}']:.4f}", f"{m[f'mrr@{k}']:.4f}", f"{m[f'coverage@{k}']:.3f}"))
        main = (f"NDCG@{k} [95% CI]", "vs best baseline [95% CI]")
        more = (f"Recall@{k}", f"HR@{k}", f"MRR@{k}", f"coverage@{k}")
        whole = _quality_table(title, [r[0] for r in rows], (*main[:1], *more, main[1]),
                               [(r[1], *r[3:], r[2]) for r in rows])
        if fits(console, whole):
            console.print(whole)
        else:
            console.print(_quality_table(title, [r[0] for r in rows], main, [r[1:3] for r in rows]))
            console.print(_quality_table(f"{title}, other metrics at K={k}", [r[0] for r in rows], more,
                                         [r[3:] for r in rows]))
        before = report.get("before_refit", {}).get(variant)
        if before:
            print_packed(console, "  before the refit (trained on the training window only):",
                         [f"{name} {m[headline]:.4f}" for name, m in before.items()], indent="    ")
    if "catalogue" in report:
        console.print(f"note: {report['catalogue']['note']}", markup=False, highlight=False)


def _quality_table(title: str, names: list[str], headers: tuple[str, ...], cells: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    name_column(table, "recommender")
    for header in headers:
        table.add_column(header, justify="right", overflow="fold")
    for name, row in zip(names, cells, strict=True):
        table.add_row(name, *row)
    return table
