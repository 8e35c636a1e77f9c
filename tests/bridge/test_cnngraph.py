"""End-to-end CNN -> GNN (bridge.cnngraph): graph of segment maps, differentiable pooling, the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.cnngraph import (
    CNNGraphClassifier,
    ImageSegmenter,
    SegmentedImages,
    fit,
    grid_segments,
    pool_into_regions,
    predict,
    region_graph,
)
from bridge.edges import region_adjacency
from bridge.features import pool_feature_maps
from cnn.backbones import create_backbone
from cnn.freezing import freeze


def _maps(seed: int = 0, b: int = 3, size: int = 24, n: int = 7) -> torch.Tensor:
    """Random label maps with ids 0..n-1 in blocks (every id present, some regions not convex)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n, (b, size // 4, size // 4), generator=g)
    coarse.view(b, -1)[:, :n] = torch.arange(n)
    return coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)


def test_region_graph_edges_match_region_adjacency_of_each_image():
    seg = _maps()
    node, graph, ei = region_graph(seg)
    start = 0
    for b in range(seg.shape[0]):
        ids = torch.unique(seg[b])
        n = int(ids.numel())
        assert graph.tolist().count(b) == n
        local = node[b] - start
        ref = region_adjacency(local.numpy())
        mine = ei[:, (ei[0] >= start) & (ei[0] < start + n)] - start
        assert sorted(map(tuple, mine.T.tolist())) == sorted(map(tuple, torch.as_tensor(ref).T.tolist()))
        start += n
    assert start == int(graph.numel())


def test_region_graph_renumbers_missing_ids_per_image():
    seg = torch.tensor([[[3, 3, 9], [3, 3, 9]], [[0, 0, 0], [0, 0, 0]]])
    node, graph, ei = region_graph(seg)
    assert node.tolist() == [[[0, 0, 1], [0, 0, 1]], [[2, 2, 2], [2, 2, 2]]]
    assert graph.tolist() == [0, 0, 1]
    assert ei.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize(
    "bad, err",
    [
        (torch.zeros(4, 4, dtype=torch.long), ValueError),
        (torch.zeros(1, 4, 4), TypeError),
        (-torch.ones(1, 2, 2, dtype=torch.long), ValueError),
    ],
)
def test_region_graph_rejects_bad_maps(bad, err):
    with pytest.raises(err):
        region_graph(bad)


def test_pooling_equals_the_area_weighted_reference_and_carries_gradients():
    seg = _maps(1)
    node, graph, _ = region_graph(seg)
    maps = [torch.randn(3, 5, 6, 6, requires_grad=True), torch.randn(3, 4, 3, 3, requires_grad=True)]
    mine = pool_into_regions(maps, node, graph)
    ref = torch.cat(
        pool_feature_maps(
            [m.detach() for m in maps], list(node - _starts(graph)[:, None, None][torch.arange(3)])
        ),
        0,
    )
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    mine.sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def _starts(graph: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(graph)
    return torch.cumsum(counts, 0) - counts


def test_full_resolution_map_is_the_plain_region_mean():
    seg = _maps(2, b=1)
    node, graph, _ = region_graph(seg)
    img = torch.rand(1, 3, 24, 24)
    pooled = pool_into_regions([img], node, graph)
    for i in range(int(graph.numel())):
        mask = node[0] == i
        torch.testing.assert_close(pooled[i], img[0][:, mask].mean(1))


def test_grid_segments_cells():
    g = grid_segments(2, 6, 6, 2, 3)
    assert g.shape == (2, 6, 6) and int(g.max()) == 5
    assert g[0, :3, :2].unique().tolist() == [0] and g[1, 3:, 4:].unique().tolist() == [5]


@pytest.fixture(scope="module")
def backbone_factory():
    def make(num_classes: int = 2):
        torch.manual_seed(0)
        return create_backbone("resnet18", weights=None, num_classes=num_classes)

    return make


def test_model_contains_the_cnn_when_the_graph_head_is_zero(backbone_factory):
    model = CNNGraphClassifier(backbone_factory(), 2, hidden=8, layers=1).eval()
    with torch.no_grad():
        last = model.gnn.head[-1]
        last.weight.zero_()
        last.bias.zero_()
    x = torch.randn(2, 3, 32, 32)
    seg = grid_segments(2, 32, 32, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model((x, seg)), model.backbone(x))


def test_gradients_reach_the_trainable_blocks_through_the_pooling(backbone_factory):
    model = CNNGraphClassifier(backbone_factory(), 2, hidden=8, layers=1, global_head=False)
    freeze(model.backbone, "fine_tuning", trainable_blocks=1)
    model.eval()  # batch statistics of 2 images would cancel a summed output's gradient in BatchNorm
    with torch.no_grad():  # timm starts each residual branch's last BatchNorm at 0, which blocks the branch
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    x = torch.randn(2, 3, 32, 32)
    model((x, _maps(3, b=2, size=32, n=5))).sum().backward()
    last = list(model.backbone.blocks()[-1].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in last)
    first = list(model.backbone.blocks()[0].parameters())
    assert all(p.grad is None for p in first)


def test_patch_nodes_are_the_cells_of_the_second_deepest_stage(backbone_factory):
    model = CNNGraphClassifier(backbone_factory(3), 3, graph="patches", hidden=8, layers=1, k=3).eval()
    seen = []
    model.norm.register_forward_hook(lambda _m, inp, _out: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        cells = model.backbone.features(torch.zeros(1, 3, 64, 64))[-2].shape[2:]
        model(torch.randn(2, 3, 64, 64))
    assert seen[0][0] == 2 * cells[0] * cells[1] and cells[0] * cells[1] > 4  # 4 x 4 cells at 64 px


def test_patch_graph_needs_no_segments_and_superpixels_do(backbone_factory):
    patches = CNNGraphClassifier(backbone_factory(3), 3, graph="patches", hidden=8, layers=2, k=3)
    assert patches(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"graph='patches' takes images alone"):  # would replace its nodes
        patches((torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long)))
    sp = CNNGraphClassifier(backbone_factory(), 2, hidden=8, layers=1)
    with pytest.raises(ValueError, match="segmenter"):
        sp(torch.randn(1, 3, 32, 32))
    sp.segmenter = ImageSegmenter((0.5,) * 3, (0.5,) * 3, n_segments=4, method="grid")
    assert sp(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        sp((torch.randn(1, 3, 32, 32), torch.zeros(1, 16, 16, dtype=torch.long)))
    with pytest.raises(ValueError, match="graph="):
        CNNGraphClassifier(backbone_factory(), 2, graph="pixels")


class _Cfg:
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    interpolation = "bilinear"


def test_augmentation_keeps_image_and_segment_map_aligned():
    # left half red, right half blue; the segment map says which half: after a random crop and flip,
    # every pixel's colour must still say its segment
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, :, :16, 0] = 255
    img[0, :, 16:, 2] = 255
    seg = np.zeros((1, 32, 32), np.int64)
    seg[0, :, 16:] = 1
    ds = SegmentedImages(img, seg, [0], _Cfg(), train=True)
    torch.manual_seed(0)
    flipped = 0
    for _ in range(20):
        x, s, _y = ds[0]
        # bilinear resampling blends the two colours in a band at the border: judge clear pixels only
        red, blue = (x[0] > 0.9) & (x[2] < 0.1), (x[2] > 0.9) & (x[0] < 0.1)
        assert bool((s[red] == 0).all()) and bool((s[blue] == 1).all())
        flipped += int(s[0, 0] == 1)
    assert 0 < flipped < 20  # both orientations happened


def test_augmentation_keeps_the_shape_of_non_square_images():
    img, seg = np.zeros((1, 24, 40, 3), np.uint8), np.zeros((1, 24, 40), np.int64)
    x, s, _ = SegmentedImages(img, seg, [0], _Cfg(), train=True)[0]
    assert tuple(x.shape) == (3, 24, 40) and tuple(s.shape) == (24, 40)  # as in eval


def test_segmented_images_rejects_mismatches():
    with pytest.raises(ValueError, match="one segment map"):
        SegmentedImages(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((1, 8, 8)), [0, 1], _Cfg(), train=False)
    with pytest.raises(ValueError, match="segment the images"):
        SegmentedImages(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 4, 4)), [0], _Cfg(), train=False)


