"""Tests for mapwise.targeting.explain (Captum) and mapwise.targeting.reasons (numeric, torch-free)."""

import numpy as np
import pytest

from mapwise.targeting.explain import integrated_gradients
from mapwise.targeting.reasons import by_group, global_importance, numeric_integrated_gradients, top_reasons

torch = pytest.importorskip("torch")
pytest.importorskip("captum")

B, F, H = 4, 6, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, F)).astype(np.float32)
    baseline = rng.normal(scale=0.1, size=F).astype(np.float32)
    return x, baseline


class MLP(torch.nn.Module):
    def __init__(self, outputs=1):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(F, H)
        self.out = torch.nn.Linear(H, outputs)
        self.dropout = torch.nn.Dropout(0.5)  # must be inactive during attribution
        self.eval()

    def forward(self, x):
        y = self.out(self.dropout(torch.tanh(self.hidden(x))))
        return y.squeeze(-1) if y.shape[-1] == 1 else y

    def numpy_score(self, x):
        w1, b1 = self.hidden.weight.detach().double().numpy(), self.hidden.bias.detach().double().numpy()
        w2, b2 = self.out.weight.detach().double().numpy(), self.out.bias.detach().double().numpy()
        return (np.tanh(x.astype(np.float64) @ w1.T + b1) @ w2.T + b2)[:, 0]


def test_linear_model_is_exact():
    x, baseline = _data()
    model = torch.nn.Linear(F, 1)
    w = model.weight.detach().numpy()[0]
    attr = integrated_gradients(lambda t: model(t).squeeze(-1), x, baseline)
    assert attr.dtype == np.float64 and attr.shape == (B, F)
    np.testing.assert_allclose(attr, (x - baseline) * w, atol=1e-6)


def test_completeness_mlp():
    x, baseline = _data()
    model = MLP().train()
    attr = integrated_gradients(model, x, baseline, steps=32)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.eval()
        delta = (model(torch.from_numpy(x)) - model(torch.from_numpy(np.tile(baseline, (B, 1))))).numpy()
    np.testing.assert_allclose(attr.sum(axis=1), delta, atol=1e-3)  # midpoint error ~ 1/steps**2


def test_numeric_matches_captum():
    x, baseline = _data()
    model = MLP()
    captum_attr = integrated_gradients(model, x, baseline, steps=16)
    calls = []

    def score(points):
        calls.append(points.shape)
        assert points.dtype == np.float32
        return model.numpy_score(points)

    numeric = numeric_integrated_gradients(score, x, baseline, steps=16)
    assert calls == [(16 * 2 * F * B, F)]
    np.testing.assert_allclose(numeric, captum_attr, atol=1e-3)
    chunked = numeric_integrated_gradients(model.numpy_score, x, baseline, steps=16, max_cells=1)
    np.testing.assert_allclose(chunked, numeric, atol=1e-9)


def test_target_selects_column():
    x, baseline = _data()
    model = MLP(outputs=3)

    def column(j):
        def forward(t):
            return model(t)[:, j]
        return forward

    for j in range(3):
        np.testing.assert_allclose(
            integrated_gradients(model, x, baseline, target=j),
            integrated_gradients(column(j), x, baseline),
            atol=1e-7,
        )
    assert not np.allclose(
        integrated_gradients(model, x, baseline, target=0), integrated_gradients(model, x, baseline, target=1)
    )


def test_extra_inputs_pass_through():
    x, baseline = _data()
    mlp = MLP()
    bag = torch.nn.EmbeddingBag(10, 1, mode="sum")
    seen = []

    def forward(t, ids):
        seen.append(ids.dtype)
        return mlp(t) + bag(ids).squeeze(-1)

    ids = np.random.default_rng(1).integers(0, 10, size=(B, 3)).astype(np.int32)
    attr = integrated_gradients(forward, x, baseline, extra=(ids,))
    assert attr.shape == (B, F)
    assert set(seen) == {torch.int64}
    # The id term is constant along the path, so attributions equal those of the MLP alone.
    np.testing.assert_allclose(attr, integrated_gradients(mlp, x, baseline), atol=1e-6)
    assert bag.weight.grad is None


def test_grouping_helpers():
    attr = np.array([[1.0, -2.0, 0.5, 3.0], [-1.0, 4.0, -0.5, 1.0]])
    groups = ["job", "age", "job", "balance"]
    names, grouped = by_group(attr, groups)
    assert names == ["job", "age", "balance"]
    np.testing.assert_array_equal(grouped, [[1.5, -2.0, 3.0], [-1.5, 4.0, 1.0]])

    importance = global_importance(attr, groups)
    assert list(importance) == ["age", "balance", "job"]
    assert importance == {"age": 3.0, "balance": 2.0, "job": 1.5}

    assert top_reasons(grouped[1], names, top=2) == [
        {"feature": "age", "attribution": 4.0},
        {"feature": "job", "attribution": -1.5},
    ]
    assert top_reasons(grouped[0], names, values={"job": "admin.", "age": 41}) == [
        {"feature": "balance", "attribution": 3.0, "value": None},
        {"feature": "age", "attribution": -2.0, "value": 41},
        {"feature": "job", "attribution": 1.5, "value": "admin."},
    ]
    with pytest.raises(ValueError):
        by_group(attr, groups[:3])
