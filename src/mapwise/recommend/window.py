"""What a left-padded window of item indices says about each item, in torch ops that export to ONNX.

Shared by the servable baselines and the ranker's features, so training, evaluation and the
service compute them with the same code. Index 0 is padding and contributes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEVER = 1e4  # "purchases since the last purchase" of an item never bought: beyond any window


@dataclass
class Window:
    """Per customer and catalogue item (`[B, n_items + 1]`), and per window position (`[B, L]`)."""

    history: torch.Tensor  # [B, L] int64
    real: torch.Tensor  # [B, L] 1.0 where a purchase, 0.0 where padding
    counts: torch.Tensor  # [B, N + 1] purchases of each item in the window
    since: torch.Tensor  # [B, N + 1] purchases after the item's latest (0 = the latest purchase); NEVER if not bought
    first: torch.Tensor  # [B, L] 1.0 at each item's latest position: weights that count distinct items once

    @property
    def length(self) -> torch.Tensor:
        """[B] real purchases in the window."""
        return self.real.sum(dim=1)


def window(history: torch.Tensor, n_items: int) -> Window:
    """Counts, recency and distinct-item weights of a window of item indices."""
    batch, length = history.shape
    real = (history > 0).to(torch.float32)
    zeros = torch.zeros(batch, n_items + 1, dtype=torch.float32)
    counts = zeros.scatter_add(1, history, real)
    position = torch.arange(1, length + 1, dtype=torch.float32).unsqueeze(0) * real  # 1-based, 0 at padding
    latest = zeros.scatter_reduce(1, history, position, reduce="amax", include_self=True)
    size = torch.ones_like(real).sum(dim=1, keepdim=True)  # L as a tensor: a Python number would fix the length axis
    since = torch.where(latest > 0, size - latest, torch.full_like(latest, NEVER))
    first = (torch.gather(latest, 1, history) == position).to(torch.float32) * real
    return Window(history, real, counts, since, first)


def recency(w: Window, half_life: float, n_items: int) -> torch.Tensor:
    """[B, N + 1] sum over an item's purchases of 0.5 ** (purchases since / half_life) (TIFU-KNN's personal part)."""
    back = torch.flip(torch.cumsum(torch.ones_like(w.real), dim=1), dims=[1]) - 1.0  # L-1 .. 0
    weights = torch.pow(0.5, back / half_life) * w.real
    return torch.zeros(w.history.shape[0], n_items + 1, dtype=torch.float32).scatter_add(1, w.history, weights)


def _rows(matrix: torch.Tensor, w: Window) -> torch.Tensor:
    """[B, L, ...] the rows of `matrix` at the window's items (one Gather in ONNX, cheaper than advanced indexing)."""
    return torch.index_select(matrix, 0, w.history.reshape(-1)).reshape(*w.history.shape, *matrix.shape[1:])


def item_rows(w: Window, matrix: torch.Tensor) -> torch.Tensor:
    """[B, N + 1] sum of `matrix`'s rows over the distinct items of the window (EASE: x_u B), as one batched
    product of the distinct-item weights with the gathered rows."""
    return torch.bmm(w.first.unsqueeze(1), _rows(matrix, w)).squeeze(1)


def neighbour_rows(w: Window, neighbours: torch.Tensor, similarity: torch.Tensor, n_items: int) -> torch.Tensor:
    """[B, N + 1] sum of sparse similarity rows (`neighbours`/`similarity`: [N + 1, K]) over the distinct items."""
    batch = w.history.shape[0]
    cols = _rows(neighbours, w).reshape(batch, -1)
    vals = (_rows(similarity, w) * w.first.unsqueeze(-1)).reshape(batch, -1)
    return torch.zeros(batch, n_items + 1, dtype=torch.float32).scatter_add(1, cols, vals)


def padding_to_minus_inf(scores: torch.Tensor) -> torch.Tensor:
    """Column 0 (padding) at -inf, as every recommender's scores have it."""
    column = torch.arange(scores.shape[1]).unsqueeze(0)
    return torch.where(column == 0, torch.full_like(scores, float("-inf")), scores)
