"""Train one sequence recommender with Lightning on whatever hardware the params ask for.

Checkpoints live in a folder named by a hash of everything that shapes the model, so an
interrupted run resumes from its last checkpoint, a finished run (early-stopped or not) is
reused as it was, and a changed param starts afresh.

Checkpoints may come from a DVC remote: they are read as tensors only (`files.weights_only`).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import polars as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger, MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset

from mapwise import columns as c
from mapwise.atomic import write_json
from mapwise.errors import MapwiseError
from mapwise.recommend.models.files import weights_only
from mapwise.recommend.models.module import VAL_METRIC, RecommenderModule
from mapwise.recommend.models.sequences import (
    customer_sequences,
    next_item_examples,
    pad_left,
    sequence_chunks,
)
from mapwise.recommend.models.targets import NextItems
from mapwise.tracking import artifact_location, tracking_uri
from mapwise.params import TrackingParams, TrainParams
from mapwise.recommend.split import HISTORY, POPULARITY, TARGETS, Split, require_trainable
from mapwise.columns import ITEM_IDX
from mapwise.lightning_noise import quiet_lightning

if TYPE_CHECKING:
    from mapwise.recommend.models.warm_start import WarmStart


def mlflow_logger(p: TrackingParams, *, run_name: str, tags: dict[str, str]) -> MLFlowLogger:
    """A Lightning MLFlowLogger for one run (Lightning logs from rank 0 only under DDP)."""
    return MLFlowLogger(
        experiment_name=p.experiment,
        run_name=run_name,
        tracking_uri=tracking_uri(p),
        tags=tags,
        artifact_location=artifact_location(),
    )


@dataclass
class TrainResult:
    """What one training run produced."""

    name: str
    best_score: float
    best_step: int
    steps: int
    budget_steps: int
    stop_reason: str  # plateau (patience validations without a gain) | budget (the step budget ran out)
    resumed_after_steps: int | None  # steps already done when an interrupted run was resumed
    seconds: float
    checkpoint: Path
    curve: list[dict] = field(default_factory=list)
    reused: bool = False  # a finished run with the same hash: nothing trained


@dataclass
class RefitResult:
    """The selected model retrained on training + validation for the steps validation chose."""

    name: str
    steps: int
    examples: int
    seconds: float
    checkpoint: Path
    reused: bool = False


class _Curve(Callback):
    """Per validation: step, mean train loss since the last one, validation NDCG and learning rate.

    Kept on disk, so a resumed run's curve is whole.
    """

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        rows = json.loads(path.read_text()) if path.exists() and resume_step else []
        self.rows: list[dict] = [r for r in rows if r["step"] <= resume_step]
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or VAL_METRIC not in trainer.callback_metrics:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                          "train_loss": float(np.mean(self.losses)) if self.losses else float("nan"),
                          VAL_METRIC: float(trainer.callback_metrics[VAL_METRIC]), "lr": lr})
        self.losses = []
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.rows)


def _step(checkpoint: Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    with weights_only(checkpoint, "checkpoint"):
        step = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    if type(step) is not int:
        raise MapwiseError(f"{checkpoint}: not a readable checkpoint (no step)")
    return step


def resolve_precision(p: TrainParams) -> str:
    """`auto`: bf16-mixed on a GPU that supports it, else full fp32."""
    if p.precision != "auto":
        return p.precision
    gpu = p.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def window_tensors(histories: Sequence[np.ndarray], targets: Sequence[np.ndarray], max_len: int) -> TensorDataset:
    """Evaluation rows: left-padded histories and targets padded with -1."""
    width = max((len(t) for t in targets), default=1)
    padded = np.full((len(targets), width), -1, dtype=np.int64)
    for row, items in enumerate(targets):
        padded[row, : len(items)] = items
    return TensorDataset(torch.from_numpy(pad_left(histories, max_len)), torch.from_numpy(padded))


def config_hash(name: str, train: pl.DataFrame, n_items: int, p: TrainParams, *extra: object) -> str:
    """Identifies a training run: model, params (hardware aside), the data it sees and the model code."""
    shaping = p.model_dump(mode="json", exclude={"accelerator", "devices", "strategy", "num_nodes", "out_dir", "report",
                                                 "models", "per_model", "ranker"})  # the ranker's settings shape no network
    data = f"{n_items}:{train.height}:{train[ITEM_IDX].sum()}"
    code = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()
    return hashlib.sha256(json.dumps([name, shaping, data, code, *extra], sort_keys=True).encode()).hexdigest()[:12]


def step_budget(p: TrainParams, steps_per_epoch: int) -> tuple[int, int]:
    """(budget, validation interval) in optimizer steps; the budget is a whole number of intervals."""
    budget = max(p.min_steps, p.max_epochs * steps_per_epoch, 1)
    if p.max_steps is not None:
        budget = min(budget, p.max_steps)
    interval = max(1, min(p.val_every_steps, steps_per_epoch, budget))
    return -(-budget // interval) * interval, interval


def build_module(name: str, split: Split, p: TrainParams, init: WarmStart | None = None) -> RecommenderModule:
    """A fresh module for `name` with the model's own params (`TrainParams.for_model`); `init`: its starting weights."""
    popularity = split.items.sort(ITEM_IDX)[POPULARITY].to_list() if p.negative_alpha else None
    module = RecommenderModule(
        name, split.n_items, p.model.model_dump(), p.lr, p.weight_decay, p.optimizer, momentum=p.momentum, loss=p.loss,
        negatives=p.negatives, negative_alpha=p.negative_alpha, gbce_t=p.gbce_t, warmup_steps=p.warmup_steps,
        lr_schedule=p.lr_schedule, popularity=[0, *popularity] if popularity else None,
    )
    if init is not None:
        module.net.load_state_dict(init.state)
    return module


