"""Training losses and GRU4Rec's optimizer: exact values on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mapwise.recommend.models.module import AdagradM
from mapwise.recommend.models.objectives import Objective


class _Net(nn.Module):
    """Items 1..3 with fixed embeddings (index 0 padding) and biases, like SequenceRecommender's scoring."""

    def __init__(self) -> None:
        super().__init__()
        self.items = nn.Embedding(4, 2)
        self.bias = nn.Parameter(torch.tensor([0.0, 0.1, -0.2, 0.3]))
        with torch.no_grad():
            self.items.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items.weight[1:].T + self.bias[1:]


HIDDEN = torch.tensor([[2.0, -1.0]])  # logits of items 1, 2, 3: 2.1, -1.2, 1.3


def test_softmax_is_cross_entropy_over_the_catalogue_and_excludes_on_request():
    net, target = _Net(), torch.tensor([3])
    logits = [2.1, -1.2, 1.3]
    expected = math.log(sum(math.exp(v) for v in logits)) - 1.3
    assert math.isclose(Objective("softmax", 3)(net, HIDDEN, target).item(), expected, rel_tol=1e-5)
    excluded = Objective("softmax", 3)(net, HIDDEN, target, lambda items: torch.tensor([[True, False, False]]))
    assert math.isclose(excluded.item(), math.log(math.exp(-1.2) + math.exp(1.3)) - 1.3, rel_tol=1e-5)


class _Given(Objective):
    """An objective whose sampled negatives are given, so that its loss can be computed by hand."""

    def __init__(self, kind: str, items: list[int], **kwargs) -> None:
        super().__init__(kind, 3, negatives=len(items), **kwargs)
        self.items = torch.tensor(items)

    def draw_negatives(self, device: torch.device) -> torch.Tensor:
        return self.items


def test_sampled_softmax_and_gbce_over_given_negatives():
    net, target = _Net(), torch.tensor([3])
    loss = _Given("sampled_softmax", [1, 3])(net, HIDDEN, target).item()  # 3 is the target: an accidental hit, left out
    assert math.isclose(loss, math.log(math.exp(1.3) + math.exp(2.1)) - 1.3, rel_tol=1e-5)

    loss = _Given("gbce", [1, 2], gbce_t=0.5)(net, HIDDEN, target).item()
    alpha = 2 / 2  # negatives / (n_items - 1)
    beta = alpha * (0.5 * (1 - 1 / alpha) + 1 / alpha)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -beta * math.log(sig(1.3)) - math.log(1 - sig(2.1)) - math.log(1 - sig(-1.2))
    assert math.isclose(loss, expected, rel_tol=1e-5)


def test_gbce_beta_shrinks_the_positive_term_with_few_negatives():
    net, target = _Net(), torch.tensor([3])
    plain = _Given("gbce", [1], gbce_t=0.0)(net, HIDDEN, target).item()  # t = 0: beta = 1, binary cross-entropy
    shrunk = _Given("gbce", [1], gbce_t=1.0)(net, HIDDEN, target).item()  # t = 1: beta = alpha = 1/2
    negative = -math.log(1 - 1 / (1 + math.exp(-2.1)))
    assert math.isclose(shrunk - negative, 0.5 * (plain - negative), rel_tol=1e-5)


def test_popularity_sampling_applies_the_log_q_correction():
    objective = Objective("sampled_softmax", 3, negatives=4, negative_alpha=1.0, popularity=np.array([0, 6, 3, 1]))
    assert torch.allclose(objective.sampling, torch.tensor([0.6, 0.3, 0.1]))
    assert torch.allclose(objective.log_q, torch.log(torch.tensor([0.6, 0.3, 0.1])))


def test_adagrad_with_momentum_matches_its_update_rule():
    weight = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = AdagradM([weight], lr=0.1, momentum=0.5, eps=0.0)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])]
    expected, acc, mom = torch.tensor([1.0, -2.0]), torch.zeros(2), torch.zeros(2)
    for grad in grads:
        weight.grad = grad.clone()
        optimizer.step()
        acc = acc + grad**2
        mom = 0.5 * mom - 0.1 * grad / acc.sqrt()
        expected = expected + mom
    assert torch.allclose(weight.detach(), expected)
