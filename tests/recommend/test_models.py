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
from conftest import REPO, run_stage, tiny_events, tiny_project

from mapwise.recommend.models.module import RecommenderModule, lr_factor
from mapwise.recommend.models.networks import build_network
from mapwise.recommend.models.sequences import (
    customer_sequences,
    next_item_examples,
    pad_left,
    sequence_chunks,
)
from mapwise.recommend.models.targets import NextItems
from mapwise.recommend.models.training import refit_model, step_budget, train_model
from mapwise.recommend.network_file import load_network
from mapwise.params import ModelParams, TrainParams, load_params
from mapwise.recommend.split import temporal_split

SMALL = ModelParams(max_len=6, embedding_dim=16, caser_window=3, sasrec_layers=1)


def test_windows():
    seqs = [np.array([5, 6, 7, 8]), np.array([1]), np.array([2, 3])]
    x, y = next_item_examples(seqs, 3)
    assert x.tolist() == [[0, 0, 5], [0, 5, 6], [5, 6, 7], [0, 0, 2]] and y.tolist() == [[6], [7], [8], [3]]
    x, y = sequence_chunks([np.array([1, 2, 3, 4, 5, 6])], 3)
    assert x.tolist() == [[3, 4, 5], [0, 1, 2]] and y.tolist() == [[4, 5, 6], [0, 2, 3]]
    x, y = next_item_examples(seqs, 3, horizon=2)  # what follows each window, up to 2 items
    assert y.tolist() == [[6, 7], [7, 8], [8, 0], [3, 0]]
    x, y = sequence_chunks([np.array([1, 2, 3, 4, 5, 6])], 3, horizon=2)
    assert y.tolist() == [[4, 5, 6, 0], [0, 2, 3, 4]]  # position t's horizon: y[t : t + 2]


def test_targets_are_drawn_from_the_horizon_and_never_at_padding():
    x, y = sequence_chunks([np.array([1, 2, 3, 4, 5, 6])], 3, horizon=2)
    examples = NextItems(x, y, 2, every_position=True)
    torch.manual_seed(0)
    draws = torch.stack([examples.collate([examples[0], examples[1]])[1] for _ in range(200)])
    assert {tuple(d) for d in draws[:, 0].tolist()} <= {(a, b, 6) for a in (4, 5) for b in (5, 6)}
    assert set(draws[:, 0, 0].tolist()) == {4, 5} and (draws[:, 0, 2] == 6).all()  # the last item's only follower
    assert (draws[:, 1, 0] == 0).all() and set(draws[:, 1, 1].tolist()) == {2, 3}  # padding stays padding
    next_only = NextItems(x, sequence_chunks([np.array([1, 2, 3, 4, 5, 6])], 3)[1], 1, every_position=True)
    assert next_only.collate([next_only[0]])[1].tolist() == [[4, 5, 6]]
    assert pad_left([np.array([1, 2, 3, 4]), np.array([], dtype=np.int64)], 3).tolist() == [[2, 3, 4], [0, 0, 0]]


@pytest.mark.parametrize("name", ["gru", "caser", "sasrec", "repeatnet"])
def test_networks_score_the_whole_catalogue(name):
    torch.manual_seed(0)
    net = build_network(name, 10, SMALL).eval()
    seq = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    scores = net(seq)
    assert scores.shape == (2, 11)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    if net.every_position:
        assert torch.allclose(net.encode_all(seq)[:, -1], net.encode(seq), atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "repeatnet"])
def test_attention_models_ignore_padding(name):
    """Key-padding mask and positions counted from the end: padding a history changes no score."""
    torch.manual_seed(0)
    net = build_network(name, 10, SMALL).eval()
    with torch.no_grad():
        net.positions.weight.normal_()  # positions that matter
    history = torch.tensor([[4, 2, 7]])
    padded = torch.tensor([[0, 0, 0, 4, 2, 7]])
    assert torch.allclose(net(history)[:, 1:], net(padded)[:, 1:], atol=1e-5)


def test_repeatnet_is_a_mixture_of_repeating_and_exploring():
    torch.manual_seed(0)
    net = build_network("repeatnet", 10, SMALL).eval()
    seq = torch.tensor([[0, 0, 3, 5, 3, 8]])
    probs = net(seq).exp()
    gate = torch.sigmoid(net.gate(net.encode_all(seq)[:, -1]))
    assert torch.allclose(probs.sum(), torch.tensor(1.0), atol=1e-5)  # one distribution over the catalogue
    assert torch.allclose(probs[0, [3, 5, 8]].sum(), gate[0, 0], atol=1e-5)  # the window's items share the gate
    with torch.no_grad():
        net.recency.copy_(torch.tensor([0.0, -30, -30, -30, -30, -30]))  # attend to the newest position only
    probs = net(seq).exp()[0]
    assert probs[8] > 100 * probs[3] and probs[8] > 100 * probs[5]


