"""Readable terminal summaries of stage reports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

_TOP_REASONS = 3


def print_ingest_report(report: dict, console: Console | None = None) -> None:
    """One row per source and table (read, accepted, quarantined, and forgotten when any), then the main reasons."""
    console = console or Console()
    table = Table(title="ingest: rows per source and table", title_justify="left")
    table.add_column("source")
    table.add_column("table")
    shown = ["read", "accepted", "quarantined"]
    if any(t.get("forgotten") for d in report["sources"].values() for t in d["tables"].values()):
        shown.append("forgotten")  # rows of customers who asked to be forgotten: left out, never written
    for name in shown:
        table.add_column(name, justify="right")
    notes = []
    for source, detail in report["sources"].items():
        for name, counts in detail["tables"].items():
            table.add_row(source, name, *(f"{counts.get(k, 0):,}" for k in shown))
            for reason, n in list(counts["reasons"].items())[:_TOP_REASONS]:
                notes.append(f"  {source} -> {name}: {reason} ({n:,})")
        notes += [f"  {source}: {f['path']} {f['status']}" for f in detail["files"] if f["status"] != "ingested"]
    console.print(table)
    if notes:
        console.print("quarantined, main reasons (all rows and reasons in the quarantine tables):")
        console.print("\n".join(notes), markup=False, highlight=False)
    rows = ", ".join(f"{name} {t['rows']:,}" for name, t in report["tables"].items())
    console.print(f"canonical rows: {rows}", highlight=False, soft_wrap=True)


def print_evaluate_report(report: dict, k: int = 10, console: Console | None = None) -> None:
    """The quality table per variant: headline NDCG with its interval, and each model against the best baseline."""
    console = console or Console()
    headline = f"ndcg@{k}"
    for variant in ("all_items", "new_items"):
        part = report[variant]
        title = f"test, {variant.replace('_', ' ')} ({part['customers']:,} customers)"
        table = Table(title=title, title_justify="left")
        columns = ("recommender", f"NDCG@{k} [95% CI]", f"Recall@{k}", f"HR@{k}", f"MRR@{k}", f"coverage@{k}",
                   "vs best baseline [95% CI]")
        for col in columns:
            table.add_column(col, justify="left" if col == "recommender" else "right")
        for name, m in sorted(part["recommenders"].items(), key=lambda kv: -kv[1][headline]):
            low, high = m[f"{headline}_ci"]
            vs = m.get(f"{headline}_vs_best_baseline")
            verdict = ""
            if vs:
                verdict = f"{vs['diff']:+.4f} [{vs['ci'][0]:+.4f}, {vs['ci'][1]:+.4f}]" + (" better" if vs["better"] else "")
            table.add_row(
                name, f"{m[headline]:.4f} [{low:.4f}, {high:.4f}]", f"{m[f'recall@{k}']:.4f}",
                f"{m[f'hr@{k}']:.4f}", f"{m[f'mrr@{k}']:.4f}", f"{m[f'coverage@{k}']:.3f}", verdict,
            )
        console.print(table)
        before = report.get("before_refit", {}).get(variant)
        if before:
            console.print("  before the refit (trained on the training window only): " + ", ".join(
                f"{name} {m[headline]:.4f}" for name, m in before.items()), markup=False, highlight=False)
