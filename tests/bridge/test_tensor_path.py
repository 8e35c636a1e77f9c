"""The torch tensor path of the bridge against the NumPy path, on the same inputs.

Every torch function (``bridge.edges.batch_*``, ``bridge.features.batch_hand_features``,
``pool_feature_maps`` on tensors, ``superpixels`` / ``superpixels_batch`` with tensors,
``ImageToGraph.batch_tensor``) is compared with its NumPy counterpart (or a brute-force oracle) on
small random inputs. The same tests run on CUDA when it is present (``DEVICES``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

import bridge.edges as be
from bridge.convert import ImageToGraph, _checked_segments
from bridge.edges import (
    batch_both_directions,
    batch_knn_edges,
    batch_touching_pairs,
    both_directions,
    knn_edges,
    label_runs,
    region_adjacency,
    repeat_runs,
    touching_pairs,
)
from bridge.features import FEATURES, batch_hand_features, hand_features, pool_feature_maps
from bridge.segmentation import as_float_batch, superpixels, superpixels_batch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs CUDA"))]
REPO = Path(__file__).resolve().parents[2]


def block_labels(rng: np.random.Generator, h: int, w: int, n_max: int) -> np.ndarray:
    """A random ``(h, w)`` label map of rectangular blocks with contiguous ids ``0 .. n-1``."""
    by, bx = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    coarse = rng.integers(0, n_max, size=(-(-h // by), -(-w // bx)))
    full = np.kron(coarse, np.ones((by, bx), np.int64))[:h, :w]
    return np.unique(full, return_inverse=True)[1].reshape(h, w).astype(np.int64)


def label_batch(seed: int, b: int = 4, h: int = 13, w: int = 17) -> list[np.ndarray]:
    """``b`` block label maps of different node counts, one of them a single node."""
    rng = np.random.default_rng(seed)
    maps = [block_labels(rng, h, w, n_max) for n_max in (2 + 7 * np.arange(b - 1))]
    return [*maps, np.zeros((h, w), np.int64)]


def smooth_image(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((h, w, 3)), sigma=(3, 3, 0))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def offsets_of(maps: list[np.ndarray]) -> list[int]:
    sizes = [int(m.max()) + 1 for m in maps]
    return [int(v) for v in np.cumsum([0, *sizes[:-1]])]


# -- edges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_touching_pairs_equals_touching_pairs_per_image(device, seed):
    maps = label_batch(seed)
    n = [int(m.max()) + 1 for m in maps]
    labels = torch.from_numpy(np.stack(maps)).to(device)
    lo, hi, counts = batch_touching_pairs(labels, torch.tensor(n, device=device))
    expected = [touching_pairs(m, k) for m, k in zip(maps, n)]
    offsets = offsets_of(maps)
    assert lo.device.type == device
    assert lo.tolist() == np.concatenate([e[0] + o for e, o in zip(expected, offsets)]).tolist()
    assert hi.tolist() == np.concatenate([e[1] + o for e, o in zip(expected, offsets)]).tolist()
    assert counts.tolist() == np.concatenate([e[2] for e in expected]).tolist()
    # n_max given (no read-back) or larger than needed: the same pairs
    again = batch_touching_pairs(labels, torch.tensor(n, device=device), n_max=max(n) + 3)
    assert all(torch.equal(a, b) for a, b in zip(again, (lo, hi, counts)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("fy", "fx"), [(1, 1), (2, 2), (3, 1), (1, 4), (2, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_runs_and_borders_of_a_blocky_map_from_its_small_map(device, fy, fx, seed):
    """``repeat_runs`` and ``batch_touching_pairs(blocks=...)`` on the small map equal ``label_runs`` and
    ``batch_touching_pairs`` of the map with every label repeated over a block (field for field)."""
    from bridge.slic import repeat_blocks

    maps = label_batch(seed, h=7, w=5)
    maps.append(np.arange(7)[:, None].repeat(5, 1))  # one id per row: runs of whole rows
    n = torch.tensor([int(m.max()) + 1 for m in maps], device=device)
    small = torch.from_numpy(np.stack(maps)).to(device)
    big = repeat_blocks(small, fy, fx)
    assert big.shape == (len(maps), 7 * fy, 5 * fx)
    want, got = label_runs(big), repeat_runs(label_runs(small), fy, fx)
    for name, a, b in zip(want._fields, want, got):
        assert b.device == a.device and b.dtype == a.dtype, name
        assert torch.equal(a, b), name
    pairs = batch_touching_pairs(small, n, runs=label_runs(small), blocks=(fy, fx))
    assert all(torch.equal(a, b) for a, b in zip(pairs, batch_touching_pairs(big, n)))
    one_row = torch.zeros(1, 1, 3, dtype=torch.int64, device=device)  # a single row, a single run
    lengths = repeat_runs(label_runs(one_row), fy, fx).length
    assert torch.equal(lengths, torch.full((fy,), 3 * fx, device=device))


def test_repeat_runs_and_blocks_refuse_a_block_under_one():
    runs = label_runs(torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"block size must be whole numbers >= 1, got fy=0, fx=2"):
        repeat_runs(runs, 0, 2)
    with pytest.raises(ValueError, match=r"blocks must be whole numbers >= 1, got \(1, 0\)"):
        batch_touching_pairs(torch.zeros(1, 2, 2, dtype=torch.int64), torch.tensor([1]), blocks=(1, 0))


def test_pair_counting_by_bincount_and_by_unique_agree():
    gen = torch.Generator().manual_seed(0)
    code = torch.randint(0, 500, (2000,), generator=gen)
    dense = be._codes_to_pairs(code, 500, True)
    sparse = be._codes_to_pairs(code, 500, False)
    assert all(torch.equal(a, b) for a, b in zip(dense, sparse))
    uniq, counts = np.unique(code.numpy(), return_counts=True)
    assert dense[0].tolist() == uniq.tolist() and dense[1].tolist() == counts.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_batch_both_directions_equals_both_directions(device):
    rng = np.random.default_rng(3)
    n = 30
    code = rng.choice(n * n, size=60, replace=False)
    lo, hi = np.minimum(code // n, code % n), np.maximum(code // n, code % n)
    keep = lo < hi
    code = np.unique(lo[keep] * n + hi[keep])
    src, dst = code // n, code % n
    w1 = rng.random(src.size).astype(np.float32)
    w2 = rng.random((src.size, 3)).astype(np.float32)
    ei, a1, a2 = both_directions(src, dst, n, w1, w2)
    t = [torch.from_numpy(a).to(device) for a in (src, dst, w1, w2)]
    ei_t, a1_t, a2_t = batch_both_directions(t[0], t[1], n, t[2], t[3])
    assert ei_t.device.type == device
    assert ei_t.tolist() == ei.tolist()
    assert a1_t.tolist() == a1.tolist() and a2_t.tolist() == a2.tolist()
    (empty,) = batch_both_directions(t[0][:0], t[1][:0], n)
    assert empty.shape == (2, 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dims", "k"), [(2, 1), (2, 3), (5, 4)])
def test_batch_knn_edges_equals_knn_edges_per_graph(device, dims, k):
    gen = torch.Generator().manual_seed(dims * 10 + k)
    sizes = [k + 1, 9, 23, 14]
    pts = [torch.rand(s, dims, generator=gen) for s in sizes]
    n_nodes = torch.tensor(sizes, device=device)
    ei = batch_knn_edges(torch.cat(pts).to(device), n_nodes, k)
    offsets = np.cumsum([0, *sizes[:-1]])
    expected = torch.cat([knn_edges(p, k)[0] + int(o) for p, o in zip(pts, offsets)], dim=1)
    assert ei.device.type == device
    assert ei.tolist() == expected.tolist()
    # symmetric: every edge also stored reversed; no self loops; never across graphs
    pairs = set(map(tuple, ei.T.tolist()))
    assert pairs == {(j, i) for i, j in pairs} and all(i != j for i, j in pairs)
    graph = np.repeat(np.arange(len(sizes)), sizes)
    assert (graph[ei[0].cpu().numpy()] == graph[ei[1].cpu().numpy()]).all()


def test_batch_knn_edges_needs_more_nodes_than_k():
    with pytest.raises(ValueError, match=r"k=3 but graph 1 has only 3 nodes; k must be at most N - 1 = 2"):
        batch_knn_edges(torch.rand(8, 2), torch.tensor([5, 3]), 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_region_adjacency_of_a_tensor_equals_that_of_the_array(device, dtype):
    for labels in label_batch(4, b=3):
        ei, border = region_adjacency(labels, return_attr=True)
        ei_t, border_t = region_adjacency(torch.from_numpy(labels).to(device, dtype), return_attr=True)
        assert ei_t.device.type == device and border_t.device.type == device
        assert ei_t.dtype == torch.int64 and border_t.dtype == torch.float32
        assert torch.equal(ei_t.cpu(), ei) and torch.equal(border_t.cpu(), border)
        assert torch.equal(region_adjacency(torch.from_numpy(labels).to(device)).cpu(), ei)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([[0, -1]]), "labels contains negative ids"),
        (torch.tensor([[0, 2]]), "labels has holes in its ids"),
        (torch.tensor([[0.0, 1.0]]), "labels has dtype torch.float32; expected an integer label map"),
        (torch.zeros(2, 2, 2, dtype=torch.long), r"labels has shape \(2, 2, 2\); expected a 2-D label map"),
        (torch.zeros(0, 3, dtype=torch.long), "labels is empty"),
    ],
)
def test_region_adjacency_of_a_bad_tensor_gives_the_array_error(labels, match):
    with pytest.raises(ValueError, match=match):
        region_adjacency(labels)
    if labels.dtype != torch.float32:  # the same message for the array
        with pytest.raises(ValueError, match=match):
            region_adjacency(labels.numpy())


# -- region statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [3, 1])
def test_batch_hand_features_equals_hand_features(device, channels):
    maps = label_batch(5)
    rng = np.random.default_rng(6)
    imgs = rng.random((len(maps), 13, 17, channels)).astype(np.float32)
    n = [int(m.max()) + 1 for m in maps]
    for features in (FEATURES, FEATURES[::-1], ("area",), ("centroid", "color_std")):
        x, pos = batch_hand_features(
            torch.from_numpy(imgs).to(device),
            torch.from_numpy(np.stack(maps)).to(device),
            torch.tensor(n, device=device),
            features,
        )
        parts = [hand_features(im, m, k, features) for im, m, k in zip(imgs, maps, n)]
        assert x.device.type == device and x.dtype == torch.float32 and pos.dtype == torch.float32
        np.testing.assert_allclose(
            x.cpu().numpy(), np.concatenate([p[0] for p in parts]), rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            pos.cpu().numpy(), np.concatenate([p[1] for p in parts]), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("device", DEVICES)
def test_batch_hand_features_of_grey_images_given_as_rgb(device, monkeypatch):
    """R = G = B images: the colour statistics of one channel, repeated (segment_reduce sees one
    column), equal to those of the same images reduced as three channels (forced by a colour image in
    the batch; every image's statistics are its own) and to the NumPy version."""
    maps = label_batch(5)
    rng = np.random.default_rng(7)
    grey = np.repeat(rng.random((len(maps), 13, 17, 1)).astype(np.float32), 3, axis=3)
    colour = rng.random((1, 13, 17, 3)).astype(np.float32)
    n = [int(m.max()) + 1 for m in maps]
    labels = torch.from_numpy(np.stack(maps + maps[:1])).to(device)
    nodes = torch.tensor(n + n[:1], device=device)
    mixed, _ = batch_hand_features(
        torch.from_numpy(np.concatenate([grey, colour])).to(device), labels, nodes, FEATURES
    )
    widths: list[int] = []
    real = torch.segment_reduce

    def spy(data, *args, **kwargs):
        widths.append(data.shape[1])
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torch, "segment_reduce", spy)
    x, _ = batch_hand_features(torch.from_numpy(grey).to(device), labels[:-1], nodes[:-1], FEATURES)
    assert widths == [1, 1]  # the sums and the squared deviations, of one channel
    assert torch.equal(x, mixed[: x.shape[0]])
    parts = [hand_features(im, m, k, FEATURES)[0] for im, m, k in zip(grey, maps, n)]
    np.testing.assert_allclose(x.cpu().numpy(), np.concatenate(parts), rtol=1e-6, atol=1e-6)


