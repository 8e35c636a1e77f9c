"""Tests for bridge.explain: node importance on pixels, GNN scoring over fixed superpixels, a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.utils import scatter

from bridge.convert import ImageToGraph
from bridge.explain import cnn_scorer, graph_pixel_maps, graph_scorer
from cnn.perturbation import faithfulness
from gnn.models import GraphClassifier


def _quadrants(n: int, seed: int = 0) -> np.ndarray:
    """Images of four flat quadrants: exactly four superpixels each; the top-left one is bright red."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 32, 32, 3), np.uint8)
    for i in range(n):
        colours = rng.integers(0, 160, size=(4, 3))
        colours[0] = (250, 0, 0)
        imgs[i, :16, :16], imgs[i, :16, 16:], imgs[i, 16:, :16], imgs[i, 16:, 16:] = colours
    return imgs


class RedNodeModel(nn.Module):
    """A graph model that reads only the node at the top-left (centroid near (0.25, 0.25)) and its red.

    Node features are (r, g, b, cy, cx); logit_0 = 12 (red of that node - 0.8).
    """

    def forward(self, data) -> torch.Tensor:
        x = data.x
        weight = torch.exp(-200 * ((x[:, 3] - 0.25) ** 2 + (x[:, 4] - 0.25) ** 2))  # ~1 there, ~0 elsewhere
        red = scatter(weight * x[:, 0], data.batch, reduce="sum") / scatter(weight, data.batch, reduce="sum")
        logit = 12.0 * (red - 0.8)
        return torch.stack([logit, -logit], dim=1)


@pytest.fixture
def converter() -> ImageToGraph:
    return ImageToGraph(n_segments=4, method="grid", features=("color_mean", "centroid"), edges="region")


def test_graph_maps_paint_every_pixel_with_its_node(converter):
    imgs = _quadrants(3)
    graphs = converter.batch(list(imgs))
    torch.manual_seed(0)
    model = GraphClassifier(5, 2, hidden=8)
    maps = graph_pixel_maps(model, graphs)
    assert maps.shape == (3, 32, 32)
    for g, m in zip(graphs, maps):
        seg = g.segments[0]
        # constant on each superpixel: every pixel of node k carries one value
        per_node = scatter(m.reshape(-1), seg.reshape(-1), reduce="max") - scatter(
            m.reshape(-1), seg.reshape(-1), reduce="min"
        )
        assert float(per_node.abs().max()) == 0.0 and float(m.max()) == pytest.approx(1.0)


def test_known_answer_gnn_saliency_puts_the_read_node_first_and_deletion_drops(converter):
    imgs = _quadrants(4)
    graphs = converter.batch(list(imgs))
    model = RedNodeModel()
    maps = graph_pixel_maps(model, graphs)
    assert (maps[:, :16, :16] == 1.0).all()  # the node the model reads is the most important, per image
    assert float(maps[:, 16:, 16:].max()) < 0.5
    scorers = [graph_scorer(model, converter, g.segments[0].numpy()) for g in graphs]
    f = faithfulness(scorers, imgs, maps, steps=8, fill="mean")
    assert (f.curves["deletion"][:, 0] > 0.9).all() and (f.curves["deletion"][:, 2] < 0.2).all()
    assert f.deletion_auc.mean() < f.random_deletion_auc.mean() - 0.2
    assert f.insertion_auc.mean() > f.random_insertion_auc.mean() + 0.2


def test_graph_scorer_keeps_the_superpixels_of_the_intact_image(converter):
    img = _quadrants(1)[0]
    seg = converter(img).segments[0].numpy()
    seen = []

    class Spy(nn.Module):
        def forward(self, data):
            seen.append(data.num_nodes)
            return torch.zeros(data.num_graphs, 2)

    blurred = np.full_like(img, 90)  # a flat image would segment into one node; the given map keeps four
    probs = graph_scorer(Spy(), converter, seg)(np.stack([img, blurred]))
    assert seen == [8] and torch.allclose(probs, torch.full((2, 2), 0.5))


def test_cnn_scorer_batches_and_normalises():
    calls = []

    class Net(nn.Module):
        def forward(self, x):
            calls.append((len(x), float(x.mean())))
            return torch.zeros(len(x), 3)

    p = cnn_scorer(Net(), (0.5,) * 3, (0.5,) * 3, batch_size=4)(np.full((10, 6, 6, 3), 255, np.uint8))
    assert p.shape == (10, 3) and [c[0] for c in calls] == [4, 4, 2]
    assert all(c[1] == pytest.approx(1.0) for c in calls)  # (1 - 0.5) / 0.5


@pytest.mark.parametrize(
    ("graphs", "match"),
    [
        ([], "graphs is empty"),
        ("nosegments", "build them with ImageToGraph\\(keep_segments=True\\)"),
        ("sizes", "images of different sizes"),
    ],
)
def test_graph_pixel_maps_bad_input(graphs, match, converter):
    if graphs == "nosegments":
        graphs = ImageToGraph(n_segments=4, method="grid", keep_segments=False).batch(list(_quadrants(1)))
    elif graphs == "sizes":
        graphs = [converter(_quadrants(1)[0]), converter(np.zeros((16, 16, 3), np.uint8))]
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=match):
        graph_pixel_maps(GraphClassifier(5, 2, hidden=8), graphs)
