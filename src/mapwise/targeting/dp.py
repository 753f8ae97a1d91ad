"""Differentially private training of the propensity network: DP-SGD with Opacus, inside Lightning.

The private twin of `mapwise.targeting.fitting.fit`. Batches are Poisson samples of the training rows, each row's
gradient is clipped to `max_grad_norm` and Gaussian noise is added to their sum; the noise is calibrated so that
`epochs` passes spend exactly the budget (epsilon, delta), measured by the PRV accountant (an upper bound).
There is no early stopping: choosing an epoch by validation would spend budget that is not accounted, so the final
weights are kept and validation loss is only reported. The guarantee covers the training rows as they reach the
network; what is fitted on them before (the feature encoder, the item vocabulary) is not part of it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mapwise.params import FitParams, PrivateParams
from mapwise.targeting.fitting import TargetModule, tensors
from mapwise.lightning_noise import quiet_lightning

ACCOUNTANT = "prv"  # Opacus' privacy loss random variable accountant: tighter than RDP, and reports an upper bound
_NOISE = (".*Secure RNG turned off.*", ".*Optimal order is the largest alpha.*", ".*Full backward hook is firing.*",
          ".*does not have many workers.*", ".*Trying to infer the `batch_size`.*", ".*LeafSpec.*")


class _PrivateModule(TargetModule):
    """Binary cross-entropy on logits, stepped by the DP optimizer made beforehand; embedding padding rows, which the
    noise moves, are set back to zero after each step (post-processing: no privacy cost)."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, p: FitParams) -> None:
        super().__init__(net, binary=True, arms=False, lr=p.lr, weight_decay=p.weight_decay)
        self.dp_optimizer = optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.dp_optimizer

    @torch.no_grad()
    def on_train_batch_end(self, *_: object) -> None:
        for layer in self.net.modules():
            if isinstance(layer, nn.Embedding) and layer.padding_idx is not None:
                layer.weight[layer.padding_idx].zero_()


class _ValidationCurve(L.Callback):
    """Validation loss per epoch, for the report only."""

    def __init__(self) -> None:
        self.history: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, _: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.history.append(float(trainer.callback_metrics["val_loss"]))


def fit_private(build: Callable[[], nn.Module], train: list[np.ndarray], val: list[np.ndarray], p: FitParams,
                dp: PrivateParams, *, seed: int) -> tuple[nn.Module, dict]:
    """Build the network once seeded and train it with DP-SGD for `dp.epochs` passes over the arrays (laid out as
    `fit`'s, outcome last), spending (`dp.epsilon`, `dp.delta` or 1 / (10 x training rows)). Returns the plain network
    with its final weights, and what was spent.

    Runs on one CPU process: the seeded noise and sampling generators are CPU ones, and the accounting assumes a
    single process (no distributed DP). Same seed, same weights.
    """
    from opacus import PrivacyEngine

    L.seed_everything(seed, workers=True, verbose=False)
    net = build()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    delta = dp.delta or 1 / (10 * len(train[0]))
    rows = DataLoader(TensorDataset(*tensors(*train)), batch_size=p.batch_size,
                      generator=torch.Generator().manual_seed(seed))  # the sample rate: 1 / batches per pass
    optimizer = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    val_loader = DataLoader(TensorDataset(*tensors(*val)), batch_size=max(p.batch_size, 4096))
    curve = _ValidationCurve()
    quiet_lightning()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_epochs=dp.epochs, callbacks=[curve],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True)
    with warnings.catch_warnings():
        for noise in _NOISE:
            warnings.filterwarnings("ignore", noise)
        engine = PrivacyEngine(accountant=ACCOUNTANT, secure_mode=False)
        hooks, optimizer, poisson = engine.make_private_with_epsilon(
            module=net, optimizer=optimizer, data_loader=rows, target_epsilon=dp.epsilon, target_delta=delta,
            epochs=dp.epochs, max_grad_norm=dp.max_grad_norm, poisson_sampling=True, wrap_model=False,
            noise_generator=torch.Generator().manual_seed(seed + 1))
        trainer.fit(_PrivateModule(net, optimizer, p), poisson, val_loader)
        epsilon = float(engine.get_epsilon(delta))
    hooks.cleanup()
    net.eval()
    return net, {"epsilon": epsilon, "delta": delta, "accountant": ACCOUNTANT,
                 "noise_multiplier": float(optimizer.noise_multiplier), "max_grad_norm": dp.max_grad_norm,
                 "epochs": dp.epochs, "sample_rate": float(poisson.sample_rate),
                 "steps": sum(steps for *_, steps in engine.accountant.history), "val_loss_curve": curve.history}
