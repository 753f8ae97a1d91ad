"""The saved network file: a trained network's weights and shape (`hparams`, `state_dict`), read as tensors only.

Checkpoints and saved networks may come from a DVC remote: they are only ever read as tensors and plain
values (`weights_only`), so a file that would run code when unpickled is refused, never run.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from mapwise.atomic import replacing
from mapwise.errors import MapwiseError
from mapwise.recommend.models.module import RecommenderModule


@contextmanager
def weights_only(path: Path, what: str) -> Iterator[None]:
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


def selected_network(out_dir: Path, name: str) -> Path:
    """Where the train stage keeps the validation-selected network when the refit one is the model."""
    return out_dir / f"{name}.selected.pt"


def export_network(checkpoint: Path, path: Path) -> None:
    """Save the selected network's weights and shape as a small, framework-light file."""
    with weights_only(checkpoint, "checkpoint"):
        module = RecommenderModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    with replacing(path) as tmp:
        torch.save({"hparams": dict(module.hparams), "state_dict": module.net.state_dict()}, tmp)


def saved_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a network saved by `export_network`."""
    with weights_only(path, "network file"):
        return dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])


def network_hparams(path: Path) -> dict:
    """What a network saved by `export_network` was built and trained with (name, sizes, lr, optimizer...)."""
    with weights_only(path, "network file"):
        return dict(torch.load(path, map_location="cpu", weights_only=True)["hparams"])