# -- CNN pooling ----------------------------------------------------------------------------------


def brute_force_pool(fmap: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every pixel takes the value of the map cell it falls in (an upsampled map); then the mean per node."""
    c, h, w = fmap.shape
    height, width = labels.shape
    up = fmap[:, (torch.arange(height) * h) // height][:, :, (torch.arange(width) * w) // width]
    return torch.stack([up[:, labels == i].mean(1) for i in range(int(labels.max()) + 1)])


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_pool_feature_maps_on_tensors_equals_a_brute_force_mean(device, dense, monkeypatch):
    import bridge.features as bf

    if not dense:  # the general path (gathers of (node, cell) pairs) instead of the batched products
        monkeypatch.setattr(bf, "_DENSE_MAX", 0)
    maps_np = label_batch(7, b=3, h=24, w=20)
    labels = torch.from_numpy(np.stack(maps_np))
    gen = torch.Generator().manual_seed(7)
    # finer than the labels in one axis, dividing grids, a grid that divides nothing, one cell
    fmaps = [torch.randn(3, c, h, w, generator=gen) for c, h, w in [(2, 12, 10), (3, 6, 5), (2, 5, 7)]]
    fmaps += [torch.randn(3, 4, 32, 10, generator=gen), torch.randn(3, 1, 1, 1, generator=gen)]
    n = [int(m.max()) + 1 for m in maps_np]
    for n_nodes in (None, n, torch.tensor(n)):
        out = pool_feature_maps([f.to(device) for f in fmaps], labels.to(device), n_nodes=n_nodes)
        assert [tuple(o.shape) for o in out] == [(k, 12) for k in n]
        for b in range(3):
            ref = torch.cat([brute_force_pool(f[b], labels[b]) for f in fmaps], dim=1)
            assert out[b].device.type == device
            torch.testing.assert_close(out[b].cpu(), ref, atol=1e-5, rtol=1e-5)
    # a list of label maps on the host gives the same as the tensor on the device
    listed = pool_feature_maps([f.to(device) for f in fmaps], list(maps_np))
    for a, b_ in zip(listed, out):
        torch.testing.assert_close(a, b_)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("fy", "fx"), [(2, 2), (3, 1), (1, 2)])
@pytest.mark.parametrize("dense", [True, False])
def test_statistics_of_a_blocky_map_from_its_small_map(device, fy, fx, dense, monkeypatch):
    """``batch_hand_features`` and the CNN pooling given the small map, its runs and ``blocks`` equal
    (to the bit) those of the map with every label repeated over a ``fy x fx`` block."""
    import bridge.features as bf
    from bridge.slic import repeat_blocks

    if not dense:
        monkeypatch.setattr(bf, "_DENSE_MAX", 0)
    maps = label_batch(3, h=12, w=12)
    n = torch.tensor([int(m.max()) + 1 for m in maps], device=device)
    small = torch.from_numpy(np.stack(maps)).to(device)
    big = repeat_blocks(small, fy, fx)
    rng = np.random.default_rng(3)
    imgs = torch.from_numpy(rng.random((len(maps), 12 * fy, 12 * fx, 3)).astype(np.float32)).to(device)
    runs = label_runs(small)
    for features in (FEATURES, ("centroid", "area")):
        want = batch_hand_features(imgs, big, n, features)
        got = batch_hand_features(imgs, small, n, features, runs=runs, blocks=(fy, fx))
        assert all(torch.equal(a, b) for a, b in zip(got, want)), features
    gen = torch.Generator().manual_seed(3)
    # maps whose sizes divide the small map's 12 x 12 (one cell, a cell per label, cells of 2 x 3 labels)
    sizes = [(2, 6, 4), (3, 12, 12)]
    fmaps = [torch.randn(len(maps), c, h, w, generator=gen).to(device) for c, h, w in sizes]
    fmaps.append(torch.randn(len(maps), 1, 1, 1, generator=gen).to(device))
    want_pool, _ = bf._pool(fmaps, big, n)
    got_pool, counts = bf._pool(fmaps, small, n, runs=runs, blocks=(fy, fx), check=False)
    assert torch.equal(got_pool, want_pool) and counts == n.tolist()
    with pytest.raises(ValueError, match=r"blocks=\(2, 2\): maps of size \(5, 12\) do not divide"):
        bf._pool([torch.zeros(len(maps), 1, 5, 12, device=device)], small, n, blocks=(2, 2))
    with pytest.raises(ValueError, match=r"labels of shape \(4, 12, 12\) with blocks \(2, 2\) do not cover"):
        batch_hand_features(imgs[:, :12, :12], small, n, FEATURES, blocks=(2, 2))


def test_pool_without_the_id_check_and_a_wrong_id(monkeypatch):
    """The ids' check names an id outside ``0 .. n - 1``; ``check=False`` leaves it out (no reduction
    over the runs for it), unless the node counts must come from the ids."""
    import bridge.features as bf

    labels = torch.tensor([[[0, 1], [2, 2]]])
    fmap = [torch.ones(1, 1, 1, 1)]
    with pytest.raises(ValueError, match=r"label map 0 has ids in \[0, 2\]; expected .* with ids 0..1"):
        bf._pool(fmap, labels, [2])
    calls = []
    real = torch.Tensor.scatter_reduce_
    monkeypatch.setattr(
        torch.Tensor, "scatter_reduce_", lambda t, *a, **k: calls.append(a[3]) or real(t, *a, **k)
    )
    for check, n, reductions in (
        (True, [3], ["amin", "amax"]),
        (False, [3], []),
        (False, None, ["amin", "amax"]),
    ):
        calls.clear()
        assert bf._pool(fmap, labels, n, check=check)[0].tolist() == [[1.0], [1.0], [1.0]]
        assert calls == reductions, (check, n)


def test_pool_batch_refuses_labels_that_do_not_cover_the_images(fake_backbone):
    from bridge.features import CNNNodeFeatures

    cnn = CNNNodeFeatures(fake_backbone("pair"))
    imgs, n = torch.rand(2, 32, 32, 3), torch.tensor([1, 1])
    with pytest.raises(ValueError, match=r"labels of shape \(2, 16, 16\) with blocks \(1, 1\) do not cover"):
        cnn.pool_batch(imgs, torch.zeros(2, 16, 16, dtype=torch.long), n)
    with pytest.raises(ValueError, match=r"labels of shape \(2, 32, 32\) with blocks \(2, 2\) do not cover"):
        cnn.pool_batch(imgs, torch.zeros(2, 32, 32, dtype=torch.long), n, blocks=(2, 2))
    small = cnn.pool_batch(imgs, torch.zeros(2, 16, 16, dtype=torch.long), n, blocks=(2, 2))
    assert torch.equal(small, cnn.pool_batch(imgs, torch.zeros(2, 32, 32, dtype=torch.long), n))


def test_batch_tensor_refuses_negative_ids_of_a_back_end(monkeypatch):
    """A back-end's labels are not checked like given segments; a negative id (which would land in the
    image before) is refused by name, with or without CNN features."""
    import dataclasses

    import bridge.segmentation as bs

    entry = bs.get_segmentation("slic_torch")

    def shifted(images, **kwargs):
        labels, fy, fx = entry.blocks(images, **kwargs)
        labels[1] -= 1
        return labels, fy, fx

    monkeypatch.setitem(bs._REGISTRY, "slic_torch", dataclasses.replace(entry, blocks=shifted))
    imgs = torch.from_numpy(np.stack([smooth_image(seed=s) for s in range(3)]))
    with pytest.raises(ValueError, match=r"back-end 'slic_torch' gave images\[1\] negative ids \(min -1\)"):
        ImageToGraph(n_segments=20).batch_tensor(imgs)


# -- segmentation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["slic_torch", "grid", "slic"])
def test_superpixels_of_a_tensor_equal_those_of_the_array(device, method):
    imgs = np.stack([smooth_image(seed=s) for s in range(3)])
    batch = torch.from_numpy(imgs).to(device)
    expected = superpixels_batch(list(imgs), n_segments=20, method=method)
    got = superpixels_batch(batch, n_segments=20, method=method)
    assert isinstance(got, torch.Tensor) and got.device.type == device and got.dtype == torch.int64
    assert got.shape == (3, 40, 48)
    for g, e in zip(got, expected):
        assert np.array_equal(g.cpu().numpy(), e)
    one = superpixels(batch[1], n_segments=20, method=method)
    assert isinstance(one, torch.Tensor) and one.device.type == device
    assert np.array_equal(one.cpu().numpy(), superpixels(imgs[1], n_segments=20, method=method))
    # a list mixing tensors and arrays (and sizes): tensors give tensors, arrays give arrays
    mixed = superpixels_batch([batch[0], imgs[1], batch[2, :30]], n_segments=20, method=method)
    assert isinstance(mixed[0], torch.Tensor) and isinstance(mixed[1], np.ndarray)
    assert np.array_equal(mixed[0].cpu().numpy(), expected[0]) and np.array_equal(mixed[1], expected[1])
    assert np.array_equal(mixed[2].cpu().numpy(), superpixels(imgs[2, :30], n_segments=20, method=method))


@pytest.mark.parametrize("device", DEVICES)
def test_grayscale_and_float_tensors_segment_like_arrays(device):
    gray = smooth_image(seed=4)[..., 0]
    expected = superpixels(gray, n_segments=12)
    for t in (
        torch.from_numpy(gray),
        torch.from_numpy(gray)[..., None],
        torch.from_numpy(gray).float() / 255,
    ):
        assert np.array_equal(superpixels(t.to(device), n_segments=12).cpu().numpy(), expected)
    batch = torch.from_numpy(np.stack([gray, gray[::-1].copy()])).to(device)
    got = superpixels_batch(batch, n_segments=12)
    assert np.array_equal(got[0].cpu().numpy(), expected)


def test_tensor_input_is_not_modified():
    img = torch.from_numpy(smooth_image(seed=1))
    before = img.clone()
    superpixels(img, n_segments=10)
    as_float_batch(img[None]).fill_(0.5)
    ImageToGraph(n_segments=10).batch_tensor(img[None])
    assert torch.equal(img, before)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (
            torch.zeros(2, 3, 8, 8),
            r"shape \(2, 3, 8, 8\), which looks channel-first .* images\.permute\(0, 2, 3, 1\)",
        ),
        (torch.zeros(2, 1, 8, 8), r"looks channel-first \(B, C, H, W\); expected channel-last"),
        (torch.full((1, 4, 4, 3), float("nan")), "images contains NaN or infinite values"),
        (torch.full((1, 4, 4, 3), float("inf")), "images contains NaN or infinite values"),
        (
            torch.full((1, 4, 4, 3), 12.0),
            r"values in \[12, 12\]; expected float values in \[0, 1\] \(divide by 255\?\)",
        ),
        (
            torch.full((1, 4, 4, 3), 300.0),
            r"values in \[300, 300\]; expected float values in \[0, 1\] or uint8",
        ),
        (torch.full((1, 4, 4, 3), -0.5), r"values in \[-0\.5, -0\.5\]; expected float values in \[0, 1\] or"),
        (torch.zeros(1, 4, 4, 3, dtype=torch.int64), "images has dtype torch.int64; expected torch.uint8"),
        (torch.zeros(1, 4, 4, 3, dtype=torch.bool), "images has dtype torch.bool; expected torch.uint8"),
        (torch.zeros(0, 4, 4, 3), r"images is empty \(shape \(0, 4, 4, 3\)\)"),
        (torch.zeros(2, 0, 4), r"images is empty"),
        (
            torch.zeros(4, 4),
            r"images has shape \(4, 4\); expected \(B, H, W, 3\), \(B, H, W, 1\) or \(B, H, W\)",
        ),
        (torch.zeros(1, 4, 4, 2), r"images has shape \(1, 4, 4, 2\); expected"),
        (np.zeros((1, 4, 4, 3)), "images must be a torch tensor"),
    ],
)
def test_as_float_batch_errors(images, match):
    with pytest.raises(ValueError, match=match):
        as_float_batch(images)


def test_as_float_batch_values():
    u8 = torch.from_numpy(smooth_image(8, 8)[None])
    out = as_float_batch(u8)
    assert out.dtype == torch.float32 and out.shape == (1, 8, 8, 3)
    from bridge.checks import as_float_image

    assert np.array_equal(out[0].numpy(), as_float_image(u8[0].numpy()))
    assert as_float_batch(u8[..., 0]).shape == (1, 8, 8, 1)
    half = (u8.double() / 255).half()
    assert as_float_batch(half).dtype == torch.float32
    with pytest.raises(ValueError, match=r"^frames has dtype"):
        as_float_batch(u8.long(), name="frames")


# -- ImageToGraph ---------------------------------------------------------------------------------


def assert_same_graphs(got, expected, *, device):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.x.device.type == device and g.edge_index.device.type == device
        assert g.x.shape == e.x.shape
        torch.testing.assert_close(g.x.cpu(), e.x, atol=1e-5, rtol=1e-5)
        assert torch.equal(g.edge_index.cpu(), e.edge_index)
        torch.testing.assert_close(g.edge_attr.cpu(), e.edge_attr, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(g.pos.cpu(), e.pos, atol=1e-6, rtol=1e-6)
        assert torch.equal(g.segments.cpu(), e.segments)
        if e.y is None:
            assert g.y is None
        else:
            assert torch.equal(g.y.cpu(), e.y)
        assert g.edge_index.dtype == torch.int64 and g.x.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("edges", ["region", "knn", "knn_feature"])
@pytest.mark.parametrize("layout", [None, "pair", "pyramid"])
def test_batch_tensor_equals_batch(device, edges, layout, fake_backbone):
    backbone = None if layout is None else fake_backbone(layout).to(device)
    conv = ImageToGraph(n_segments=20, edges=edges, k=3, backbone=backbone, features=FEATURES, batch_size=2)
    imgs = np.stack([smooth_image(seed=s) for s in range(3)])
    expected = conv.batch(list(imgs), labels=[0, 1, 2])
    got = conv.batch_tensor(torch.from_numpy(imgs).to(device), labels=[0, 1, 2])
    assert_same_graphs(got, expected, device=device)
    # batch() and __call__ with tensors take the tensor path
    assert_same_graphs(conv.batch(torch.from_numpy(imgs).to(device), [0, 1, 2]), expected, device=device)
    assert_same_graphs([conv(torch.from_numpy(imgs[1]).to(device), 1)], expected[1:2], device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("edges", ["region", "knn_feature"])
@pytest.mark.parametrize("labels", [None, [2, 0, 1]])
@pytest.mark.parametrize("keep", [False, True])
def test_batch_tensor_collated_equals_batch_from_data_list(device, edges, labels, keep, fake_backbone):
    from torch_geometric.data import Batch

    conv = ImageToGraph(
        n_segments=20, edges=edges, k=3, backbone=fake_backbone("pair").to(device), keep_segments=keep
    )
    imgs = torch.from_numpy(np.stack([smooth_image(seed=s) for s in range(3)])).to(device)
    graphs = conv.batch_tensor(imgs, labels)
    want = Batch.from_data_list(graphs)
    got = conv.batch_tensor(imgs, labels, collate=True)
    assert type(got) is type(want) and got.num_graphs == 3
    assert sorted(got.keys()) == sorted(want.keys())
    for key in want.keys():
        assert torch.equal(got[key], want[key]), key
        assert got[key].device == want[key].device, key
    for table in ("_slice_dict", "_inc_dict"):
        a, b = getattr(got, table), getattr(want, table)
        assert a.keys() == b.keys(), table
        assert all(torch.equal(a[k], b[k]) for k in b), table
    back = got.to_data_list()
    assert len(back) == 3
    for g, e in zip(back, graphs):
        assert sorted(g.keys()) == sorted(e.keys())
        assert all(torch.equal(g[k], e[k]) for k in e.keys())


@pytest.mark.parametrize("dense", [True, False])
def test_batch_tensor_needs_no_weighted_bincount(fake_backbone, monkeypatch, dense):
    """On a GPU ``torch.bincount(x, weights)`` raises under ``torch.use_deterministic_algorithms(True)``;
    the graph path sums weights with ``index_add_`` instead (emulated here: a weighted bincount raises)."""
    import bridge.features as bf

    conv = ImageToGraph(n_segments=20, edges="region", backbone=fake_backbone("pyramid"), features=FEATURES)
    imgs = torch.from_numpy(np.stack([smooth_image(seed=s) for s in range(3)]))
    if not dense:
        monkeypatch.setattr(bf, "_DENSE_MAX", 0)  # the pooling's sparse path, which counts pairs
    expected = conv.batch_tensor(imgs)
    bincount = torch.bincount

    def unweighted_only(input, weights=None, minlength=0):
        if weights is not None:
            raise RuntimeError("bincount with weights has no deterministic CUDA implementation")
        return bincount(input, minlength=minlength)

    monkeypatch.setattr(torch, "bincount", unweighted_only)
    assert_same_graphs(conv.batch_tensor(imgs), expected, device="cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("size", "n_segments"), [((96, 120), 15), ((108, 108), 8), ((97, 120), 15)])
@pytest.mark.parametrize("input_size", [24, 32])
def test_batch_tensor_on_working_resolution_labels(
    device, size, n_segments, input_size, fake_backbone, monkeypatch
):
    """Where ``slic_torch`` segments a smaller working copy (2 x 2 or 3 x 3 blocks here; 97 rows are not
    whole blocks), ``batch_tensor`` takes the runs, borders, statistics and (where the backbone's 12 x 12
    maps divide the small map; not its 16 x 16 ones) the CNN pooling from the small label map: the graphs
    equal those of ``batch`` and, exactly, those built from the full-resolution labels."""
    import dataclasses

    import bridge.features as bf
    import bridge.segmentation as bs

    backbone = fake_backbone("pair", input_size=input_size).to(device)
    conv = ImageToGraph(n_segments=n_segments, backbone=backbone, features=FEATURES, keep_segments=True)
    imgs = np.stack([smooth_image(*size, seed=s) for s in range(3)])
    repeated = []
    monkeypatch.setattr(bf, "repeat_blocks", lambda *a: repeated.append(a[1:]) or bs.repeat_blocks(*a))
    got = conv.batch_tensor(torch.from_numpy(imgs).to(device), labels=[0, 1, 2])
    whole = size[0] % 2 == 0
    assert repeated == ([] if input_size == 24 or not whole else [(2, 2) if size[0] == 96 else (3, 3)])
    assert_same_graphs(got, conv.batch(list(imgs), labels=[0, 1, 2]), device=device)
    full_only = dataclasses.replace(bs.get_segmentation("slic_torch"), blocks=None)
    monkeypatch.setitem(bs._REGISTRY, "slic_torch", full_only)
    want = conv.batch_tensor(torch.from_numpy(imgs).to(device), labels=[0, 1, 2])
    for g, e in zip(got, want):
        assert sorted(g.keys()) == sorted(e.keys())
        assert all(torch.equal(g[k], e[k]) for k in e.keys())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["grid", "slic"])
def test_batch_tensor_equals_batch_for_other_backends(device, method):
    conv = ImageToGraph(n_segments=16, method=method, edges="knn", k=2, features=("color_mean", "area"))
    imgs = np.stack([smooth_image(seed=s) for s in range(2)])
    assert_same_graphs(
        conv.batch_tensor(torch.from_numpy(imgs).to(device)), conv.batch(list(imgs)), device=device
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", [None, "pair"])
@pytest.mark.parametrize("edges", ["region", "knn_feature"])
def test_batch_tensor_with_given_segments_equals_batch(device, layout, edges, fake_backbone):
    backbone = None if layout is None else fake_backbone(layout).to(device)
    conv = ImageToGraph(n_segments=20, edges=edges, k=1, backbone=backbone, keep_segments=True)
    rng = np.random.default_rng(8)
    maps = [block_labels(rng, 40, 48, n_max) for n_max in (3, 10, 25)]
    imgs = np.stack([smooth_image(seed=s) for s in range(3)])
    expected = conv.batch(list(imgs), labels=[5, 6, 7], segments=maps)
    assert [g.num_nodes for g in expected] == [int(m.max()) + 1 for m in maps]
    images = torch.from_numpy(imgs).to(device)
    stacked = torch.from_numpy(np.stack(maps))
    for given in (stacked.to(device), stacked.numpy(), maps, [torch.from_numpy(m) for m in maps]):
        got = conv.batch_tensor(images, torch.tensor([5, 6, 7]), segments=given)
        assert_same_graphs(got, expected, device=device)


def test_batch_tensor_graph_without_edges_and_grayscale():
    imgs = torch.zeros(2, 16, 16, dtype=torch.uint8)
    imgs[0, :8] = 200  # image 1 is flat: one node, no edge
    conv = ImageToGraph(n_segments=4)
    got = conv.batch_tensor(imgs)
    expected = conv.batch(list(imgs.numpy()))
    assert_same_graphs(got, expected, device="cpu")
    assert got[0].num_nodes > 1 and got[1].num_nodes == 1 and got[1].edge_index.shape == (2, 0)
    assert got[1].edge_attr.shape == (0, 2) and got[0].x.shape[1] == 1 + 1 + 2  # gray mean, std, centroid
    with pytest.raises(ValueError, match=r"images\[1\]: k=1 but the image gave only 1 nodes"):
        ImageToGraph(n_segments=4, edges="knn", k=1).batch_tensor(imgs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [1]}, "got 2 images but 1 labels; expected one label per image"),
        ({"labels": [1.5, 2]}, "label must be an integer class id"),
        (
            {"segments": torch.zeros(2, 16, 15, dtype=torch.long)},
            r"segments has dtype torch.int64 and shape \(2, 16, 15\)",
        ),
        (
            {"segments": torch.zeros(2, 16, 16)},
            r"segments has dtype torch.float32 .* expected integer label maps of shape \(2, 16, 16\)",
        ),
        (
            {"segments": [np.zeros((16, 16), np.int64)]},
            r"shape \(1, 16, 16\); expected integer label maps of shape \(2, 16, 16\)",
        ),
        ({"segments": "abc"}, "segments has dtype|segments could not be read as a tensor"),
    ],
)
def test_batch_tensor_bad_arguments(kwargs, match):
    imgs = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=match):
        ImageToGraph(n_segments=4).batch_tensor(imgs, **kwargs)


@pytest.mark.parametrize(
    ("segments", "match"),
    [
        (torch.full((2, 4, 4), -5), r"segments\[0\] contains negative ids \(min -5\)"),
        (
            torch.stack([torch.zeros(4, 4), torch.full((4, 4), -1.0)]).long(),
            r"segments\[1\] contains negative",
        ),
        (
            torch.tensor([[[0, 0, 1, 1]] * 4, [[0, 2, 2, 2]] * 4]),
            r"segments\[1\] has holes in its ids: id 1 of 0\.\.2",
        ),
        (
            torch.tensor([[[0, 0, 3, 3]] * 4, [[0, 1, 1, 1]] * 4]),
            r"segments\[0\] has holes in its ids: id 1 of 0\.\.3",
        ),
        (torch.zeros(2, 4, 4, dtype=torch.complex64), "segments has dtype torch.complex64"),
        (torch.zeros(3, 4, 4, dtype=torch.long), r"segments has dtype torch.int64 and shape \(3, 4, 4\)"),
        (
            [torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long)],
            "could not be read as a tensor",
        ),
        (object(), "segments could not be read as a tensor|segments has dtype"),
    ],
)
def test_checked_segments_errors(segments, match):
    with pytest.raises(ValueError, match=match):
        _checked_segments(segments, (2, 4, 4), torch.device("cpu"))


def test_checked_segments_accepts_any_integer_layout():
    maps = [np.array([[0, 0, 1, 1]] * 4), np.array([[0, 1, 2, 2]] * 4)]
    expected = torch.from_numpy(np.stack(maps))
    for given in (
        expected,
        expected.int(),
        np.stack(maps).astype(np.uint8),
        maps,
        [torch.from_numpy(m) for m in maps],
    ):
        got = _checked_segments(given, (2, 4, 4), torch.device("cpu"))
        assert got.dtype == torch.int64 and torch.equal(got, expected)
    bools = _checked_segments(
        torch.tensor([[[True, False]], [[False, False]]]), (2, 1, 2), torch.device("cpu")
    )
    assert bools.tolist() == [[[1, 0]], [[0, 0]]]


# -- the GPU check script -------------------------------------------------------------------------


def load_gpu_check():
    path = REPO / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def run_gpu_check_tiny(gpu_check, *extra: str) -> int:
    """``gpu_check.main`` on the CPU with tiny sizes and one thread (small operations on a busy machine
    do not wait for a second one); torch's thread count restored afterwards."""
    threads = torch.get_num_threads()
    args = ["--device", "cpu", "--quick", "--batch-size", "2", "--batches", "1", "--size", "64"]
    try:
        return gpu_check.main([*args, "--threads", "1", *extra])
    finally:
        torch.set_num_threads(threads)


