"""Train one sequence recommender with Lightning on whatever hardware the params ask for.

Checkpoints live in a folder named by a hash of everything that shapes the model, so an
interrupted run resumes from its last checkpoint, a finished run (early-stopped or not) is
reused as it was, and a changed param starts afresh.

Checkpoints and saved networks may come from a DVC remote: they are only ever read as tensors and
plain values (`weights_only`), so a file that would run code when unpickled is refused, never run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from mapwise.atomic import replacing, write_json
from mapwise.errors import MapwiseError
from mapwise.models.module import VAL_METRIC, RecommenderModule
from mapwise.models.networks import SequenceRecommender, build_network
from mapwise.models.sequences import customer_sequences, next_item_examples, pad_left, sequence_chunks
from mapwise.params import ModelParams, TrainParams
from mapwise.split import HISTORY, TARGETS, Split


@dataclass
class TrainResult:
    """What one training run produced."""

    name: str
    best_score: float
    best_epoch: int
    epochs: int
    resumed_after_epochs: int | None  # epochs already done when an interrupted run was resumed
    seconds: float
    checkpoint: Path
    curve: list[dict] = field(default_factory=list)
    reused: bool = False  # a finished run with the same hash: nothing trained


class _Curve(Callback):
    """Per-epoch train loss and validation NDCG, for plots; kept on disk so a resumed run's curve is whole."""

    def __init__(self, path: Path, resume_epoch: int) -> None:
        self.path = path
        rows = json.loads(path.read_text()) if path.exists() and resume_epoch else []
        self.rows: list[dict] = [r for r in rows if r["epoch"] < resume_epoch]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics  # validation has run by now, and the epoch's train loss is in
        row = {"epoch": trainer.current_epoch, "train_loss": float(metrics["train_loss"])}
        self.rows.append({**row, VAL_METRIC: float(metrics[VAL_METRIC])})
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.rows)


@contextmanager
def _weights_only(path: Path, what: str) -> Iterator[None]:
    """Around a `weights_only` load: a refused or unreadable file becomes one line naming it."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # a crafted file's protocol
            yield
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise MapwiseError(f"{path}: cannot read {what} ({err.strerror})") from None
    except pickle.UnpicklingError:
        raise MapwiseError(
            f"{path}: refused: a {what} holds only tensors and plain values, this one something else "
            "(nothing in it was run)"
        ) from None
    except Exception:  # torch raises several kinds for a truncated or foreign file
        raise MapwiseError(f"{path}: not a readable {what} (truncated, corrupt or another format)") from None


def _epoch(checkpoint: Path) -> int:
    """The epoch a Lightning checkpoint was saved at."""
    with _weights_only(checkpoint, "checkpoint"):
        epoch = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]
    if type(epoch) is not int:
        raise MapwiseError(f"{checkpoint}: not a readable checkpoint (no epoch)")
    return epoch


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


def config_hash(name: str, split: Split, p: TrainParams) -> str:
    """Identifies a training run: model, params (hardware aside), the data it sees and the model code."""
    shaping = p.model_dump(mode="json", exclude={"accelerator", "devices", "strategy", "num_nodes", "out_dir", "report"})
    data = f"{split.n_items}:{split.train.height}:{split.train['item_idx'].sum()}"
    code = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()
    return hashlib.sha256(json.dumps([name, shaping, data, code], sort_keys=True).encode()).hexdigest()[:12]


def train_model(
    name: str,
    split: Split,
    p: TrainParams,
    *,
    work_dir: Path,
    logger: Logger | bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> TrainResult:
    """Fit `name` on the split's training interactions, early-stopped and selected on validation."""
    L.seed_everything(p.seed, workers=True, verbose=False)
    start = time.perf_counter()
    ckpt_dir = work_dir / f"{name}-{config_hash(name, split, p)}"
    finished = ckpt_dir / "finished.json"
    if finished.exists():  # trained to the end (or early-stopped) before: resuming would train on past the stop
        try:
            saved = json.loads(finished.read_text())
            return TrainResult(name, saved["best_score"], saved["best_epoch"], saved["epochs"], None,
                               time.perf_counter() - start, ckpt_dir / saved["checkpoint"], saved["curve"], reused=True)
        except (OSError, ValueError, KeyError, TypeError):
            raise MapwiseError(f"{finished}: unreadable; delete {ckpt_dir} to train afresh") from None
    m = p.model
    sequences = customer_sequences(split.train)
    module = RecommenderModule(name, split.n_items, m.model_dump(), p.lr, p.weight_decay, p.optimizer)
    examples = sequence_chunks if module.net.every_position else next_item_examples
    inputs, targets = examples(sequences, m.max_len)
    train = DataLoader(
        TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets)), batch_size=p.batch_size, shuffle=True
    )
    valid_rows = window_tensors(
        [np.asarray(h) for h in split.valid[HISTORY].to_list()],
        [np.asarray(t) for t in split.valid[TARGETS].to_list()],
        m.max_len,
    )
    valid = DataLoader(valid_rows, batch_size=max(p.batch_size, 512))
    last = ckpt_dir / "last.ckpt"
    resumed = _epoch(last) + 1 if last.exists() else None  # also refuses a checkpoint that is not only weights
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=VAL_METRIC, mode="max", save_last=True)
    curve = _Curve(ckpt_dir / "curve.json", resumed or 0)
    trainer = L.Trainer(
        accelerator=p.accelerator,
        devices=p.devices,
        strategy=p.strategy,
        num_nodes=p.num_nodes,
        precision=resolve_precision(p),
        max_epochs=p.max_epochs,
        callbacks=[best, EarlyStopping(VAL_METRIC, mode="max", patience=p.patience), curve, *callbacks],
        logger=logger,
        deterministic=True,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train, valid, ckpt_path=last if last.exists() else None, weights_only=True)
    best_path = Path(best.best_model_path) if best.best_model_path else last
    result = TrainResult(
        name=name,
        best_score=float(best.best_model_score) if best.best_model_score is not None else float("nan"),
        best_epoch=_epoch(best_path),
        epochs=trainer.current_epoch,
        resumed_after_epochs=resumed,
        seconds=time.perf_counter() - start,
        checkpoint=best_path,
        curve=curve.rows,
    )
    if trainer.is_global_zero:
        write_json(finished, {"best_score": result.best_score, "best_epoch": result.best_epoch,
                              "epochs": result.epochs, "checkpoint": best_path.name, "curve": result.curve})
    return result


def export_network(checkpoint: Path, path: Path) -> None:
    """Save the selected network's weights and shape as a small, framework-light file."""
    with _weights_only(checkpoint, "checkpoint"):
        module = RecommenderModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    with replacing(path) as tmp:
        torch.save({"hparams": dict(module.hparams), "state_dict": module.net.state_dict()}, tmp)


def load_network(path: Path) -> SequenceRecommender:
    """A network saved by `export_network`, in eval mode on the CPU."""
    with _weights_only(path, "network file"):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        h = saved["hparams"]
        net = build_network(h["name"], h["n_items"], ModelParams(**h["model"]))
        net.load_state_dict(saved["state_dict"])
    return net.eval()


def network_hparams(path: Path) -> dict:
    """What a network saved by `export_network` was built and trained with (name, sizes, lr, optimizer...)."""
    with _weights_only(path, "network file"):
        return dict(torch.load(path, map_location="cpu", weights_only=True)["hparams"])
