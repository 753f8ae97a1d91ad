"""The Lightning module: full-softmax next-item training, full-ranking NDCG@10 validation."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F

from mapwise.metrics import ranking_metrics
from mapwise.models.networks import build_network
from mapwise.params import ModelParams
from mapwise.split import PADDING_IDX

VAL_METRIC = "val_ndcg@10"
_VAL_K = 10


class RecommenderModule(L.LightningModule):
    """One sequence recommender: cross-entropy over the whole catalogue, selected on validation NDCG@10."""

    def __init__(self, name: str, n_items: int, model: dict, lr: float, weight_decay: float, optimizer: str) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_network(name, n_items, ModelParams(**model))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net(seq)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        inputs, targets = batch
        if self.net.every_position:  # targets [B, L], PADDING_IDX where there is none
            real = targets != PADDING_IDX
            hidden, targets = self.net.encode_all(inputs)[real], targets[real]  # positions with a next item
        else:
            hidden = self.net.encode(inputs)
        # item i is logit column i - 1: the padding item is never a class
        loss = F.cross_entropy(self.net.item_logits(hidden).float(), targets - 1)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        inputs, padded_targets = batch
        top = torch.topk(self.net(inputs).float(), _VAL_K, dim=1).indices.cpu().numpy()
        targets = [row[row >= 0] for row in padded_targets.cpu().numpy()]
        ndcg = ranking_metrics(top, targets, [_VAL_K])[f"ndcg@{_VAL_K}"]
        self.log(VAL_METRIC, float(np.mean(ndcg)), prog_bar=True, batch_size=len(targets), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = torch.optim.AdamW if self.hparams.optimizer == "adamw" else torch.optim.Adam
        return optimizer(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
