"""Fitting the ranker without leakage: generators fitted on what came before the window they label.

- Training rows: the generators are fitted on the training purchases before a label window (the last
  `validation_days` of training, or each customer's last training purchase for leave-last-out); the
  labels are what each customer bought in it.
- Validation: the generators are fitted on all training purchases; labels are the validation window's.
  LightGBM stops early on it, and the full-catalogue validation NDCG@10 is what selection compares.
- Refit (`train.refit`): the trees are refitted on both label windows for the chosen number of rounds, and
  the served generators are fitted on everything before the test window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
import torch

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.params import RANKER, RankerParams, SplitParams
from mapwise.recommend import baselines as b
from mapwise.recommend.evaluate import network_scorer
from mapwise.recommend.metrics import ranking_metrics, top_k
from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.ranker.features import FEATURES, CandidateFeatures
from mapwise.recommend.ranker.items import item_statistics
from mapwise.recommend.ranker.network import Ranker, batch_size
from mapwise.recommend.ranker.trees import TreeEnsemble, tree_tables
from mapwise.recommend.servable import dense_neighbours
from mapwise.recommend.split import HISTORY, TARGETS, VALIDATION_K, Split
from mapwise.columns import ITEM_IDX



def fit_features(purchases: pl.DataFrame, n_items: int, price: np.ndarray, p: RankerParams) -> CandidateFeatures:
    """The generators and item statistics, fitted on `purchases` (customer_id, item_idx, timestamp; time order)."""
    tie = popularity_order(purchases, n_items)
    popularity = b.Popularity(p.popularity_window_days).fit(purchases, n_items).row_
    knn = b.ItemKNN(p.knn_neighbours).fit(purchases, n_items)
    cols, vals = dense_neighbours(knn.similarity_, n_items)
    items, gaps = item_statistics(purchases, n_items, price, p.popularity_window_days)
    buffers = {
        "tie": torch.from_numpy(tie.astype(np.float32)), "items": torch.from_numpy(items), "gaps": torch.from_numpy(gaps),
        "neighbours": torch.from_numpy(cols), "similarity": torch.from_numpy(vals),
        "popular": torch.from_numpy((np.argsort(-popularity[1:], kind="stable") + 1).astype(np.int64)),
    }
    try:
        buffers["ease"] = torch.from_numpy(b.EASE(p.ease_l2, p.ease_max_items).fit(purchases, n_items).weights_)
    except b.TooLarge:
        pass  # the EASE generator and its features are left out (features read 0)
    return CandidateFeatures(n_items, buffers, half_life=p.half_life, per_generator=p.candidates_per_generator)


def popularity_order(purchases: pl.DataFrame, n_items: int) -> np.ndarray:
    """[N + 1] in [0, 1): all-time popularity, lower index first among equals; distinct for every item, so that
    no two candidates tie (a tie could be broken one way in torch and another in onnxruntime)."""
    counts = np.bincount(purchases[ITEM_IDX].to_numpy(), minlength=n_items + 1)
    order = np.lexsort((np.arange(n_items + 1), -counts))  # most bought first
    tie = np.empty(n_items + 1, dtype=np.float64)
    tie[order] = (n_items + 1 - np.arange(n_items + 1)) / (n_items + 2)
    return tie


@dataclass(frozen=True)
class Examples:
    """One row per distinct (customer, candidate): features, label (bought in the window), rows per customer."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    recall: float  # share of the window's purchases (known items) that were among the candidates

    @staticmethod
    def join(parts: Sequence[Examples]) -> Examples:
        weights = np.array([p.groups.size for p in parts], dtype=np.float64)
        return Examples(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                        np.concatenate([p.groups for p in parts]),
                        float(np.average([p.recall for p in parts], weights=weights)) if weights.sum() else 0.0)