def test_repeatnet_training_loss_is_the_mixture_likelihood():
    """Per position: -log P(next item) under the mixture computed by `forward` on the window so far."""
    from mapwise.recommend.models.objectives import Objective

    torch.manual_seed(0)
    net = build_network("repeatnet", 10, SMALL).eval()
    with torch.no_grad():
        net.positions.weight.zero_()  # so that position t of a window reads as the newest of its prefix
    inputs = torch.tensor([[0, 0, 3, 5, 3, 8]])
    targets = torch.tensor([[0, 0, 5, 3, 8, 1]])  # a new item, a repeat, a new item, a new item
    loss = net.training_loss(inputs, targets, Objective("softmax", 10))
    expected = [-net(inputs[:, : t + 1])[0, targets[0, t]] for t in range(2, 6)]
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)


def test_sasrec_is_causal():
    torch.manual_seed(0)
    net = build_network("sasrec", 10, SMALL).eval()
    a = net.encode_all(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    b = net.encode_all(torch.tensor([[1, 2, 3, 4, 5, 9]]))
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) and not torch.allclose(a[:, 5], b[:, 5])


def _tiny_split():
    cutoff = datetime(2024, 3, 1, tzinfo=UTC)
    return temporal_split(tiny_events(), cutoff=cutoff, validation_days=10, horizon_days=30, min_history=1)


def _fast(**update) -> TrainParams:
    return load_params(REPO / "params.yaml").train.model_copy(update={
        "model": SMALL, "batch_size": 32, "max_epochs": 8, "min_steps": 0, "patience": 8, "lr": 0.01,
        "warmup_steps": 0, "lr_schedule": "constant", "accelerator": "cpu", "devices": 1, "per_model": {}, **update})


@pytest.mark.parametrize("name", ["gru", "caser", "sasrec", "repeatnet"])
def test_training_learns_the_cycle(tmp_path, name):
    """Customers walk i -> i + 1: after a few passes the next item should rank near the top."""
    result = train_model(name, _tiny_split(), _fast(), work_dir=tmp_path, progress=False)
    assert result.best_score > 0.6, result.curve
    steps = [row["step"] for row in result.curve]
    assert steps == sorted(set(steps)) and steps[-1] == result.steps and result.checkpoint.exists()


@pytest.mark.parametrize("loss", ["sampled_softmax", "gbce"])
def test_sampled_losses_learn_the_next_item(tmp_path, loss):
    split = _tiny_split()
    p = _fast(loss=loss, negatives=8, max_epochs=30, patience=30)
    result = train_model("sasrec", split, p, work_dir=tmp_path, progress=False)
    last = result.checkpoint.parent / "last.ckpt"  # not the best on validation: the tiny cycle's val favours softmax
    net = RecommenderModule.load_from_checkpoint(last, weights_only=True).net.eval()
    inputs, following = sequence_chunks(customer_sequences(split.train), SMALL.max_len)
    with torch.no_grad():
        top = net(torch.from_numpy(inputs)).argmax(1).numpy()
    assert (top == following[:, SMALL.max_len - 1]).mean() > 0.5  # the cycle's next item first (chance: 1 in 15)


def test_the_step_budget_and_validation_interval():
    p = _fast(max_epochs=10, min_steps=500, val_every_steps=100, max_steps=None)
    assert step_budget(p, 20) == (500, 20)  # the floor; validation once a pass
    assert step_budget(p, 1000) == (10_000, 100)  # ten passes, validation every 100 steps
    assert step_budget(p.model_copy(update={"max_steps": 2500}), 1000) == (2500, 100)
    assert step_budget(p.model_copy(update={"min_steps": 0, "max_epochs": 1}), 30) == (30, 30)
    assert step_budget(p.model_copy(update={"min_steps": 250}), 1000) == (10_000, 100)
    assert step_budget(p.model_copy(update={"max_steps": 250}), 1000) == (300, 100)  # whole intervals


def test_warm_up_then_decay():
    assert [lr_factor(s, 4, "inverse_sqrt") for s in (0, 1, 3)] == [0.25, 0.5, 1.0]
    assert lr_factor(15, 4, "inverse_sqrt") == 0.5 and lr_factor(99, 25, "inverse_sqrt") == 0.5
    assert lr_factor(15, 4, "constant") == 1.0 and lr_factor(0, 0, "constant") == 1.0


def test_a_run_stops_on_its_budget_or_at_a_plateau(tmp_path):
    budget = train_model("gru", _tiny_split(), _fast(max_epochs=2, patience=50), work_dir=tmp_path, progress=False)
    assert budget.stop_reason == "budget" and budget.steps == budget.budget_steps
    plateau = train_model("gru", _tiny_split(), _fast(max_epochs=400, patience=1, lr=0.05), work_dir=tmp_path,
                          progress=False)
    assert plateau.stop_reason == "plateau" and plateau.steps < plateau.budget_steps
    values = [row["val_ndcg@10"] for row in plateau.curve]
    assert values[-1] <= max(values[:-1]) and plateau.best_step < plateau.steps


