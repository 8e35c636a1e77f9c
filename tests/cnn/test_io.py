"""cnn.io: reading any image file as uint8 RGB, resizing, atomic writing."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest

from cnn.io import INTERPOLATIONS, UnreadableImageError, path_error, read_image, resize, write_image


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg_bytes(seed: int = 0) -> bytes:
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


# -- reading -------------------------------------------------------------------------------------


def test_read_png_returns_rgb_order(tmp_path):
    rgb = _rgb()
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, rgb)


def test_read_grey_png_repeats_channel(tmp_path):
    grey = _rgb()[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    out = read_image(str(tmp_path / "g.png"))
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_read_rgba_png_composites_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[0, :, 3] = 255  # opaque row keeps its colour
    rgba[1, 0, 3] = 0  # fully transparent -> white
    rgba[1, 1:, 3] = 128  # half transparent -> blend with white
    cv2.imwrite(str(tmp_path / "t.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = read_image(tmp_path / "t.png")
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0], np.tile([200, 100, 0], (3, 1)))
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    a = 128 / 255
    expected = np.rint(np.array([200, 100, 0]) * a + 255 * (1 - a))
    np.testing.assert_array_equal(out[1, 1], expected)


def test_read_16bit_png_scales_full_range(tmp_path):
    rgb = _rgb(seed=1)
    cv2.imwrite(str(tmp_path / "d.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_read_jpeg_close_to_original(tmp_path):
    (tmp_path / "p.jpg").write_bytes(_jpeg_bytes())
    out = read_image(tmp_path / "p.jpg")
    yy, xx = np.mgrid[0:48, 0:64]
    bgr = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.float64)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(np.float64) - bgr[:, :, ::-1]).mean() < 3.0


def test_read_jpeg_with_data_after_end_marker(tmp_path):
    (tmp_path / "m.jpg").write_bytes(_jpeg_bytes() + b"appended trailer, e.g. a motion photo")
    assert read_image(tmp_path / "m.jpg").shape == (48, 64, 3)


def test_read_jpeg_applies_exif_orientation(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "r.jpg", "JPEG", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(IsADirectoryError, match="load_dataset"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (np.random.default_rng(0).bytes(500), "OpenCV could not decode"),
        (b"", "empty"),
        (_jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated JPEG"),
        (_jpeg_bytes()[:-2], "truncated JPEG"),  # OpenCV 4 would decode this silently (grey bottom)
        (_jpeg_bytes()[:100], "truncated JPEG: the file ends inside its headers"),
    ],
    ids=["random-bytes", "empty", "half", "no-eoi", "headers-only"],
)
def test_unreadable_files_raise_value_error(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable image") as info:
        read_image(path)
    assert isinstance(info.value, UnreadableImageError)
    assert str(path) in str(info.value) and reason in info.value.reason


def test_unreadable_error_pickles():
    err = pickle.loads(pickle.dumps(UnreadableImageError("/x/y.jpg", "empty")))
    assert err.path == "/x/y.jpg" and err.reason == "empty" and "y.jpg" in str(err)


# -- resizing ------------------------------------------------------------------------------------


def test_resize_int_is_shorter_side():
    assert resize(np.zeros((40, 80, 3), np.uint8), 20).shape == (20, 40, 3)
    assert resize(np.zeros((90, 30), np.uint8), 10).shape == (30, 10)


def test_resize_pair_is_height_width_and_keeps_channel_axis():
    out = resize(np.zeros((10, 20, 1), np.float32), (7, 5))
    assert out.shape == (7, 5, 1) and out.dtype == np.float32


def test_resize_nearest_doubles_pixels():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = resize(img, (6, 8), interpolation="nearest")
    np.testing.assert_array_equal(out, np.repeat(np.repeat(img, 2, 0), 2, 1))


def test_resize_auto_uses_area_when_shrinking_and_linear_when_enlarging():
    img = _rgb(32, 32)
    np.testing.assert_array_equal(resize(img, 16), resize(img, 16, interpolation="area"))
    np.testing.assert_array_equal(resize(img, 48), resize(img, 48, interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(resize(img, 16), resize(img, 16, interpolation="nearest"))


@pytest.mark.parametrize("interpolation", ["auto", "area"])
def test_resize_area_handles_more_than_four_channels(interpolation):
    # cv2's area resize takes at most 4 channels; each channel must come out as if resized alone
    img = np.random.default_rng(0).integers(0, 256, (21, 30, 6), dtype=np.uint8)
    out = resize(img, (5, 7), interpolation=interpolation)
    assert out.shape == (5, 7, 6) and out.dtype == np.uint8
    for c in range(6):
        np.testing.assert_array_equal(out[:, :, c], resize(img[:, :, c], (5, 7), interpolation="area"))


def test_resize_accepts_every_name_and_aliases():
    img = _rgb(16, 16)
    for name in [*INTERPOLATIONS, "bilinear", "bicubic"]:
        assert resize(img, 8, interpolation=name).shape == (8, 8, 3)


def test_resize_errors():
    img = _rgb(8, 8)
    with pytest.raises(ValueError, match="interpolation='fancy'.*'area'"):
        resize(img, 4, interpolation="fancy")
    with pytest.raises(ValueError, match=r"size=0 .*\(height, width\)"):
        resize(img, 0)
    with pytest.raises(ValueError, match="size"):
        resize(img, (4, 4, 4))
    with pytest.raises(TypeError, match="dtype int64"):
        resize(img.astype(np.int64), 4)
    with pytest.raises(TypeError, match="numpy array"):
        resize([[1, 2]], 4)


def test_read_image_path_of_wrong_type():
    with pytest.raises(TypeError, match=r"path must be a file path \(a str or pathlib.Path\), got int 42"):
        read_image(42)


# -- writing -------------------------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path):
    rgb = _rgb(seed=3)
    out = write_image(tmp_path / "sub" / "x.png", rgb)
    assert out == tmp_path / "sub" / "x.png"
    np.testing.assert_array_equal(read_image(out), rgb)
    np.testing.assert_array_equal(cv2.imread(str(out))[:, :, ::-1], rgb)  # stored as a normal RGB file
    assert os.listdir(tmp_path / "sub") == ["x.png"]  # no temporary file left


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp", ".bmp"])
def test_write_uint16_to_an_8_bit_format_scales_like_read_image(tmp_path, suffix):
    img = np.full((8, 8, 3), 40000, np.uint16)
    img[:, :, 1] = 65535
    img[:, :, 2] = 600
    back = read_image(write_image(tmp_path / f"u16{suffix}", img))
    expected = np.rint(img / 257.0)  # 156, 255, 2: scaled as read_image scales 16 bits, not clipped
    assert np.abs(back.astype(int) - expected).max() <= 1
    for keeps in (".png", ".tif"):  # formats that hold 16 bits keep them
        out = write_image(tmp_path / f"u16{keeps}", img)
        assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(read_image(tmp_path / "u16.png"), expected.astype(np.uint8))


def test_write_float_and_grey(tmp_path):
    img = np.full((4, 5, 3), 0.5, np.float32)
    img[0, 0] = (2.0, -1.0, 1.0)  # clipped
    back = read_image(write_image(tmp_path / "f.png", img))
    assert back[1, 1].tolist() == [128, 128, 128] and back[0, 0].tolist() == [255, 0, 255]
    grey = read_image(write_image(tmp_path / "g.png", np.full((3, 3), 7, np.uint8)))
    assert grey.shape == (3, 3, 3) and (grey == 7).all()


def test_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    old = _rgb(seed=4)
    write_image(path, old)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, _rgb(seed=5))
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(path), old)
    assert os.listdir(tmp_path) == ["keep.png"]


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '\.xyz'"):
        write_image(tmp_path / "a.xyz", _rgb())
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="int32"):
        write_image(tmp_path / "a.png", np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "a.png", _rgb(), quality=90)
    assert not any(tmp_path.iterdir())


# -- non-finite pixels and paths that cannot be reached ---------------------------------------------


def _with(value: float, at: tuple[int, ...], shape: tuple[int, ...] = (4, 5, 3)) -> np.ndarray:
    img = np.full(shape, 0.5, np.float32)
    img[at] = value
    return img


@pytest.mark.parametrize(
    ("img", "fragment"),
    [
        (
            _with(np.nan, (1, 2, 0)),
            r"img contains 1 NaN or infinite value\(s\) \(first at index \(1, 2, 0\)",
        ),
        (_with(np.inf, (3, 4), shape=(4, 5)), r"1 NaN or infinite value\(s\) \(first at index \(3, 4\)\)"),
        (_with(-np.inf, (0, 0, 2)).astype(np.float64), r"first at index \(0, 0, 2\)"),
        (np.full((2, 2, 4), np.nan, np.float32), r"img contains 16 NaN"),
    ],
    ids=["nan-rgb", "inf-grey", "neg-inf-float64", "all-nan-rgba"],
)
def test_write_refuses_non_finite_pixels(tmp_path, img, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        write_image(tmp_path / "a.png", img)
    assert "np.nan_to_num" in str(info.value)  # the fix
    assert not any(tmp_path.iterdir())  # nothing written


def test_write_still_clips_finite_floats(tmp_path):
    write_image(tmp_path / "a.png", np.array([[-3.0, 0.5, 7.0]]))
    assert read_image(tmp_path / "a.png")[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda p: os.symlink(p, p), OSError, r"'.*a\.png' cannot be reached: .*symbolic link loop"),
        (
            lambda p: os.symlink(p.parent / "b.png", p),
            FileNotFoundError,
            r"broken symbolic link \(to '.*b.png'",
        ),
        (lambda p: None, FileNotFoundError, r"image file '.*a\.png' does not exist"),
    ],
    ids=["loop", "broken-link", "missing"],
)
def test_unreachable_paths_are_named_for_what_they_are(tmp_path, make, error, fragment):
    path = tmp_path / "a.png"
    make(path)
    with pytest.raises(error, match=fragment) as info:
        read_image(path)
    if error is OSError:
        assert "does not exist" not in str(info.value)
    assert str(path_error(path, what="image file")) == str(info.value)
    assert path_error(tmp_path) is None
