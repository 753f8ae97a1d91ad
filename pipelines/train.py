"""DVC stage `train`: fit each sequence model on the split, select on validation (params: train, tracking)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from mapwise.models.training import export_network, train_model
from mapwise.params import Params
from mapwise.split import load_split
from mapwise.tracking import flow_run_tags, mlflow_logger
from pipelines._stage import lineage, run, write_json

CHECKPOINTS = Path(".mapwise/checkpoints")


@rank_zero_only
def _write_outputs(results: list, run_ids: dict, out_dir: Path, plots_dir: Path, report: Path) -> None:
    summary = {}
    plots_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        export_network(r.checkpoint, out_dir / f"{r.name}.pt")
        summary[r.name] = {
            "val_ndcg@10": round(r.best_score, 5),
            "best_epoch": r.best_epoch,
            "epochs": r.epochs,
            "resumed_after_epochs": r.resumed_after_epochs,
            "seconds": round(r.seconds, 1),
            "reused": r.reused,
            "run_id": run_ids[r.name],
        }
        with open(plots_dir / f"{r.name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "train_loss", "val_ndcg@10"])
            writer.writeheader()
            writer.writerows(r.curve)
    write_json(report, summary)
    for name, s in summary.items():
        print(f"train {name}: val NDCG@10 {s['val_ndcg@10']:.4f} (epoch {s['best_epoch']}, {s['seconds']} s)")


def stage(params: Params) -> None:
    split = load_split(params.split.out_dir)
    p = params.train
    tags = {"mapwise.stage": "train", **lineage(params.split.out_dir), **flow_run_tags()}
    results, run_ids = [], {}
    for name in p.models:
        logger = mlflow_logger(params.tracking, run_name=name, tags={**tags, "model": name})
        logger.log_hyperparams({"model_name": name, **p.model_dump(mode="json", exclude={"model", "models"}),
                                **p.model.model_dump()})
        results.append(train_model(name, split, p, work_dir=CHECKPOINTS, logger=logger, progress=sys.stderr.isatty()))
        run_ids[name] = logger.run_id
    _write_outputs(results, run_ids, p.out_dir, params.evaluate.plots_dir / "train", p.report)


def main(argv: list[str] | None = None) -> int:
    return run("train", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
