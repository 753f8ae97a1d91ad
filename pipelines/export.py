"""DVC stage `export`: each trained network to ONNX, parity-checked on real histories, bundled for serving (params: export).

With `export.baselines`, every evaluate baseline is bundled too (a fixed-weight network over the last
`export.baseline_max_len` purchases), so that the register stage can serve it when no learned model beats it."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mapwise.atomic import replacing_folder
from mapwise.recommend.baselines import fit_baselines
from mapwise.recommend.servable import servable
from mapwise.bundles.format import MODEL_FILE, NETWORK_FILE, write_bundle
from mapwise.errors import MapwiseError
from mapwise.bundles.runtime import INPUT, SCORES, TOP_ITEMS, TOP_SCORES, session
from mapwise.recommend.network_file import load_network
from mapwise.recommend.models.files import network_hparams
from mapwise.recommend.export.onnx import Parity, check_parity, dynamic_length, export_onnx, export_query, padding_invariant
from mapwise.recommend.models.networks import SequenceRecommender
from mapwise.params import ExportParams, Params
from mapwise.recommend.export.tables import customer_table, item_table
from mapwise.recommend.split import HISTORY, load_split
from pipelines._stage import lineage, read_report, run, write_json


def _metrics(evaluation: dict, name: str, validation: dict) -> dict:
    test = {variant: evaluation[variant]["recommenders"][name] for variant in ("all_items", "new_items")
            if name in evaluation.get(variant, {}).get("recommenders", {})}
    return {"validation": {"ndcg@10": validation.get("val_ndcg@10")}, "test": test, "test_window": evaluation.get("split")}


def export_graphs(net: SequenceRecommender, build: Path, sample: list[np.ndarray], p: ExportParams, *,
                  top_k: int | None) -> tuple[Parity, float | None]:
    """The scoring graph (parity-checked on `sample`) and, for dot-product models that pass, the retrieval files."""
    export_onnx(net, build / MODEL_FILE, top_k=top_k)
    parity = check_parity(net, session(build / MODEL_FILE), sample, atol=p.atol, min_agreement=p.min_top10_agreement)
    return parity, export_query(net, build, sample, atol=p.atol) if parity.passed else None


def bundle_metadata(name: str, net: SequenceRecommender, top_k: int | None, parity: Parity,
                    query_diff: float | None, padding_free: bool = False) -> dict:
    """The bundle metadata the graphs determine (the stage adds what the model was trained with, lineage, metrics)."""
    return {
        "model": name,
        "n_items": net.n_items,
        "max_len": net.max_len,
        "input": INPUT,
        "outputs": [SCORES] if top_k is None else [SCORES, TOP_ITEMS, TOP_SCORES],
        "top_k": top_k,
        "dynamic_axes": {"batch": True, "length": dynamic_length(net)},
        "padding_invariant": padding_free,  # the service may pad a window to its own length only
        "parity": parity.as_dict(),
        "retrieval": {"dot_product": query_diff is not None, "query_max_abs_diff": query_diff},
    }


def baseline_networks(params: Params, split) -> dict[str, torch.nn.Module]:  # noqa: ANN001 - a Split
    """Every evaluate baseline, fitted as the evaluate stage fits it, as a servable network (too large: left out)."""
    history = split.refit if params.train.refit else split.train
    fitted, skipped = fit_baselines(params.evaluate, history, split.n_items)
    for name, why in skipped.items():
        print(f"export: baseline {name} not bundled: {why}")
    return {name: servable(name, baseline, params.export.baseline_max_len) for name, baseline in fitted.items()}


def stage(params: Params) -> None:
    p = params.export
    split = load_split(params.split.out_dir)
    trained = read_report(params.train.report, "train")
    evaluation = read_report(params.evaluate.report, "evaluate")
    canonical = params.ingest.canonical_dir
    events = pl.read_parquet(canonical / "events.parquet")
    items = item_table(split.items, pl.read_parquet(canonical / "items.parquet"), events,
                       category_tokens=params.profile.category_tokens, window_days=p.cold_start_window_days)
    sample = [np.asarray(h) for h in split.test.head(p.parity_customers)[HISTORY].to_list()]
    if not sample:
        sample = [np.asarray(h) for h in split.valid.head(p.parity_customers)[HISTORY].to_list()]
    versions = lineage(params.split.out_dir)
    report, networks = {}, {}
    for name in params.train.models:
        path = params.train.out_dir / f"{name}.pt"
        if not path.exists():
            raise MapwiseError(f"{path}: not found; run the train stage first")
        networks[name] = path
    with tempfile.TemporaryDirectory(prefix="mapwise-baselines-") as saved:
        for name, net in (baseline_networks(params, split) if p.baselines else {}).items():
            net.save(path := Path(saved) / f"{name}.pt")  # the bundle's network.pt, as for the trained networks
            networks[name] = path
        _export_all(params, networks, items, events, split, sample, trained, evaluation, versions, report)
    write_json(p.report, report)


def _export_all(params: Params, networks: dict[str, Path], items: pl.DataFrame, events: pl.DataFrame, split,  # noqa: ANN001
                sample: list[np.ndarray], trained: dict, evaluation: dict, versions: dict, report: dict) -> None:
    """Export, check and bundle each network in turn; the first that fails its parity check stops the stage."""
    p = params.export
    for name, path in networks.items():
        net = load_network(path)
        top_k = None if p.top_k is None else min(p.top_k, net.n_items)  # a catalogue smaller than K: all of it
        folder = p.out_dir / name
        with replacing_folder(folder) as build:  # built beside the previous bundle, swapped in whole when complete
            parity, query_diff = export_graphs(net, build, sample, p, top_k=top_k)
            report[name] = {**parity.as_dict(), "onnx_bytes": (build / MODEL_FILE).stat().st_size,
                            "query_max_abs_diff": query_diff}
            if not parity.passed:
                shutil.rmtree(folder, ignore_errors=True)  # no bundle for a network its graph does not match
                write_json(p.report, report)
                raise MapwiseError(
                    f"{name}: ONNX parity failed on {parity.customers} customers: max |score diff| "
                    f"{parity.max_abs_diff:.3g} (allowed {p.atol:g}), top-10 agreement {parity.top10_agreement:.2%} "
                    f"(needed {p.min_top10_agreement:.0%})"
                )
            metadata = {
                **bundle_metadata(name, net, top_k, parity, query_diff, padding_invariant(net, sample, atol=p.atol)),
                "trained_with": network_hparams(path),
                "lineage": {**versions, "train_run_id": trained.get(name, {}).get("run_id")},
                "metrics": _metrics(evaluation, name, trained.get(name, {})),
            }
            write_bundle(build, metadata, items, customer_table(events, split.items, net.max_len))
            shutil.copyfile(path, build / NETWORK_FILE)  # the weights a warm start fine-tunes (`train.init_from`)
        print(f"export {name}: {folder / MODEL_FILE} ({report[name]['onnx_bytes'] / 1e6:.1f} MB), parity max |diff| "
              f"{parity.max_abs_diff:.2g}, top-10 agreement {parity.top10_agreement:.1%} on {parity.customers} customers")


def main(argv: list[str] | None = None) -> int:
    return run("export", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
