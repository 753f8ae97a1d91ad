"""The gate for targeting models: challenger and champion bundles score the same held-out rows;
`champion` moves when the challenger's ROC AUC (propensity) or mean Qini over arms (uplift) is higher
by at least the margin. Scoring runs the bundles' ONNX graphs, as serving does. A version that serves a
baseline in its network's place (tags `served*`, from the bundle's metadata) says so in the promotion's reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from mapwise.params import TrackingParams
from mapwise.bundles.registry import CHALLENGER, CHAMPION, Decision, alias_version, client, download, forgotten_in
from mapwise.bundles.format import METADATA_FILE, MODEL_FILE, bundle_files
from mapwise.bundles.runtime import session
from mapwise.targeting import metrics as m
from mapwise.targeting.features import Encoder
from mapwise.tracking import tracking_uri

ID, LABEL, SEQUENCE, ARM = "row_id", "label", "sequence", "arm"


def bundle_outputs(folder: Path, frame: pl.DataFrame) -> tuple[dict, np.ndarray]:
    """The bundle's metadata and its graph's output on `frame`'s raw feature columns (calibration applied)."""
    files = bundle_files(folder)
    meta = json.loads(files[METADATA_FILE].read_text())
    encoder = Encoder.from_dict(meta["encoder"])
    feeds = {"features": encoder.transform(frame)}
    length = meta.get("sequence_length", 0)
    if length:
        vocab = pl.read_parquet(files["items.parquet"])
        index = dict(zip(vocab["item_id"].to_list(), vocab["item_idx"].to_list()))
        seq = np.zeros((frame.height, length), dtype=np.int64)
        for row, items in enumerate(frame[SEQUENCE].to_list() if SEQUENCE in frame.columns else [[]] * frame.height):
            known = [index[i] for i in (items or []) if i in index][-length:]
            if known:
                seq[row, length - len(known):] = known
        feeds["sequence"] = seq
    out = session(files[MODEL_FILE]).run(None, feeds)[0].astype(np.float64)
    calibration = meta.get("calibration") or {}
    if calibration.get("x"):
        out = np.interp(out, calibration["x"], calibration["y"])
    return meta, out


def gate_metric(meta: dict, out: np.ndarray, frame: pl.DataFrame) -> float:
    """ROC AUC of a propensity bundle, or the mean Qini over treated arms of an uplift bundle, on `frame`."""
    if meta["kind"] == "propensity":
        return m.roc_auc(frame[LABEL].cast(pl.Float64).to_numpy(), out)
    y = frame[meta["outcome"]].cast(pl.Float64).fill_null(0.0).to_numpy()
    arms = meta["arms"]
    arm = frame[ARM].to_numpy()
    qinis = []
    for a in range(1, len(arms)):
        rows = (arm == arms[a]) | (arm == arms[0])
        qinis.append(m.qini_auc_score(y[rows], out[rows, a] - out[rows, 0], (arm[rows] == arms[a]).astype(int)))
    return float(np.mean(qinis))


def target_gate(tracking: TrackingParams, model_name: str, test: pl.DataFrame, margin: float, cache_dir: Path) -> Decision:
    """Decide whether the challenger replaces the champion of a targeting model; nothing is applied here."""
    cl = client(tracking)
    challenger, champion = alias_version(cl, model_name, CHALLENGER), alias_version(cl, model_name, CHAMPION)
    decision = Decision("refuse", model_name, challenger, champion, champion, "")
    tags = cl.get_model_version(model_name, challenger).tags if challenger else {}
    if challenger is None:
        decision.reason = "no challenger registered"
    elif challenger == champion:
        decision.action, decision.reason = "keep", f"version {challenger} is already the champion"
    elif tags.get("parity") != "passed":
        decision.reason = f"version {challenger} did not pass the ONNX parity check"
    elif champion is None:
        decision.action, decision.champion_after, decision.reason = "promote", challenger, "no champion yet"
    elif why := forgotten_in(cl, model_name, champion, challenger):
        decision.action, decision.champion_after, decision.reason = "promote", challenger, why
    else:
        uri = tracking_uri(tracking)
        scored = [bundle_outputs(download(uri, model_name, v, cache_dir), test) for v in (challenger, champion)]
        new, old = (gate_metric(meta, out, test) for meta, out in scored)
        name = "roc_auc" if scored[0][0]["kind"] == "propensity" else "mean_qini"
        decision.figures = {f"challenger_{name}": new, f"champion_{name}": old, "gain": new - old, "margin": margin,
                            "test_rows": test.height}
        if new - old >= margin:
            decision.action, decision.champion_after = "promote", challenger
            decision.reason = f"{name} {new:.4f} vs champion {old:.4f}: +{new - old:.4f} >= margin {margin}"
        else:
            decision.reason = f"{name} {new:.4f} vs champion {old:.4f}: gain {new - old:+.4f} < margin {margin}"
    if decision.action == "promote" and tags.get("served.baseline") == "true":
        decision.reason += f"; version {challenger} serves a baseline: {tags.get('served.reason', tags['served'])}"
    return decision
