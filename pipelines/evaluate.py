"""DVC stage `evaluate`: full-ranking metrics of models and baselines on the test window (params: evaluate).

With `train.refit`, the models scored are the refit ones and the baselines are fitted on the same
data (everything before the test); the validation-selected models' scores are reported beside them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from mapwise.recommend.baselines import fit_baselines  # noqa: E402
from mapwise.errors import MapwiseError  # noqa: E402
from mapwise.recommend.evaluate import VARIANTS, before_refit, cases, evaluate, network_scorer  # noqa: E402
from mapwise.recommend.ranker.diagnostics import ranker_section  # noqa: E402
from mapwise.recommend.models.files import selected_network  # noqa: E402
from mapwise.recommend.network_file import load_network  # noqa: E402
from mapwise.params import RANKER, Params  # noqa: E402
from mapwise.report import print_evaluate_report  # noqa: E402
from mapwise.recommend.slices import customer_slices, target_slices  # noqa: E402
from mapwise.recommend.split import describe_split, load_split  # noqa: E402
from pipelines._stage import run, write_json  # noqa: E402


def _plots(report: dict, ks: list[int], folder: Path) -> None:
    """Metric vs K per variant: CSV for `dvc plots`, one PNG to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(6 * len(VARIANTS), 4))
    for ax, variant in zip(axes, VARIANTS, strict=True):
        recs = report[variant]["recommenders"]
        rows = [{"k": k, **{name: m[f"ndcg@{k}"] for name, m in recs.items()}} for k in ks]
        pl.DataFrame(rows).write_csv(folder / f"ndcg_{variant}.csv")
        for name in recs:
            ax.plot(ks, [m[name] for m in rows], marker="o", label=name)
        ax.set(title=f"{variant.replace('_', ' ')}", xlabel="K", ylabel="NDCG@K")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(folder / "ndcg_vs_k.png", dpi=100)
    plt.close(fig)


def stage(params: Params) -> None:
    p = params.evaluate
    split = load_split(params.split.out_dir)
    history = split.refit if params.train.refit else split.train  # what the models learnt from: all before the test
    fitted, skipped = fit_baselines(p, history, split.n_items)
    scorers = {name: baseline.score for name, baseline in fitted.items()}
    for name, why in skipped.items():
        print(f"evaluate: baseline {name} skipped: {why}")
    for name in params.train.models:
        path = params.train.out_dir / f"{name}.pt"
        if not path.exists():
            raise MapwiseError(f"{path}: not found; run the train stage first")
        scorers[name] = network_scorer(load_network(path))
    slices = {**customer_slices(params), **target_slices(split)}
    report = evaluate(split, scorers, ks=sorted(p.ks), slices=slices, baselines=p.baselines,
                      bootstrap=p.bootstrap, seed=p.seed, headline_k=p.headline_k)
    selected = {name: selected_network(params.train.out_dir, name) for name in params.train.models}
    if params.train.refit and all(path.exists() for path in selected.values()):
        report["before_refit"] = before_refit(split, report, {n: network_scorer(load_network(f)) for n, f in selected.items()},
                                              ks=sorted(p.ks), headline_k=p.headline_k, bootstrap=p.bootstrap, seed=p.seed)
    if RANKER in scorers:
        ranker = load_network(params.train.out_dir / f"{RANKER}.pt")
        report[RANKER] = ranker_section(ranker, cases(split), report, p.headline_k)
    if skipped:
        report["skipped_baselines"] = skipped
    report["split"] = describe_split(params.split)  # what the method used, nothing another method would have
    write_json(p.report, report)
    _plots(report, sorted(p.ks), p.plots_dir)
    print_evaluate_report(report, p.headline_k)


def main(argv: list[str] | None = None) -> int:
    return run("evaluate", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
