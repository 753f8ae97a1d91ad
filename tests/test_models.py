"""Sequence models: data windows, networks, training (resume, DDP) and the train stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import torch

from mapwise.models.networks import build_network
from mapwise.models.sequences import next_item_examples, pad_left, sequence_chunks
from mapwise.models.training import load_network, train_model
from mapwise.params import ModelParams, load_params
from mapwise.split import temporal_split

from conftest import REPO, run_stage, tiny_events, tiny_project

SMALL = ModelParams(max_len=6, embedding_dim=16, caser_window=3, sasrec_layers=1)


def test_windows():
    seqs = [np.array([5, 6, 7, 8]), np.array([1]), np.array([2, 3])]
    x, y = next_item_examples(seqs, 3)
    assert x.tolist() == [[0, 0, 5], [0, 5, 6], [5, 6, 7], [0, 0, 2]] and y.tolist() == [6, 7, 8, 3]
    x, y = sequence_chunks([np.array([1, 2, 3, 4, 5, 6])], 3)
    assert x.tolist() == [[3, 4, 5], [0, 1, 2]] and y.tolist() == [[4, 5, 6], [0, 2, 3]]
    assert pad_left([np.array([1, 2, 3, 4]), np.array([], dtype=np.int64)], 3).tolist() == [[2, 3, 4], [0, 0, 0]]


@pytest.mark.parametrize("name", ["gru", "caser", "sasrec"])
def test_networks_score_the_whole_catalogue(name):
    torch.manual_seed(0)
    net = build_network(name, 10, SMALL).eval()
    seq = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    scores = net(seq)
    assert scores.shape == (2, 11)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    if net.every_position:
        assert torch.allclose(net.encode_all(seq)[:, -1], net.encode(seq), atol=1e-6)


def test_sasrec_is_causal():
    torch.manual_seed(0)
    net = build_network("sasrec", 10, SMALL).eval()
    a = net.encode_all(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    b = net.encode_all(torch.tensor([[1, 2, 3, 4, 5, 9]]))
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) and not torch.allclose(a[:, 5], b[:, 5])


def _tiny_split():
    cutoff = datetime(2024, 3, 1, tzinfo=UTC)
    return temporal_split(tiny_events(), cutoff=cutoff, validation_days=10, horizon_days=30, min_history=1)


@pytest.mark.parametrize("name", ["gru", "caser", "sasrec"])
def test_training_learns_the_cycle(tmp_path, name):
    """Customers walk i -> i + 1: after a few epochs the next item should rank near the top."""
    params = load_params(REPO / "params.yaml").train.model_copy(
        update={"model": SMALL, "batch_size": 32, "max_epochs": 8, "patience": 8, "lr": 0.01,
                "accelerator": "cpu", "devices": 1}
    )
    result = train_model(name, _tiny_split(), params, work_dir=tmp_path, progress=False)
    assert result.best_score > 0.6, result.curve
    assert len(result.curve) == result.epochs and result.checkpoint.exists()


def test_train_stage_writes_models_and_mlflow_runs(tmp_path):
    root = tiny_project(tmp_path, models=["gru", "sasrec"])
    assert run_stage(root, "split").returncode == 0
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((root / "reports/train.json").read_text())
    assert set(report) == {"gru", "sasrec"}
    net = load_network(root / "models/trained/gru.pt")
    assert net(torch.tensor([[0, 0, 0, 0, 1, 2]])).shape[1] == net.n_items + 1
    assert (root / "reports/plots/train/gru.csv").read_text().startswith("epoch,train_loss,val_ndcg@10")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mapwise").experiment_id])
    assert {r.data.tags["model"] for r in runs} == {"gru", "sasrec"}
    assert all(r.data.tags["mapwise.stage"] == "train" and "git_commit" in r.data.tags for r in runs)
    assert all("val_ndcg10" in r.data.metrics for r in runs)


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    root = tiny_project(tmp_path, models=["sasrec"], max_epochs=40, patience=40)
    assert run_stage(root, "split").returncode == 0
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.train"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((root / ".mapwise/checkpoints").glob("*/last.ckpt")):
        time.sleep(0.5)
    time.sleep(1.0)  # let it get past the first checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "reports/train.json").exists(), "training finished before it could be interrupted"
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((root / "reports/train.json").read_text())
    assert report["sasrec"]["resumed_after_epochs"] >= 1  # the resumed run did not start again from epoch 0
    epochs = pl.read_csv(root / "reports/plots/train/sasrec.csv")["epoch"].to_list()
    assert epochs == list(range(report["sasrec"]["epochs"]))  # one curve across the interruption


def test_a_finished_run_is_reused_not_trained_on(tmp_path):
    root = tiny_project(tmp_path, models=["gru"], max_epochs=30, patience=1, lr=0.05)  # stops early
    assert run_stage(root, "split").returncode == 0
    assert run_stage(root, "train").returncode == 0
    first = json.loads((root / "reports/train.json").read_text())["gru"]
    curve = (root / "reports/plots/train/gru.csv").read_text()
    assert first["epochs"] < 30 and not first["reused"]
    assert run_stage(root, "train").returncode == 0
    again = json.loads((root / "reports/train.json").read_text())["gru"]
    assert again["reused"] and {k: again[k] for k in ("val_ndcg@10", "best_epoch", "epochs")} == {
        k: first[k] for k in ("val_ndcg@10", "best_epoch", "epochs")}
    assert (root / "reports/plots/train/gru.csv").read_text() == curve


def test_ddp_on_two_cpu_processes(tmp_path):
    root = tiny_project(tmp_path, models=["gru"], strategy="ddp", devices=2, max_epochs=2)
    assert run_stage(root, "split").returncode == 0
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr and "distributed_backend=gloo" in done.stderr
    assert (root / "models/trained/gru.pt").exists()
