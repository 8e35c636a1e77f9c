"""Edge cases of the bridge's inputs and outputs (each test failed before its fix, 2026-12-06):

Precision API, copies of datasets of mixed sizes, mixed grayscale / RGB items, grid strips, k-NN errors
naming their image, NumPy views with negative strides, ``undirected`` index checks and device, default
CNN stages of a shallow backbone, the channel-first hint for one image, NumPy scalars as options.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bridge.checks import check_compactness, check_sigma
from bridge.convert import ImageToGraph
from bridge.dataset import GraphDataset
from bridge.edges import knn_edges, undirected
from bridge.features import CNNNodeFeatures, pool_feature_maps
from bridge.segmentation import superpixels, superpixels_batch
from bridge.slic import slic_batch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs CUDA"))]


def noise(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def quadrants(size: int = 32) -> np.ndarray:
    """Four flat colour quadrants: four superpixels for n_segments=4 (and about 10 asked)."""
    img = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    img[:h, h:] = (255, 0, 0)
    img[h:, :h] = (0, 255, 0)
    img[h:, h:] = (0, 0, 255)
    return img


def halves(h: int = 16, w: int = 16) -> np.ndarray:
    lab = np.zeros((h, w), np.int64)
    lab[:, w // 2 :] = 1
    return lab


# -- 1: torch's per-backend fp32_precision API ---------------------------------------------------------

NEW_API = hasattr(torch.backends, "fp32_precision")


@pytest.mark.skipif(not NEW_API, reason="torch without the per-backend fp32_precision API")
@pytest.mark.parametrize(
    ("where", "value"), [("cuda", "tf32"), ("generic", "tf32"), ("mkldnn", "bf16"), ("cuda", "ieee")]
)
def test_pooling_works_under_the_per_backend_precision_api(where, value, fake_backbone):
    torch.manual_seed(0)
    maps = [torch.randn(2, 5, 7, 9), torch.randn(2, 3, 3, 4)]
    labels = torch.from_numpy(np.stack([halves(), halves().T.copy()]))
    expected = pool_feature_maps(maps, labels)  # the default: legacy "highest", the dense path
    img = noise(16, 16, 3)
    conv = ImageToGraph(n_segments=4, method="grid", backbone=fake_backbone(), stages=None)
    graph_expected = conv(img)
    b = torch.backends
    saved = (b.fp32_precision, b.cuda.matmul.fp32_precision, b.mkldnn.matmul.fp32_precision)
    try:
        target = {"cuda": b.cuda.matmul, "generic": b, "mkldnn": b.mkldnn.matmul}[where]
        target.fp32_precision = value
        got = pool_feature_maps(maps, labels)  # raised RuntimeError from get_float32_matmul_precision
        graph = conv(img)
    finally:
        b.fp32_precision = saved[0]
        b.cuda.matmul.fp32_precision = saved[1]
        b.mkldnn.matmul.fp32_precision = saved[2]
    assert torch.get_float32_matmul_precision() == "highest"  # restored
    for g, e in zip(got, expected):  # the sparse path when products may round: exact all the same
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
    # the backbone's own convolutions may run in bfloat16 / TF32 there
    torch.testing.assert_close(graph.x, graph_expected.x, rtol=0.02, atol=0.02)


# -- 2: GraphDataset.copy with label maps of different sizes ------------------------------------------


def test_copy_keeps_label_maps_of_different_sizes(tmp_path):
    items = [(noise(32, 32, 3), 0), (noise(24, 40, 3, seed=1), 1), (noise(20, 20, 3, seed=2), 0)]
    ds = GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    full = ds.copy()  # collated the label maps of different sizes into one tensor: RuntimeError
    subset = ds.copy([2, 0])
    for copied, order in ((full, [0, 1, 2]), (subset, [2, 0])):
        assert len(copied) == len(order)
        for j, i in enumerate(order):
            assert copied[j].segments.shape == ds[i].segments.shape
            assert torch.equal(copied[j].segments, ds[i].segments)
            assert torch.equal(copied[j].x, ds[i].x) and torch.equal(copied[j].edge_index, ds[i].edge_index)
    assert torch.equal(ds[[1]].copy()[0].segments, ds[1].segments)


# -- 3: grayscale and RGB items in one dataset ---------------------------------------------------------


def test_mixed_grayscale_and_rgb_items_are_refused_naming_the_item(tmp_path):
    rgb, gray = noise(16, 16, 3), noise(16, 16)
    items = [(rgb, 0), (rgb, 1), (gray, 0)]
    with pytest.raises(
        ValueError, match=r"item 2 is grayscale \(shape \(16, 16\)\) but item 0 is RGB: .* 4 and 8 columns"
    ) as err:
        GraphDataset(items, ImageToGraph(n_segments=4), root=tmp_path, workers=0, progress=False)
    assert "convert the grayscale images to RGB" in str(err.value)
    # features whose width does not depend on the channels: a mix is fine
    conv = ImageToGraph(n_segments=4, features=("centroid", "area"))
    ds = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    assert [ds[i].x.shape[1] for i in range(3)] == [3, 3, 3]


# -- 4: grid patches of elongated images ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "n"), [((1, 2000), 10), ((2, 1000), 100), ((4, 400), 16), ((8, 400), 10), ((400, 8), 10)]
)
def test_grid_gives_the_segments_asked_for_on_strips(shape, n):
    labels = superpixels(np.zeros(shape, np.uint8), n_segments=n, method="grid")
    assert int(labels.max()) + 1 == n  # was 141, 224, 40, 22, 22
    assert (np.bincount(labels.ravel()) > 0).all()
    line = labels[0] if shape[0] <= shape[1] else labels[:, 0]
    assert (np.diff(line) >= 0).all() and (
        labels == (labels[:1] if shape[0] <= shape[1] else labels[:, :1])
    ).all()


def _old_grid(height: int, width: int, n: int) -> np.ndarray:
    side = math.sqrt(height * width / n)
    rows = min(height, max(1, round(height / side)))
    cols = min(width, max(1, round(width / side)))
    r = (np.arange(height) * rows) // height
    c = (np.arange(width) * cols) // width
    return r[:, None] * cols + c[None, :]


def test_grid_of_images_that_are_not_strips_is_unchanged():
    for h, w in [(224, 224), (30, 20), (3, 2), (64, 48), (17, 95), (100, 7)]:
        for n in (1, 2, 5, 16, 75, 196):
            if n > h * w or min(h, w) < math.sqrt(h * w / n):
                continue
            got = superpixels(np.zeros((h, w), np.uint8), n_segments=n, method="grid")
            np.testing.assert_array_equal(got, _old_grid(h, w, n))


# -- 5: k-NN errors name the image ---------------------------------------------------------------------


@pytest.mark.parametrize("edges", ["knn", "knn_feature"])
@pytest.mark.parametrize("path", ["batch", "batch_tensor"])
def test_knn_errors_name_the_image(edges, path):
    imgs = [quadrants(), quadrants()[::-1].copy(), np.full((32, 32, 3), 9, np.uint8), quadrants()]
    conv = ImageToGraph(n_segments=4, edges=edges, k=3)
    run = conv.batch if path == "batch" else lambda x: conv.batch_tensor(torch.from_numpy(np.stack(x)))
    with pytest.raises(ValueError, match=r"^images\[2\]: k=3 but the image gave only 1 nodes"):
        run(imgs)


def test_knn_feature_error_names_the_dataset_item(tmp_path):
    items = [(quadrants(), 0), (np.full((32, 32, 3), 9, np.uint8), 1)]
    conv = ImageToGraph(n_segments=4, edges="knn_feature", k=3)
    with pytest.raises(ValueError, match=r"^item 1: k=3 but the image gave only 1 nodes"):
        GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)


# -- 6: NumPy views with negative strides --------------------------------------------------------------


def test_views_with_negative_strides_are_accepted():
    rng = np.random.default_rng(0)
    imgs = rng.random((2, 16, 16, 3)).astype(np.float32)
    flipped = imgs[:, :, ::-1]
    np.testing.assert_array_equal(
        slic_batch(flipped, n_segments=6), slic_batch(np.ascontiguousarray(flipped), n_segments=6)
    )
    pts = rng.random((10, 2)).astype(np.float32)
    a, b = knn_edges(pts[::-1], 2), knn_edges(pts[::-1].copy(), 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    lab = np.fliplr(np.repeat([[0, 0, 0, 1]], 4, axis=0))  # [[1, 0, 0, 0]] * 4
    fmap = torch.arange(4.0).view(1, 1, 2, 2)
    assert torch.equal(pool_feature_maps([fmap], [lab])[0], pool_feature_maps([fmap], [lab.copy()])[0])
    assert pool_feature_maps([fmap], [lab])[0][1].item() == 1.0  # column 0: cells 0 and 2
    seg = np.stack([halves(), halves()])[:, :, ::-1]
    conv = ImageToGraph(n_segments=2)
    t = torch.from_numpy((imgs * 255).astype(np.uint8))
    want = conv.batch_tensor(t, segments=seg.copy())
    for given in (seg, [torch.from_numpy(seg[0].copy()), seg[1]]):
        got = conv.batch_tensor(t, segments=given)
        assert all(torch.equal(g.segments, w.segments) and torch.equal(g.x, w.x) for g, w in zip(got, want))


# -- 7 / 8: undirected and knn_edges: indices checked, results on the input's device -------------------


@pytest.mark.parametrize(
    ("edge_index", "n", "message"),
    [
        ([[0, 1], [1, 2]], 2, r"edge_index holds node index 2 \(edge 1\) but the graph has 2 nodes"),
        ([[0, 1], [5, 0]], 3, r"node index 5 \(edge 0\)"),
        ([[0], [-1]], 3, r"node index -1 \(edge 0\)"),
    ],
)
def test_undirected_refuses_indices_outside_the_nodes(edge_index, n, message):
    with pytest.raises(ValueError, match=message):
        undirected(torch.tensor(edge_index), n)


def test_undirected_refuses_bad_edge_index():
    with pytest.raises(ValueError, match=r"edge_index has shape \(3, 2\); expected a \(2, E\) tensor"):
        undirected(torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="edge_index has dtype torch.float32; expected integer"):
        undirected(torch.zeros(2, 2), 3)


@pytest.mark.parametrize("device", DEVICES)
def test_undirected_and_knn_edges_answer_on_the_input_device(device):
    ei = undirected(torch.tensor([[0, 1, 1], [1, 2, 1]], device=device), 3)
    assert ei.device.type == device and ei.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    pts = torch.tensor([[0.0], [1.0], [3.0]], device=device)
    for symmetric in (True, False):
        edge_index, dist = knn_edges(pts, 1, symmetric=symmetric)
        assert edge_index.device.type == device and dist.device.type == device
    assert knn_edges(pts, 1)[0].cpu().tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]


# -- 9: default stages of a shallow backbone without feature_channels ----------------------------------


def test_default_stages_take_every_stage_of_a_shallow_backbone_without_channels(fake_backbone):
    backbone = fake_backbone("pair")  # two stages
    del backbone.feature_channels  # optional in the backbone contract
    img, lab = noise(16, 16, 3), halves()
    got = CNNNodeFeatures(backbone)([img], [lab])[0]  # stages [-3, -2, -1] of 2 maps: ValueError
    assert got.shape == (2, 3 + 4)
    torch.testing.assert_close(got, CNNNodeFeatures(backbone, stages=None)([img], [lab])[0])
    with pytest.raises(ValueError, match=r"stages \[-3\] out of range: backbone.features returned 2 maps"):
        CNNNodeFeatures(backbone, stages=[-3, -1])([img], [lab])  # asked for explicitly: still an error


# -- 10: the channel-first hint for one image ----------------------------------------------------------


def test_channel_first_hint_for_one_tensor_image_works():
    chw = torch.rand(3, 32, 48)
    hint = (
        r"image has shape \(3, 32, 48\), which looks channel-first \(C, H, W\); .* image\.permute\(1, 2, 0\)"
    )
    with pytest.raises(ValueError, match=hint):
        ImageToGraph(n_segments=4)(chw)
    with pytest.raises(ValueError, match=hint):
        superpixels(chw, n_segments=4)
    with pytest.raises(ValueError, match=r"images\[0\]: " + hint):
        superpixels_batch([chw], n_segments=4)
    assert superpixels(chw.permute(1, 2, 0), n_segments=4).shape == (32, 48)  # the hint works
    with pytest.raises(
        ValueError, match=r"images has shape \(1, 3, 32, 48\).* images\.permute\(0, 2, 3, 1\)"
    ):
        ImageToGraph(n_segments=4).batch_tensor(chw[None])  # a batch keeps the batch hint


# -- 11: NumPy scalars as options ----------------------------------------------------------------------


def test_numpy_scalars_are_accepted_as_options():
    img = noise(16, 16, 3)
    expected = superpixels(img, n_segments=4, compactness=5, sigma=0.5)
    for compactness, sigma in ((np.int64(5), np.float32(0.5)), (np.float32(5), np.float64(0.5))):
        np.testing.assert_array_equal(
            superpixels(img, n_segments=4, compactness=compactness, sigma=sigma), expected
        )
    conv = ImageToGraph(batch_size=np.int64(16), compactness=np.float32(10))
    assert conv.batch_size == 16 and type(conv.batch_size) is int and conv.compactness == 10.0
    assert check_compactness(np.float32(2.5)) == 2.5 and check_sigma(np.int32(0)) == 0.0
    from bridge.checks import check_positive_int  # new with the fix: imported here, not at collection

    assert check_positive_int(np.uint8(3), "batch_size") == 3
    imgs = img[None].astype(np.float32) / 255
    np.testing.assert_array_equal(
        slic_batch(imgs, n_segments=4, cell_px=np.int64(4), max_iter=np.int32(5)),
        slic_batch(imgs, n_segments=4, cell_px=4, max_iter=5),
    )


@pytest.mark.parametrize("value", [True, np.bool_(True), "5", None, float("nan")])
def test_bools_and_non_numbers_are_still_refused(value):
    with pytest.raises(ValueError, match="compactness must be a positive finite number"):
        check_compactness(value)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        check_sigma(value)
    if not isinstance(value, float):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            ImageToGraph(batch_size=value)
