import os

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch_geometric.loader import DataLoader

from bridge.convert import ImageToGraph
from bridge.dataset import GraphDataset, data_fingerprint


class Items:
    """A tiny (image, label) dataset with a targets attribute, like cnn.datasets."""

    def __init__(self, n=12, size=32, seed=0):
        rng = np.random.default_rng(seed)
        noise = ndimage.gaussian_filter(rng.random((n, size, size, 3)), sigma=(0, 2, 2, 0))
        lo = noise.min(axis=(1, 2, 3), keepdims=True)
        hi = noise.max(axis=(1, 2, 3), keepdims=True)
        self.images = ((noise - lo) / (hi - lo) * 255).astype(np.uint8)
        self.targets = np.arange(n) % 3

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.targets[i])


def assert_same_graphs(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        ga, gb = a[i], b[i]
        assert set(ga.keys()) == set(gb.keys())
        for key in ga.keys():
            assert torch.equal(ga[key], gb[key]), (i, key)


def test_reused_on_second_run_and_rebuilt_when_a_setting_changes(tmp_path):
    items = Items()
    first = GraphDataset(items, ImageToGraph(n_segments=12), root=tmp_path, workers=0, progress=False)
    assert not first.reused and os.path.exists(first.cache_path)
    second = GraphDataset(items, ImageToGraph(n_segments=12), root=tmp_path, workers=0, progress=False)
    assert second.reused and second.cache_path == first.cache_path
    assert_same_graphs(first, second)
    changed = GraphDataset(items, ImageToGraph(n_segments=13), root=tmp_path, workers=0, progress=False)
    assert not changed.reused and changed.cache_path != first.cache_path
    forced = GraphDataset(
        items, ImageToGraph(n_segments=12), root=tmp_path, workers=0, progress=False, force=True
    )
    assert not forced.reused and forced.cache_path == first.cache_path
    assert sorted(os.listdir(tmp_path)) == sorted(  # no temporary files left behind
        os.path.basename(p) for p in {first.cache_path, changed.cache_path}
    )


def test_graphs_equal_direct_conversion_and_load_in_a_pyg_loader(tmp_path):
    items = Items(n=7)
    conv = ImageToGraph(n_segments=10)
    ds = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    reloaded = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    for i in (0, 6):
        direct = conv(*items[i])
        for d in (ds[i], reloaded[i]):
            for key in direct.keys():
                assert torch.equal(direct[key], d[key]), key
    batch = next(iter(DataLoader(reloaded, batch_size=4)))
    assert batch.num_graphs == 4 and batch.y.tolist() == [0, 1, 2, 0]
    assert batch.segments.shape == (4, 32, 32)
    assert ds.num_classes == 3
    subset = reloaded[[6, 0]].copy()
    assert torch.equal(subset[0].segments, reloaded[6].segments) and subset[1].y.tolist() == [0]


@pytest.mark.parametrize("method", ["slic", "slic_torch"])
def test_worker_processes_give_the_same_graphs(tmp_path, method):
    items = Items(n=10)
    conv = ImageToGraph(n_segments=10, method=method)
    serial = GraphDataset(items, conv, root=tmp_path / "a", workers=0, progress=False)
    parallel = GraphDataset(items, conv, root=tmp_path / "b", workers=2, progress=False, chunk_size=3)
    assert_same_graphs(serial, parallel)
    assert serial.key == parallel.key
    direct = conv.batch([items[i][0] for i in range(len(items))])
    assert [g.num_nodes for g in direct] == [serial[i].num_nodes for i in range(len(items))]


def test_cnn_features_and_weights_in_the_key(tmp_path, fake_backbone):
    items = Items(n=5)
    backbone = fake_backbone()
    conv = ImageToGraph(n_segments=10, backbone=backbone, batch_size=2)
    ds = GraphDataset(items, conv, root=tmp_path, workers=2, progress=False, chunk_size=2)
    assert ds[0].x.shape[1] == 8 + 7
    torch.testing.assert_close(ds[3].x, conv(*items[3]).x)
    assert GraphDataset(items, conv, root=tmp_path, workers=0, progress=False).reused
    with torch.no_grad():
        backbone.conv.weight.mul_(2.0)
    assert not GraphDataset(items, conv, root=tmp_path, workers=0, progress=False).reused


def test_changed_data_changes_the_key(tmp_path):
    items = Items(n=6)
    a = GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    items.images[5, 0, 0, 0] ^= 1
    b = GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    assert not b.reused and a.key != b.key
    assert data_fingerprint(items) != data_fingerprint(Items(n=6))
    assert data_fingerprint(items, mode="full") != data_fingerprint(Items(n=6), mode="full")


def test_cache_file_is_plain_tensors(tmp_path):
    ds = GraphDataset(Items(n=3), ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    payload = torch.load(ds.cache_path, weights_only=True)
    assert payload["n"] == 3 and payload["key"] == ds.key
    assert set(payload["data"]) == {"x", "edge_index", "edge_attr", "pos", "y"}
    assert payload["segments"].dtype == torch.int16


def test_unreadable_cache_is_rebuilt(tmp_path):
    items = Items(n=3)
    ds = GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    with open(ds.cache_path, "wb") as f:
        f.write(b"not a torch file")
    with pytest.warns(UserWarning, match="could not be read"):
        again = GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    assert not again.reused and len(again) == 3
    assert GraphDataset(items, ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False).reused


def test_plain_list_without_segments(tmp_path):
    items = [(Items(n=2).images[i], i) for i in range(2)]
    ds = GraphDataset(items, ImageToGraph(n_segments=8, keep_segments=False), root=tmp_path, progress=False)
    assert len(ds) == 2 and "segments" not in ds[1] and ds[1].y.tolist() == [1]


def test_bad_input(tmp_path):
    conv = ImageToGraph(n_segments=8)
    with pytest.raises(ValueError, match="images is empty"):
        GraphDataset([], conv, root=tmp_path)
    with pytest.raises(ValueError, match=r"item 0 of the dataset is a ndarray; expected \(image, label\)"):
        GraphDataset([np.zeros((8, 8, 3), np.uint8)], conv, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"item 1: image has dtype int32"):
        GraphDataset(
            [(np.zeros((8, 8, 3), np.uint8), 0), (np.zeros((8, 8, 3), np.int32), 1)],
            conv,
            root=tmp_path,
            workers=0,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"item 0: label must be an integer class id, got 'cat'"):
        GraphDataset([(np.zeros((8, 8, 3), np.uint8), "cat")], conv, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        GraphDataset([(np.zeros((8, 8, 3), np.uint8), 0)], conv, root=tmp_path, workers=-1)
    with pytest.raises(TypeError, match="converter must be a bridge.ImageToGraph"):
        GraphDataset([(np.zeros((8, 8, 3), np.uint8), 0)], lambda im: im, root=tmp_path)
    assert not any(p.name.endswith(".pt") for p in tmp_path.iterdir())


# -- cache keys and the segmentation table ----------------------------------------------------------


def four_colours(flip=False):
    img = np.zeros((32, 32, 3), np.uint8)
    img[:16, 16:] = (255, 0, 0)
    img[16:, :16] = (0, 255, 0)
    img[16:, 16:] = (0, 0, 255)
    return img[::-1].copy() if flip else img


def fixed_backbone(fake_backbone):
    """A fake backbone with weights set by formula, so its fingerprint is known."""
    backbone = fake_backbone()
    with torch.no_grad():
        w = backbone.conv.weight
        w.copy_(torch.linspace(-1, 1, w.numel()).view_as(w))
        backbone.conv.bias.copy_(torch.linspace(0, 0.3, 4))
    return backbone


_BASE = {
    "format": 1,
    "n_segments": 4,
    "compactness": 10.0,
    "method": "slic",
    "sigma": 0.0,
    "edges": "region",
    "k": 8,
    "features": ["color_mean", "color_std", "centroid"],
    "keep_segments": True,
    "cnn": None,
    "skimage": "0.26.0",
}
_CNN = {
    "backbone": "fake",
    "weights": "860945b6428e30ebf78807588a36b26d8f683f57c6fe520df94cff1b29598cdb",
    "stages": [1],
    "input_size": 32,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bilinear",
}


# Configurations and cache keys recorded (with scikit-image 0.26.0) before the segmentation back-ends
# moved into one table: caches that users built then must still be found.
@pytest.mark.parametrize(
    ("kwargs", "config", "key"),
    [
        ({}, {}, "314de647f92c39b858796994"),
        ({"method": "slic_torch"}, {"method": "slic_torch", "slic_torch": 1}, "d20d9a9d167a01ba6827aeec"),
        (
            {"method": "grid", "edges": "knn", "k": 2, "features": ("area",), "keep_segments": False},
            {"method": "grid", "edges": "knn", "k": 2, "features": ["area"], "keep_segments": False},
            "8341eabc7d9f2d34c9cb9537",
        ),
        ({"backbone": "fixed", "stages": (-1,)}, {"cnn": _CNN}, "c743bd8677bd1638fbe93291"),
    ],
    ids=["slic", "slic_torch", "grid_knn", "slic_cnn"],
)
def test_config_and_cache_key_are_unchanged(tmp_path, monkeypatch, fake_backbone, kwargs, config, key):
    import skimage

    monkeypatch.setattr(skimage, "__version__", "0.26.0")
    if kwargs.get("backbone") == "fixed":
        kwargs = {**kwargs, "backbone": fixed_backbone(fake_backbone)}
    conv = ImageToGraph(n_segments=4, **kwargs)
    assert conv.config() == {**_BASE, **config}
    items = [(four_colours(), 0), (four_colours(flip=True), 1)]
    ds = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    assert ds.key == key


def _stripes(img, *, n_segments, compactness, sigma):
    """Test back-end: ``n_segments`` vertical stripes (module level, so worker processes find it)."""
    cols = (np.arange(img.shape[1]) * n_segments) // img.shape[1]
    return np.broadcast_to(cols, img.shape[:2]).astype(np.int64)


@pytest.fixture
def stripes():
    from bridge.segmentation import register_segmentation, unregister_segmentation

    register_segmentation("test_stripes", _stripes, version="s-1")
    yield
    unregister_segmentation("test_stripes")


def test_registered_backend_builds_datasets_and_keys(tmp_path, stripes):
    items = Items(n=4)
    conv = ImageToGraph(n_segments=3, method="test_stripes")
    assert conv.config()["test_stripes"] == "s-1"
    ds = GraphDataset(items, conv, root=tmp_path, workers=2, progress=False, chunk_size=4)
    assert [ds[i].num_nodes for i in range(4)] == [3] * 4
    assert ds[0].segments[0, 0].tolist() == [0] * 11 + [1] * 11 + [2] * 10
    assert ds[0].edge_index.shape[1] == 4  # stripes 0-1 and 1-2, both directions
    other = GraphDataset(
        items, ImageToGraph(n_segments=3, method="grid"), root=tmp_path, workers=0, progress=False
    )
    assert other.key != ds.key