def training_examples(module: RecommenderModule, train: pl.DataFrame, p: TrainParams) -> NextItems:
    """The module's training windows over these purchases (every position for the models that read all)."""
    every = module.net.every_position
    examples = sequence_chunks if every else next_item_examples
    return NextItems(*examples(customer_sequences(train), p.model.max_len, p.target_horizon), p.target_horizon, every)


def training_batches(examples: NextItems, p: TrainParams) -> DataLoader:
    """Shuffled batches whose targets are drawn afresh each time (`target_horizon`)."""
    return DataLoader(examples, batch_size=p.batch_size, shuffle=True, collate_fn=examples.collate)


def _trainer(p: TrainParams, *, max_steps: int, callbacks: list, logger: Logger | bool, progress: bool,
             interval: int | None) -> L.Trainer:
    quiet_lightning()
    return L.Trainer(
        accelerator=p.accelerator, devices=p.devices, strategy=p.strategy, num_nodes=p.num_nodes,
        precision=resolve_precision(p), max_steps=max_steps, max_epochs=-1, callbacks=callbacks, logger=logger,
        val_check_interval=interval, check_val_every_n_epoch=None, limit_val_batches=None if interval else 0,
        deterministic=True, enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        enable_checkpointing=interval is not None,
    )


def train_model(
    name: str,
    split: Split,
    p: TrainParams,
    *,
    work_dir: Path,
    logger: Logger | bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    init: WarmStart | None = None,
) -> TrainResult:
    """Fit `name` on the split's training interactions until validation NDCG plateaus or the budget runs out.

    `p` are the model's own params (`TrainParams.for_model`). The checkpoint kept is the best on validation.
    A split too small to learn from (one item, no sequence, no validation customer) is refused in one line.
    `init`: start from these weights (a warm start, `warm_start.load_warm_start`) instead of random ones.
    """
    require_trainable(split)
    L.seed_everything(p.seed, workers=True, verbose=False)
    start = time.perf_counter()
    ckpt_dir = work_dir / f"{name}-{config_hash(name, split.train, split.n_items, p, *_init_key(init))}"
    finished = ckpt_dir / "finished.json"
    if finished.exists():  # trained to the end (or stopped at a plateau) before: resuming would train on past the stop
        try:
            saved = json.loads(finished.read_text())
            return TrainResult(name, saved["best_score"], saved["best_step"], saved["steps"], saved["budget_steps"],
                               saved["stop_reason"], None, time.perf_counter() - start, ckpt_dir / saved["checkpoint"],
                               saved["curve"], reused=True)
        except (OSError, ValueError, KeyError, TypeError):
            raise MapwiseError(f"{finished}: unreadable; delete {ckpt_dir} to train afresh") from None
    module = build_module(name, split, p, init)
    examples = training_examples(module, split.train, p)
    train = training_batches(examples, p)
    budget, interval = step_budget(p, len(train))
    valid = split.valid
    if valid.height > p.val_customers:
        valid = valid.sample(p.val_customers, seed=p.seed).sort(c.CUSTOMER_ID)
    valid_rows = window_tensors(
        [np.asarray(h) for h in valid[HISTORY].to_list()],
        [np.asarray(t) for t in valid[TARGETS].to_list()],
        p.model.max_len,
    )
    valid = DataLoader(valid_rows, batch_size=max(p.batch_size, 512))
    last = ckpt_dir / "last.ckpt"
    resumed = _step(last) if last.exists() else None  # also refuses a checkpoint that is not only weights
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=VAL_METRIC, mode="max", save_last=True)
    plateau = EarlyStopping(VAL_METRIC, mode="max", patience=p.patience, min_delta=p.min_gain)
    curve = _Curve(ckpt_dir / "curve.json", resumed or 0)
    trainer = _trainer(p, max_steps=budget, callbacks=[best, plateau, curve, *callbacks], logger=logger,
                       progress=progress, interval=interval)
    trainer.fit(module, train, valid, ckpt_path=last if last.exists() else None, weights_only=True)
    best_path = Path(best.best_model_path) if best.best_model_path else last
    result = TrainResult(
        name=name,
        best_score=float(best.best_model_score) if best.best_model_score is not None else float("nan"),
        best_step=_step(best_path),
        steps=trainer.global_step,
        budget_steps=budget,
        stop_reason="plateau" if plateau.wait_count >= p.patience else "budget",
        resumed_after_steps=resumed,
        seconds=time.perf_counter() - start,
        checkpoint=best_path,
        curve=curve.rows,
    )
    if trainer.is_global_zero:
        write_json(finished, {"best_score": result.best_score, "best_step": result.best_step, "steps": result.steps,
                              "budget_steps": budget, "stop_reason": result.stop_reason,
                              "checkpoint": best_path.name, "curve": result.curve})
    return result


