"""What the evaluate report says of the ranker: candidate recall, the ranker against each generator alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.ranker.network import Ranker

# each generator alone is one of the evaluate baselines (same method; the ranker's own settings may differ)
GENERATOR_BASELINES = {"own_history": "recency_frequency", "ease": "ease", "item_knn": "item_knn",
                       "popularity": "popularity"}


def candidate_recall(ranker: Ranker, histories: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Share of the target purchases that are among the ranker's candidates: the most any ranking of them finds."""
    found = wanted = 0
    with torch.no_grad():
        for start in range(0, len(histories), ranker.batch):
            windows = pad_left(histories[start:start + ranker.batch], ranker.max_len)
            cand = ranker.features(torch.from_numpy(windows))[0].numpy()
            for row, items in enumerate(cand):
                target = targets[start + row]
                found += int(np.isin(target, items).sum())
                wanted += len(target)
    return round(found / wanted, 5) if wanted else 0.0


def ranker_section(ranker: Ranker, cases: dict, report: dict, headline_k: int) -> dict:
    """Candidate recall per variant, the ranker's headline beside each generator's alone, and feature importance."""
    headline = f"ndcg@{headline_k}"
    generators = ranker.features.generators
    section = {"candidates_per_customer": f"up to {ranker.features.per_generator * len(generators)}",
               "candidate_recall": {}, "vs_generators": {},
               "feature_importance_gain": ranker.info.get("feature_importance_gain", {}),
               "note": "each generator alone is the evaluate baseline of the same method; candidates are merged from "
                       "all generators, so the ranker can find at most the candidate recall"}
    for variant, case in cases.items():
        if not case.targets:
            continue
        section["candidate_recall"][variant] = candidate_recall(ranker, case.histories, case.targets)
        models = report[variant]["recommenders"]
        if "ranker" not in models:
            continue
        mine = models["ranker"][headline]
        section["vs_generators"][variant] = {
            generator: {"baseline": baseline, headline: models[baseline][headline],
                        "ranker_minus_generator": round(mine - models[baseline][headline], 5)}
            for generator, baseline in GENERATOR_BASELINES.items() if baseline in models
        }
    return section
