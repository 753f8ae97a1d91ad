"""Networks without training: fixed-weight torch modules that score a window as a fitted baseline does.

They make every baseline servable like the sequence models: the export stage writes them to ONNX
(parity-checked), the registry keeps them and the service runs them, with the same filters,
exclusions and cold start. A baseline scored here sees the window (the last `max_len` purchases),
where the evaluate stage's baseline sees the whole history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn

from mapwise.atomic import replacing
from mapwise.recommend import baselines as b
from mapwise.recommend.window import item_rows, neighbour_rows, padding_to_minus_inf, recency, window


class FixedNetwork(nn.Module):
    """A network built from its saved tensors rather than from sizes: `hparams()` and the state say it all."""

    def hparams(self) -> dict:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        """The same file layout as a trained network (hparams and tensors), loaded by `load_network`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            torch.save({"hparams": self.hparams(), "state_dict": dict(self.state_dict())}, tmp)


class StaticRecommender(FixedNetwork):
    """A recommender whose state is a set of named tensors (buffers) and a few plain settings."""

    name = ""

    def __init__(self, n_items: int, max_len: int, buffers: dict[str, torch.Tensor], **settings: float) -> None:
        super().__init__()
        self.n_items, self.max_len, self.settings = n_items, max_len, dict(settings)
        for key, value in buffers.items():
            self.register_buffer(key, value)

    def hparams(self) -> dict:
        return {"name": self.name, "n_items": self.n_items, "max_len": self.max_len, "settings": self.settings}

    @classmethod
    def from_saved(cls, hparams: dict, state: dict[str, torch.Tensor]) -> Self:
        return cls(hparams["n_items"], hparams["max_len"], dict(state), **hparams.get("settings", {}))


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


class PopularityNet(StaticRecommender):
    name = "popularity"

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.row.unsqueeze(0) + torch.zeros(history.shape[0], 1)


class PersonalPopularityNet(StaticRecommender):
    name = "personal_popularity"

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return padding_to_minus_inf(window(history, self.n_items).counts + self.tie)


class RecencyFrequencyNet(StaticRecommender):
    name = "recency_frequency"

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        w = window(history, self.n_items)
        own = 1.0 + recency(w, self.settings["half_life"], self.n_items)
        return padding_to_minus_inf(torch.where(w.counts > 0, own, self.tie.expand_as(own)))


class EASENet(StaticRecommender):
    name = "ease"

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return padding_to_minus_inf(item_rows(window(history, self.n_items), self.weights) + self.tie)


class ItemKNNNet(StaticRecommender):
    name = "item_knn"

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        w = window(history, self.n_items)
        return padding_to_minus_inf(neighbour_rows(w, self.neighbours, self.similarity, self.n_items) + self.tie)


SERVABLE: dict[str, type[StaticRecommender]] = {
    net.name: net for net in (PopularityNet, PersonalPopularityNet, RecencyFrequencyNet, EASENet, ItemKNNNet)
}


def dense_neighbours(similarity, n_items: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - scipy CSR
    """A sparse similarity (CSR, [N + 1, N + 1]) as fixed-width neighbour lists: indices and values, [N + 1, K]."""
    similarity = similarity.tocsr()
    width = max(int(np.diff(similarity.indptr).max(initial=0)), 1)
    cols = np.zeros((n_items + 1, width), dtype=np.int64)
    vals = np.zeros((n_items + 1, width), dtype=np.float32)
    for row in range(similarity.shape[0]):
        lo, hi = similarity.indptr[row], similarity.indptr[row + 1]
        cols[row, : hi - lo] = similarity.indices[lo:hi]
        vals[row, : hi - lo] = similarity.data[lo:hi]
    return cols, vals


def servable(name: str, baseline: b.Baseline, max_len: int) -> StaticRecommender:
    """The fitted baseline `name` as a network over windows of up to `max_len` purchases."""
    if isinstance(baseline, b.Popularity):
        return PopularityNet(len(baseline.row_) - 1, max_len, {"row": _tensor(baseline.row_)})
    n_items = baseline.n_items_
    tie = {"tie": _tensor(baseline.global_)}
    if isinstance(baseline, b.PersonalPopularity):
        return PersonalPopularityNet(n_items, max_len, tie)
    if isinstance(baseline, b.RecencyFrequency):
        return RecencyFrequencyNet(n_items, max_len, tie, half_life=float(baseline.half_life))
    if isinstance(baseline, b.EASE):
        return EASENet(n_items, max_len, {**tie, "weights": _tensor(baseline.weights_)})
    if isinstance(baseline, b.ItemKNN):
        cols, vals = dense_neighbours(baseline.similarity_, n_items)
        return ItemKNNNet(n_items, max_len, {**tie, "neighbours": torch.from_numpy(cols), "similarity": _tensor(vals)})
    raise ValueError(f"baseline '{name}' has no servable form")