def examples(features: CandidateFeatures, histories: Sequence[np.ndarray], targets: Sequence[np.ndarray],
             max_len: int) -> Examples:
    """Candidates of each customer with their features and labels; customers whose window has no positive and
    no negative candidate teach nothing and are left out."""
    xs, ys, groups, found, wanted = [], [], [], 0, 0
    batch = batch_size(features.n_items, max_len)
    with torch.no_grad():
        for start in range(0, len(histories), batch):
            windows = torch.from_numpy(pad_left(histories[start:start + batch], max_len))
            cand, feats = (t.numpy() for t in features(windows))
            for row in range(cand.shape[0]):
                items, first = np.unique(cand[row], return_index=True)
                label = np.isin(items, targets[start + row]).astype(np.float32)
                found, wanted = found + int(label.sum()), wanted + len(targets[start + row])
                if 0 < label.sum() < label.size:
                    xs.append(feats[row, first])
                    ys.append(label)
                    groups.append(label.size)
    width = len(FEATURES)
    return Examples(np.concatenate(xs) if xs else np.empty((0, width), np.float32),
                    np.concatenate(ys) if ys else np.empty(0, np.float32), np.asarray(groups, dtype=np.int64),
                    found / wanted if wanted else 0.0)


def label_window(train: pl.DataFrame, sp: SplitParams) -> tuple[pl.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """The training purchases before the ranker's label window, and per customer the window's history and targets."""
    if sp.method == "leave_last_out":
        position = pl.int_range(pl.len()).reverse().over(c.CUSTOMER_ID)
        ordered = train.with_columns(position.alias("__from_end"))
        before, window = ordered.filter(pl.col("__from_end") > 0).drop("__from_end"), ordered.filter(pl.col("__from_end") == 0)
    else:
        start = sp.cutoff - timedelta(days=2 * sp.validation_days)
        before, window = train.filter(pl.col(c.TIMESTAMP) < start), train.filter(pl.col(c.TIMESTAMP) >= start)
    past = before.group_by(c.CUSTOMER_ID, maintain_order=True).agg(pl.col(ITEM_IDX).alias(HISTORY))
    future = window.group_by(c.CUSTOMER_ID).agg(pl.col(ITEM_IDX).unique().sort().alias(TARGETS))
    rows = past.join(future, on=c.CUSTOMER_ID, how="inner").sort(c.CUSTOMER_ID)
    return before, [np.asarray(h) for h in rows[HISTORY].to_list()], [np.asarray(t) for t in rows[TARGETS].to_list()]


def sample(histories: list[np.ndarray], targets: list[np.ndarray], most: int, seed: int) -> tuple[list, list]:
    """At most `most` customers' windows, a seeded sample in their original order."""
    if len(histories) <= most:
        return histories, targets
    keep = np.sort(np.random.default_rng(seed).choice(len(histories), most, replace=False))
    return [histories[i] for i in keep], [targets[i] for i in keep]


def _dataset(ex: Examples, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    return lgb.Dataset(ex.x, ex.y, group=ex.groups, feature_name=list(FEATURES), reference=reference, free_raw_data=False)


def _booster_params(p: RankerParams, seed: int) -> dict:
    t = p.trees
    return {"objective": "lambdarank", "metric": "ndcg", "ndcg_eval_at": [VALIDATION_K], "learning_rate": t.learning_rate,
            "num_leaves": t.num_leaves, "max_depth": t.max_depth, "min_data_in_leaf": t.min_data_in_leaf, "feature_fraction": t.feature_fraction,
            "lambdarank_truncation_level": t.truncation_level, "seed": seed, "deterministic": True,
            "force_row_wise": True, "num_threads": 1, "verbosity": -1}  # threads: slower beside any other job


def ranker_of(features: CandidateFeatures, booster: lgb.Booster, rounds: int, max_len: int, info: dict) -> Ranker:
    """The generators and the booster's first `rounds` trees as one network."""
    return Ranker(features, TreeEnsemble(tree_tables(booster.dump_model(num_iteration=rounds))), max_len, info)


def validation_ndcg(net: Ranker, histories: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Full-catalogue NDCG@10 of a network on the given windows (what every model is selected on)."""
    recs = top_k(network_scorer(net)(histories), VALIDATION_K)
    return float(ranking_metrics(recs, targets, [VALIDATION_K])[f"ndcg@{VALIDATION_K}"].mean())


@dataclass(frozen=True)
class RankerResult:
    ranker: Ranker  # what is served: refitted when asked
    selected: Ranker | None  # with a refit: the validation-selected ranker (trained before validation)
    report: dict
    curve: list[dict]  # per boosting round: validation NDCG@10 over the candidates


def fit_ranker(split: Split, price: np.ndarray, p: RankerParams, sp: SplitParams, *, refit: bool, seed: int) -> RankerResult:
    """Fit, select (early stopping on validation) and, with `refit`, refit the ranker; its report and curve."""
    n = split.n_items
    before, histories, targets = label_window(split.train, sp)
    histories, targets = sample(histories, targets, p.max_customers, seed)
    v_hist, v_targets = sample([np.asarray(h) for h in split.valid[HISTORY].to_list()],
                               [np.asarray(t) for t in split.valid[TARGETS].to_list()], p.max_customers, seed)
    train_rows = examples(fit_features(before, n, price, p), histories, targets, p.max_len) if histories else None
    valid_features = fit_features(split.train, n, price, p)
    valid_rows = examples(valid_features, v_hist, v_targets, p.max_len)
    if train_rows is None or not train_rows.groups.size or not valid_rows.groups.size:
        raise MapwiseError(f"the ranker has no customers to learn from (label windows: "
                           f"{0 if train_rows is None else train_rows.groups.size} for "
                           f"training, {valid_rows.groups.size} for validation): too little data before the validation "
                           f"window; leave '{RANKER}' out of train.models")
    params, evals = _booster_params(p, seed), {}
    train_set = _dataset(train_rows)
    booster = lgb.train(params, train_set, num_boost_round=p.trees.max_rounds,
                        valid_sets=[_dataset(valid_rows, train_set)], valid_names=["validation"],
                        callbacks=[lgb.early_stopping(p.trees.early_stopping_rounds, verbose=False),
                                   lgb.record_evaluation(evals)])
    rounds = max(booster.best_iteration, 1)
    selected = ranker_of(valid_features, booster, rounds, p.max_len, {})
    val_ndcg = validation_ndcg(selected, v_hist, v_targets)
    final, features = booster, valid_features
    if refit:
        final = lgb.train(params, _dataset(Examples.join([train_rows, valid_rows])), num_boost_round=rounds)
        features = fit_features(split.refit, n, price, p)
    gain = final.feature_importance("gain", iteration=rounds)
    report = {
        "val_ndcg@10": round(val_ndcg, 5), "rounds": rounds, "budget_rounds": p.trees.max_rounds,
        "stop_reason": "plateau" if rounds < p.trees.max_rounds else "budget",
        "generators": features.generators,
        "candidates_per_generator": features.per_generator,
        "candidate_recall": {"ranker_training": round(train_rows.recall, 5), "validation": round(valid_rows.recall, 5)},
        "rows": {"training": int(train_rows.y.size), "validation": int(valid_rows.y.size),
                 "training_customers": int(train_rows.groups.size), "validation_customers": int(valid_rows.groups.size)},
        "feature_importance_gain": {name: round(float(g), 3) for name, g in
                                    sorted(zip(FEATURES, gain, strict=True), key=lambda kv: -kv[1])},
        "refit": {"rows": int(train_rows.y.size + valid_rows.y.size), "rounds": rounds} if refit else None,
    }
    curve = [{"round": i + 1, "val_ndcg@10_candidates": round(v, 5)}
             for i, v in enumerate(evals.get("validation", {}).get(f"ndcg@{VALIDATION_K}", []))]
    info = {"val_ndcg@10": report["val_ndcg@10"], "rounds": rounds, "feature_importance_gain": report["feature_importance_gain"]}
    served = ranker_of(features, final, rounds, p.max_len, info)
    return RankerResult(served, selected if refit else None, report, curve)
