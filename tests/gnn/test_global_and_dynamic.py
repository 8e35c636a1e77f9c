"""GraphClassifier's global head (it contains a linear probe on u) and per-block feature k-NN edges."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnn.models import GraphClassifier, feature_knn


def _graphs(n_graphs: int = 3, u_dim: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_graphs):
        n = 5 + i
        ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
        ei = torch.cat([ei, ei.flip(0)], 1)
        x, u = torch.randn(n, 6, generator=g), torch.randn(1, u_dim, generator=g)
        out.append(Data(x=x, edge_index=ei, u=u))
    return Batch.from_data_list(out)


def test_a_zeroed_graph_head_leaves_exactly_the_linear_probe_on_u():
    batch = _graphs()
    model = GraphClassifier(6, 3, hidden=8, layers=2, global_channels=4).eval()
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        torch.testing.assert_close(model(batch), model.global_head(batch.u))
    # and the graph part does count when it is not zero
    fresh = GraphClassifier(6, 3, hidden=8, layers=2, global_channels=4).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(batch), fresh.global_head(batch.u))


def test_u_is_checked_by_shape_presence_and_dtype():
    batch = _graphs()
    model = GraphClassifier(6, 3, hidden=8, global_channels=4)
    del batch.u
    with pytest.raises(ValueError, match=r"needs data.u of shape \(3, 4\)"):
        model(batch)
    with pytest.raises(ValueError, match=r"u must have shape \(3, 4\).*got \(2, 4\)"):
        model(batch.x, batch.edge_index, batch.batch, u=torch.zeros(2, 4))
    with pytest.raises(TypeError, match="float tensor"):
        model(batch.x, batch.edge_index, batch.batch, u=torch.zeros(3, 4, dtype=torch.long))
    # a model without a global head ignores u
    plain = GraphClassifier(6, 3, hidden=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(_graphs()), plain(batch))
    with pytest.raises(ValueError, match="global_channels"):
        GraphClassifier(6, 3, global_channels=0)


def _brute_knn(h: torch.Tensor, batch: torch.Tensor, k: int) -> set[tuple[int, int]]:
    edges = set()
    for i in range(h.shape[0]):
        same = torch.nonzero(batch == batch[i]).view(-1)
        others = same[same != i]
        d = (h[others] - h[i]).norm(dim=1)
        for j in others[torch.argsort(d)[: min(k, others.numel())]].tolist():
            edges.add((j, i))
    return edges


def test_feature_knn_matches_brute_force_within_each_graph():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(17, 5, generator=g)  # continuous values: no distance ties
    batch = torch.tensor([0] * 6 + [1] * 3 + [2] * 8)
    for k in (1, 2, 4):
        ei = feature_knn(h, batch, k)
        got = set(map(tuple, ei.t().tolist()))
        assert got == _brute_knn(h, batch, k)
        assert bool((batch[ei[0]] == batch[ei[1]]).all()) and bool((ei[0] != ei[1]).all())
    with pytest.raises(ValueError, match="k"):
        feature_knn(h, batch, 0)


def test_dynamic_k_ignores_the_given_edges():
    batch = _graphs(u_dim=2)
    model = GraphClassifier(6, 2, hidden=8, layers=2, dynamic_k=2).eval()
    other = batch.clone()
    other.edge_index = torch.empty(2, 0, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(other))
    static = GraphClassifier(6, 2, hidden=8, layers=2).eval()
    with torch.no_grad():
        assert not torch.allclose(static(batch), static(other))
    with pytest.raises(ValueError, match="edge_dim=None"):
        GraphClassifier(6, 2, dynamic_k=2, edge_dim=2, conv="gat")
