"""Tests for bridge.nxgraph on a hand-made 4-quadrant graph (answers known by construction)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from torch_geometric.data import Data  # noqa: E402

from bridge.nxgraph import draw_graph, export_graphml, paint_nodes, plot_node_importance, to_networkx  # noqa: E402

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8)


def _quadrants() -> np.ndarray:
    """(8, 8) label map: 0 | 1 on top, 2 | 3 below."""
    seg = np.zeros((8, 8), dtype=np.int64)
    seg[:4, 4:] = 1
    seg[4:, :4] = 2
    seg[4:, 4:] = 3
    return seg


def _image() -> np.ndarray:
    return COLOURS[_quadrants()]


def _graph() -> Data:
    seg = _quadrants()
    # 4 shared borders, both directions: 0-1, 0-2, 1-3, 2-3
    src = torch.tensor([0, 0, 1, 2, 1, 2, 3, 3])
    dst = torch.tensor([1, 2, 3, 3, 0, 0, 1, 2])
    centroid = torch.tensor([[1.5, 1.5], [5.5, 1.5], [1.5, 5.5], [5.5, 5.5]])  # (x, y) pixels
    length = torch.full((8, 1), 4.0)
    dist = (centroid[src] - centroid[dst]).norm(dim=1, keepdim=True) / 7.0
    return Data(
        x=torch.from_numpy(COLOURS.astype(np.float32) / 255.0),
        edge_index=torch.stack([src, dst]),
        edge_attr=torch.cat([length, dist], dim=1),
        pos=centroid / 7.0,
        y=torch.tensor([1]),
        segments=torch.from_numpy(seg).unsqueeze(0),
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:4] == b"\x89PNG"


def test_to_networkx_nodes_edges_attributes():
    g = to_networkx(_graph())
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 4
    assert sorted(map(sorted, g.edges())) == [[0, 1], [0, 2], [1, 3], [2, 3]]
    assert g.nodes[1]["pos"] == pytest.approx((5.5 / 7, 1.5 / 7))
    assert g.nodes[2]["x"] == [0.0, 0.0, 1.0]
    assert g.graph["y"] == 1
    assert g.edges[0, 1]["edge_attr"] == pytest.approx([4.0, 4.0 / 7])
    named = to_networkx(_graph(), feature_names=["r", "g", "b"], edge_feature_names=["length", "dist"])
    assert named.nodes[3]["r"] == 1.0 and named.nodes[3]["x"] == [1.0, 1.0, 1.0]
    assert named.edges[2, 3]["dist"] == pytest.approx(4.0 / 7)
    with pytest.raises(ValueError, match="feature_names has 2 names but there are 3 columns"):
        to_networkx(_graph(), feature_names=["r", "g"])


def test_to_networkx_one_way_edges_isolated_nodes_and_node_labels():
    data = Data(x=torch.zeros(5, 1), edge_index=torch.tensor([[0, 3], [1, 2]]), y=torch.arange(5))
    g = to_networkx(data)
    assert g.number_of_nodes() == 5 and sorted(map(sorted, g.edges())) == [[0, 1], [2, 3]]
    assert [g.nodes[i]["y"] for i in range(5)] == [0, 1, 2, 3, 4]


def test_export_graphml_round_trip(tmp_path):
    path = export_graphml(_graph(), tmp_path / "g" / "quad.graphml")
    assert sorted(p.name for p in path.parent.iterdir()) == ["quad.graphml"]  # no temp file left
    g = nx.read_graphml(path)
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 4
    node = g.nodes["2"]
    assert (node["x_0"], node["x_1"], node["x_2"]) == (0.0, 0.0, 1.0)
    assert node["pos_x"] == pytest.approx(1.5 / 7) and node["pos_y"] == pytest.approx(5.5 / 7)
    assert g.edges["0", "1"]["edge_attr_0"] == 4.0
    assert g.graph["y"] == 1


def test_draw_graph_lines_nodes_and_borders(tmp_path):
    image = _image()
    values = np.array([0.1, 0.2, 0.3, 0.9])
    fig = draw_graph(image, _graph(), path=tmp_path / "graph.png", node_values=values)
    assert _is_png(tmp_path / "graph.png")
    ax = fig.axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = sorted(tuple(map(tuple, np.round(s, 6))) for s in lines.get_segments())
    assert len(segs) == 4
    assert ((1.5, 1.5), (5.5, 1.5)) in segs  # centroid pixels = pos * (W - 1, H - 1)
    dots = ax.collections[1]
    assert np.allclose(dots.get_offsets(), [[1.5, 1.5], [5.5, 1.5], [1.5, 5.5], [5.5, 5.5]])
    assert np.allclose(dots.get_array(), values)
    shown = np.asarray(ax.images[0].get_array())
    yellow = np.all(np.isclose(shown, [1.0, 1.0, 0.0]), axis=-1)
    assert yellow.any() and not yellow[0, 0]  # borders drawn, quadrant interiors untouched
    plain = draw_graph(image, _graph(), show_segments=False)
    assert np.allclose(np.asarray(plain.axes[0].images[0].get_array()), image / 255.0)


def test_draw_graph_bad_input():
    data = _graph()
    with pytest.raises(ValueError, match="node_values has 3 entries for a graph of 4 nodes"):
        draw_graph(_image(), data, node_values=[1, 2, 3])
    with pytest.raises(ValueError, match=r"data.segments must be a label map of shape \(H, W\) = \(6, 6\)"):
        draw_graph(_image()[:6, :6], data)
    with pytest.raises(ValueError, match="channel-last"):
        draw_graph(np.transpose(_image(), (2, 0, 1)), data)
    with pytest.raises(ValueError, match="float image values span 0..255"):  # would be drawn white
        draw_graph(_image().astype(np.float32), data)
    with pytest.raises(ValueError, match="image has dtype int64"):
        draw_graph(_image().astype(np.int64), data)
    del data.pos
    with pytest.raises(ValueError, match="data.pos is missing"):
        draw_graph(_image(), data)


def test_draw_graph_clips_a_resampling_overshoot_of_a_float_image():
    img = _image().astype(np.float32) / 255.0
    img[0, 0] = [1.2, -0.1, 0.5]  # bicubic resampling overshoots 0..1 a little
    fig = draw_graph(img, _graph(), show_segments=False)
    assert np.allclose(np.asarray(fig.axes[0].images[0].get_array())[0, 0], [1.0, 0.0, 0.5])


def test_draw_graph_takes_a_one_channel_image_as_grey():
    grey = _image()[..., :1]  # (H, W, 1)
    fig = draw_graph(grey, _graph(), show_segments=False)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown.shape == (8, 8, 3) and np.allclose(shown, np.repeat(grey, 3, axis=2) / 255.0)


def test_paint_nodes_exact():
    painted = paint_nodes(torch.from_numpy(_quadrants()).unsqueeze(0), torch.tensor([10.0, 20.0, 30.0, 40.0]))
    expected = np.block(
        [[np.full((4, 4), 10.0), np.full((4, 4), 20.0)], [np.full((4, 4), 30.0), np.full((4, 4), 40.0)]]
    )
    assert painted.dtype == np.float64 and np.array_equal(painted, expected)
    with pytest.raises(ValueError, match="segments holds ids 0..3 but values has 3 entries"):
        paint_nodes(_quadrants(), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="integer superpixel ids"):
        paint_nodes(_quadrants().astype(float), [1.0, 2.0, 3.0, 4.0])


def test_plot_node_importance(tmp_path):
    values = np.array([0.0, 0.0, 0.0, 1.0])
    fig = plot_node_importance(_image(), _graph().segments, values, path=tmp_path / "imp.png")
    assert _is_png(tmp_path / "imp.png")
    heat = np.asarray(fig.axes[0].images[1].get_array())
    assert np.array_equal(heat, paint_nodes(_quadrants(), values))
    _, ax = plt.subplots()
    assert plot_node_importance(_image(), _quadrants(), values, ax=ax) is ax.figure
