"""DVC stage `train`: fit each sequence model and the ranker on the split, select on validation, refit (params: train, tracking).

The ranker (`ranker` in train.models) is the two-stage recommender: candidate generators and LightGBM
LambdaRank over their features (mapwise.recommend.ranker); it trains in seconds and needs no warm start.

With `train.init_from` (a registered version: the retrain flow sets it to the champion), each model starts
from that version's weights, its item table extended to the split's items; a version that cannot be used
(missing, without weights, another architecture or other sizes) is said in one line and the model trains
from scratch.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402

from mapwise.recommend.models.module import VAL_METRIC  # noqa: E402
from mapwise.recommend.models.files import export_network, selected_network  # noqa: E402
from mapwise.recommend.models.training import RefitResult, TrainResult, mlflow_logger, refit_model, train_model  # noqa: E402
from mapwise.params import RANKER, Params  # noqa: E402
from mapwise.recommend.ranker.fit import RankerResult, fit_ranker  # noqa: E402
from mapwise.recommend.ranker.items import item_prices  # noqa: E402
from mapwise.recommend.models.warm_start import WarmStart, load_warm_start  # noqa: E402
from mapwise.recommend.split import load_split, require_trainable  # noqa: E402
from mapwise.tracking import flow_run_tags, log_run, tracking_uri  # noqa: E402
from pipelines._stage import lineage, run, write_json  # noqa: E402

CHECKPOINTS = Path(".mapwise/checkpoints")
WARM_START_CACHE = Path(".mapwise/warm-start")  # registered versions downloaded to start from


def _plot(r: TrainResult, path: Path) -> None:
    """Validation NDCG and train loss against steps, the chosen step marked, the stop reason in the title."""
    steps = [row["step"] for row in r.curve]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [row[VAL_METRIC] for row in r.curve], marker=".", label="validation NDCG@10")
    ax.axvline(r.best_step, color="green", linestyle="--", label=f"chosen: step {r.best_step}")
    ax.set(xlabel="optimizer step", ylabel="validation NDCG@10",
           title=f"{r.name}: stopped at step {r.steps} of {r.budget_steps} ({r.stop_reason})")
    loss = ax.twinx()
    loss.plot(steps, [row["train_loss"] for row in r.curve], color="grey", alpha=0.6, label="train loss")
    loss.set_ylabel("train loss")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_ranker(r: RankerResult, path: Path) -> None:
    """The ranker's validation curve over boosting rounds, and what its trees split on (gain)."""
    fig, (curve, gain) = plt.subplots(1, 2, figsize=(12, 4.5))
    curve.plot([row["round"] for row in r.curve], [row["val_ndcg@10_candidates"] for row in r.curve], marker=".")
    curve.axvline(r.report["rounds"], color="green", linestyle="--", label=f"chosen: {r.report['rounds']} rounds")
    curve.set(xlabel="boosting round", ylabel="validation NDCG@10 (over the candidates)",
              title=f"ranker: validation NDCG@10 {r.report['val_ndcg@10']:.4f} (whole catalogue)")
    curve.legend(loc="lower right")
    curve.grid(alpha=0.3)
    importance = r.report["feature_importance_gain"]
    names = list(importance)[::-1]
    total = sum(importance.values()) or 1.0
    gain.barh(names, [100 * importance[n] / total for n in names])
    gain.set(xlabel="share of the total gain (%)", title="ranker: feature importance (gain)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_ranker(params: Params, split, tags: dict) -> tuple[dict, RankerResult]:  # noqa: ANN001 - a Split
    """Fit the ranker, save it (and the validation-selected one beside it), log the run; its report entry."""
    started = time.monotonic()
    p = params.train
    price = item_prices(split.items, pl.read_parquet(params.ingest.canonical_dir / "items.parquet"))
    result = fit_ranker(split, price, p.ranker, params.split, refit=p.refit, seed=p.seed)
    result.ranker.save(p.out_dir / f"{RANKER}.pt")
    if result.selected is not None:
        result.selected.save(selected_network(p.out_dir, RANKER))
    seconds = round(time.monotonic() - started, 1)
    flat = {k: v for k, v in p.ranker.model_dump(mode="json").items() if k != "trees"}
    run_id = log_run(params.tracking, run_name=RANKER, tags={**tags, "model": RANKER},
                     params={**flat, **p.ranker.trees.model_dump(mode="json"), "rounds": result.report["rounds"]},
                     metrics={"val_ndcg_at_10": result.report["val_ndcg@10"],
                              **{f"candidate_recall_{k}": v for k, v in result.report["candidate_recall"].items()}})
    entry = {**result.report, "best_step": result.report["rounds"], "steps": result.report["rounds"],
             "budget_steps": p.ranker.trees.max_rounds, "seconds": seconds, "reused": False, "run_id": run_id}
    return entry, result


@rank_zero_only
def _write_outputs(results: list[TrainResult], refits: dict[str, RefitResult], run_ids: dict, starts: dict,
                   out_dir: Path, plots_dir: Path, report: Path, ranker: tuple[dict, RankerResult] | None) -> None:
    summary = {}
    plots_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        refit = refits.get(r.name)
        export_network(r.checkpoint, selected_network(out_dir, r.name) if refit else out_dir / f"{r.name}.pt")
        summary[r.name] = {
            "val_ndcg@10": round(r.best_score, 5),
            "best_step": r.best_step,
            "steps": r.steps,
            "budget_steps": r.budget_steps,
            "stop_reason": r.stop_reason,
            "resumed_after_steps": r.resumed_after_steps,
            "seconds": round(r.seconds, 1),
            "reused": r.reused,
            "run_id": run_ids[r.name],
            **starts.get(r.name, {}),
        }
        if refit:
            export_network(refit.checkpoint, out_dir / f"{r.name}.pt")
            summary[r.name]["refit"] = {"steps": refit.steps, "examples": refit.examples,
                                        "seconds": round(refit.seconds, 1), "reused": refit.reused}
        with open(plots_dir / f"{r.name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "epoch", "train_loss", VAL_METRIC, "lr"])
            writer.writeheader()
            writer.writerows(r.curve)
        _plot(r, plots_dir / f"{r.name}.png")
    if ranker is not None:
        summary[RANKER] = ranker[0]
        _plot_ranker(ranker[1], plots_dir / f"{RANKER}.png")
    write_json(report, summary)
    for name, s in summary.items():
        if name == RANKER:
            recall = s["candidate_recall"]["validation"]
            print(f"train {name}: val NDCG@10 {s['val_ndcg@10']:.4f} ({s['rounds']} of {s['budget_rounds']} rounds, "
                  f"{s['stop_reason']}; candidate recall {recall:.1%} on validation; {s['seconds']} s)")
            continue
        refit = f"; refit {s['refit']['steps']} steps" if "refit" in s else ""
        print(f"train {name}: val NDCG@10 {s['val_ndcg@10']:.4f} (step {s['best_step']}; stopped at "
              f"{s['steps']}/{s['budget_steps']}, {s['stop_reason']}{refit}; {s['seconds']} s)")


def warm_start(params: Params, name: str, split) -> tuple[WarmStart | None, dict]:
    """The weights `name` starts from (None: from scratch) and what the report says of it; a fallback is printed."""
    p = params.train.for_model(name)
    if p.init_from is None:
        return None, {}
    init, why = load_warm_start(tracking_uri(params.tracking), p.init_from, name, p.model, split.items,
                                WARM_START_CACHE, seed=p.seed)
    print(f"train {name}: {why}" if init else f"train {name}: from scratch: {p.init_from} not used: {why}")
    return init, {"init_from": init.source if init else None, "warm_start": why}


def stage(params: Params) -> None:
    split = load_split(params.split.out_dir)
    require_trainable(split)  # one line saying why, before any MLflow run is opened
    tags = {"mapwise.stage": "train", **lineage(params.split.out_dir), **flow_run_tags()}
    results, refits, run_ids, starts, ranker = [], {}, {}, {}, None
    for name in params.train.models:
        if name == RANKER:
            ranker = train_ranker(params, split, tags)
            continue
        p = params.train.for_model(name)
        init, starts[name] = warm_start(params, name, split)
        logger = mlflow_logger(params.tracking, run_name=name, tags={**tags, "model": name})
        status = "failed"
        try:
            logger.log_hyperparams({"model_name": name, **p.model_dump(mode="json", exclude={"model", "models", "per_model"}),
                                    **p.model.model_dump(), "warm_start": starts[name].get("warm_start", "none")})
            result = train_model(name, split, p, work_dir=CHECKPOINTS, logger=logger, progress=sys.stderr.isatty(), init=init)
            logger.log_hyperparams({"best_step": result.best_step, "stop_reason": result.stop_reason,
                                    "reused_checkpoint": result.reused})
            if p.refit:
                refits[name] = refit_model(result, split, p, work_dir=CHECKPOINTS, progress=sys.stderr.isatty(), init=init)
                logger.log_hyperparams({"refit_steps": refits[name].steps})
            status = "success"
        finally:  # a run Lightning did not end (a checkpoint reused: no fit) is ended here, never left Running
            logger.finalize(status)
        results.append(result)
        run_ids[name] = logger.run_id
    _write_outputs(results, refits, run_ids, starts, params.train.out_dir, params.evaluate.plots_dir / "train",
                   params.train.report, ranker)


def main(argv: list[str] | None = None) -> int:
    return run("train", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
