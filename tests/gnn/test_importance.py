"""Tests for gnn/importance.py: node_importance on models whose answers are known by construction."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_add_pool

from gnn.importance import _integrated_gradients, node_importance
from gnn.models import GraphClassifier

METHODS = ["saliency", "grad_x_input", "integrated_gradients"]


class LinearReadout(torch.nn.Module):
    """logits = sum over nodes of x @ W: class 1 reads feature 0 only, class 0 reads feature 1 only."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))

    def forward(self, data):
        return global_add_pool(
            data.x @ self.weight, data.batch, size=data.num_graphs if data.batch is not None else 1
        )


def _line_graph(feature0: list[float]) -> Data:
    n = len(feature0)
    x = torch.zeros(n, 3)
    x[:, 0] = torch.tensor(feature0)
    x[:, 2] = 5.0  # a feature no class reads
    src = torch.arange(n - 1)
    return Data(x=x, edge_index=torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])]))


def test_grad_x_input_and_integrated_gradients_point_at_the_nodes_that_carry_the_signal():
    model = LinearReadout()
    data = _line_graph([0.0, 1.0, 0.0, 2.0, 0.0])
    expected = torch.tensor([0.0, 0.5, 0.0, 1.0, 0.0])
    for method in ("grad_x_input", "integrated_gradients"):
        torch.testing.assert_close(node_importance(model, data, method=method, target=1), expected)


def test_saliency_of_a_linear_readout_is_uniform():
    scores = node_importance(LinearReadout(), _line_graph([0.0, 1.0, 0.0, 2.0]), method="saliency", target=1)
    torch.testing.assert_close(scores, torch.ones(4))


def test_default_target_is_the_predicted_class():
    model = LinearReadout()
    data = _line_graph([0.0, 1.0, 0.0, 2.0, 0.0])  # class 1 logit 3 > class 0 logit 0
    torch.testing.assert_close(
        node_importance(model, data, method="grad_x_input"),
        node_importance(model, data, method="grad_x_input", target=1),
    )


def test_graph_without_signal_gives_zeros_not_nan():
    scores = node_importance(LinearReadout(), _line_graph([0.0, 0.0, 0.0]), method="grad_x_input", target=1)
    assert torch.equal(scores, torch.zeros(3))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_batch_is_normalised_per_graph_and_equals_graph_by_graph(method, conv, make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=2)
    graphs = [make_random_graph(n, seed=i) for i, n in enumerate([6, 9, 1])]
    batch = Batch.from_data_list(graphs)
    scores = node_importance(model, batch, method=method, steps=8)
    assert scores.shape == (16,)
    assert torch.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    for g, part in zip(graphs, scores.split([6, 9, 1])):
        assert part.max() == pytest.approx(1.0)
        torch.testing.assert_close(
            part, node_importance(model, g, method=method, steps=8), atol=1e-5, rtol=1e-4
        )


def test_integrated_gradients_converge_to_completeness(make_random_graph):
    # Summed signed attributions approach f(x) - f(0); checked through the unnormalised pieces.
    torch.manual_seed(0)
    model = GraphClassifier(5, 2, conv="gcn", hidden=16, layers=2).eval()
    g = make_random_graph(7, seed=2)
    grads = _integrated_gradients(model, g, torch.zeros_like(g.x), 1, 256, 1)
    total = (g.x * grads).sum()
    with torch.no_grad():
        gap = (
            model(g)[0, 1]
            - model(Data(x=torch.zeros_like(g.x), edge_index=g.edge_index, edge_weight=g.edge_weight))[0, 1]
        )
    assert total.item() == pytest.approx(gap.item(), rel=1e-2, abs=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_model_mode_parameters_and_input_are_left_alone(method, make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, hidden=16, layers=2, dropout=0.5)
    model.train()
    model.norms[0].eval()  # a mixed state must come back as it was
    g = make_random_graph(6, seed=0)
    x_before = g.x.clone()
    node_importance(model, g, method=method, steps=4)
    assert model.training and not model.norms[0].training and model.norms[1].training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(g.x, x_before) and not g.x.requires_grad


def test_dropout_does_not_make_scores_random(make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, hidden=16, layers=2, dropout=0.5).train()
    g = make_random_graph(6, seed=0)
    torch.testing.assert_close(node_importance(model, g), node_importance(model, g))


def test_works_under_no_grad(make_random_graph):
    model = GraphClassifier(5, 3, hidden=16, layers=2)
    with torch.no_grad():
        scores = node_importance(model, make_random_graph(6, seed=0), method="integrated_gradients", steps=4)
    assert scores.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"method": "shap"},
            ValueError,
            r"method must be one of \['saliency', 'grad_x_input', 'integrated_gr",
        ),
        ({"steps": 0}, ValueError, "steps must be a positive integer; got 0"),
        ({"target": 3}, ValueError, r"target must be a class in \[0, 3\); got \[3\]"),
        ({"target": torch.tensor([0, 1])}, ValueError, r"one class per graph \(1\); got 2"),
        ({"baseline": torch.zeros(2, 5)}, ValueError, r"baseline must have the shape of data.x \(6, 5\)"),
    ],
)
def test_bad_arguments(kwargs, error, match, make_random_graph):
    with pytest.raises(error, match=match):
        node_importance(GraphClassifier(5, 3, hidden=8, layers=1), make_random_graph(6, seed=0), **kwargs)


def test_data_must_be_a_graph_with_float_features():
    model = GraphClassifier(5, 3, hidden=8, layers=1)
    with pytest.raises(TypeError, match="data must be a torch_geometric Data or Batch; got Tensor"):
        node_importance(model, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"data.x must be a float tensor \(N, F\)"):
        node_importance(
            model, Data(x=torch.zeros(3, 5, dtype=torch.long), edge_index=torch.zeros(2, 0).long())
        )
