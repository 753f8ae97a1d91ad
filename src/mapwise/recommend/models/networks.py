"""The sequence encoders. Each maps left-padded item windows [B, L] to scores over the catalogue.

Scores are the dot product of the sequence representation with the (shared) item embeddings plus
an item bias, so every model can rank every item, repeats included; index 0 is padding and scores
-inf. Left padding never changes a score: positions count from the window's end and attention
never reads a padded position, so a window padded to any length scores as the bare history does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mapwise.recommend.models.objectives import Objective
from mapwise.params import ModelParams
from mapwise.recommend.split import PADDING_IDX

_NO_ATTENTION = -1e9  # a blocked position's attention logit: finite, so a window of padding only gives no NaN


class SequenceRecommender(nn.Module):
    """Item embeddings, an encoder from the subclass, and full-catalogue scoring.

    Models that read the sequence step by step (`every_position`) also predict the next item at
    every position in one pass, which training uses: one window gives up to L examples.
    """

    every_position = True

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

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective) -> torch.Tensor:
        """Mean next-item loss of a batch: targets [B, L] (PADDING_IDX = none) or [B] for one per window."""
        if self.every_position:
            real = targets != PADDING_IDX
            hidden, targets = self.encode_all(inputs)[real], targets[real]
        else:
            hidden = self.encode(inputs)
        return objective(self, hidden, targets).mean()


def _xavier_per_gate(weight: torch.Tensor) -> None:
    """GRU4Rec's initialisation: uniform in +-sqrt(6 / (rows + cols / 3)) for a [3H, in] matrix of 3 gates."""
    sigma = math.sqrt(6.0 / (weight.shape[0] + weight.shape[1] / 3))
    nn.init.uniform_(weight, -sigma, sigma)


class GRU4Rec(SequenceRecommender):
    """GRU4Rec as its authors set it up (Hidasi & Czapp, RecSys 2023; the official PyTorch GRU4Rec).

    Constrained embedding: the input embedding is the output item embedding, so the hidden size is
    the embedding size; dropout on the embedded input (`gru_dropout_embed`) and on the hidden output
    (`dropout`); their uniform initialisation with zero biases; trained with cross-entropy (full or
    sampled, `train.loss`) and AdagradM, Adagrad with momentum (`optimizer: adagrad`, set per model).
    The last hidden state is the newest item's: windows are left-padded.
    """

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        dim = p.embedding_dim
        self.embed_dropout = nn.Dropout(p.gru_dropout_embed)
        self.hidden_dropout = nn.Dropout(p.dropout)
        self.gru = nn.GRU(dim, dim, num_layers=p.gru_layers, batch_first=True,
                          dropout=p.dropout if p.gru_layers > 1 else 0.0)
        sigma = math.sqrt(6.0 / (n_items + dim))
        with torch.no_grad():
            nn.init.uniform_(self.items.weight, -sigma, sigma)
            self.items.weight[PADDING_IDX].zero_()
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                _xavier_per_gate(weight)
            else:
                nn.init.zeros_(weight)

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        return self.hidden_dropout(self.gru(self.embed_dropout(self.items(seq)))[0])

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(self.embed_dropout(self.items(seq)))
        return self.hidden_dropout(hidden[-1])


class Caser(SequenceRecommender):
    """Horizontal (n-gram) and vertical convolutions over the embedded last `caser_window` items."""

    every_position = False

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


