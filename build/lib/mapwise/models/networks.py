"""The three sequence encoders. Each maps left-padded item windows [B, L] to scores over the catalogue.

Scores are the dot product of the sequence representation with the (shared) item embeddings, so
every model can rank every item, repeats included; index 0 is padding and scores -inf.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mapwise.params import ModelParams
from mapwise.split import PADDING_IDX


class SequenceRecommender(nn.Module):
    """Item embeddings, an encoder from the subclass, and full-catalogue scoring.

    Models that read the sequence step by step (`every_position`) also predict the next item at
    every position in one pass, which training uses: one window gives up to L examples.
    """

    every_position = False

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__()
        self.n_items = n_items
        self.max_len = p.max_len
        self.items = nn.Embedding(n_items + 1, p.embedding_dim, padding_idx=PADDING_IDX)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        nn.init.normal_(self.items.weight, std=0.05)
        with torch.no_grad():
            self.items.weight[PADDING_IDX].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] item indices -> [B, D] representation of what comes next."""
        raise NotImplementedError

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, D]: the representation after each position (every_position models)."""
        raise NotImplementedError

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Representations [N, D] -> logits [N, n_items] of items 1..n (no padding column: training)."""
        return torch.addmm(self.bias[1:], hidden, self.items.weight[1:].T)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Representations [N, D] -> catalogue scores [N, n_items + 1], padding column at -inf."""
        return F.pad(self.item_logits(hidden), (1, 0), value=float("-inf"))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, n_items + 1] scores for the item after the window."""
        return self.scores(self.encode(seq))


class GRU4Rec(SequenceRecommender):
    """GRU over the embedded window; the last hidden state (left padding keeps it the newest item's)."""

    every_position = True

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        self.dropout = nn.Dropout(p.dropout)
        self.gru = nn.GRU(p.embedding_dim, p.embedding_dim, num_layers=p.gru_layers, batch_first=True,
                          dropout=p.dropout if p.gru_layers > 1 else 0.0)

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        return self.gru(self.dropout(self.items(seq)))[0]

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(self.dropout(self.items(seq)))
        return hidden[-1]


class Caser(SequenceRecommender):
    """Horizontal (n-gram) and vertical convolutions over the embedded last `caser_window` items."""

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        window, dim = p.caser_window, p.embedding_dim
        self.window = window
        self.horizontal = nn.ModuleList(
            nn.Conv2d(1, p.caser_h_filters, kernel_size=(h, dim)) for h in range(1, window + 1)
        )
        self.vertical = nn.Conv2d(1, p.caser_v_filters, kernel_size=(window, 1))
        self.dropout = nn.Dropout(p.dropout)
        self.project = nn.Linear(p.caser_h_filters * window + p.caser_v_filters * dim, dim)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        emb = self.items(seq[:, -self.window :]).unsqueeze(1)  # [B, 1, L, D]
        pooled = [torch.relu(conv(emb)).squeeze(3).amax(dim=2) for conv in self.horizontal]
        vertical = self.vertical(emb).flatten(1)
        return torch.relu(self.project(self.dropout(torch.cat([*pooled, vertical], dim=1))))


class SASRec(SequenceRecommender):
    """Causal self-attention over the window (as in Kang & McAuley 2018: padding zeroed, causal mask)."""

    every_position = True

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        self.positions = nn.Embedding(p.max_len, p.embedding_dim)
        layer = nn.TransformerEncoderLayer(
            p.embedding_dim, p.sasrec_heads, dim_feedforward=p.embedding_dim * 2, dropout=p.dropout,
            batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, p.sasrec_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(p.embedding_dim)
        self.dropout = nn.Dropout(p.dropout)
        causal = torch.triu(torch.ones(p.max_len, p.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encode_all(seq)[:, -1]

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        keep = (seq != PADDING_IDX).unsqueeze(-1).to(self.items.weight.dtype)
        positions = torch.arange(length, device=seq.device)
        x = self.dropout(self.items(seq) * self.items.embedding_dim**0.5 + self.positions(positions)) * keep
        # is_causal=True: the mask is known causal, so nothing inspects its values (ONNX export needs that)
        x = self.encoder(x, mask=self.causal[:length, :length], is_causal=True) * keep
        return self.norm(x)


NETWORKS: dict[str, type[SequenceRecommender]] = {"gru": GRU4Rec, "caser": Caser, "sasrec": SASRec}


def build_network(name: str, n_items: int, p: ModelParams) -> SequenceRecommender:
    """The named network for a catalogue of `n_items` items."""
    return NETWORKS[name](n_items, p)