def refit_model(
    selected: TrainResult,
    split: Split,
    p: TrainParams,
    *,
    work_dir: Path,
    logger: Logger | bool = False,
    progress: bool = True,
    init: WarmStart | None = None,
) -> RefitResult:
    """Retrain the selected model from scratch on everything before the test (training + validation windows).

    It trains for the steps validation chose, scaled by how many more examples there are: the same
    number of passes over the data, with the same seed and schedule. No validation is left to watch.
    A warm-started model (`init`) is refitted from the same starting weights.
    """
    require_trainable(split)
    L.seed_everything(p.seed, workers=True, verbose=False)
    start = time.perf_counter()
    module = build_module(selected.name, split, p, init)
    before, examples = len(training_examples(module, split.train, p)), training_examples(module, split.refit, p)
    steps = max(1, round(max(selected.best_step, 1) * len(examples) / max(before, 1)))
    ckpt_dir = work_dir / f"{selected.name}-{config_hash(selected.name, split.refit, split.n_items, p, steps, *_init_key(init))}-refit"
    checkpoint = ckpt_dir / "refit.ckpt"
    if checkpoint.exists():
        _step(checkpoint)  # refuses a file that is not only weights
        return RefitResult(selected.name, steps, len(examples), time.perf_counter() - start, checkpoint, reused=True)
    trainer = _trainer(p, max_steps=steps, callbacks=[], logger=logger, progress=progress, interval=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You defined a `validation_step` but have no `val_dataloader`")
        trainer.fit(module, training_batches(examples, p), weights_only=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    partial = checkpoint.with_name(".refit.ckpt.partial")
    trainer.save_checkpoint(partial)  # every rank takes part; a checkpoint that exists is whole
    if trainer.is_global_zero:
        partial.replace(checkpoint)
    return RefitResult(selected.name, steps, len(examples), time.perf_counter() - start, checkpoint)


def _init_key(init: WarmStart | None) -> tuple:
    """What identifies a warm start in a checkpoint folder's hash (nothing for a start from scratch)."""
    return () if init is None else ("init", init.source, init.digest)
