"""Honest evaluation: every recommender ranks the whole catalogue for every test customer.

Two variants: `all_items` (repeat purchases count) and `new_items` (items the customer already
bought are neither candidates nor targets). Headline: NDCG@K (10 by default) with a bootstrap interval, and for
each model its paired difference from the best baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from mapwise.errors import MapwiseError
from mapwise.recommend.metrics import average_popularity, bootstrap_ci, coverage, paired_bootstrap_diff, ranking_metrics, top_k
from mapwise.recommend.models.networks import SequenceRecommender
from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.split import HISTORY, POPULARITY, TARGETS, Split

VARIANTS = ("all_items", "new_items")
_BATCH = 1024

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]


def network_scorer(net: SequenceRecommender) -> Scorer:
    """Scores from a sequence network, in batches, on the CPU."""

    batch = getattr(net, "batch", _BATCH)  # the ranker bounds its own (its features gather per catalogue item)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(histories), batch):
                seq = torch.from_numpy(pad_left(histories[start : start + batch], net.max_len))
                out.append(net(seq).numpy())
        return np.concatenate(out) if out else np.empty((0, net.n_items + 1), np.float32)

    return score


@dataclass(frozen=True)
class Case:
    """One evaluation variant: per customer, history, targets and items never to recommend."""

    customers: list[str]
    histories: list[np.ndarray]
    targets: list[np.ndarray]
    exclude: list[np.ndarray] | None


def cases(split: Split) -> dict[str, Case]:
    """The all-items and new-items variants of the test window."""
    customers = split.test["customer_id"].to_list()
    histories = [np.asarray(h, dtype=np.int64) for h in split.test[HISTORY].to_list()]
    targets = [np.asarray(t, dtype=np.int64) for t in split.test[TARGETS].to_list()]
    seen = [np.unique(h) for h in histories]
    fresh = [np.setdiff1d(t, s) for t, s in zip(targets, seen, strict=True)]
    keep = [i for i, t in enumerate(fresh) if len(t)]
    return {
        "all_items": Case(customers, histories, targets, None),
        "new_items": Case(
            [customers[i] for i in keep], [histories[i] for i in keep], [fresh[i] for i in keep], [seen[i] for i in keep]
        ),
    }


def evaluate_case(
    case: Case,
    scorers: dict[str, Scorer],
    *,
    ks: Sequence[int],
    popularity: np.ndarray,
    slices: dict[str, dict[str, str]],
    baselines: Sequence[str],
    bootstrap: int,
    seed: int,
    headline_k: int,
) -> dict:
    """Metrics per recommender (means, headline interval, slices, difference from the best baseline)."""
    if not case.targets:  # e.g. new items when every test customer has bought the whole (small) catalogue
        return {"customers": 0, "recommenders": {}, "note": "no test customer: nothing to score"}
    n_items = len(popularity) - 1
    depth = min(max(ks), n_items)  # a catalogue smaller than K: the list is all of it, and a metric at K its value there
    headline = f"ndcg@{headline_k}"
    per_user, report = {}, {}
    for name, score in scorers.items():
        recs = top_k(_demote(score(case.histories), case.exclude), depth)
        values = _at_ks(ranking_metrics(recs, case.targets, sorted({min(k, depth) for k in ks})), ks, depth)
        per_user[name] = values[headline]
        _, low, high = bootstrap_ci(values[headline], bootstrap, seed)
        head = recs[:, :headline_k]
        report[name] = {
            **{metric: round(float(v.mean()), 5) for metric, v in values.items()},
            f"{headline}_ci": [round(low, 5), round(high, 5)],
            f"coverage@{headline_k}": round(coverage(head, n_items), 5),
            f"avg_popularity@{headline_k}": round(average_popularity(head, popularity), 2),
            "slices": _slices(values[headline], case.customers, slices, headline),
        }
    present = [b for b in baselines if b in report]
    if present:
        best = max(present, key=lambda b: report[b][headline])
        for name in scorers:
            if name not in present:
                diff, low, high = paired_bootstrap_diff(per_user[name], per_user[best], bootstrap, seed)
                report[name][f"{headline}_vs_best_baseline"] = {
                    "baseline": best, "diff": round(diff, 5), "ci": [round(low, 5), round(high, 5)],
                    "better": low > 0,
                }
    return {"customers": len(case.targets), "recommenders": report}


def before_refit(split: Split, report: dict, scorers: dict[str, Scorer], *, ks: Sequence[int], headline_k: int,
                 bootstrap: int, seed: int) -> dict:
    """The validation-selected models (trained before validation) on the same test: headline and interval per variant."""
    headline = f"ndcg@{headline_k}"
    selected = evaluate(split, scorers, ks=ks, slices={}, baselines=(), bootstrap=bootstrap, seed=seed,
                        headline_k=headline_k)
    return {
        variant: {
            name: {headline: m[headline], f"{headline}_ci": m[f"{headline}_ci"],
                   f"refit_{headline}": report[variant]["recommenders"][name][headline]}
            for name, m in selected[variant]["recommenders"].items()
        }
        for variant in VARIANTS
    }


def _at_ks(values: dict[str, np.ndarray], ks: Sequence[int], depth: int) -> dict[str, np.ndarray]:
    """Metrics named by every K asked for, a K beyond the `depth` ranked (the whole catalogue) taking its value there."""
    kinds = dict.fromkeys(name.rsplit("@", 1)[0] for name in values)  # hr, recall, ndcg, mrr: their order kept
    return {f"{kind}@{k}": values[f"{kind}@{min(k, depth)}"] for k in ks for kind in kinds}


def _demote(scores: np.ndarray, exclude: list[np.ndarray] | None) -> np.ndarray:
    """Excluded items below every candidate: never ahead of one, and never a hit (they are not targets).

    Unlike dropping them, this still fills K slots for a customer who has bought nearly everything.
    """
    if exclude is not None:
        floor = np.finfo(scores.dtype).min
        for row, items in enumerate(exclude):
            scores[row, items] = floor
    return scores


def _slices(values: np.ndarray, customers: list[str], slices: dict[str, dict[str, str]], headline: str) -> dict:
    """Mean headline metric per slice value, e.g. {"segment": {"champions": {"customers": 40, ...}}}."""
    out = {}
    for slice_name, labels in slices.items():
        frame = pl.DataFrame({"label": [labels.get(cu, "unknown") for cu in customers], "v": values})
        stats = frame.group_by("label").agg(pl.len().alias("customers"), pl.col("v").mean().round(5).alias(headline))
        out[slice_name] = {row["label"]: {"customers": row["customers"], headline: row[headline]}
                           for row in stats.sort("label").iter_rows(named=True)}
    return out


def evaluate(
    split: Split,
    scorers: dict[str, Scorer],
    *,
    ks: Sequence[int],
    slices: dict[str, dict[str, str]],
    baselines: Sequence[str],
    bootstrap: int,
    seed: int,
    headline_k: int = 10,
) -> dict:
    """The whole report: one entry per variant, recommender and metric (headline: NDCG at headline_k)."""
    if headline_k not in ks:
        raise MapwiseError(f"evaluate.ks {list(ks)} must include the headline K ({headline_k})")
    if split.n_items < 1:
        raise MapwiseError("the split has no items: nothing to rank; run the split stage on purchase events")
    popularity = item_popularity(split)
    report = {
        variant: evaluate_case(
            case, scorers, ks=ks, popularity=popularity, slices=slices, baselines=baselines,
            bootstrap=bootstrap, seed=seed, headline_k=headline_k,
        )
        for variant, case in cases(split).items()
    }
    if max(ks) > split.n_items:
        report["catalogue"] = {"items": split.n_items, "ranked": split.n_items,
                               "note": f"{split.n_items} items, fewer than K={max(ks)}: every list ranks the whole "
                                       f"catalogue, and a metric at K >= {split.n_items} is its value at {split.n_items}"}
    return report


def item_popularity(split: Split) -> np.ndarray:
    """Training purchases per item index (index 0, padding, is 0)."""
    return np.concatenate([[0], split.items.sort("item_idx")[POPULARITY].to_numpy()])
