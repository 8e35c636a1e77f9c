"""gnn.loader: batches gathered from concatenated attributes equal PyG's collation."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from gnn.loader import GatheredCollater, graph_loader


def _graphs(make_random_graph, n: int = 11) -> list[Data]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        g = make_random_graph(3 + i % 5, seed=i, label=i % 3)
        g.edge_attr = torch.rand(g.edge_index.shape[1], 2, generator=gen)
        g.pos = torch.rand(g.num_nodes, 2, generator=gen)
        g.u = torch.rand(1, 4, generator=gen)  # a graph-level vector, as compare's arm C carries
        out.append(g)
    out[4].edge_index = torch.empty(2, 0, dtype=torch.int64)  # a graph without edges
    out[4].edge_weight = torch.empty(0)
    out[4].edge_attr = torch.empty(0, 2)
    return out


def assert_same_batch(got: Batch, want: Batch) -> None:
    assert type(got) is type(want) and got.num_graphs == want.num_graphs
    assert sorted(got.keys()) == sorted(want.keys())
    for key in want.keys():
        if not isinstance(want[key], torch.Tensor):
            assert got[key] == want[key], key
            continue
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
    for table in ("_slice_dict", "_inc_dict"):
        a, b = getattr(got, table), getattr(want, table)
        assert a.keys() == b.keys(), table
        assert all(torch.equal(a[k], b[k]) if isinstance(b[k], torch.Tensor) else a[k] == b[k] for k in b), (
            table
        )
    back, ref = got.to_data_list(), want.to_data_list()
    assert len(back) == len(ref)
    for g, e in zip(back, ref):
        assert all(
            torch.equal(g[k], e[k]) if isinstance(e[k], torch.Tensor) else g[k] == e[k] for k in e.keys()
        )


def test_a_gathered_batch_equals_from_data_list(make_random_graph):
    graphs = _graphs(make_random_graph)
    collate = GatheredCollater(graphs)
    assert collate.gathered
    for pick in ([0, 1, 2], [10, 4, 7, 7, 0], [4], list(range(11))[::-1]):
        items = [graphs[i] for i in pick]
        assert_same_batch(collate(items), Batch.from_data_list(items))


@pytest.mark.parametrize("shuffle", [False, True])
def test_graph_loader_gives_pyg_loaders_batches(make_random_graph, shuffle):
    graphs = _graphs(make_random_graph)
    ours = graph_loader(graphs, batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(3))
    pyg = DataLoader(graphs, batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(3))
    assert ours.dataset == graphs and len(ours) == len(pyg) == 3
    for _ in range(2):  # two epochs: the same reshuffled order
        got, want = list(ours), list(pyg)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same_batch(a, b)


def test_graphs_outside_the_scheme_are_collated_by_pyg(make_random_graph):
    graphs = _graphs(make_random_graph, 6)
    odd = [g.clone() for g in graphs]
    odd[2].node_index = torch.arange(odd[2].num_nodes)  # keys differ between graphs
    assert not GatheredCollater(odd).gathered
    named = [g.clone() for g in graphs]
    for g in named:
        g.name = "cell"  # not a tensor
    assert not GatheredCollater(named).gathered
    assert_same_batch(GatheredCollater(named)(named), Batch.from_data_list(named))
    collate = GatheredCollater(graphs)
    copies = [g.clone() for g in graphs[:2]]  # not the list's objects (a worker's copies): PyG collates
    assert_same_batch(collate(copies), Batch.from_data_list(copies))
    # follow_batch is PyG's own: its collater stays
    loader = graph_loader(graphs, batch_size=2, follow_batch=["x"])
    assert not isinstance(loader.collate_fn, GatheredCollater)
    assert hasattr(next(iter(loader)), "x_batch")


def test_training_on_gathered_batches_equals_training_on_pygs(make_random_graph):
    from gnn import GraphClassifier
    from gnn.training import fit

    graphs = _graphs(make_random_graph)
    weights = []
    for make in (graph_loader, DataLoader):
        torch.manual_seed(0)
        model = GraphClassifier(5, 3, hidden=8, layers=2)
        loader = make(graphs, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
        fit(model, loader, epochs=2, progress=False, accelerator="cpu")
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
