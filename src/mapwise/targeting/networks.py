"""Targeting networks: a propensity MLP (with the recommenders' GRU over the purchase sequence where
there is one) and per-arm outcome networks for uplift: T-learner, TARNet and DragonNet."""

from __future__ import annotations

import torch
from torch import nn


def mlp(n_in: int, hidden: list[int], dropout: float, n_out: int | None = None) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per hidden width, then a linear output when `n_out` is given."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    if n_out is not None:
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def _gru_names_only(net: nn.Module, state: dict, prefix: str, _: dict) -> None:
    """Drop DPGRU's second copy of its weights (under its cells' names): Opacus filters it out only when the DPGRU
    is the top module, and `nn.GRU`'s names are what a network built without it loads."""
    for name in net.gru.old_to_new:
        state.pop(f"{prefix}gru.{name}", None)


class PropensityNet(nn.Module):
    """Logit of a binary outcome from features, plus a GRU encoding of the item sequence when `n_items` > 0.

    Item index 0 pads a sequence (left-padded, newest last), as in the recommenders. `private` builds the GRU as
    Opacus' `DPGRU`, whose per-example gradients DP-SGD can clip; its state dict has `nn.GRU`'s keys and loads
    into the network built without it (the one exported).
    """

    def __init__(self, n_features: int, hidden: list[int], dropout: float, n_items: int = 0, embedding_dim: int = 32,
                 *, private: bool = False) -> None:
        super().__init__()
        self.n_items = n_items
        width = n_features
        if n_items:
            self.items = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
            if private:
                from opacus.layers import DPGRU  # opacus is only needed to train privately

                self.gru = DPGRU(embedding_dim, embedding_dim, batch_first=True)
                self.register_state_dict_post_hook(_gru_names_only)
            else:
                self.gru = nn.GRU(embedding_dim, embedding_dim, batch_first=True)
            width += embedding_dim
        self.body = mlp(width, hidden, dropout, 1)

    def forward(self, x: torch.Tensor, seq: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_items:
            states, _ = self.gru(self.items(seq))
            x = torch.cat([x, states[:, -1]], dim=1)  # left padding: the last state has read the whole history
        return self.body(x).squeeze(-1)


class ArmsNet(nn.Module):
    """One outcome prediction per arm, [B, arms]: logits (binary outcomes) or values (continuous).

    - `t_learner`: a separate MLP per arm;
    - `tarnet`: a shared representation, one head per arm (Shalit et al. 2017);
    - `dragonnet`: TARNet plus a head predicting the arm from the representation (Shi et al. 2019),
      a regulariser whose logits `arm_logits` gives.
    """

    def __init__(self, kind: str, n_features: int, arms: int, hidden: list[int], head: list[int], dropout: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "t_learner":
            self.heads = nn.ModuleList(mlp(n_features, hidden + head, dropout, 1) for _ in range(arms))
            return
        self.shared = mlp(n_features, hidden, dropout)
        width = hidden[-1] if hidden else n_features
        self.heads = nn.ModuleList(mlp(width, head, dropout, 1) for _ in range(arms))
        if kind == "dragonnet":
            self.arm_head = nn.Linear(width, arms)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.kind == "t_learner" else self.shared(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.representation(x)
        return torch.cat([head(z) for head in self.heads], dim=1)

    def arm_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.arm_head(self.shared(x)) if self.kind == "dragonnet" else None