def test_gpu_check_runs_on_cpu_and_prints_every_stage(capsys):
    gpu_check = load_gpu_check()
    assert run_gpu_check_tiny(gpu_check, "--no-compare") == 0
    out = capsys.readouterr().out
    for stage in gpu_check.STAGES:
        assert f"| {stage} |" in out
    assert "compare --quick: skipped (--no-compare)" in out
    assert "peak memory" in out


def test_gpu_check_leaves_out_compare_when_the_budget_is_spent(capsys):
    gpu_check = load_gpu_check()
    assert run_gpu_check_tiny(gpu_check, "--budget", "1") == 0
    out = capsys.readouterr().out
    assert "compare --quick: skipped (--budget 1 s: " in out and " s left)" in out


def test_gpu_check_small_compare_timeout_without_budget(monkeypatch, capsys):
    """An explicit --compare-timeout under 30 s without --budget is used as given (it used to crash)."""
    gpu_check = load_gpu_check()
    seen = []

    def stub(device, timeout):
        seen.append(timeout)
        return None, "stub"

    monkeypatch.setattr(gpu_check, "run_compare", stub)
    assert run_gpu_check_tiny(gpu_check, "--compare-timeout", "20") == 0
    assert seen == [20.0] and "compare --quick --data digits --device cpu: stub" in capsys.readouterr().out


