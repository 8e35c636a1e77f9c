import io
import json
import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch_geometric.data import Data

from bridge.convert import ImageToGraph, prepare_many, to_dense
from bridge.segmentation import register_segmentation, unregister_segmentation


def quadrants(h=32, w=32):
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, w // 2 :] = (255, 0, 0)
    img[h // 2 :, : w // 2] = (0, 255, 0)
    img[h // 2 :, w // 2 :] = (0, 0, 255)
    return img


def smooth_image(h=48, w=48, seed=0):
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((h, w, 3)), sigma=(3, 3, 0))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def test_four_quadrants_graph_and_dense_matrices():
    data = ImageToGraph(n_segments=4)(quadrants(), label=2)
    assert isinstance(data, Data)
    assert data.num_nodes == 4
    pairs = {(a, b) for a, b in zip(*data.edge_index.tolist()) if a < b}
    seg = data.segments[0]
    tl, tr, bl, br = (int(seg[0, 0]), int(seg[0, -1]), int(seg[-1, 0]), int(seg[-1, -1]))
    expected = {tuple(sorted(p)) for p in [(tl, tr), (tl, bl), (tr, br), (bl, br)]}
    assert pairs == expected  # exactly the 4 shared borders, no diagonals
    assert data.edge_index.shape == (2, 8) and data.is_undirected() and not data.has_self_loops()
    # edge_attr = [16-pixel border / sqrt(32 * 32), centroid distance of neighbouring quadrants]
    torch.testing.assert_close(data.edge_attr, torch.tensor([[0.5, 16 / 31]] * 8))
    assert data.x.shape == (4, 3 + 3 + 2) and data.pos.shape == (4, 2)
    assert data.y.tolist() == [2] and data.y.dtype == torch.long
    assert data.segments.shape == (1, 32, 32) and data.segments.dtype == torch.long
    A, X = to_dense(data)
    assert A.shape == (4, 4) and X.shape == (4, 8)
    assert torch.equal(A, A.T) and A.sum() == 8 and A.diagonal().sum() == 0
    assert A[tl, br] == 0 and A[tr, bl] == 0


def test_repr_and_config():
    conv = ImageToGraph(n_segments=30, edges="knn", k=4, features=("color_mean",))
    assert repr(conv) == (
        "ImageToGraph(n_segments=30, compactness=10.0, method='slic_torch', sigma=0.0, edges='knn', k=4, "
        "features=('color_mean',), backbone=None, stages=None, batch_size=32, keep_segments=True)"
    )
    cfg = conv.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["n_segments"] == 30 and cfg["edges"] == "knn" and cfg["cnn"] is None
    assert ImageToGraph(n_segments=31, edges="knn", k=4, features=("color_mean",)).config() != cfg


def test_input_is_not_modified():
    img = smooth_image()
    before = img.copy()
    ImageToGraph(n_segments=20)(img)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("edges", ["region", "knn", "knn_feature"])
def test_edge_kinds(edges):
    data = ImageToGraph(n_segments=40, edges=edges, k=3)(smooth_image())
    n = data.num_nodes
    assert n > 4
    assert data.is_undirected() and not data.has_self_loops()
    assert data.edge_attr.shape == (data.num_edges, 2)
    assert (data.edge_attr >= 0).all()
    if edges != "region":
        assert (torch.bincount(data.edge_index[0], minlength=n) >= 3).all()


def test_knn_border_column_marks_touching_regions():
    img = quadrants()
    region = ImageToGraph(n_segments=4)(img)
    knn = ImageToGraph(n_segments=4, edges="knn", k=3)(img)  # complete graph on 4 nodes
    assert knn.num_edges == 12
    touching = knn.edge_attr[:, 0] > 0
    assert touching.sum() == 8  # the diagonal pairs do not share a border
    assert {tuple(e) for e in knn.edge_index[:, touching].T.tolist()} == {
        tuple(e) for e in region.edge_index.T.tolist()
    }


def test_grid_patch_graph():
    data = ImageToGraph(n_segments=16, method="grid")(np.zeros((32, 32, 3), np.uint8))
    assert data.num_nodes == 16
    assert data.num_edges == 2 * 24  # 4x4 lattice: 2 * 4 * 3 undirected edges


def test_cnn_node_features_are_appended_and_batched(fake_backbone):
    backbone = fake_backbone()
    conv = ImageToGraph(n_segments=20, backbone=backbone, batch_size=2)
    images = [smooth_image(seed=s) for s in range(3)]
    graphs = conv.batch(images, labels=[0, 1, 2])
    assert [g.y.item() for g in graphs] == [0, 1, 2]
    assert all(g.x.shape[1] == 8 + 7 for g in graphs)
    assert len(conv.feature_names()) == 15 and conv.feature_names()[8] == "cnn0_0"
    single = conv(images[1], label=1)
    torch.testing.assert_close(single.x, graphs[1].x)
    assert torch.equal(single.edge_index, graphs[1].edge_index)
    cfg = conv.config()["cnn"]
    assert cfg["backbone"] == "fake" and cfg["stages"] == [0, 1]  # default: last three, here both
    only_cnn = ImageToGraph(n_segments=20, features=(), backbone=backbone, stages=[1])(images[0])
    assert only_cnn.x.shape[1] == 4


def test_batch_tensor_graphs_are_views_and_a_clone_saves_alone():
    def saved_bytes(data):
        buf = io.BytesIO()
        torch.save(data, buf)
        return len(buf.getvalue())

    images = torch.from_numpy(np.stack([smooth_image(64, 64, seed=i) for i in range(8)]))
    graphs = ImageToGraph(n_segments=20).batch_tensor(images)
    view, alone = saved_bytes(graphs[0]), saved_bytes(graphs[0].clone())
    assert alone < view / 4  # the views carry all 8 graphs' storage (as documented in batch_tensor)
    assert "clone a graph (``graph.clone()``) before saving it alone" in " ".join(
        ImageToGraph.batch_tensor.__doc__.split()
    )


def test_config_changes_with_backbone_weights(fake_backbone):
    backbone = fake_backbone()
    conv = ImageToGraph(backbone=backbone)
    before = conv.config()
    with torch.no_grad():
        backbone.conv.bias.add_(1.0)
    assert conv.config() != before


def test_picklable(fake_backbone):
    conv = ImageToGraph(n_segments=4, edges="knn", k=2)
    clone = pickle.loads(pickle.dumps(conv))
    assert repr(clone) == repr(conv)
    img = quadrants()
    assert torch.equal(clone(img).x, conv(img).x)
    with_cnn = pickle.loads(pickle.dumps(ImageToGraph(backbone=fake_backbone())))
    assert with_cnn.config()["cnn"]["backbone"] == "fake"


def test_without_segments():
    data = ImageToGraph(n_segments=4, keep_segments=False)(quadrants())
    assert "segments" not in data


def test_to_dense_weighted_and_directed_input():
    data = Data(
        x=torch.ones(3, 1), edge_index=torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.tensor([[2.0], [3.0]])
    )
    A, X = to_dense(data, weighted=True)
    assert A.tolist() == [[0.0, 2.0, 0.0], [2.0, 0.0, 3.0], [0.0, 3.0, 0.0]]
    assert X is data.x
    with pytest.raises(ValueError, match="weighted=True needs data.edge_weight or data.edge_attr"):
        to_dense(Data(x=torch.ones(2, 1), edge_index=torch.tensor([[0], [1]])), weighted=True)
    with pytest.raises(ValueError, match="data needs x"):
        to_dense(Data(edge_index=torch.tensor([[0], [1]])))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"edges": "delaunay"}, "unknown edges 'delaunay'; expected one of 'region', 'knn', 'knn_feature'"),
        ({"method": "quickshift"}, "unknown method 'quickshift'"),
        ({"k": 0}, "k must be a positive int, got 0"),
        ({"features": ()}, "no node features"),
        ({"features": ("hue",)}, r"unknown node feature\(s\) \['hue'\]"),
        ({"stages": [0]}, "stages=.0. needs a backbone"),
        ({"n_segments": -1}, "n_segments must be a positive int"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageToGraph(**kwargs)


def test_bad_calls():
    conv = ImageToGraph(n_segments=4)
    with pytest.raises(ValueError, match=r"label must be an integer class id, got 1.5"):
        conv(quadrants(), label=1.5)
    with pytest.raises(ValueError, match="got 2 images but 1 labels"):
        conv.batch([quadrants(), quadrants()], labels=[0])
    with pytest.raises(ValueError, match=r"images\[1\]: image contains NaN"):
        conv.batch([quadrants(), np.full((8, 8), np.nan)])
    with pytest.raises(ValueError, match="channel-first"):
        conv(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"k=8 but the image gave only 4 nodes"):
        ImageToGraph(n_segments=4, edges="knn")(quadrants())
    with pytest.raises(ValueError, match=r"k=3 but the image gave only 1 nodes"):
        ImageToGraph(n_segments=4, edges="knn_feature", k=3)(np.zeros((8, 8, 3), np.uint8))


def columns(img, *, n_segments, compactness, sigma):
    """Test back-end: the left half is region 0, the right half region 1."""
    return np.broadcast_to(np.arange(img.shape[1]) >= img.shape[1] // 2, img.shape[:2]).astype(np.int64)


def test_registered_backend_is_used_by_image_to_graph():
    register_segmentation("test_columns", columns, version=7)
    try:
        conv = ImageToGraph(n_segments=9, method="test_columns", features=("color_mean",))
        assert "method='test_columns'" in repr(conv)
        assert conv.config()["test_columns"] == 7 and conv.config()["method"] == "test_columns"
        data = conv(quadrants(), label=0)
        assert data.num_nodes == 2 and data.edge_index.tolist() == [[0, 1], [1, 0]]
        # left half: black over green; right half: red over blue
        torch.testing.assert_close(data.x, torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5]]))
        assert [d.num_nodes for d in conv.batch([quadrants(), quadrants(16, 8)])] == [2, 2]
    finally:
        unregister_segmentation("test_columns")
    with pytest.raises(ValueError, match="unknown method 'test_columns'"):
        conv.config()