def test_fit_and_predict_on_segmented_images(backbone_factory):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    seg = np.stack([np.asarray(grid_segments(1, 32, 32, 2, 2)[0])] * 8)
    y = np.arange(8) % 2
    model = CNNGraphClassifier(backbone_factory(), 2, hidden=8, layers=1)
    freeze(model.backbone, "fine_tuning", trainable_blocks=1)
    train = torch.utils.data.DataLoader(SegmentedImages(img, seg, y, _Cfg(), train=True), batch_size=4)
    val = torch.utils.data.DataLoader(SegmentedImages(img, seg, y, _Cfg(), train=False), batch_size=8)
    before = model.gnn.head[-1].weight.detach().clone()
    h = fit(model, train, val, epochs=2, progress=False, accelerator="cpu")
    assert len(h) == 2 and not torch.equal(before, model.gnn.head[-1].weight)
    preds, probs = predict(model, val)
    assert preds.shape == (8,) and torch.allclose(probs.sum(1), torch.ones(8))
    with pytest.raises(TypeError, match="segments, labels"):
        fit(model, [(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))], epochs=1, progress=False)


@pytest.mark.parametrize("method", ["slic_torch", "slic", "grid"])
def test_image_segmenter_matches_superpixels_of_the_uint8_images(method):
    from bridge.segmentation import superpixels_batch

    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (2, 24, 24, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = (
        torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)
    ) / torch.tensor(std).view(1, 3, 1, 1)
    seg = ImageSegmenter(mean, std, n_segments=9, method=method)(x)
    ref = np.stack(superpixels_batch(list(imgs), n_segments=9, method=method))
    assert seg.dtype == torch.long and np.array_equal(seg.numpy(), ref)


def test_image_segmenter_keeps_the_batch_on_its_device(monkeypatch):
    """slic_torch segments the batch where it is: no copy through NumPy or the host (arm E on a GPU)."""
    x = torch.full((2, 3, 32, 32), -1.0)
    x[:, :, :, 16:] = 1.0  # two halves
    ref = ImageSegmenter((0.5,) * 3, (0.25,) * 3, n_segments=9)(x)

    def forbidden(self, *args, **kwargs):
        raise AssertionError("the segmenter copied a tensor to the host")

    monkeypatch.setattr(torch.Tensor, "numpy", forbidden)
    monkeypatch.setattr(torch.Tensor, "cpu", forbidden)
    seg = ImageSegmenter((0.5,) * 3, (0.25,) * 3, n_segments=9)(x)
    monkeypatch.undo()
    assert torch.equal(seg, ref) and int(seg[0].max()) >= 1
