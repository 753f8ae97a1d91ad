"""A conditional tabular GAN (CTGAN, Xu et al. 2019) trained with Lightning: fit on a table, sample rows like it.

The generator stacks residual blocks (Linear-BatchNorm-ReLU, output concatenated to input) and ends in
tanh for alphas and gumbel-softmax (tau 0.2) for one-hot spans; the critic reads `pac` rows at once
(PacGAN) through Linear-LeakyReLU(0.2)-Dropout(0.5) layers and is trained with the WGAN-GP loss.
Training by sampling: each row of a batch conditions on one categorical column (picked uniformly) and a
value of it (by log-frequency), the critic sees a real row with that value, and the generator pays a
cross-entropy for not producing it. Unconditional samples condition on values by their frequency.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from mapwise.atomic import write_bytes, write_json
from mapwise.params import GanParams
from mapwise.synth.transform import Span, Transformer
from mapwise.lightning_noise import quiet_lightning

TAU = 0.2  # gumbel-softmax temperature
GP_WEIGHT = 10.0  # WGAN-GP lambda
BETAS = (0.5, 0.9)
CONDITION_DRAWS = 20  # rounds of generated rows searched for a conditioned value before the rest is forced
_CHUNK = 10_000  # rows generated per forward pass when sampling
_WEIGHTS, _META = "generator.pt", "model.json"
log = logging.getLogger(__name__)


class _Residual(nn.Module):
    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.block(x), x], dim=1)


def _generator(width_in: int, widths: list[int], width_out: int) -> nn.Sequential:
    layers, dim = [], width_in
    for width in widths:
        layers.append(_Residual(dim, width))
        dim += width
    return nn.Sequential(*layers, nn.Linear(dim, width_out))


class _Critic(nn.Module):
    def __init__(self, width_in: int, widths: list[int], pac: int) -> None:
        super().__init__()
        layers, dim = [], width_in * pac
        for width in widths:
            layers += [nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            dim = width
        self.pac, self.net = pac, nn.Sequential(*layers, nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, x.shape[1] * self.pac))

    def penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP: (|grad| - 1)^2 on points between real and fake packs, one mixing weight per pack."""
        mix = torch.rand(real.shape[0] // self.pac, 1, 1, device=real.device).expand(-1, self.pac, real.shape[1])
        between = (mix.reshape(real.shape) * real + (1 - mix.reshape(real.shape)) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self(between).sum(), between, create_graph=True)
        return ((grad.reshape(-1, self.pac * real.shape[1]).norm(2, dim=1) - 1) ** 2).mean() * GP_WEIGHT


def _activate(raw: torch.Tensor, spans: list[Span], generator: torch.Generator | None = None) -> torch.Tensor:
    """tanh on alpha spans, gumbel-softmax on one-hot spans."""
    parts = []
    for span in spans:
        block = raw[:, span.start:span.start + span.width]
        if span.activation == "tanh":
            parts.append(torch.tanh(block))
        else:
            gumbel = -torch.empty_like(block).exponential_(generator=generator).log()
            parts.append(torch.softmax((block + gumbel) / TAU, dim=1))
    return torch.cat(parts, dim=1)


class _Conditions:
    """Conditional vectors over the categorical columns' values, drawn in one go per batch."""

    def __init__(self, counts: list[list[int]]) -> None:
        self.widths = np.array([len(c) for c in counts])
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)[:-1]]).astype(int)
        padded = np.zeros((len(counts), self.widths.max(initial=0)))
        for j, col in enumerate(counts):
            padded[j, :len(col)] = col
        self.cum = {name: np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
                    for name, w in (("log", np.log1p(padded)), ("frequency", padded))} if len(counts) else {}

    @property
    def width(self) -> int:
        return int(self.widths.sum())

    def draw(self, n: int, rng: np.random.Generator, by: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column, value) per row: a column uniformly, a value by `by` ("log" frequency or "frequency")."""
        col = rng.integers(len(self.widths), size=n)
        value = np.minimum((self.cum[by][col] < rng.random(n)[:, None]).sum(axis=1), self.widths[col] - 1)
        return col, value, self.vectors(col, value)

    def vectors(self, col: np.ndarray, value: np.ndarray) -> np.ndarray:
        cond = np.zeros((len(col), self.width), dtype=np.float32)
        cond[np.arange(len(col)), self.offsets[col] + value] = 1
        return cond


class _Rows:
    """For each categorical column and value, the training rows holding it: a random one per (column, value)."""

    def __init__(self, values: np.ndarray, widths: np.ndarray) -> None:  # values: rows x columns of value indices
        n = values.shape[0]
        self.order = np.concatenate([np.argsort(values[:, j], kind="stable") for j in range(values.shape[1])])
        counts = np.zeros((values.shape[1], widths.max()), dtype=int)
        for j in range(values.shape[1]):
            counts[j, :widths[j]] = np.bincount(values[:, j], minlength=widths[j])
        self.counts = counts
        self.starts = np.arange(values.shape[1])[:, None] * n + np.cumsum(counts, axis=1) - counts

    def draw(self, col: np.ndarray, value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pick = (rng.random(len(col)) * self.counts[col, value]).astype(int)
        return self.order[self.starts[col, value] + pick]


def _value_indices(data: np.ndarray, spans: list[Span]) -> np.ndarray:
    return np.stack([data[:, s.start:s.start + s.width].argmax(axis=1) for s in spans], axis=1)


class _Module(L.LightningModule):
    """Both networks and their two Adam optimisers, stepped by hand: critic steps, then one generator step."""

    def __init__(self, data: np.ndarray, transformer: Transformer, p: GanParams, seed: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.p, self.spans, self.cat_spans = p, transformer.spans, transformer.categorical_spans
        self.conditions = _Conditions([s.counts for s in transformer.categorical])
        self.rows = _Rows(_value_indices(data, self.cat_spans), self.conditions.widths) if self.cat_spans else None
        self.rng = np.random.default_rng(seed)
        self.data = torch.from_numpy(data)
        self.generator = _generator(p.embedding_dim + self.conditions.width, p.generator, data.shape[1])
        self.critic = _Critic(data.shape[1] + self.conditions.width, p.discriminator, p.pac)
        self.history: list[dict] = []
        self._losses: list[tuple[float, float]] = []

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(net.parameters(), lr=self.p.lr, betas=BETAS, weight_decay=self.p.weight_decay)
                for net in (self.generator, self.critic)]

    def on_fit_start(self) -> None:
        self.data = self.data.to(self.device)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def _fake(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
        """Raw and activated generator output for n rows, their conditional vectors and (column, value) picks."""
        noise = torch.randn(n, self.p.embedding_dim, device=self.device)
        if not self.cat_spans:
            raw = self.generator(noise)
            return raw, _activate(raw, self.spans), noise[:, :0], np.zeros(0, int), np.zeros(0, int)
        col, value, cond = self.conditions.draw(n, self.rng, "log")
        cond = self._tensor(cond)
        raw = self.generator(torch.cat([noise, cond], dim=1))
        return raw, _activate(raw, self.spans), cond, col, value

    def _condition_loss(self, raw: torch.Tensor, col: np.ndarray, value: np.ndarray) -> torch.Tensor:
        """Cross-entropy of the generated one-hot against the asked value, on each row's conditioned column."""
        if not self.cat_spans:
            return raw.new_zeros(())
        losses = torch.stack([nn.functional.cross_entropy(raw[:, s.start:s.start + s.width],
                                                          self._tensor(np.where(col == j, value, 0)), reduction="none")
                              for j, s in enumerate(self.cat_spans)], dim=1)
        mask = self._tensor(np.eye(len(self.cat_spans), dtype=np.float32)[col])
        return (losses * mask).sum() / raw.shape[0]

    def training_step(self, batch: int, _: int) -> None:
        opt_g, opt_c = self.optimizers()
        n = self.p.batch_size
        for _ in range(self.p.discriminator_steps):
            with torch.no_grad():
                _, fake, cond, col, value = self._fake(n)
            perm = self.rng.permutation(n)
            rows = self.rows.draw(col[perm], value[perm], self.rng) if self.rows else self.rng.integers(len(self.data), size=n)
            real = torch.cat([self.data[self._tensor(rows)], cond[self._tensor(perm)]], dim=1)
            fake = torch.cat([fake, cond], dim=1)
            critic_loss = self.critic(fake).mean() - self.critic(real).mean()
            opt_c.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss + self.critic.penalty(real, fake))
            opt_c.step()
        raw, fake, cond, col, value = self._fake(n)
        generator_loss = -self.critic(torch.cat([fake, cond], dim=1)).mean() + self._condition_loss(raw, col, value)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(generator_loss)
        opt_g.step()
        self._losses.append((generator_loss.item(), critic_loss.item()))

    def on_train_epoch_end(self) -> None:
        g, c = np.mean(self._losses, axis=0)
        self.history.append({"epoch": len(self.history) + 1, "generator_loss": float(g), "critic_loss": float(c)})
        self._losses = []


