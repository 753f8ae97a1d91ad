"""The ranker as one network: window -> candidates and features -> trees -> catalogue scores.

It has the interface of the sequence networks (`n_items`, `max_len`, `forward(history) -> [B, N + 1]`),
so evaluation, ONNX export with its parity check, the registry, the gate and the service treat it as
they treat them. Candidates get the trees' score; every other item scores below every candidate, in
order of global popularity, so filters that remove candidates still leave a full list.
"""

from __future__ import annotations

from typing import Self

import torch

from mapwise.params import RANKER
from mapwise.recommend.ranker.features import FEATURES, CandidateFeatures
from mapwise.recommend.ranker.trees import TreeEnsemble
from mapwise.recommend.servable import FixedNetwork
from mapwise.recommend.window import padding_to_minus_inf

_FEATURE_PREFIX, _TREE_PREFIX = "features.", "trees."
_GATHERED = 1 << 24  # floats one torch call may gather (EASE reads [customers, max_len, items]): 64 MiB


def batch_size(n_items: int, max_len: int) -> int:
    """Customers per torch call, so that the EASE gather stays near _GATHERED floats whatever the catalogue."""
    return max(1, min(256, _GATHERED // (max_len * (n_items + 1))))


class Ranker(FixedNetwork):
    """Candidate features and the boosted trees that rank them."""

    name = RANKER

    def __init__(self, features: CandidateFeatures, trees: TreeEnsemble, max_len: int, info: dict | None = None) -> None:
        super().__init__()
        self.features, self.trees, self.max_len, self.n_items = features, trees, max_len, features.n_items
        self.info = dict(info or {})  # what it was trained with and how it did (plain values)

    @property
    def batch(self) -> int:
        """Customers to score per call in bulk scoring (evaluation): memory bounded whatever the catalogue."""
        return batch_size(self.n_items, self.max_len)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        cand, feats = self.features(history)
        batch, width = cand.shape
        ranked = self.trees(feats.reshape(batch * width, len(FEATURES))).reshape(batch, width)
        floor = ranked.min(dim=1, keepdim=True).values - 2.0  # others: in [floor, floor + 1), below every candidate
        scores = (floor + self.features.tie.unsqueeze(0)).scatter(1, cand, ranked)
        return padding_to_minus_inf(scores)

    def hparams(self) -> dict:
        return {"name": self.name, "n_items": self.n_items, "max_len": self.max_len, "info": self.info,
                "settings": {"half_life": self.features.half_life, "per_generator": self.features.per_generator}}

    @classmethod
    def from_saved(cls, hparams: dict, state: dict[str, torch.Tensor]) -> Self:
        part = lambda prefix: {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}  # noqa: E731
        features = CandidateFeatures(hparams["n_items"], part(_FEATURE_PREFIX), **hparams["settings"])
        return cls(features, TreeEnsemble(part(_TREE_PREFIX)), hparams["max_len"], hparams.get("info"))
