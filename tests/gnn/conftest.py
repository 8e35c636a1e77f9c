"""Shared synthetic graphs for the gnn tests (answers known by construction, seeded)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data


def red_edge_graphs(
    n: int, *, seed: int, min_nodes: int = 8, max_nodes: int = 14, n_red: int = 3
) -> list[Data]:
    """Rings of 8-14 nodes with exactly ``n_red`` red nodes; label 1 iff two red nodes are adjacent.

    Node features are one-hot colours (red, blue). Every graph has the same number of red nodes,
    so the label depends on where they sit, which only message passing can see; the classes are
    balanced (alternating labels, rejection sampling).
    """
    g = torch.Generator().manual_seed(seed)
    graphs: list[Data] = []
    while len(graphs) < n:
        want = len(graphs) % 2
        num_nodes = int(torch.randint(min_nodes, max_nodes + 1, (1,), generator=g))
        src = torch.arange(num_nodes)
        dst = (src + 1) % num_nodes
        red = torch.zeros(num_nodes, dtype=torch.bool)
        red[torch.randperm(num_nodes, generator=g)[:n_red]] = True
        label = int((red[src] & red[dst]).any())
        if label != want:
            continue
        edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
        x = torch.stack([red.float(), (~red).float()], dim=1)
        graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([label])))
    return graphs


def random_graph(num_nodes: int, *, seed: int, features: int = 5, p: float = 0.3, label: int = 0) -> Data:
    """Undirected Erdos-Renyi graph with random features and positive edge weights."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < p, diagonal=1)
    src, dst = upper.nonzero(as_tuple=True)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    weight = torch.rand(src.numel(), generator=g) + 0.1
    return Data(
        x=torch.randn(num_nodes, features, generator=g),
        edge_index=edge_index,
        edge_weight=torch.cat([weight, weight]),
        y=torch.tensor([label]),
    )


@pytest.fixture
def make_red_edge_graphs():
    return red_edge_graphs


@pytest.fixture
def make_random_graph():
    return random_graph


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs gain nothing from intra-op threads, and on a shared, busy machine every op's thread
    barrier can wait a whole scheduler slice; one thread keeps these tests fast and steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