class CTGAN:
    """A fitted generator and its transformer: `sample` rows, `save` / `load` them (no pickle)."""

    def __init__(self, transformer: Transformer, generator: nn.Sequential, embedding_dim: int,
                 history: list[dict]) -> None:
        self.transformer, self.generator, self.embedding_dim, self.history = transformer, generator, embedding_dim, history
        self.conditions = _Conditions([s.counts for s in transformer.categorical])
        self.generator.eval()

    @property
    def numeric(self) -> list[str]:
        return [s.name for s in self.transformer.numeric]

    @property
    def categorical(self) -> list[str]:
        return [s.name for s in self.transformer.categorical]

    @classmethod
    def fit(cls, frame: pl.DataFrame, numeric: list[str], categorical: list[str], p: GanParams, *, seed: int) -> CTGAN:
        """Train on the rows of `frame` for `p.epochs` passes (at least one step each), seeded."""
        L.seed_everything(seed, workers=True, verbose=False)
        transformer = Transformer.fit(frame, numeric, categorical, max_modes=p.max_modes, seed=seed)
        module = _Module(transformer.transform(frame, seed=seed), transformer, p, seed)
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
            logging.getLogger(name).setLevel(logging.WARNING)
        quiet_lightning()
        trainer = L.Trainer(accelerator=p.accelerator, devices=p.devices, precision=p.precision, max_epochs=p.epochs,
                            logger=False, enable_checkpointing=False, enable_progress_bar=sys.stderr.isatty(),
                            enable_model_summary=False, deterministic=True)
        steps = DataLoader(range(max(frame.height // p.batch_size, 1)), batch_size=None)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            trainer.fit(module, steps)
        return cls(transformer, module.generator.cpu(), p.embedding_dim, module.history)

    def _condition(self, condition: dict[str, str]) -> tuple[int, int]:
        """(categorical column index, value index) of a one-column condition."""
        if len(condition) != 1:
            raise ValueError(f"condition on exactly one categorical column, not {len(condition)}: {sorted(condition)}")
        (name, asked), = condition.items()
        if name not in self.categorical:
            raise ValueError(f"condition column {name!r} is not a categorical column of the model "
                             f"({', '.join(self.categorical) or 'none'})")
        values = self.transformer.categorical[self.categorical.index(name)].values
        found = [i for i, v in enumerate(values) if v == asked or (v is not None and str(v) == str(asked))]
        if not found:
            raise ValueError(f"condition value {asked!r} of column {name!r} was never seen in training")
        return self.categorical.index(name), found[0]

    @torch.no_grad()
    def _generate(self, n: int, cond: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        noise = torch.randn(n, self.embedding_dim, generator=generator)
        inputs = noise if cond is None else torch.cat([noise, torch.from_numpy(cond)], dim=1)
        return _activate(self.generator(inputs), self.transformer.spans, generator).numpy()

    def sample(self, n: int, *, seed: int, condition: dict[str, str] | None = None) -> pl.DataFrame:
        """n synthetic rows; with `condition` ({column: value}) only rows with that value (drawn by rejection,
        the generator conditioned on it; rows still missing after CONDITION_DRAWS rounds get the value set)."""
        generator, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
        kept, have, draws = [], 0, 0
        target = self._condition(condition) if condition else None
        while have < n:
            size = min(max(n - have, 1), _CHUNK)
            if not len(self.conditions.widths):
                cond = None
            elif target is None:
                cond = self.conditions.draw(size, rng, "frequency")[2]
            else:
                cond = self.conditions.vectors(np.full(size, target[0]), np.full(size, target[1]))
            data = self._generate(size, cond, generator)
            draws += 1
            if target is not None:
                span = self.transformer.categorical_spans[target[0]]
                block = data[:, span.start:span.start + span.width]
                if draws < CONDITION_DRAWS:
                    data = data[block.argmax(axis=1) == target[1]]
                else:
                    forced = int((block.argmax(axis=1) != target[1]).sum())
                    log.warning("%s: %d of %d rows did not take the asked value after %d draws; set it",
                                condition, forced, size, draws)
                    block[:] = np.eye(span.width, dtype=np.float32)[target[1]]
            kept.append(data)
            have += len(data)
        return self.transformer.inverse(np.concatenate(kept)[:n] if kept else np.zeros((0, self.transformer.width)))

    def save(self, folder: Path) -> None:
        """`generator.pt` (a state_dict, loadable with weights_only) and `model.json` (transformer, shape, history)."""
        buffer = io.BytesIO()
        torch.save(self.generator.state_dict(), buffer)
        write_bytes(folder / _WEIGHTS, buffer.getvalue())
        widths = [block.block[0].out_features for block in self.generator[:-1]]
        write_json(folder / _META, {"kind": "ctgan", "embedding_dim": self.embedding_dim, "generator": widths,
                                    "transformer": self.transformer.to_dict(), "history": self.history})

    @classmethod
    def load(cls, folder: Path) -> CTGAN:
        meta = json.loads((folder / _META).read_text())
        transformer = Transformer.from_dict(meta["transformer"])
        conditions = _Conditions([s.counts for s in transformer.categorical])
        generator = _generator(meta["embedding_dim"] + conditions.width, meta["generator"], transformer.width)
        generator.load_state_dict(torch.load(folder / _WEIGHTS, map_location="cpu", weights_only=True))
        return cls(transformer, generator, meta["embedding_dim"], meta["history"])
