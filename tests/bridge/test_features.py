import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bridge.features import (
    CNNNodeFeatures,
    centroids,
    feature_names,
    node_features,
    pool_feature_maps,
    weights_fingerprint,
)
from bridge.segmentation import relabel

# Per-channel normalisation that differs between channels, so a swapped channel shows.
CFG = {"mean": (0.5, 0.25, 0.0), "std": (0.5, 0.5, 2.0)}


@pytest.fixture
def make_backbone(fake_backbone):
    """Fresh fake backbones with three stages: the input, a 2x2 average and a 1x1 conv at stride 4."""
    return functools.partial(fake_backbone, "pyramid", **CFG)


def quadrants(h=32, w=32):
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, w // 2 :] = (255, 0, 0)
    img[h // 2 :, : w // 2] = (0, 255, 0)
    img[h // 2 :, w // 2 :] = (0, 0, 255)
    labels = np.zeros((h, w), np.int64)
    labels[: h // 2, w // 2 :] = 1
    labels[h // 2 :, : w // 2] = 2
    labels[h // 2 :, w // 2 :] = 3
    return img, labels


def test_statistics_known_by_construction():
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, 3:] = (255, 0, 51)
    img[0, 0] = (255, 255, 255)  # one bright pixel in region 0
    labels = np.array([[0, 0, 0, 1, 1, 1]] * 4)
    x, names = node_features(img, labels)
    assert names == feature_names(("color_mean", "color_std", "centroid", "area"))
    assert x.shape == (2, 3 + 3 + 2 + 1) and x.dtype == torch.float32
    mean0 = 1 / 12
    np.testing.assert_allclose(x[0, :3], [mean0] * 3, atol=1e-6)
    np.testing.assert_allclose(x[1, :3], [1.0, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(x[0, 3:6], [np.sqrt(mean0 - mean0**2)] * 3, atol=1e-6)
    np.testing.assert_allclose(x[1, 3:6], [0.0] * 3, atol=1e-6)
    # centroid (x, y): columns 0..2 -> 1 / 5, rows 0..3 -> 1.5 / 3; columns 3..5 -> 4 / 5
    np.testing.assert_allclose(x[:, 6:8], [[0.2, 0.5], [0.8, 0.5]], atol=1e-6)
    np.testing.assert_allclose(x[:, 8], [0.5, 0.5])


def test_feature_order_and_names_follow_the_request():
    img, labels = quadrants(8, 8)
    x, names = node_features(img, labels, features=("area", "centroid"))
    assert names == ["area", "centroid_x", "centroid_y"]
    np.testing.assert_allclose(x[:, 0], [0.25] * 4)
    assert x[3, 1:].tolist() == pytest.approx([5.5 / 7, 5.5 / 7])


def test_grayscale_and_std_against_numpy():
    rng = np.random.default_rng(0)
    img = rng.random((20, 24))
    labels = relabel(np.kron(rng.integers(0, 4, (4, 4)), np.ones((5, 6), np.int64)))
    x, names = node_features(img, labels, features=("color_mean", "color_std"))
    assert names == ["color_mean_gray", "color_std_gray"]
    for i in range(labels.max() + 1):
        assert x[i, 0].item() == pytest.approx(img[labels == i].mean(), abs=1e-5)
        assert x[i, 1].item() == pytest.approx(img[labels == i].std(), abs=1e-5)


def test_centroids_are_normalised_xy():
    labels = np.zeros((5, 9), np.int64)
    labels[4, 8] = 1  # bottom-right pixel
    pos = centroids(labels)
    assert pos.shape == (2, 2)
    assert pos[1].tolist() == [1.0, 1.0]
    assert ((pos >= 0) & (pos <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"features": ("color_mean", "texture")},
            r"unknown node feature\(s\) \['texture'\]; known: color_mean",
        ),
        ({"features": ()}, "features is empty"),
        ({"labels": np.zeros((8, 7), np.int64)}, r"labels has shape \(8, 7\) but image is \(8, 8\)"),
        ({"labels": np.full((8, 8), 1)}, "holes in its ids"),
        ({"image": np.zeros((8, 8, 2), np.uint8)}, r"shape \(8, 8, 2\)"),
    ],
)
def test_node_feature_errors(kwargs, match):
    args = {"image": np.zeros((8, 8, 3), np.uint8), "labels": np.zeros((8, 8), np.int64), **kwargs}
    with pytest.raises(ValueError, match=match):
        node_features(args.pop("image"), args.pop("labels"), **args)


def nearest_cell_reference(fmap: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Oracle: give every pixel the value of the map cell it falls in, then average per label."""
    c, h, w = fmap.shape
    H, W = labels.shape
    ry = (torch.arange(H) * h) // H
    rx = (torch.arange(W) * w) // W
    per_pixel = fmap[:, ry][:, :, rx]
    return torch.stack([per_pixel[:, labels == i].mean(1) for i in range(int(labels.max()) + 1)])


def test_pool_feature_maps_matches_reference_for_mixed_sizes():
    gen = torch.Generator().manual_seed(0)
    labels = [
        torch.from_numpy(relabel(torch.randint(0, 4, (4, 5), generator=gen).repeat_interleave(5, 0).numpy())),
        torch.from_numpy(relabel(torch.randint(0, 3, (6, 3), generator=gen).repeat_interleave(3, 1).numpy())),
    ]
    maps = [
        torch.randn(2, 4, 7, 9, generator=gen),
        torch.randn(2, 2, 20, 30, generator=gen),
        torch.randn(2, 3, 1, 1),
    ]
    out = pool_feature_maps(maps, labels)
    assert len(out) == 2
    for b in range(2):
        ref = torch.cat([nearest_cell_reference(m[b], labels[b]) for m in maps], dim=1)
        assert out[b].shape == (int(labels[b].max()) + 1, 9)
        torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=1e-5)


def test_pool_small_node_gets_its_cell_and_batch_tensor_input():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 5, 6] = 1  # a one-pixel node inside cell (1, 1) of a 2x2 map
    fmap = torch.arange(8.0).view(2, 1, 2, 2)
    out = pool_feature_maps([fmap], labels)
    assert out[0][1].item() == 3.0 and out[1][1].item() == 7.0
    # node 0 covers 63 pixels: 16 in each cell except 15 in cell (1, 1)
    assert out[0][0].item() == pytest.approx((0 * 16 + 1 * 16 + 2 * 16 + 3 * 15) / 63)


@pytest.mark.parametrize("dense", [True, False])
def test_pool_nested_grids_match_reference(dense, monkeypatch):
    import bridge.features as bf

    if not dense:  # the general path (gathers of (node, cell) pairs) instead of the batched products
        monkeypatch.setattr(bf, "_DENSE_MAX", 0)
    gen = torch.Generator().manual_seed(2)
    labels = [
        torch.from_numpy(relabel(torch.randint(0, 5, (13, 11), generator=gen).numpy())) for _ in range(2)
    ]
    maps = [torch.randn(2, 2, 8, 6, generator=gen), torch.randn(2, 3, 4, 3, generator=gen)]
    maps += [torch.randn(2, 1, 2, 3, generator=gen), torch.randn(2, 2, 16, 12, generator=gen)]
    out = pool_feature_maps(maps, labels)
    for b in range(2):
        ref = torch.cat([nearest_cell_reference(m[b], labels[b]) for m in maps], dim=1)
        torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=1e-5)


def test_pool_keeps_exact_products_under_a_lower_matmul_precision():
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (3, 16, 16), generator=gen)
    labels[:, 0, :6] = torch.arange(6)
    maps = [torch.randn(3, 5, 8, 8, generator=gen) * 100, torch.randn(3, 4, 4, 4, generator=gen) * 100]
    ref = pool_feature_maps(maps, labels)
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # bfloat16 products where the CPU has them
        low = pool_feature_maps(maps, labels)
    finally:
        torch.set_float32_matmul_precision(old)
    for a, b in zip(ref, low):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)


def test_pool_without_merging_gives_the_same_result(monkeypatch):
    import bridge.features as bf

    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (5, 12, 12), generator=gen)
    labels[:, 0, :3] = torch.tensor([0, 1, 2])
    maps = [torch.randn(5, 3, 6, 6, generator=gen)]
    monkeypatch.setattr(bf, "_DENSE_MAX", 0)  # the general path, which merges duplicate pairs
    full = pool_feature_maps(maps, labels)
    monkeypatch.setattr(bf, "_MERGE_MAX", 1)
    chunked = pool_feature_maps(maps, labels)
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b)


def test_pool_errors():
    with pytest.raises(ValueError, match="maps is empty"):
        pool_feature_maps([], torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="got 2 label maps for a batch of 1"):
        pool_feature_maps([torch.zeros(1, 1, 2, 2)], torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="different batch sizes"):
        pool_feature_maps(
            [torch.zeros(1, 1, 2, 2), torch.zeros(2, 1, 2, 2)], torch.zeros(1, 2, 2, dtype=torch.long)
        )


def test_cnn_features_known_by_construction(make_backbone):
    img, labels = quadrants()
    cnn = CNNNodeFeatures(make_backbone(), stages=[0, 1])
    (x,) = cnn([img], [labels])
    assert x.shape == (4, 6) and cnn.out_channels == 6
    colours = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    expected = (colours - torch.tensor(CFG["mean"])) / torch.tensor(CFG["std"])
    torch.testing.assert_close(x[:, :3], expected)  # full-resolution stage = normalised mean colour
    torch.testing.assert_close(x[:, 3:], expected)  # quadrant borders fall on 2x2 cell borders
    assert cnn.names()[:2] == ["cnn0_0", "cnn0_1"]


def test_cnn_features_resize_keeps_labels_aligned(make_backbone):
    img, labels = quadrants(48, 40)  # resized to 32x32 for the network
    (x,) = CNNNodeFeatures(make_backbone(), stages=[1])([img], [labels])
    colours = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    expected = (colours - torch.tensor(CFG["mean"])) / torch.tensor(CFG["std"])
    torch.testing.assert_close(x, expected, atol=0.15, rtol=0)  # only border cells blur


def test_cnn_features_batches_and_mode(make_backbone):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16 + 4 * i, 20, 3), dtype=np.uint8) for i in range(5)]
    labels = [np.kron(np.arange(4).reshape(2, 2), np.ones((8 + 2 * i, 10), np.int64)) for i in range(5)]
    backbone = make_backbone().train()
    one = CNNNodeFeatures(backbone, batch_size=2)(images, labels)
    many = CNNNodeFeatures(backbone, batch_size=32)(images, labels)
    assert backbone.training  # mode restored
    assert [t.shape for t in one] == [(4, 8)] * 5
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("path", ["call", "pool_batch"])
def test_cnn_features_restore_every_submodule_mode(make_backbone, path):
    img, labels = quadrants()
    backbone = make_backbone()
    cnn = CNNNodeFeatures(backbone, stages=[2])
    seen = []
    features = backbone.features

    def recording(x):
        seen.append({m.training for m in backbone.modules()})
        return features(x)

    backbone.features = recording

    def run():
        if path == "call":
            cnn([img], [labels])
        else:
            x = torch.from_numpy(img).float().div(255)[None]
            cnn.pool_batch(x, torch.from_numpy(labels)[None], torch.tensor([4]))

    backbone.train()
    backbone.conv.eval()  # e.g. a frozen BatchNorm inside a model in training
    run()
    assert backbone.training and not backbone.conv.training
    backbone.eval()
    backbone.conv.train()  # a submodule in train mode under a model in eval
    run()
    assert not backbone.training and backbone.conv.training
    assert seen == [{False}, {False}]  # the features ran in eval mode both times


def test_cnn_features_follow_the_backbones_dtype_and_device(make_backbone):
    img, labels = quadrants()
    backbone = make_backbone()
    cnn = CNNNodeFeatures(backbone)
    (expected,) = cnn([img], [labels])
    backbone.to(torch.bfloat16)  # after building: the input is cast to the backbone's dtype at call time
    inputs = []
    features = backbone.features
    backbone.features = lambda x: inputs.append(x.dtype) or features(x)
    assert cnn.dtype == torch.bfloat16 and cnn.device == torch.device("cpu")
    (x,) = cnn([img], [labels])
    assert inputs == [torch.bfloat16] and x.dtype == torch.float32  # pooled features stay float32
    torch.testing.assert_close(x, expected, atol=0.05, rtol=0.02)
    imgs = torch.from_numpy(img).float().div(255)[None]
    pooled = cnn.pool_batch(imgs, torch.from_numpy(labels)[None], torch.tensor([4]))
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, expected, atol=0.05, rtol=0.02)
    backbone.to("meta")  # the device is read from the parameters at call time too
    assert cnn.device == torch.device("meta")
    assert CNNNodeFeatures(backbone, device="cpu").device == torch.device("cpu")  # a given device is kept


def test_cnn_features_negative_stages_and_repr(make_backbone):
    cnn = CNNNodeFeatures(make_backbone(), stages=[-1], batch_size=4)
    assert cnn.stages == [2] and cnn.stage_channels == [2]
    assert (
        repr(cnn) == "CNNNodeFeatures(backbone='fake', stages=[2], batch_size=4, device='cpu', input_size=32)"
    )
    cfg = cnn.config()
    assert cfg["backbone"] == "fake" and cfg["stages"] == [2] and len(cfg["weights"]) == 64


def test_default_stages_are_the_last_three(make_backbone):
    backbone = make_backbone()
    backbone.feature_channels = [3, 3, 2, 2, 2]
    backbone.features = lambda x: [x, F.avg_pool2d(x, 2), *(F.avg_pool2d(x, k)[:, :2] for k in (4, 8, 16))]
    assert CNNNodeFeatures(backbone).stages == [2, 3, 4]
    assert CNNNodeFeatures(backbone, stages=None).out_channels == 12
    assert CNNNodeFeatures(make_backbone()).stages == [0, 1, 2]  # the last three = all three


def test_cnn_feature_errors(make_backbone):
    with pytest.raises(ValueError, match=r"stages \[3\] out of range for backbone with 3 stages"):
        CNNNodeFeatures(make_backbone(), stages=[3])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        CNNNodeFeatures(make_backbone(), batch_size=0)
    with pytest.raises(TypeError, match=r"lacks \['features', 'cfg'\]"):
        CNNNodeFeatures(nn.Linear(2, 2))
    cnn = CNNNodeFeatures(make_backbone())
    with pytest.raises(ValueError, match="got 1 images but 2 label maps"):
        cnn([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 4), int)] * 2)
    with pytest.raises(ValueError, match=r"labels\[0\] has shape \(4, 5\) but images\[0\] is \(4, 4\)"):
        cnn([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 5), int)])


def test_weights_fingerprint_tracks_values():
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    before = weights_fingerprint(a)
    assert weights_fingerprint(a) == before
    with torch.no_grad():
        a.weight[0, 0] += 1
    assert weights_fingerprint(a) != before


def test_real_backbone_smoke():
    backbones = pytest.importorskip("cnn.backbones")
    backbone = backbones.create_backbone("efficientnet_lite0", weights=None)
    img, labels = quadrants(40, 40)
    cnn = CNNNodeFeatures(backbone)
    (x,) = cnn([img], [labels])
    assert x.shape == (4, sum(backbone.feature_channels[-3:]))
    assert torch.isfinite(x).all()