def test_gpu_check_interrupted_compare_does_not_outlive_it(monkeypatch):
    """Ctrl-C (or the wrapper's SIGINT) while compare runs kills compare's whole process group."""
    gpu_check = load_gpu_check()
    killed = []
    real_popen = subprocess.Popen

    class Interrupted(real_popen):  # type: ignore[misc, valid-type]
        def communicate(self, *args, **kwargs):
            if kwargs.get("timeout") is not None:
                raise KeyboardInterrupt
            return super().communicate(*args, **kwargs)

    monkeypatch.setattr(gpu_check.subprocess, "Popen", Interrupted)
    real_killpg = os.killpg
    monkeypatch.setattr(gpu_check.os, "killpg", lambda pid, sig: killed.append(sig) or real_killpg(pid, sig))
    with pytest.raises(KeyboardInterrupt):
        gpu_check.run_compare("cpu", 60.0)
    assert killed == [gpu_check.signal.SIGKILL]


def test_gpu_check_compare_timeout_is_reported():
    gpu_check = load_gpu_check()
    seconds, status = gpu_check.run_compare("cpu", 0.5)  # the subprocess cannot even import torch in time
    assert seconds is None and status == "timed out after 0 s"


def test_gpu_check_script_passes_on_the_exit_status(tmp_path):
    """The shell wrapper prints its wall time and exits with the Python script's status (here 2: no CUDA)."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    env = {**os.environ, "PYTHON": sys.executable, "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cuda", "--no-compare"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "CUDA is not available here; use --device cpu" in proc.stderr
    assert "s wall, exit status 2" in proc.stdout
    assert sys.executable in proc.stdout  # the interpreter it used


def level_moments_reference(levels: np.ndarray, labels: np.ndarray, n: list[int]) -> tuple[np.ndarray, ...]:
    """Colour means and standard deviations per region from the 8-bit levels, in Python integers
    (exact), rounded once to float64 and then float32: ``(N, C)`` each."""
    means, stds = [], []
    for img, lab, k in zip(levels.astype(np.int64), labels, n):
        for r in range(k):
            px = img[lab == r]  # (n_r, C) whole numbers
            cnt = px.shape[0]
            s1 = [int(v) for v in px.sum(0)]
            s2 = [int(v) for v in (px * px).sum(0)]
            means.append([s / cnt / 255.0 for s in s1])
            stds.append([((a * cnt - s * s) / (cnt * cnt)) ** 0.5 / 255.0 for a, s in zip(s2, s1)])
    return np.float32(means), np.float32(stds)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("fy", "fx"), [(1, 1), (2, 2), (3, 1), (4, 4)])
@pytest.mark.parametrize("grey", [False, True])
def test_colour_statistics_of_eight_bit_levels_are_exact(device, fy, fx, grey):
    """Given the uint8 levels, colour means and standard deviations are the exact values rounded once
    (Python integers as reference), the same from the small map with blocks as from the repeated map,
    and within float32 rounding of the float path's two-pass statistics."""
    from bridge.slic import repeat_blocks

    maps = label_batch(8, h=10, w=11)
    n = [int(m.max()) + 1 for m in maps]
    rng = np.random.default_rng(fy * 7 + fx)
    u8 = rng.integers(0, 256, (len(maps), 10 * fy, 11 * fx, 1 if grey else 3), dtype=np.uint8)
    if grey:
        u8 = np.repeat(u8, 3, axis=3)
    levels = torch.from_numpy(u8).to(device)
    imgs = as_float_batch(levels)
    small = torch.from_numpy(np.stack(maps)).to(device)
    big = repeat_blocks(small, fy, fx)
    nodes = torch.tensor(n, device=device)
    features = ("color_mean", "color_std", "centroid")
    x, pos = batch_hand_features(
        imgs, small, nodes, features, runs=label_runs(small), blocks=(fy, fx), levels=levels
    )
    x_big, pos_big = batch_hand_features(imgs, big, nodes, features, levels=levels)
    assert torch.equal(x, x_big) and torch.equal(pos, pos_big)
    mean, std = level_moments_reference(u8, big.cpu().numpy(), n)
    assert np.array_equal(x[:, :3].cpu().numpy(), mean) and np.array_equal(x[:, 3:6].cpu().numpy(), std)
    float_path, _ = batch_hand_features(imgs, big, nodes, features)
    torch.testing.assert_close(x, float_path, rtol=2e-6, atol=1e-6)


