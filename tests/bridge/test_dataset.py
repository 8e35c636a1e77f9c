import os
import re
import time
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch_geometric.loader import DataLoader

from bridge.convert import ImageToGraph
from bridge.dataset import FINGERPRINTS, GraphDataset, data_fingerprint


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
    for mode in FINGERPRINTS:
        assert data_fingerprint(items, mode=mode) != data_fingerprint(Items(n=6), mode=mode)
        assert data_fingerprint(Items(n=6), mode=mode) == data_fingerprint(Items(n=6), mode=mode)
    assert len({data_fingerprint(items, mode=m) for m in FINGERPRINTS}) == 3


def tiny_items(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), i % 2) for i in range(n)]


def test_one_changed_image_of_100_is_converted_again(tmp_path):
    items = tiny_items(100)
    conv = ImageToGraph(n_segments=4, method="grid")
    first = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    assert GraphDataset(items, conv, root=tmp_path, workers=0, progress=False).reused
    sample = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False, fingerprint="sample")
    image = items[56][0].copy()
    image[3, 4, 1] ^= 0x80  # one byte of one image; index 56 is not among the 32 sampled items
    items[56] = (image, items[56][1])
    again = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False)
    assert not again.reused and again.key != first.key
    torch.testing.assert_close(again[56].x, conv(image).x)
    assert not torch.equal(again[56].x, first[56].x)
    # the old sampled mode, still available, does not see it
    assert GraphDataset(items, conv, root=tmp_path, workers=0, progress=False, fingerprint="sample").key == (
        sample.key
    )


class FileItems:
    """A file-backed dataset as cnn.load_dataset gives it: paths, targets, no transform."""

    def __init__(self, paths, targets):
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets)
        self.transform = None
        self.reads = 0

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        self.reads += 1
        return np.load(self.paths[i]), int(self.targets[i])


def file_items(tmp_path, n=5, age_s=60):
    paths = []
    for i, (image, _) in enumerate(tiny_items(n)):
        path = tmp_path / f"img{i}.npy"
        np.save(path, image)
        old = time.time_ns() - age_s * 10**9
        os.utime(path, ns=(old, old))
        paths.append(path)
    return FileItems(paths, np.arange(n) % 2)


def test_file_backed_fingerprint_uses_file_stats_and_sees_a_rewritten_file(tmp_path):
    items = file_items(tmp_path)
    key = data_fingerprint(items)
    assert items.reads == 0  # size and dates only: no image was read
    assert data_fingerprint(items) == key
    # same size, same mtime (as `cp -p` keeps it), other pixels: the ctime changes
    st = os.stat(items.paths[2])
    image = np.load(items.paths[2])
    image[0, 0, 0] ^= 1
    np.save(items.paths[2], image)
    os.utime(items.paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(items.paths[2]).st_size == st.st_size
    assert data_fingerprint(items) != key
    assert items.reads == 0


def test_file_backed_fingerprint_waits_for_just_written_files_and_reads_missing_ones(tmp_path, monkeypatch):
    """Files changed just now (dates alone may not change within one clock tick) are waited for, so the
    key is the same whenever it is computed: in a later run, or on another rank a moment later."""
    import bridge.dataset

    monkeypatch.setattr(bridge.dataset, "_RACY_NS", 300_000_000)  # 0.3 s instead of 2 s
    items = file_items(tmp_path, age_s=0)
    key = data_fingerprint(items)
    time.sleep(0.35)
    assert data_fingerprint(items) == key
    assert items.reads == 0  # dates and sizes only
    monkeypatch.setattr(os, "stat", lambda *a, **k: (_ for _ in ()).throw(OSError("no stat")))
    assert data_fingerprint(items) not in (key, data_fingerprint(items, mode="sample"))
    assert items.reads == 2 * len(items)  # no stat: every item read (and all 5 by the sample mode)


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_numpy_and_python_int_labels_give_one_key(mode):
    items = tiny_items(3)
    as_numpy = [(image, np.int64(label)) for image, label in items]
    assert data_fingerprint(as_numpy, mode=mode) == data_fingerprint(items, mode=mode)


def test_cache_file_is_plain_tensors(tmp_path):
    ds = GraphDataset(Items(n=3), ImageToGraph(n_segments=8), root=tmp_path, workers=0, progress=False)
    payload = torch.load(ds.cache_path, weights_only=True)
    assert payload["n"] == 3 and payload["key"] == ds.key
    assert set(payload["data"]) == {"x", "edge_index", "edge_attr", "pos", "y"}
    assert payload["segments"].dtype == torch.int16
    assert len(payload["checksum"]) == 64


def build(items, root, **kwargs):
    return GraphDataset(items, ImageToGraph(n_segments=8), root=root, workers=0, progress=False, **kwargs)


def edit_tensor(path):
    payload = torch.load(path, weights_only=True)
    payload["data"]["x"][1, 0] += 0.5  # an edited tensor; the checksum stays the old one
    torch.save(payload, path)


def flip_a_tensor_byte(path):
    payload = torch.load(path, weights_only=True)
    raw = bytearray(open(path, "rb").read())
    at = raw.find(payload["data"]["x"].numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x10  # bit rot inside the stored x tensor
    open(path, "wb").write(bytes(raw))


def truncate(path):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])


