"""Training and scoring throughput of the sequence models and the ranker on the split in params (run `dvc repro split`
first).

Writes bench/results/train.json: per model, training examples/s and seconds for one epoch (the ranker: the
whole fit, selection and refit included), full-ranking evaluation throughput (customers/s over the whole
catalogue) and the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mapwise.recommend.evaluate import network_scorer
from mapwise.recommend.metrics import top_k
from mapwise.recommend.models.training import build_module, training_batches, training_examples
from mapwise.params import load_params
from mapwise.recommend.split import HISTORY, load_split

ROOT = Path(__file__).resolve().parents[1]


def bench_model(name: str, split, p, repeats: int) -> dict:
    torch.manual_seed(0)
    p = p.for_model(name)
    module = build_module(name, split, p)
    windows = training_examples(module, split.train, p)
    examples = int((windows.inputs != 0).sum()) if module.net.every_position else len(windows)
    loader = training_batches(windows, p)
    trainer = L.Trainer(accelerator=p.accelerator, devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, loader)
    epoch_s = time.perf_counter() - start
    histories = [np.asarray(h) for h in split.test[HISTORY].to_list()]
    return {
        "model": name,
        "train_examples": examples,
        "epoch_s": round(epoch_s, 2),
        "train_examples_per_s": round(examples / epoch_s),
        "eval_customers": len(histories),
        "eval_customers_per_s": scoring_rate(module.net.eval(), histories, repeats),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def scoring_rate(net: torch.nn.Module, histories: list[np.ndarray], repeats: int) -> int:
    """Customers per second ranked over the whole catalogue (top 10), the best of `repeats` timings."""
    score = network_scorer(net)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        top_k(score(histories), 10)
        times.append(time.perf_counter() - start)
    return round(len(histories) / min(times))


def bench_ranker(split, params, repeats: int) -> dict:  # noqa: ANN001 - a Split and the Params
    """The ranker's whole fit (label windows, generators, trees, validation, refit) and its scoring throughput."""
    import polars as pl

    from mapwise.recommend.ranker.fit import fit_ranker
    from mapwise.recommend.ranker.items import item_prices

    price = item_prices(split.items, pl.read_parquet(ROOT / params.ingest.canonical_dir / "items.parquet"))
    start = time.perf_counter()
    result = fit_ranker(split, price, params.train.ranker, params.split, refit=params.train.refit, seed=params.train.seed)
    fit_s = time.perf_counter() - start
    rows = result.report["rows"]["training"] + result.report["rows"]["validation"]
    histories = [np.asarray(h) for h in split.test[HISTORY].to_list()]
    return {
        "model": "ranker",
        "train_examples": rows,
        "epoch_s": round(fit_s, 2),
        "train_examples_per_s": round(rows / fit_s),
        "rounds": result.report["rounds"],
        "eval_customers": len(histories),
        "eval_customers_per_s": scoring_rate(result.ranker, histories, repeats),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--repeats", type=int, default=3, help="scoring timings keep the best of N")
    parser.add_argument("--models", nargs="+", default=None,
                        help="these of train.models only (default: all); the others' figures in the file are kept")
    args = parser.parse_args()
    params = load_params(args.params)
    split = load_split(ROOT / params.split.out_dir)
    results = [bench_ranker(split, params, args.repeats) if name == "ranker" else bench_model(name, split, params.train, args.repeats)
               for name in args.models or params.train.models]
    report = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "data": {"items": split.n_items, "train_interactions": split.train.height},
        "model": params.train.model.model_dump(),
        "batch_size": params.train.batch_size,
        "results": results,
    }
    out = ROOT / "bench" / "results" / "train.json"
    if args.models and out.exists():
        measured = {r["model"] for r in results}
        report["results"] = [r for r in json.loads(out.read_text())["results"] if r["model"] not in measured] + results
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(f"{r['model']}: epoch {r['epoch_s']} s ({r['train_examples_per_s']:,} examples/s), "
              f"scoring {r['eval_customers_per_s']:,} customers/s over {split.n_items:,} items, peak {r['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