def test_backend_named_like_a_config_key_is_refused():
    register_segmentation("features", columns, version="1")
    try:
        with pytest.raises(ValueError, match="method='features' is also a key of ImageToGraph.config"):
            ImageToGraph(method="features")
    finally:
        unregister_segmentation("features")


def test_prepare_many_names_the_bad_item():
    params = ImageToGraph(n_segments=4).params()
    parts = prepare_many(params, [quadrants(), quadrants(16, 16)])
    assert [p["x"].shape[0] for p in parts] == [4, 4] and parts[0]["edge_index"].shape == (2, 8)
    with pytest.raises(ValueError, match=r"item 11: n_segments=4 is larger than the number of pixels"):
        prepare_many(params, [quadrants(), np.zeros((1, 3), np.uint8)], first=10, name="item {}")


# -- edge indices, finite values -------------------------------------------------------------------


def graph(edge_index, n=3, **extra):
    ei = edge_index if isinstance(edge_index, torch.Tensor) else torch.tensor(edge_index)
    return Data(x=torch.ones(n, 2), edge_index=ei, **extra)


_EMPTY = torch.zeros(2, 0, dtype=torch.long)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "fragment"),
    [
        (graph([[0, -1], [1, 2]]), {}, ValueError, r"node index -1 \(edge 1\) but the graph has 3 nodes"),
        (graph([[0, 1], [1, 5]]), {}, ValueError, r"node index 5 \(edge 1\) but the graph has 3 nodes"),
        (graph([[3], [0]]), {}, ValueError, r"node index 3 \(edge 0\) .* expected indices 0\.\.2"),
        (graph([[0, 1], [1, 2]], num_nodes=2), {}, ValueError, r"data.x has 3 rows but data.num_nodes is 2"),
        (
            graph([[0.0], [1.0]]),
            {},
            TypeError,
            r"must hold integer node indices \(torch.long\); got dtype torch.float32",
        ),
        (graph([0, 1]), {}, ValueError, r"edge_index has shape \(2,\); expected \(2, E\)"),
        (
            graph([[0, 1], [1, 2]], edge_weight=torch.tensor([1.0, float("nan")])),
            {"weighted": True},
            ValueError,
            r"edge weights .* contain NaN or inf",
        ),
        (
            graph([[0, 1], [1, 2]], edge_weight=torch.ones(3)),
            {"weighted": True},
            ValueError,
            r"edge weights have shape \(3,\); expected one per edge \(2,\)",
        ),
        (
            Data(x=torch.ones(3), edge_index=_EMPTY),
            {},
            ValueError,
            r"2-D .*\(3,\)",
        ),
    ],
    ids=[
        "negative",
        "too-large",
        "only-edge",
        "num-nodes",
        "float",
        "1-d",
        "nan-weight",
        "weights-shape",
        "1-d-x",
    ],
)
def test_to_dense_refuses_bad_graphs(data, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        to_dense(data, **kwargs)


def test_to_dense_checked_graph_is_unchanged_and_empty_graph_works():
    A, X = to_dense(graph([[0, 2], [2, 1]]))
    assert A.tolist() == [[0, 0, 1], [0, 0, 1], [1, 1, 0]] and X.shape == (3, 2)
    A, _ = to_dense(graph(_EMPTY, n=2))
    assert A.shape == (2, 2) and not A.any()


def test_non_finite_node_features_name_the_image(fake_backbone):
    backbone = fake_backbone()
    with torch.no_grad():
        backbone.conv.weight[1].fill_(float("nan"))  # stage-2 channel 1 goes NaN
    conv = ImageToGraph(n_segments=4, backbone=backbone)
    with pytest.raises(
        ValueError, match=r"^image: the node features contain NaN .* in 1 column\(s\) \("
    ) as info:
        conv(quadrants())
    assert "CNN backbone gives NaN" in str(info.value)
    with pytest.raises(ValueError, match=r"^images\[0\]: the node features contain NaN .* \(cnn1_1\)"):
        conv.batch([quadrants(), quadrants()])
    with pytest.raises(ValueError, match=r"^images\[0\]: the node features contain NaN .* \(cnn1_1\)"):
        conv.batch_tensor(torch.from_numpy(np.stack([quadrants(), quadrants()])))  # the tensor path
    with pytest.raises(ValueError, match=r"^images\[0\]: image contains NaN or infinite values"):
        ImageToGraph(n_segments=4).batch([np.full((8, 8), np.nan, np.float32), quadrants()])


def test_batch_with_given_segments_skips_segmentation_and_checks_them():
    conv = ImageToGraph(n_segments=4, method="grid", features=("color_mean",), edges="region")
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 200
    halves = np.zeros((8, 8), np.int64)
    halves[:, 4:] = 1
    (g,) = conv.batch([img], segments=[halves])
    assert g.num_nodes == 2 and torch.equal(g.segments[0], torch.from_numpy(halves))
    assert torch.allclose(g.x[:, 0], torch.tensor([0.0, 200 / 255]))
    with pytest.raises(ValueError, match="got 1 images but 2 segment maps"):
        conv.batch([img], segments=[halves, halves])
    with pytest.raises(ValueError, match=r"segments has shape \(8, 4\) but the image is \(8, 8\)"):
        conv.batch([img], segments=[halves[:, :4]])
    with pytest.raises(ValueError, match="segments"):
        conv.batch([img], segments=[halves * 2])  # ids with a hole
