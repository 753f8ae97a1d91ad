"""Lightning training of the targeting networks: early stopping on validation loss, best weights kept."""

from __future__ import annotations

import copy
from collections.abc import Callable
import logging
import warnings

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from mapwise.params import FitParams
from mapwise.targeting.networks import ArmsNet
from mapwise.lightning_noise import quiet_lightning


class TargetModule(L.LightningModule):
    """Loss on the observed outcome: binary cross-entropy on logits, or squared error on values.

    Batches are (x, [seq], y) for propensity and (x, arm, y) for arm networks, where only the
    observed arm's prediction meets the outcome (plus DragonNet's arm loss).
    """

    def __init__(self, net: nn.Module, *, binary: bool, arms: bool, lr: float, weight_decay: float,
                 arm_loss_weight: float = 1.0) -> None:
        super().__init__()
        self.net, self.binary, self.arms = net, binary, arms
        self.lr, self.weight_decay, self.arm_loss_weight = lr, weight_decay, arm_loss_weight

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        if self.arms:
            x, arm, y = batch
            pred = self.net(x).gather(1, arm[:, None]).squeeze(1)
        else:
            *inputs, y = batch
            pred = self.net(*inputs)
        loss = (nn.functional.binary_cross_entropy_with_logits(pred, y) if self.binary
                else nn.functional.mse_loss(pred, y))  # the conditional mean: what an expected uplift needs
        if self.arms and isinstance(self.net, ArmsNet) and self.net.kind == "dragonnet":
            loss = loss + self.arm_loss_weight * nn.functional.cross_entropy(self.net.arm_logits(batch[0]), batch[1])
        return loss

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True, on_epoch=True, on_step=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class _KeepBest(L.Callback):
    """The weights of the epoch with the lowest validation loss, and when to stop."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.state, self.best_epoch, self.waited = patience, float("inf"), None, -1, 0
        self.history: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        self.history.append(loss)
        if loss < self.best - 1e-5:
            self.best, self.best_epoch, self.waited = loss, trainer.current_epoch, 0
            self.state = copy.deepcopy(module.net.state_dict())
        else:
            self.waited += 1
            trainer.should_stop = trainer.should_stop or self.waited >= self.patience


class _Rows(TensorDataset):
    """Indexed by a list of rows: a whole batch in one gather, not one collate per row (the slow part for MLPs)."""

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        return tuple(t[rows] for t in self.tensors)


def _loader(arrays: list[np.ndarray], batch_size: int, generator: torch.Generator | None) -> DataLoader:
    data = _Rows(*tensors(*arrays))
    order = RandomSampler(data, generator=generator) if generator is not None else SequentialSampler(data)
    return DataLoader(data, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)


def tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    """float arrays as float32 tensors, integer arrays as int64."""
    return [torch.tensor(a, dtype=torch.int64 if np.issubdtype(a.dtype, np.integer) else torch.float32) for a in arrays]


def fit(build: Callable[[], nn.Module], train: list[np.ndarray], val: list[np.ndarray], p: FitParams, *, binary: bool,
        arms: bool, seed: int) -> tuple[nn.Module, dict]:
    """Build the network once seeded (so its initial weights are reproducible), train it on the arrays (laid out as
    the batches are, outcome last) and return it with the weights of its best validation epoch."""
    L.seed_everything(seed, workers=True, verbose=False)
    net = build()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available: False", tips: noise per fit
    module = TargetModule(net, binary=binary, arms=arms, lr=p.lr, weight_decay=p.weight_decay)
    keep = _KeepBest(p.patience)
    generator = torch.Generator().manual_seed(seed)
    train_loader = _loader(train, p.batch_size, generator)
    val_loader = _loader(val, max(p.batch_size, 4096), None)
    quiet_lightning()
    trainer = L.Trainer(accelerator=p.accelerator, devices=p.devices, precision=p.precision, max_epochs=p.max_epochs,
                        callbacks=[keep], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*Trying to infer the `batch_size`.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        trainer.fit(module, train_loader, val_loader)
    net.load_state_dict(keep.state)
    net.eval()
    return net, {"epochs": trainer.current_epoch + 1, "best_epoch": keep.best_epoch + 1, "val_loss": keep.best,
                 "val_loss_curve": keep.history}


@torch.no_grad()
def predict(net: nn.Module, *inputs: np.ndarray, batch: int = 8192) -> np.ndarray:
    """The network's outputs on numpy inputs, in batches, as float64."""
    net.eval()
    outs = []
    n = len(inputs[0])
    for start in range(0, n, batch):
        outs.append(net(*tensors(*(a[start:start + batch] for a in inputs))).double().numpy())
    return np.concatenate(outs) if outs else np.zeros((0,))