def test_level_statistics_refuse_levels_that_are_not_the_images():
    imgs = torch.zeros(2, 4, 4, 3)
    labels, nodes = torch.zeros(2, 4, 4, dtype=torch.long), torch.tensor([1, 1])
    for bad in (torch.zeros(2, 4, 4, 3), torch.zeros(2, 4, 5, 3, dtype=torch.uint8)):
        with pytest.raises(ValueError, match="levels must be the uint8 images"):
            batch_hand_features(imgs, labels, nodes, ("color_mean",), levels=bad)
    # without colour statistics the levels are not read
    x, _ = batch_hand_features(imgs, labels, nodes, ("area",), levels=torch.zeros(1))
    assert x.shape == (2, 1)


def test_batch_tensor_of_uint8_images_takes_the_level_statistics(monkeypatch):
    """uint8 batches (and single uint8 images) give their levels to the statistics; float batches do not."""
    import bridge.features as bf

    seen: list[bool] = []
    real = bf._level_moments

    def spy(*args, **kwargs):
        seen.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(bf, "_level_moments", spy)
    conv = ImageToGraph(n_segments=8, features=("color_mean", "color_std"), edges="region")
    u8 = torch.from_numpy(smooth_image(32, 32)).unsqueeze(0).expand(2, -1, -1, -1)
    graphs = conv.batch_tensor(u8)
    assert seen == [True]
    one = conv(u8[0])
    assert seen == [True, True] and torch.equal(one.x, graphs[0].x)
    conv.batch_tensor(as_float_batch(u8))
    assert seen == [True, True]
    torch.testing.assert_close(graphs[0].x, conv.batch([u8[0].numpy()])[0].x, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("blocks", [(1, 1), (2, 2)])
def test_level_statistics_of_long_runs_stay_whole_numbers(blocks):
    """Runs of 302 bright pixels (or 151 blocks of 4) sum squares past 2^24, where float32 no longer
    holds every whole number: those sums are taken in float64, so the statistics stay exact."""
    fy, fx = blocks
    rng = np.random.default_rng(11)
    u8 = rng.integers(240, 256, (1, 2, 302, 3), dtype=np.uint8)
    levels = torch.from_numpy(u8)
    labels = torch.zeros(1, 2 // fy, 302 // fx, dtype=torch.long)
    x, _ = batch_hand_features(
        as_float_batch(levels),
        labels,
        torch.tensor([1]),
        ("color_mean", "color_std"),
        blocks=blocks,
        levels=levels,
    )
    mean, std = level_moments_reference(u8, np.zeros((1, 2, 302), np.int64), [1])
    assert np.array_equal(x.numpy(), np.concatenate([mean, std], 1))