def old_format(path):
    payload = torch.load(path, weights_only=True)
    payload["format"] = 1
    del payload["checksum"]
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (edit_tensor, "does not match its checksum"),
        (flip_a_tensor_byte, "does not match its checksum|could not be read"),
        (truncate, "could not be read"),
        (lambda p: open(p, "wb").write(b"not a torch file"), "could not be read"),
        (lambda p: open(p, "wb").close(), "could not be read"),
        (old_format, "has another format"),
    ],
    ids=["edited_tensor", "flipped_byte", "truncated", "random_bytes", "empty", "format_1"],
)
def test_damaged_cache_is_rebuilt_with_one_warning(tmp_path, damage, message):
    items = Items(n=3)
    first = build(items, tmp_path)
    damage(first.cache_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = build(items, tmp_path)
    mine = [w for w in caught if "graph cache file" in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    assert re.search(message, str(mine[0].message)) and first.cache_path in str(mine[0].message)
    assert not again.reused and again.cache_path == first.cache_path
    assert_same_graphs(first, again)
    assert build(items, tmp_path).reused  # the file was replaced by a good one


def test_unwritable_cache_root_is_found_before_the_conversion(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")

    def no_conversion(*args, **kwargs):
        raise AssertionError("the conversion started")

    monkeypatch.setattr(GraphDataset, "_build", no_conversion)
    with pytest.raises(ValueError, match=r"root='.*file.txt/cache' is not a writable folder .*pass root="):
        build(Items(n=2), blocker / "cache")
    with pytest.raises(ValueError, match=r"root='.*file.txt' is a file; .*pass root= a folder"):
        build(Items(n=2), blocker)
    assert blocker.read_text() == "x"


def test_bad_fingerprint_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match=r"fingerprint must be one of 'full', 'content', 'sample', got 'fast'"
    ):
        build(Items(n=2), tmp_path, fingerprint="fast")
    with pytest.raises(ValueError, match=r"fingerprint must be one of .* got None"):
        data_fingerprint(Items(n=2), mode=None)
    with pytest.raises(ValueError, match=r"item 0: image is an array of Python objects"):
        data_fingerprint([(np.array([object()]), 0)])
    assert not list(tmp_path.iterdir())


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
    for images in (5, "photos/"):
        with pytest.raises(TypeError, match=r"images must be a sequence of \(image, label\) items"):
            GraphDataset(images, conv, root=tmp_path)
    with pytest.raises(ValueError, match=r"item 0: label must be a class id >= 0, got -1"):
        GraphDataset([(np.zeros((8, 8, 3), np.uint8), -1)], conv, root=tmp_path, workers=0, progress=False)
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
# moved into one table: caches that users built then are still found with fingerprint="sample" (then
# converted again once, since files of cache format 1 carry no checksum). The default fingerprint
# ("full", every item) gives the second key, recorded when it became the default. The method is
# named: "slic" was the default then (now "slic_torch"). slic_torch's keys are those of its version 6
# (2026-12-07: each image's contrast stretched to [0, 1] first, as scikit-image does; version 5 of
# 2026-12-02 brought scikit-image's initial grid and choice of neighbour for small pieces, centres seeded
# with the colour of the pixel in the middle of their cell); grid's are those of its version 2 (2026-12-06:
# strips thinner than a patch cut into one row of patches).
@pytest.mark.parametrize(
    ("kwargs", "config", "key", "full_key"),
    [
        ({"method": "slic"}, {}, "314de647f92c39b858796994", "3886aa5c5ac5512ba3dee4c5"),
        (
            {"method": "slic_torch"},
            {"method": "slic_torch", "slic_torch": 6},
            "19a91457abc6069e2c1773a4",
            "9c08b013854ab0a1ca9102e9",
        ),
        (
            {"method": "grid", "edges": "knn", "k": 2, "features": ("area",), "keep_segments": False},
            {
                "method": "grid",
                "grid": 2,
                "edges": "knn",
                "k": 2,
                "features": ["area"],
                "keep_segments": False,
            },
            "94d95aa07ad205d158b69f58",
            "ecde23de9b4603d4c75da613",
        ),
        (
            {"method": "slic", "backbone": "fixed", "stages": (-1,)},
            {"cnn": _CNN},
            "c743bd8677bd1638fbe93291",
            "798341e81c3c8d8778eefaec",
        ),
    ],
    ids=["slic", "slic_torch", "grid_knn", "slic_cnn"],
)
def test_config_and_cache_key_are_unchanged(
    tmp_path, monkeypatch, fake_backbone, kwargs, config, key, full_key
):
    import skimage

    monkeypatch.setattr(skimage, "__version__", "0.26.0")
    if kwargs.get("backbone") == "fixed":
        kwargs = {**kwargs, "backbone": fixed_backbone(fake_backbone)}
    conv = ImageToGraph(n_segments=4, **kwargs)
    assert conv.config() == {**_BASE, **config}
    items = [(four_colours(), 0), (four_colours(flip=True), 1)]
    ds = GraphDataset(items, conv, root=tmp_path, workers=0, progress=False, fingerprint="sample")
    assert ds.key == key
    assert GraphDataset(items, conv, root=tmp_path, workers=0, progress=False).key == full_key


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


def test_non_finite_node_features_name_the_item(tmp_path, fake_backbone):
    backbone = fake_backbone()
    with torch.no_grad():
        backbone.conv.bias[0] = float("inf")
    conv = ImageToGraph(n_segments=4, backbone=backbone, batch_size=2)
    with pytest.raises(ValueError, match=r"^item 0: the node features contain NaN or infinite values"):
        GraphDataset(Items(n=3), conv, root=tmp_path, workers=0, progress=False, chunk_size=2)
    assert not any(p.suffix == ".pt" for p in tmp_path.iterdir())


def test_a_file_dated_in_the_future_is_hashed_not_waited_for(tmp_path, monkeypatch):
    """Clock skew or an archive from a machine whose clock ran ahead: at most one short wait, and the
    key is the same every time (its bytes are hashed)."""
    import bridge.dataset

    monkeypatch.setattr(bridge.dataset, "_RACY_NS", 200_000_000)  # 0.2 s instead of 2 s
    items = file_items(tmp_path)
    ahead = time.time_ns() + 3600 * 10**9  # an hour in the future
    os.utime(items.paths[1], ns=(ahead, ahead))
    start = time.monotonic()
    key = data_fingerprint(items)
    assert time.monotonic() - start < 30  # not the hour
    assert data_fingerprint(items) == key and items.reads == 0
    image = np.load(items.paths[1])
    image[0, 0, 0] ^= 1
    np.save(items.paths[1], image)
    os.utime(items.paths[1], ns=(ahead, ahead))  # same size and dates, other bytes: seen
    assert data_fingerprint(items) != key