class _Block(nn.Module):
    """SASRec's block: pre-norm multi-head self-attention and a point-wise feed-forward, both residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.p = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff1, self.ff2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, L, D]; attend [B, 1, Q, L] (True = may read); last_only: the last position's query alone (Q = 1)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if last_only:
            q, x = q[:, -1:], x[:, -1:]
        heads = [t.reshape(b, t.shape[1], self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v)]
        a = F.scaled_dot_product_attention(*heads, attn_mask=attend, dropout_p=self.p if self.training else 0.0)
        y = x + self.dropout(self.out(a.transpose(1, 2).reshape(b, x.shape[1], dim)))
        return y + self.dropout(self.ff2(self.dropout(torch.relu(self.ff1(self.norm2(y))))))


class SASRec(SequenceRecommender):
    """Causal self-attention over the window (Kang & McAuley 2018), padded positions masked as keys.

    Learned positions count back from the newest item, and a key-padding mask joins the causal one,
    so the representation of a history does not depend on how much padding precedes it.
    """

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        if p.embedding_dim % p.sasrec_heads:
            raise ValueError(f"model.embedding_dim {p.embedding_dim} must be a multiple of model.sasrec_heads")
        self.positions = nn.Embedding(p.max_len, p.embedding_dim)
        self.blocks = nn.ModuleList(_Block(p.embedding_dim, p.sasrec_heads, p.dropout) for _ in range(p.sasrec_layers))
        self.norm = nn.LayerNorm(p.embedding_dim)
        self.dropout = nn.Dropout(p.dropout)

    def _encode(self, seq: torch.Tensor, last_only: bool) -> torch.Tensor:
        length = seq.shape[1]
        real = seq != PADDING_IDX
        keep = real.unsqueeze(-1).to(self.items.weight.dtype)
        steps = torch.arange(length, device=seq.device)
        back = self.max_len - length + steps  # the newest item is always position max_len - 1
        x = self.dropout(self.items(seq) * self.items.embedding_dim**0.5 + self.positions(back)) * keep
        causal = steps[None, :] <= steps[:, None]  # [Q, K]
        attend = (causal[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=seq.device)
        attend = attend.unsqueeze(1)  # [B, 1, L, L]; a position always reads itself, so no row is empty
        for i, block in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1  # serving needs the newest position's output only
            x = block(x, attend[:, :, -1:] if last else attend, last_only=last) * (keep[:, -1:] if last else keep)
        return self.norm(x)

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        return self._encode(seq, last_only=False)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        return self._encode(seq, last_only=True)[:, -1]


class RepeatNet(SASRec):
    """SASRec's encoder with RepeatNet's two decoders (Ren et al., AAAI 2019).

    A gate weighs *repeat*, an attention over the window's positions with a learned bias per distance
    (frequency by summing an item's positions, recency by the bias), against *explore*, a softmax
    over the items not in the window. An item's score is the log of its mixture probability, so
    the two kinds rank against each other; with the window's items excluded, explore alone ranks.
    """

    def __init__(self, n_items: int, p: ModelParams) -> None:
        super().__init__(n_items, p)
        self.repeat_query = nn.Linear(p.embedding_dim, p.embedding_dim)
        self.recency = nn.Parameter(torch.zeros(p.max_len))
        self.gate = nn.Linear(p.embedding_dim, 1)

    def _repeat_attention(self, states: torch.Tensor, queries: torch.Tensor, seq: torch.Tensor,
                          at: torch.Tensor) -> torch.Tensor:
        """Attention [B, Q, L] of queries at positions `at` [Q] over the window's positions up to theirs."""
        length = seq.shape[1]
        logits = self.repeat_query(queries) @ states.transpose(1, 2) / states.shape[-1] ** 0.5
        distance = at[:, None] - torch.arange(length, device=seq.device)[None, :]  # [Q, L]
        logits = logits + self.recency[distance.clamp(0, self.max_len - 1)]
        blocked = (distance < 0)[None] | (seq == PADDING_IDX)[:, None, :]
        return torch.softmax(logits.masked_fill(blocked, _NO_ATTENTION), dim=-1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        states = self.encode_all(seq)
        hidden = states[:, -1]
        last = torch.full((1,), seq.shape[1] - 1, device=seq.device)
        attention = self._repeat_attention(states, hidden[:, None], seq, last)[:, 0]  # [B, L]
        repeat = torch.zeros(seq.shape[0], self.n_items + 1, dtype=attention.dtype, device=seq.device)
        repeat = repeat.scatter_add(1, seq, attention)
        seen = torch.zeros_like(repeat).scatter(1, seq, 1.0) > 0
        seen[:, PADDING_IDX] = False
        gate = self.gate(hidden)
        explore = torch.log_softmax(self.scores(hidden).masked_fill(seen, _NO_ATTENTION), dim=-1)
        return torch.where(seen, F.logsigmoid(gate) + torch.log(repeat.clamp_min(1e-12)), F.logsigmoid(-gate) + explore)

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective) -> torch.Tensor:
        """The mixture's negative log-likelihood at every position with a next item.

        A next item already in the window so far costs -log gate - log repeat(item); any other costs
        -log(1 - gate) plus the objective's loss over the items not yet in the window.
        """
        batch, length = inputs.shape
        states = self.encode_all(inputs)
        steps = torch.arange(length, device=inputs.device)
        attention = self._repeat_attention(states, states, inputs, steps)  # [B, L, L]
        hit = (inputs[:, None, :] == targets[:, :, None]) & (steps[None, :] <= steps[:, None]) & (inputs != PADDING_IDX)[:, None, :]
        p_repeat = (attention * hit).sum(-1)
        real = targets != PADDING_IDX
        again = hit.any(-1)[real]
        hidden, target, p_repeat = states[real], targets[real], p_repeat[real]
        gate = self.gate(hidden).squeeze(-1)
        repeat_loss = -F.logsigmoid(gate[again]) - torch.log(p_repeat[again].clamp_min(1e-12))
        # where each item first appears in each window: an item is "in the window" at positions from there
        first = torch.full((batch, self.n_items + 1), length, dtype=torch.int32, device=inputs.device)
        first = first.scatter_reduce(1, inputs, steps.to(torch.int32).expand(batch, length), reduce="amin")
        first[:, PADDING_IDX] = length
        new = ~again
        rows = torch.arange(batch, device=inputs.device)[:, None].expand(batch, length)[real][new]
        at = steps.expand(batch, length)[real][new]

        def in_window(items: torch.Tensor | None) -> torch.Tensor:
            seen_from = first[rows, 1:] if items is None else first[rows[:, None], items[None, :]]  # [N, n] or [N, K]
            return seen_from <= at[:, None]

        explore_loss = -F.logsigmoid(-gate[new]) + objective(self, hidden[new], target[new], in_window)
        return torch.cat([repeat_loss, explore_loss]).sum() / max(len(target), 1)


NETWORKS: dict[str, type[SequenceRecommender]] = {"gru": GRU4Rec, "caser": Caser, "sasrec": SASRec, "repeatnet": RepeatNet}


def build_network(name: str, n_items: int, p: ModelParams) -> SequenceRecommender:
    """The named network for a catalogue of `n_items` items."""
    return NETWORKS[name](n_items, p)
