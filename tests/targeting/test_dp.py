"""DP-SGD training of the propensity network: budget spent, utility kept, reproducible, exportable, reported."""

import math

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from mapwise.params import FitParams, PrivateParams, PropensityParams
from mapwise.targeting.dp import fit_private
from mapwise.targeting import metrics as m
from mapwise.targeting.datasets import LABEL, ROW_ID, SEQUENCE, SPLIT, TEST, TRAIN, VALIDATION
from mapwise.targeting.export import FEATURES, PROBABILITY, SEQUENCE_INPUT, write_target_bundle
from mapwise.targeting.fitting import predict
from mapwise.targeting.networks import PropensityNet
from mapwise.targeting.propensity import NEURAL, train_task

N_TRAIN, N_VAL, N_TEST, ITEMS, LENGTH = 1200, 400, 400, 10, 4
FIT = FitParams(hidden=[16], embedding_dim=8, batch_size=120, lr=0.01)


def _data(seed=0):
    """Features, item sequences (left-padded with 0) and labels driven by feature 0, feature 1 and the newest item."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL + N_TEST
    x = rng.normal(size=(n, 5)).astype(np.float32)
    seq = rng.integers(1, ITEMS + 1, size=(n, LENGTH))
    seq[rng.random((n, LENGTH)) < 0.3] = 0
    logit = 2 * x[:, 0] - x[:, 1] + 1.5 * (seq[:, -1] > ITEMS // 2) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    cut = (slice(0, N_TRAIN), slice(N_TRAIN, N_TRAIN + N_VAL), slice(N_TRAIN + N_VAL, n))
    return [(x[s], seq[s], y[s]) for s in cut]


DATA = _data()


def _mlp(epsilon=3.0, seed=0, epochs=4):
    (x, _, y), (vx, _, vy), _ = DATA
    return fit_private(lambda: PropensityNet(5, [16], 0.0, private=True), [x, y], [vx, vy], FIT,
                       PrivateParams(epsilon=epsilon, epochs=epochs), seed=seed)


@pytest.fixture(scope="module")
def mlp():
    return _mlp()


def test_the_budget_is_spent_and_the_model_still_learns(mlp):
    net, info = mlp
    batches = math.ceil(N_TRAIN / FIT.batch_size)
    assert 2.9 < info["epsilon"] <= 3.0 and info["accountant"] == "prv"
    assert info["delta"] == 1 / (10 * N_TRAIN) and info["max_grad_norm"] == 1.0 and info["epochs"] == 4
    assert info["sample_rate"] == pytest.approx(1 / batches) and info["steps"] == 4 * batches  # every step accounted
    assert len(info["val_loss_curve"]) == 4 and info["noise_multiplier"] > 0.5
    assert type(net) is PropensityNet and not any(layer._forward_hooks or layer._backward_hooks for layer in net.modules())
    x, _, y = DATA[2]
    assert m.roc_auc(y, 1 / (1 + np.exp(-predict(net, x)))) > 0.6


def test_same_seed_same_weights_and_a_smaller_budget_needs_more_noise(mlp):
    again, info = _mlp()
    assert info["epsilon"] == mlp[1]["epsilon"]
    assert all(torch.equal(a, b) for a, b in zip(mlp[0].state_dict().values(), again.state_dict().values(), strict=True))
    tight, tight_info = _mlp(epsilon=1.0, seed=1)
    assert tight_info["noise_multiplier"] > mlp[1]["noise_multiplier"] and tight_info["epsilon"] <= 1.0
    assert not torch.equal(tight.body[0].weight, mlp[0].body[0].weight)


def test_the_private_sequence_network_exports_to_the_same_onnx_graph(tmp_path):
    from opacus.validators import ModuleValidator

    build = lambda private: PropensityNet(5, [16], 0.0, ITEMS, 8, private=private)  # noqa: E731
    assert ModuleValidator.validate(build(True), strict=False) == []
    assert ModuleValidator.validate(build(False), strict=False)  # nn.GRU: no per-example gradients
    (x, seq, y), (vx, vseq, vy), (tx, tseq, _) = DATA
    private, info = fit_private(lambda: build(True), [x, seq, y], [vx, vseq, vy], FIT,
                                PrivateParams(epsilon=8.0, delta=1e-4, epochs=2), seed=0)
    assert info["delta"] == 1e-4 and info["epsilon"] <= 8.0
    assert torch.count_nonzero(private.items.weight[0]) == 0  # the padding row stays zero despite the noise
    net = build(False)
    net.load_state_dict(private.state_dict())
    customers = pl.DataFrame({"customer_id": ["a"], SEQUENCE: [["1"]]})
    checked = write_target_bundle(tmp_path, net.eval(), [tx, tseq], {"kind": "propensity"}, customers,
                                  [str(i) for i in range(1, ITEMS + 1)], binary=True, output=PROBABILITY,
                                  sequence_length=LENGTH, atol=1e-5)
    assert checked["passed"] and checked["rows"] == N_TEST
    from mapwise.bundles.runtime import session

    sess = session(tmp_path / "model.onnx")
    assert [i.name for i in sess.get_inputs()] == [FEATURES, SEQUENCE_INPUT]
    assert [o.name for o in sess.get_outputs()] == [PROBABILITY]
    onnx_p = sess.run(None, {FEATURES: tx, SEQUENCE_INPUT: tseq})[0]
    np.testing.assert_allclose(onnx_p, 1 / (1 + np.exp(-predict(private, tx, tseq))), atol=1e-5)  # Opacus' GRU's own


def _table():
    """A propensity task table: two features (one categorical), an item sequence, a label and the split."""
    (x, seq, y), (vx, vseq, vy), (tx, tseq, ty) = DATA
    xs, seqs = np.concatenate([x, vx, tx]), np.concatenate([seq, vseq, tseq])
    return pl.DataFrame({
        ROW_ID: [f"c{i}" for i in range(len(xs))], "spend": xs[:, 0].astype(np.float64),
        "plan": np.where(xs[:, 1] > 0, "plus", "basic"), SEQUENCE: [[str(i) for i in row if i] for row in seqs],
        LABEL: np.concatenate([y, vy, ty]).astype(bool), SPLIT: [TRAIN] * N_TRAIN + [VALIDATION] * N_VAL + [TEST] * N_TEST,
    })


def test_train_task_keeps_the_private_model_and_reports_its_cost():
    table = _table()
    common = {"tasks": {}, "baselines": ["logistic"], "bootstrap": 50,
              "fit": FitParams(hidden=[16], embedding_dim=8, batch_size=120, lr=0.01, max_epochs=3)}
    plain = train_task(table, exclude=[], p=PropensityParams(**common), sequence_length=LENGTH, use_sequence=True)
    assert "private" not in plain.report
    result = train_task(table, exclude=[], p=PropensityParams(**common, private=PrivateParams(epsilon=5.0, epochs=3)),
                        sequence_length=LENGTH, use_sequence=True)
    dp = result.report["private"]
    assert dp["epsilon"] <= 5.0 and dp["target_epsilon"] == 5.0 and dp["delta"] == 1 / (10 * N_TRAIN) and dp["epochs"] == 3
    assert dp["non_private"]["test"] == {k: plain.report["models"][NEURAL]["test"][k] for k in ("roc_auc", "pr_auc", "log_loss")}
    neural = result.report["models"][NEURAL]  # the neural figures are the kept (private) model's
    assert dp["private"]["test"]["roc_auc"] == neural["test"]["roc_auc"] > 0.6
    assert dp["private"]["validation"]["roc_auc"] == neural["validation_roc_auc"]
    assert dp["cost"]["roc_auc"] == pytest.approx(dp["private"]["test"]["roc_auc"] - dp["non_private"]["test"]["roc_auc"])
    assert dp["cost"]["ci"][0] <= dp["cost"]["roc_auc"] <= dp["cost"]["ci"][1]
    assert isinstance(result.net.gru, nn.GRU)  # moved into the exported architecture
    (tx, tseq) = result.test_inputs.x, result.test_inputs.seq
    raw = 1 / (1 + np.exp(-predict(result.net, tx, tseq)))
    assert m.roc_auc(result.test_inputs.y, result.calibration(raw)) == neural["test"]["roc_auc"]
