"""The synthetic-data report: plots of shape, marginals, correlations, privacy distances and GAN losses, and
one self-contained HTML page with the summary per generator."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mapwise.atomic import write_text
from mapwise.pages import inline_png, num, page, save_png, table

MAX_HISTOGRAMS = 6  # numeric columns whose marginals are drawn
_REAL = {"color": "#1f2328", "linewidth": 2}


def _figure(panels: int, columns: int, size: tuple[float, float] = (4.2, 3.4)) -> tuple[Figure, list]:
    rows = max(1, -(-panels // columns))
    fig = Figure(figsize=(size[0] * min(panels, columns), size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, min(panels, columns), i + 1) for i in range(panels)]


def _shapes_plot(generators: dict, path: Path) -> None:
    names = list(generators)
    columns = list(next(iter(generators.values()))["column_shapes"])
    fig, (ax,) = _figure(1, 1, size=(max(6.0, 0.6 * len(columns) * len(names)), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(len(columns)) + i * width, [generators[name]["column_shapes"][c] for c in columns], width,
               label=name)
    ax.set_xticks(np.arange(len(columns)) + 0.4 - width / 2, columns, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("column shape (1 - KS or 1 - TVD)")
    ax.set_title("How well each column's distribution is kept")
    ax.legend()
    save_png(fig, path)


def _marginals_plot(real: dict, generators: dict, path: Path) -> None:
    shown = list(real["histograms"])[:MAX_HISTOGRAMS]
    fig, axes = _figure(len(shown), 3)
    for ax, name in zip(axes, shown, strict=True):
        hist = real["histograms"][name]
        ax.stairs(hist["shares"], hist["edges"], label="real", **_REAL)
        for gen, res in generators.items():
            ax.stairs(res["histograms"][name], hist["edges"], label=gen)
        if hist["log"]:
            ax.set_xscale("log")
        ax.set_title(name)
        ax.set_ylabel("share of rows")
    axes[0].legend(fontsize=8)
    save_png(fig, path)


def _correlations_plot(names: list[str], real: dict, generators: dict, path: Path) -> None:
    matrices = {"real": real["correlations"], **{g: r["correlations"] for g, r in generators.items()}}
    fig, axes = _figure(len(matrices), 3, size=(4.2, 4.0))
    for ax, (title, matrix) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(np.array(matrix), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{title} (Spearman)")
    fig.colorbar(image, ax=axes, shrink=0.6)
    save_png(fig, path)


def _dcr_plot(generators: dict, path: Path) -> None:
    fig, axes = _figure(len(generators), 3)
    for ax, (name, res) in zip(axes, generators.items(), strict=True):
        hist = res["privacy"]["histogram"]
        ax.stairs(hist["holdout"], hist["edges"], label="real holdout", **_REAL)
        ax.stairs(hist["synthetic"], hist["edges"], label=name, fill=True, alpha=0.5)
        ax.set_title(f"{name}: distance to closest training row", fontsize=9)
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=8)
    save_png(fig, path)


def _loss_plot(histories: dict[str, list[dict]], path: Path) -> None:
    fig, axes = _figure(len(histories), 2)
    for ax, (name, history) in zip(axes, histories.items(), strict=True):
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["generator_loss"] for h in history], label="generator")
        ax.plot(epochs, [h["critic_loss"] for h in history], label="critic")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(f"{name}: training losses")
        ax.set_xlabel("epoch")
        ax.legend()
    save_png(fig, path)


def write_synth_report(report: dict, plots_dir: Path, html: Path) -> None:
    """Plots into `plots_dir` and the HTML page. `report` is `quality.evaluate`'s, where a generator's entry may
    also hold `history` (a GAN's per-epoch losses) and `near_copies` (`profiles.sample_profiles`' counts)."""
    generators = report["generators"]
    histories = {name: res["history"] for name, res in generators.items() if res.get("history")}
    plots = {"shapes": bool(generators), "marginals": bool(generators and report["real"]["histograms"]),
             "correlations": bool(generators and report["numeric"]), "dcr": bool(generators), "losses": bool(histories)}
    if plots["shapes"]:
        _shapes_plot(generators, plots_dir / "shapes.png")
        _dcr_plot(generators, plots_dir / "dcr.png")
    if plots["marginals"]:
        _marginals_plot(report["real"], generators, plots_dir / "marginals.png")
    if plots["correlations"]:
        _correlations_plot(report["numeric"], report["real"], generators, plots_dir / "correlations.png")
    if plots["losses"]:
        _loss_plot(histories, plots_dir / "losses.png")
    rows = []
    for name, res in generators.items():
        util, priv = res["utility"], res["privacy"]
        rows.append([escape(name), num(res["shape"]), num(res["pair_trends"]),
                     f"{num(util['tstr']['roc_auc'])} vs {num(util['trtr']['roc_auc'])}",
                     f"{num(priv['synthetic_median'])} vs {num(priv['holdout_median'])}",
                     f"{priv['share_closer_than_holdout_p5']:.1%}", str(priv["exact_copies"]),
                     num(res.get("near_copies", {}).get("dropped"))])
    ref = report["holdout"]
    rows.append(["real holdout (reference)", num(ref["shape"]), num(ref["pair_trends"]), "–", "–", "–", "–", "–"])
    body = [table(["generator", "column shapes", "pair trends", f"TSTR vs TRTR ROC AUC ({report['target']})",
                    "DCR median vs holdout", "closer than holdout p5", "exact copies", "near-copies dropped"], rows)]
    sections = [("shapes", "Column shapes"), ("marginals", "Numbers: real against synthetic"),
                ("correlations", "Correlations between numbers"), ("dcr", "Privacy: distance to the closest real row"),
                ("losses", "GAN training")]
    body += [f"<h2>{title}</h2>{inline_png(plots_dir / f'{key}.png')}" for key, title in sections if plots[key]]
    intro = (f"Generators fitted on {report['real']['rows']:,} real training rows, judged against them and against "
             f"{report['holdout']['rows']:,} real holdout rows they never saw. Shapes: 1 - KS (numbers), 1 - TVD "
             "(categories); pair trends: Spearman correlation similarity or contingency similarity. TSTR: a classifier "
             "trained on synthetic rows, TRTR: on real ones, both tested on the holdout. DCR: distance to the closest "
             "training row; a holdout row's DCR is what a fresh real customer looks like.")
    write_text(html, page("Synthetic profiles", intro, "".join(body)))