def test_refit_trains_on_everything_before_the_test_for_the_chosen_passes(tmp_path):
    split = _tiny_split()
    p = _fast(max_epochs=3, patience=50)
    selected = train_model("sasrec", split, p, work_dir=tmp_path, progress=False)
    refit = refit_model(selected, split, p, work_dir=tmp_path, progress=False)
    windows = len(sequence_chunks(customer_sequences(split.train), SMALL.max_len)[0])
    refit_windows = len(sequence_chunks(customer_sequences(split.refit), SMALL.max_len)[0])
    assert refit.examples == refit_windows > windows
    assert refit.steps == round(selected.best_step * refit_windows / windows)
    before = torch.load(selected.checkpoint, weights_only=True)
    after = torch.load(refit.checkpoint, weights_only=True)
    assert after["global_step"] == refit.steps and before["global_step"] == selected.best_step
    again = refit_model(selected, split, p, work_dir=tmp_path, progress=False)
    assert again.reused and again.checkpoint == refit.checkpoint


def test_train_stage_writes_models_and_mlflow_runs(tmp_path):
    root = tiny_project(tmp_path, models=["gru", "sasrec"])
    assert run_stage(root, "split").returncode == 0
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((root / "reports/train.json").read_text())
    assert set(report) == {"gru", "sasrec"}
    net = load_network(root / "models/trained/gru.pt")
    assert net(torch.tensor([[0, 0, 0, 0, 1, 2]])).shape[1] == net.n_items + 1
    assert (root / "reports/plots/train/gru.csv").read_text().startswith("step,epoch,train_loss,val_ndcg@10,lr")
    assert (root / "reports/plots/train/gru.png").exists()
    assert report["gru"]["stop_reason"] in ("plateau", "budget") and report["gru"]["refit"]["steps"] >= 1
    selected = load_network(root / "models/trained/gru.selected.pt")  # validation's choice, kept for the report
    assert not torch.equal(selected.items.weight, net.items.weight)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mapwise").experiment_id])
    assert {r.data.tags["model"] for r in runs} == {"gru", "sasrec"}
    assert all(r.data.tags["mapwise.stage"] == "train" and "git_commit" in r.data.tags for r in runs)
    assert all("val_ndcg10" in r.data.metrics for r in runs)


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    # small batches: many steps per pass, so the run is still training a second after its first checkpoint
    root = tiny_project(tmp_path, models=["sasrec"], max_epochs=40, patience=40, min_gain=0, refit=False, batch_size=8)
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
    finished = list((root / ".mapwise/checkpoints").glob("*/finished.json"))
    assert not finished and not (root / "reports/train.json").exists(), "training finished before it was interrupted"
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((root / "reports/train.json").read_text())
    assert report["sasrec"]["resumed_after_steps"] >= 1  # the resumed run did not start again from step 0
    steps = pl.read_csv(root / "reports/plots/train/sasrec.csv")["step"].to_list()
    assert steps == sorted(set(steps)) and steps[-1] == report["sasrec"]["steps"]  # one curve across the interruption
    assert steps[0] <= report["sasrec"]["resumed_after_steps"] < steps[-1]


def test_a_finished_run_is_reused_not_trained_on(tmp_path):
    root = tiny_project(tmp_path, models=["gru"], max_epochs=100, patience=1, lr=0.05)  # stops early
    assert run_stage(root, "split").returncode == 0
    assert run_stage(root, "train").returncode == 0
    first = json.loads((root / "reports/train.json").read_text())["gru"]
    curve = (root / "reports/plots/train/gru.csv").read_text()
    assert first["stop_reason"] == "plateau" and first["steps"] < first["budget_steps"] and not first["reused"]
    assert run_stage(root, "train").returncode == 0
    again = json.loads((root / "reports/train.json").read_text())["gru"]
    keys = ("val_ndcg@10", "best_step", "steps", "stop_reason")
    assert again["reused"] and again["refit"]["reused"] and {k: again[k] for k in keys} == {k: first[k] for k in keys}
    assert (root / "reports/plots/train/gru.csv").read_text() == curve
    from mlflow import MlflowClient

    from mapwise.params import load_params
    from mapwise.tracking import tracking_uri

    client = MlflowClient(tracking_uri(load_params(root / "params.yaml").tracking, root))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) >= 2 and {r.info.status for r in runs} == {"FINISHED"}  # the reused run ended too, not Running


def test_ddp_on_two_cpu_processes(tmp_path):
    root = tiny_project(tmp_path, models=["gru"], strategy="ddp", devices=2, max_epochs=2)
    assert run_stage(root, "split").returncode == 0
    done = run_stage(root, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr and "distributed_backend=gloo" in done.stderr
    assert (root / "models/trained/gru.pt").exists()
