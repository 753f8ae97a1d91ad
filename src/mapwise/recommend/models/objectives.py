"""Next-item training losses: the full softmax, or one over sampled negatives for large catalogues.

- `softmax`: cross-entropy over the whole catalogue (exact; cost grows with the catalogue).
- `sampled_softmax`: cross-entropy over the target and `negatives` sampled items, shared by the
  batch; with popularity sampling (`negative_alpha` > 0) the logits get the log-Q correction
  (Yi et al., RecSys 2019), as GRU4Rec's authors use it.
- `gbce`: gSASRec's generalised binary cross-entropy (Petrov & Macdonald, RecSys 2023): the positive's
  log-sigmoid raised to beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha = negatives / (n_items - 1),
  which undoes the overconfidence that negative sampling teaches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
import torch
from torch.nn import functional as F

Loss = Literal["softmax", "sampled_softmax", "gbce"]
Excluded = Callable[[torch.Tensor | None], torch.Tensor]  # items [K] (None = all) -> [N, K] True = not a candidate


class ItemScorer(Protocol):
    """What a loss needs of a network: its item embeddings and biases (`networks.SequenceRecommender`)."""

    items: torch.nn.Embedding
    bias: torch.Tensor

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor: ...


class Objective:
    """Per-example loss of representations [N, D] against next items [N] (indices 1..n_items)."""

    def __init__(self, kind: Loss, n_items: int, *, negatives: int = 256, gbce_t: float = 0.75,
                 negative_alpha: float = 0.0, popularity: np.ndarray | None = None) -> None:
        self.kind, self.n_items, self.negatives, self.gbce_t = kind, n_items, negatives, gbce_t
        weights = np.ones(n_items) if popularity is None or negative_alpha == 0 else (
            np.maximum(np.asarray(popularity[1:], dtype=np.float64), 1.0) ** negative_alpha)
        self.sampling = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)  # over items 1..n
        self.log_q = torch.log(self.sampling) if negative_alpha else None

    def draw_negatives(self, device: torch.device) -> torch.Tensor:
        """`negatives` item indices (1..n_items), drawn with replacement from the sampling distribution."""
        return torch.multinomial(self.sampling.to(device), self.negatives, replacement=True) + 1

    def __call__(self, net: ItemScorer, hidden: torch.Tensor, targets: torch.Tensor,
                 excluded: Excluded | None = None) -> torch.Tensor:
        if self.kind == "softmax":
            logits = net.item_logits(hidden).float()
            if excluded is not None:
                logits = logits.masked_fill(excluded(None), float("-inf"))
            return F.cross_entropy(logits, targets - 1, reduction="none")
        negatives = self.draw_negatives(hidden.device)
        positive = (hidden * net.items(targets)).sum(-1).float() + net.bias[targets].float()
        negative = (hidden @ net.items(negatives).T).float() + net.bias[negatives].float()  # [N, K]
        if self.log_q is not None:
            log_q = self.log_q.to(hidden.device)
            positive, negative = positive - log_q[targets - 1], negative - log_q[negatives - 1]
        blocked = negatives[None, :] == targets[:, None]  # a sampled negative that is the target itself
        if excluded is not None:
            blocked = blocked | excluded(negatives)
        negative = negative.masked_fill(blocked, float("-inf"))
        if self.kind == "sampled_softmax":
            return torch.logsumexp(torch.cat([positive[:, None], negative], dim=1), dim=1) - positive
        alpha = min(self.negatives / max(self.n_items - 1, 1), 1.0)
        beta = alpha * (self.gbce_t * (1 - 1 / alpha) + 1 / alpha)
        return -beta * F.logsigmoid(positive) - F.logsigmoid(-negative).sum(-1)
