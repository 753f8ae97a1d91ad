"""The Lightning module: next-item training (full or sampled softmax, gBCE), full-ranking NDCG@10 validation."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from mapwise.recommend.metrics import ranking_metrics
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.models.objectives import Objective
from mapwise.params import ModelParams
from mapwise.recommend.split import VALIDATION_K

VAL_METRIC = f"val_ndcg@{VALIDATION_K}"
_VAL_K = VALIDATION_K


class AdagradM(torch.optim.Optimizer):
    """Adagrad with momentum, the optimizer GRU4Rec's authors train it with (dense form)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    state["mom"] = torch.zeros_like(p)
                state["acc"].add_(grad * grad)
                step = grad / (state["acc"] + group["eps"]).sqrt() * -group["lr"]
                state["mom"].mul_(group["momentum"]).add_(step)
                p.add_(state["mom"])
        return loss


def lr_factor(step: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak lr at an optimizer step: linear warm-up, then sqrt(warmup / step) or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return (warmup / (step + 1)) ** 0.5
    return 1.0


class RecommenderModule(L.LightningModule):
    """One sequence recommender trained on next items, selected on validation NDCG@10."""

    def __init__(self, name: str, n_items: int, model: dict, lr: float, weight_decay: float, optimizer: str,
                 momentum: float = 0.0, loss: str = "softmax", negatives: int = 256, negative_alpha: float = 0.0,
                 gbce_t: float = 0.75, warmup_steps: int = 0, lr_schedule: str = "constant",
                 popularity: list[int] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["popularity"])
        self.net = build_network(name, n_items, ModelParams(**model))
        self.objective = Objective(loss, n_items, negatives=negatives, gbce_t=gbce_t, negative_alpha=negative_alpha,
                                   popularity=np.asarray(popularity) if popularity is not None else None)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net(seq)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        inputs, targets = batch
        loss = self.net.training_loss(inputs, targets, self.objective)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(targets), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        inputs, padded_targets = batch
        k = min(_VAL_K, self.net.n_items)  # a catalogue smaller than K: NDCG over all of it (padding, at -inf, never)
        top = torch.topk(self.net(inputs).float(), k, dim=1).indices.cpu().numpy()
        targets = [row[row >= 0] for row in padded_targets.cpu().numpy()]
        ndcg = ranking_metrics(top, targets, [k])[f"ndcg@{k}"]
        self.log(VAL_METRIC, float(np.mean(ndcg)), prog_bar=True, batch_size=len(targets), sync_dist=True)

    def configure_optimizers(self) -> dict:
        h = self.hparams
        if h.optimizer == "adagrad":
            optimizer = AdagradM(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        else:
            kind = torch.optim.AdamW if h.optimizer == "adamw" else torch.optim.Adam
            optimizer = kind(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, h.warmup_steps, h.lr_schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
