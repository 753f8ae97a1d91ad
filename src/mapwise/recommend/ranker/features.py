"""Candidates and their features for a window of purchases, in torch ops that export to ONNX.

One module computes them for training, evaluation and the service (inside the exported graph), so
the features the ranker learnt from are the features it is served. Generators, each taking its top
`per_generator` items: the customer's own history weighted by recency and frequency (TIFU-KNN's
personal part), EASE over the distinct items of the window, item-kNN likewise, and recent
popularity. An item several generators propose appears several times, with the same features.
"""

from __future__ import annotations

import torch

from mapwise.recommend.ranker.items import ITEM_FEATURES
from mapwise.recommend.window import NEVER, Window, item_rows, neighbour_rows, recency, window

PAIR_FEATURES = ("count", "share_of_purchases", "recency", "recency_vs_best", "purchases_since", "since_vs_item_gap",
                 "ease", "ease_vs_best", "item_knn", "item_knn_vs_best")
CUSTOMER_FEATURES = ("window_purchases", "distinct_share")
FEATURES = (*PAIR_FEATURES, *ITEM_FEATURES, *CUSTOMER_FEATURES)
_TINY = 1e-6


def _vs_best(scores: torch.Tensor) -> torch.Tensor:
    """Scores over the customer's best (padding column excluded); 0 where nothing scores above 0."""
    best = scores[:, 1:].max(dim=1, keepdim=True).values.clamp(min=_TINY)
    return scores / best


class CandidateFeatures(torch.nn.Module):
    """history [B, L] -> candidate item indices [B, C] and their features [B, C, len(FEATURES)] (float32).

    Buffers: `tie` (global popularity in [0, 1)), `items` (ITEM_FEATURES per item), `gaps` (median repeat
    gap per item), `neighbours` / `similarity` (item-kNN rows), `popular` (the recent top items) and, when the
    catalogue is small enough, `ease` (the dense EASE weights).
    """

    def __init__(self, n_items: int, buffers: dict[str, torch.Tensor], *, half_life: float, per_generator: int) -> None:
        super().__init__()
        self.n_items, self.half_life, self.per_generator = n_items, half_life, min(per_generator, n_items)
        for key, value in buffers.items():
            self.register_buffer(key, value)

    @property
    def has_ease(self) -> bool:
        return hasattr(self, "ease")

    @property
    def generators(self) -> list[str]:
        """The generators, in the order their candidates are concatenated."""
        return ["own_history", "item_knn", *(["ease"] if self.has_ease else []), "popularity"]

    def generator_scores(self, w: Window) -> dict[str, torch.Tensor]:
        """[B, N + 1] scores of each generator that needs the window (padding column -inf)."""
        rec = recency(w, self.half_life, self.n_items)
        own = torch.where(w.counts > 0, 1.0 + rec, self.tie.expand_as(rec))
        knn = neighbour_rows(w, self.neighbours, self.similarity, self.n_items)
        return {"recency": rec, "own_history": own, "item_knn": knn,
                "ease": item_rows(w, self.ease) if self.has_ease else torch.zeros_like(rec)}

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = window(history, self.n_items)
        g = self.generator_scores(w)
        column = torch.arange(self.n_items + 1).unsqueeze(0)
        rank = lambda s: torch.where(column == 0, torch.full_like(s, float("-inf")), s + 1e-3 * self.tie)  # noqa: E731
        n = self.per_generator
        parts = [torch.topk(rank(g["own_history"]), n, dim=1).indices, torch.topk(rank(g["item_knn"]), n, dim=1).indices]
        if self.has_ease:
            parts.append(torch.topk(rank(g["ease"]), n, dim=1).indices)
        parts.append(self.popular[:n].unsqueeze(0).expand(history.shape[0], -1))
        cand = torch.cat(parts, dim=1)
        take = lambda s: torch.gather(s, 1, cand)  # noqa: E731
        length = w.length.unsqueeze(1)
        distinct = (w.counts > 0).to(torch.float32).sum(dim=1, keepdim=True)
        since = take(w.since)
        pair = [
            take(w.counts), take(w.counts) / length.clamp(min=1.0), take(g["recency"]), take(_vs_best(g["recency"])),
            since, torch.where(since >= NEVER, torch.full_like(since, NEVER), since / self.gaps[cand].clamp(min=1.0)),
            take(g["ease"]), take(_vs_best(g["ease"])), take(g["item_knn"]), take(_vs_best(g["item_knn"])),
        ]
        customer = [length.expand_as(since), (distinct / length.clamp(min=1.0)).expand_as(since)]
        feats = torch.cat([torch.stack(pair, dim=2), self.items[cand], torch.stack(customer, dim=2)], dim=2)
        return cand, feats
