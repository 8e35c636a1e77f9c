"""Tests for gnn/dense.py: DenseGCN equals PyG's GCNConv and follows the lecture formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.nn import GCNConv
from torch_geometric.utils import dense_to_sparse

from gnn.dense import DenseGCN, normalized_adjacency


def _random_adjacency(n: int, *, seed: int, p: float, weighted: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu((torch.rand(n, n, generator=g) < p).float(), diagonal=1)
    if weighted:
        upper = upper * (torch.rand(n, n, generator=g) + 0.1)
    return upper + upper.T  # undirected, no self loops


def _pair(in_channels: int, out_channels: int, seed: int) -> tuple[GCNConv, DenseGCN]:
    torch.manual_seed(seed)
    conv = GCNConv(in_channels, out_channels)
    torch.nn.init.normal_(conv.bias)  # non-zero bias so that it is compared too
    dense = DenseGCN(in_channels, out_channels, activation=None)
    dense.load_state_dict(conv.state_dict())
    return conv, dense


@pytest.mark.parametrize("n", [1, 2, 7, 30])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_gcn_equals_gcnconv_on_random_graphs(n, p, weighted, seed):
    adj = _random_adjacency(n, seed=seed, p=p, weighted=weighted)
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed + 100))
    conv, dense = _pair(6, 4, seed)
    edge_index, edge_weight = dense_to_sparse(adj)
    expected = conv(x, edge_index, edge_weight if weighted else None)
    torch.testing.assert_close(dense(adj, x), expected, atol=1e-5, rtol=1e-5)
    # The lecture's layer is the same thing followed by ReLU.
    relu_layer = DenseGCN(6, 4)
    relu_layer.load_state_dict(conv.state_dict())
    torch.testing.assert_close(relu_layer(adj, x), torch.relu(expected), atol=1e-5, rtol=1e-5)


def test_directed_graph_convention_rows_receive():
    g = torch.Generator().manual_seed(5)
    adj = (torch.rand(9, 9, generator=g) < 0.3).float() * torch.rand(9, 9, generator=g)
    adj.fill_diagonal_(0)
    x = torch.randn(9, 3, generator=g)
    conv, dense = _pair(3, 2, 0)
    # adj[i, j] is the edge j -> i, so GCNConv's (source, target) pairs come from adj.T.
    edge_index, edge_weight = dense_to_sparse(adj.T)
    torch.testing.assert_close(dense(adj, x), conv(x, edge_index, edge_weight), atol=1e-5, rtol=1e-5)


def test_three_node_path_by_hand():
    # Path 0 - 1 - 2: A + I has degrees 2, 3, 2.
    adj = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    x = torch.tensor([[1.0], [2.0], [4.0]])
    layer = DenseGCN(1, 1, activation=None)
    with torch.no_grad():
        layer.lin.weight.fill_(1.0)
        layer.bias.fill_(0.0)
    s6 = math.sqrt(6.0)
    expected = torch.tensor([[1 / 2 + 2 / s6], [1 / s6 + 2 / 3 + 4 / s6], [2 / s6 + 4 / 2]])
    torch.testing.assert_close(layer(adj, x), expected)
    torch.testing.assert_close(
        normalized_adjacency(adj),
        torch.tensor([[1 / 2, 1 / s6, 0.0], [1 / s6, 1 / 3, 1 / s6], [0.0, 1 / s6, 1 / 2]]),
    )


def test_relu_is_applied_by_default():
    torch.manual_seed(0)
    layer = DenseGCN(4, 8)
    adj = _random_adjacency(6, seed=0, p=0.5, weighted=False)
    out = layer(adj, torch.randn(6, 4))
    assert (out >= 0).all() and (out == 0).any()


def test_batched_with_padding_mask_equals_graph_by_graph():
    torch.manual_seed(0)
    layer = DenseGCN(3, 5)
    sizes = [4, 7, 1]
    adjs = [_random_adjacency(n, seed=i, p=0.5, weighted=True) for i, n in enumerate(sizes)]
    xs = [torch.randn(n, 3) for n in sizes]
    adj = torch.zeros(3, 7, 7)
    x = torch.zeros(3, 7, 3)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    for b, n in enumerate(sizes):
        adj[b, :n, :n], x[b, :n], mask[b, :n] = adjs[b], xs[b], True
    out = layer(adj, x, mask=mask)
    for b, n in enumerate(sizes):
        torch.testing.assert_close(out[b, :n], layer(adjs[b], xs[b]))
        assert (out[b, n:] == 0).all()


def test_graph_without_edges_reduces_to_a_linear_layer():
    torch.manual_seed(0)
    layer = DenseGCN(3, 2, activation=None)
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(torch.zeros(4, 4), x), layer.lin(x) + layer.bias)


def test_isolated_nodes_without_self_loops_give_zeros_not_nan():
    adj = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    norm = normalized_adjacency(adj, add_self_loops=False)
    assert torch.isfinite(norm).all()
    assert (norm[2] == 0).all()
    out = DenseGCN(2, 2, add_self_loops=False)(adj, torch.randn(3, 2))
    assert torch.isfinite(out).all()


def test_repr_shows_config():
    assert repr(DenseGCN(3, 2, activation=None)) == (
        "DenseGCN(3, 2, bias=True, activation=None, add_self_loops=True)"
    )


def _with(t, at, value):
    t[at] = value
    return t


@pytest.mark.parametrize(
    ("adj", "x", "error", "match"),
    [
        (torch.zeros(3, 4), torch.zeros(3, 2), ValueError, r"adj must be a square matrix"),
        (torch.zeros(3, 3), torch.zeros(4, 2), ValueError, r"x must be \(N, F\) with the same N"),
        (torch.zeros(2, 3, 3), torch.zeros(3, 2), ValueError, r"x must be \(B, N, F\)"),
        (torch.zeros(3, 3), torch.zeros(3, 5), ValueError, r"x has 5 features per node .* in_channels=2"),
        (torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 2), TypeError, r"adj must be a float tensor"),
        (torch.zeros(3, 3), torch.zeros(3, 2, dtype=torch.long), TypeError, r"x must be a float tensor"),
        (-torch.ones(3, 3), torch.zeros(3, 2), ValueError, r"adj has negative entries"),
        (_with(torch.zeros(3, 3), (0, 1), float("nan")), torch.zeros(3, 2),
         ValueError, r"adj contains 1 NaN"),
        (_with(torch.zeros(2, 3, 3), (1, 2, 0), float("inf")), torch.zeros(2, 3, 2), ValueError,
         r"adj contains 1 NaN or infinite entries; expected finite"),
        (_with(-torch.ones(3, 3), (0, 0), float("-inf")), torch.zeros(3, 2),
         ValueError, r"adj contains 1 NaN"),
        (torch.zeros(3, 3), _with(torch.zeros(3, 2), (2, 1), float("nan")), ValueError, r"x contains 1 NaN"),
        (torch.tensor([[0, 1, 1], [1, 0, 2]]), torch.zeros(3, 2), ValueError,
         r"adj has shape \(2, 3\) and dtype torch.int64: that looks like an edge_index .*utils.to_dense_adj"),
        (torch.zeros(2, 2).numpy(), torch.zeros(2, 2), TypeError, r"adj must be a torch.Tensor; got ndarray"),
        (torch.zeros(2, 2), [[0.0, 0.0], [0.0, 0.0]], TypeError, r"x must be a torch.Tensor; got list"),
    ],
)  # fmt: skip
def test_bad_inputs(adj, x, error, match):
    with pytest.raises(error, match=match):
        DenseGCN(2, 4)(adj, x)


@pytest.mark.parametrize(
    ("adj", "error", "match"),
    [
        (torch.full((3, 3), float("nan")), ValueError, r"adj contains 9 NaN or infinite entries"),
        (_with(torch.zeros(2, 3, 3), (0, 1, 2), float("inf")), ValueError, r"adj contains 1 NaN"),
        (-torch.ones(3, 3), ValueError, r"adj has negative entries"),
        (torch.zeros(3, 4), ValueError, r"adj must be a square matrix"),
        (torch.zeros(3, 3, dtype=torch.long), TypeError, r"adj must be a float tensor"),
        (torch.zeros(3, 3).numpy(), TypeError, r"adj must be a torch.Tensor; got ndarray"),
    ],
)
def test_normalized_adjacency_refuses_bad_matrices(adj, error, match):
    with pytest.raises(error, match=match):
        normalized_adjacency(adj)


def test_bad_mask_and_constructor_arguments():
    with pytest.raises(ValueError, match=r"mask must be \(B, N\) = \(2, 3\)"):
        DenseGCN(2, 4)(torch.zeros(2, 3, 3), torch.zeros(2, 3, 2), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', None\]; got 'tanh'"):
        DenseGCN(2, 4, activation="tanh")
    with pytest.raises(ValueError, match=r"out_channels must be a positive integer; got 0"):
        DenseGCN(2, 0)


def test_float64_adjacency_meets_float32_features():
    """A weighted adjacency from networkx (float64) works with float32 features, as float32 would."""
    torch.manual_seed(0)
    layer = DenseGCN(3, 2)
    adj = _random_adjacency(5, seed=1, p=0.5, weighted=True)
    x = torch.randn(5, 3)
    out = layer(adj.double(), x)
    assert out.dtype == torch.float32 and torch.allclose(out, layer(adj.float(), x), atol=1e-6)
