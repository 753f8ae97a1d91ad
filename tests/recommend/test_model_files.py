"""Checkpoints and saved networks (which may come from a DVC remote) are read as weights only.

Each hostile file below really runs code when unpickled (checked first); the loaders must refuse
it in one line naming the file, and the code must not run.
"""

from __future__ import annotations

import pickle
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from mapwise.errors import MapwiseError
from mapwise.recommend.models.training import config_hash, train_model
from mapwise.recommend.models.files import export_network, network_hparams
from mapwise.recommend.network_file import load_network
from mapwise.params import ModelParams, load_params
from mapwise.recommend.split import temporal_split

from conftest import REPO, run_stage, tiny_events

SMALL = ModelParams(max_len=6, embedding_dim=16, caser_window=3, sasrec_layers=1)


class RunsCode:
    """Unpickling this creates `marker`: what a crafted file could do with any callable."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _torch_zip(content: object, path: Path) -> None:
    torch.save(content, path)


def _torch_legacy(content: object, path: Path) -> None:
    torch.save(content, path, _use_new_zipfile_serialization=False)


def _plain_pickle(protocol: int):
    return lambda content, path: path.write_bytes(pickle.dumps(content, protocol=protocol))


WRITERS = {"torch-zip": _torch_zip, "torch-legacy": _torch_legacy,
           **{f"pickle-{p}": _plain_pickle(p) for p in range(pickle.HIGHEST_PROTOCOL + 1)}}


def _hostile(write, content: object, path: Path, marker: Path) -> Path:
    """Write `content` with `write`, and check that an ordinary (unsafe) load of it runs the code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write(content, path)
    try:
        torch.load(path, map_location="cpu", weights_only=False)  # the unsafe way
    except RuntimeError:
        pass  # a plain pickle runs its code before torch finds it is not its format
    assert marker.exists(), "the crafted file does not run code: the test would prove nothing"
    marker.unlink()
    return path


def _refused(call, path: Path, marker: Path, start: str = "refused") -> str:
    with pytest.raises(MapwiseError) as err:
        call()
    message = str(err.value)
    assert message.startswith(f"{path}: {start}") and "\n" not in message and len(message) < 300, message
    assert not marker.exists(), "the file's code ran"
    return message


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One real checkpoint and saved network, from one pass of a tiny GRU."""
    cutoff = datetime(2024, 3, 1, tzinfo=UTC)
    split = temporal_split(tiny_events(), cutoff=cutoff, validation_days=10, horizon_days=30, min_history=1)
    params = load_params(REPO / "params.yaml").train.model_copy(
        update={"model": SMALL, "batch_size": 32, "max_epochs": 1, "min_steps": 0, "accelerator": "cpu", "devices": 1,
                "per_model": {}})
    work = tmp_path_factory.mktemp("trained")
    result = train_model("gru", split, params, work_dir=work, progress=False)
    network = work / "gru.pt"
    export_network(result.checkpoint, network)
    return {"split": split, "params": params, "checkpoint": result.checkpoint, "network": network}


# (writer, where the hostile object sits); a plain pickle cannot hold tensors torch reads back
HOSTILE_NETWORKS = [*((w, where) for w in WRITERS for where in ("top", "hparams")),
                    ("torch-zip", "beside-real-weights"), ("torch-legacy", "beside-real-weights")]


@pytest.mark.parametrize(("writer", "where"), HOSTILE_NETWORKS)
def test_a_network_file_that_would_run_code_is_refused(tmp_path, trained, writer, where):
    marker = tmp_path / "ran"
    real = torch.load(trained["network"], weights_only=True)
    content = {"top": RunsCode(marker),
               "hparams": {"hparams": RunsCode(marker), "state_dict": {}},
               "beside-real-weights": {**real, "hparams": {**real["hparams"], "note": RunsCode(marker)}}}[where]
    path = _hostile(WRITERS[writer], content, tmp_path / "models/trained/gru.pt", marker)
    _refused(lambda: load_network(path), path, marker)
    _refused(lambda: network_hparams(path), path, marker)


@pytest.mark.parametrize(
    "make",
    [lambda real: b"", lambda real: b"not a network", lambda real: real[: len(real) // 2], lambda real: real[:-10],
     lambda real: b'{"hparams": {}}'],
    ids=["empty", "text", "half", "cut-end", "json"],
)
def test_a_file_that_is_not_a_network_is_one_line(tmp_path, trained, make):
    path = tmp_path / "gru.pt"
    path.write_bytes(make(trained["network"].read_bytes()))
    message = _refused(lambda: load_network(path), path, tmp_path / "ran", start="")
    assert "readable network file" in message or "refused" in message


@pytest.mark.parametrize("content", [[1, 2, 3], {"hparams": {}}, {"hparams": {"name": "gru"}, "state_dict": {}},
                                     {"hparams": {"name": "nope", "n_items": 3, "model": {}}, "state_dict": {}}],
                         ids=["list", "no-state", "no-sizes", "unknown-network"])
def test_weights_that_are_not_a_network_are_one_line(tmp_path, content):
    path = tmp_path / "gru.pt"
    torch.save(content, path)
    _refused(lambda: load_network(path), path, tmp_path / "ran", start="not a readable network file")


def test_a_checkpoint_that_would_run_code_is_neither_resumed_nor_exported(tmp_path, trained):
    marker = tmp_path / "ran"
    real = torch.load(trained["checkpoint"], weights_only=True)
    real["callbacks"]["Evil"] = {"state": RunsCode(marker)}
    split, params = trained["split"], trained["params"]
    folder = tmp_path / f"gru-{config_hash('gru', split.train, split.n_items, params)}"  # where train_model resumes
    last = _hostile(_torch_zip, real, folder / "last.ckpt", marker)
    _refused(lambda: train_model("gru", split, params, work_dir=tmp_path, progress=False), last, marker)
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # nothing trained, nothing written
    out = tmp_path / "models/trained/gru.pt"
    _refused(lambda: export_network(last, out), last, marker)
    assert not out.exists()


def test_real_checkpoints_and_networks_load_weights_only(trained):
    """What the train stage writes has only tensors and plain values: strict loading accepts it."""
    torch.load(trained["checkpoint"], weights_only=True)
    assert load_network(trained["network"]).n_items == trained["split"].n_items
    assert network_hparams(trained["network"])["name"] == "gru"


def test_export_stage_refuses_a_trained_network_that_would_run_code(exported_root, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(exported_root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    marker = tmp_path / "ran"
    _hostile(_torch_zip, {"hparams": RunsCode(marker), "state_dict": {}}, root / "models/trained/gru.pt", marker)
    before = (root / "models/export/gru/model.onnx").read_bytes()
    done = run_stage(root, "export")
    assert done.returncode == 2 and not marker.exists()
    assert done.stderr.startswith("export: models/trained/gru.pt: refused: "), done.stderr
    assert done.stderr.count("\n") == 1
    assert (root / "models/export/gru/model.onnx").read_bytes() == before  # the served bundle is left as it was
