"""DVC stage `register`: the chosen export becomes a registered model version with alias `challenger` (params: register)."""

from __future__ import annotations

import sys
from pathlib import Path

from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.bundles.registry import register_bundle
from mapwise.bundles.format import MODEL_FILE
from mapwise.serving.targeting import propensity_model_name, uplift_model_name
from mapwise.tracking import tracking_uri
from pipelines._stage import read_report, run, write_json


def choose(params: Params) -> tuple[str, dict[str, float]]:
    """The candidate model: the one named in params, or the best on validation NDCG@10 (never on test)."""
    trained = read_report(params.train.report, "train")
    scores = {name: trained[name]["val_ndcg@10"] for name in params.train.models if name in trained}
    if params.register.candidate != "best":
        if params.register.candidate not in params.train.models:
            raise MapwiseError(f"register.candidate: '{params.register.candidate}' is not in train.models {params.train.models}")
        return params.register.candidate, scores
    if not scores:
        raise MapwiseError(f"{params.train.report}: no trained models listed; run the train stage first")
    return max(scores, key=scores.get), scores


def served(params: Params, name: str) -> dict:
    """What to register (`model`) and why, in one plain sentence: `name` if it beats the best baseline of its run
    beyond the paired 95% interval on the test window (the gate's variant), else that baseline."""
    variant, headline = params.promote.variant, f"ndcg@{params.evaluate.headline_k}"
    models = read_report(params.evaluate.report, "evaluate").get(variant, {}).get("recommenders", {})
    vs = models.get(name, {}).get(f"{headline}_vs_best_baseline")
    if vs is None:
        return {"model": name, "baseline": False,
                "reason": f"{name} serves; no baseline was evaluated beside it (evaluate.baselines)"}
    baseline = vs["baseline"]
    figures = (f"NDCG@{params.evaluate.headline_k} {models[name][headline]:.4f} vs {models[baseline][headline]:.4f} on the "
               f"test window ({variant.replace('_', ' ')}), difference {vs['diff']:+.4f} [95% CI {vs['ci'][0]:+.4f}, "
               f"{vs['ci'][1]:+.4f}]")
    if vs["better"]:
        return {"model": name, "baseline": False, "beats_baseline": True,
                "reason": f"{name} serves: it beats the best baseline, {baseline}: {figures}"}
    if not (params.export.out_dir / baseline / MODEL_FILE).is_file():
        return {"model": name, "baseline": False, "beats_baseline": False, "reason": (
            f"No learned model beats the best baseline, {baseline}: {name} (best on validation) {figures}; {baseline} "
            f"was not bundled (export.baselines is false), so the gate will refuse {name}")}
    return {"model": baseline, "baseline": True, "reason": (
        f"No learned model beats the best baseline, so {baseline} serves: {name} (best on validation) {figures}")}


def target_bundles(params: Params) -> dict[str, Path]:
    """Registered name -> bundle folder of every targeting model the propensity and uplift stages exported."""
    found, prefix = {}, params.register.target_prefix
    if params.propensity is not None:
        for task in params.propensity.tasks:
            if (params.propensity.out_dir / task / MODEL_FILE).is_file():
                found[propensity_model_name(prefix, task)] = params.propensity.out_dir / task
    if params.uplift is not None and (params.uplift.out_dir / MODEL_FILE).is_file():
        found[uplift_model_name(prefix)] = params.uplift.out_dir
    return found


def stage(params: Params) -> None:
    p = params.register
    best, scores = choose(params)
    chosen = served(params, best)
    name = chosen["model"]
    folder = params.export.out_dir / name
    version, created = register_bundle(params.tracking, p.model_name, folder, chosen)
    print(f"register: {chosen['reason']}")
    targets = {}
    for model_name, bundle in target_bundles(params).items():
        target_version, target_created = register_bundle(params.tracking, model_name, bundle)
        targets[model_name] = {"version": target_version, "created": target_created, "bundle": str(bundle)}
        print(f"register {model_name}: version {target_version}{'' if target_created else ' (already registered)'}, alias challenger")
    write_json(p.report, {"model_name": p.model_name, "version": version, "model": name, "created": created,
                          "bundle": str(folder), "validation_ndcg@10": scores, "best_learned": best,
                          "served": chosen,
                          "tracking_uri": tracking_uri(params.tracking),
                          "targets": targets})
    state = "registered as" if created else "already registered as"
    print(f"register {name} (validation NDCG@10 {scores.get(name, float('nan')):.4f}): {state} "
          f"{p.model_name} version {version}, alias challenger")


def main(argv: list[str] | None = None) -> int:
    return run("register", __doc__, stage, argv)


if __name__ == "__main__":
    sys.exit(main())
