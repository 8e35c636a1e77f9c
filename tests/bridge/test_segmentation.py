import numpy as np
import pytest
from scipy import ndimage

from bridge.segmentation import as_float_image, check_labels, relabel, superpixels

COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]], np.uint8)


def quadrants(h: int = 32, w: int = 32) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = COLOURS[0]
    img[: h // 2, w // 2 :] = COLOURS[1]
    img[h // 2 :, : w // 2] = COLOURS[2]
    img[h // 2 :, w // 2 :] = COLOURS[3]
    return img


def smooth_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, channels))
    img = ndimage.gaussian_filter(noise, sigma=(3, 3, 0))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def assert_contiguous_connected(labels: np.ndarray) -> None:
    n = labels.max() + 1
    assert labels.dtype == np.int64
    assert labels.min() == 0
    assert (np.bincount(labels.ravel()) > 0).all()
    # every label is one 4-connected region: splitting into components does not add labels
    assert relabel(labels).max() + 1 == n


def test_four_quadrants_give_four_segments():
    img = quadrants()
    labels, info = superpixels(img, n_segments=4, return_info=True)
    assert labels.shape == (32, 32)
    assert info == {"n_segments_requested": 4, "n_segments": 4, "method": "slic"}
    corners = [labels[:16, :16], labels[:16, 16:], labels[16:, :16], labels[16:, 16:]]
    assert all((c == c[0, 0]).all() for c in corners)  # each quadrant is one segment
    assert len({int(c[0, 0]) for c in corners}) == 4
    assert_contiguous_connected(labels)


@pytest.mark.parametrize("layout", ["hw", "hw1"])
def test_grayscale_quadrants(layout):
    img = quadrants()[:, :, 0].copy()
    img[16:, 16:] = 120
    if layout == "hw1":
        img = img[:, :, None]
    labels = superpixels(img, n_segments=4)
    assert labels.max() + 1 == 4
    assert_contiguous_connected(labels)


def test_float_input_matches_uint8():
    img = smooth_image(40, 48)
    a = superpixels(img, n_segments=20)
    b = superpixels(img.astype(np.float64) / 255.0, n_segments=20)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(17, 29, 3), (64, 48, 3), (33, 21), (5, 300, 3)])
def test_any_size_gives_contiguous_connected_labels(shape):
    img = smooth_image(shape[0], shape[1], 3, seed=shape[0])
    if len(shape) == 2:
        img = img[:, :, 0]
    labels, info = superpixels(img, n_segments=30, return_info=True)
    assert labels.shape == shape[:2]
    assert info["n_segments"] == labels.max() + 1 >= 2
    assert_contiguous_connected(labels)


def test_input_is_not_modified():
    img = smooth_image(32, 32)
    before = img.copy()
    superpixels(img, n_segments=10)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("img", [np.full((16, 16, 3), (200, 10, 10), np.uint8), np.full((9, 7), 0.3)])
def test_flat_image_gives_one_node(img):
    labels, info = superpixels(img, n_segments=12, return_info=True)
    assert info["n_segments"] == 1 and info["n_segments_requested"] == 12
    assert (labels == 0).all()


def test_grid_patches():
    labels, info = superpixels(
        np.zeros((224, 224, 3), np.uint8), method="grid", n_segments=196, return_info=True
    )
    assert info["n_segments"] == 196
    assert (np.bincount(labels.ravel()) == 16 * 16).all()
    assert labels[0, 0] == 0 and labels[0, 16] == 1 and labels[16, 0] == 14  # row-major patches
    assert_contiguous_connected(labels)


def test_grid_non_square_and_tiny():
    labels = superpixels(np.zeros((30, 20), np.uint8), method="grid", n_segments=6)
    assert labels.max() + 1 == 6  # 3 rows x 2 cols of 10 px
    assert_contiguous_connected(labels)
    one = superpixels(np.zeros((3, 2), np.uint8), method="grid", n_segments=6)
    assert sorted(one.ravel().tolist()) == list(range(6))


def test_more_segments_than_pixels_is_an_error():
    with pytest.raises(ValueError, match=r"n_segments=17 is larger than the number of pixels \(4x4 = 16\)"):
        superpixels(np.zeros((4, 4, 3), np.uint8), n_segments=17)
    superpixels(np.zeros((4, 4, 3), np.uint8), n_segments=16)  # exactly H*W is fine


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8, 3), np.int32), "dtype int32; expected uint8"),
        (np.zeros((3, 8, 8), np.uint8), "channel-first"),
        (np.zeros((8, 8, 4), np.uint8), r"shape \(8, 8, 4\); expected"),
        (np.zeros((8,), np.uint8), r"shape \(8,\)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.full((8, 8, 3), 200.0), r"values in \[200, 200\]; expected float values in \[0, 1\]"),
        ([[0, 1], [1, 0]], "numpy array"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        superpixels(image, n_segments=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "watershed"}, "unknown method 'watershed'; expected one of 'slic', 'slic_torch', 'grid'"),
        ({"n_segments": 0}, "n_segments must be a positive int, got 0"),
        ({"n_segments": 2.5}, "n_segments must be a positive int"),
        ({"compactness": 0}, "compactness must be a positive"),
        ({"sigma": -1}, "sigma must be a finite number >= 0"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        superpixels(np.zeros((8, 8, 3), np.uint8), **{"n_segments": 4, **kwargs})


def test_as_float_image_scales_uint8():
    out = as_float_image(np.array([[0, 255]], np.uint8))
    assert out.shape == (1, 2, 1) and out.dtype == np.float32
    assert out.ravel().tolist() == [0.0, 1.0]


def test_relabel_makes_contiguous_connected_ids():
    labels = np.array([[5, 5, 9, 9], [7, 5, 5, 9], [7, 7, 9, 5]])
    out = relabel(labels)
    # 9 and 5 each appear as two regions: the lone 9 and 5 in the last row are new labels
    assert out.tolist() == [[0, 0, 1, 1], [2, 0, 0, 1], [2, 2, 3, 4]]
    assert relabel(np.array([[-3, -3], [4, -3]])).tolist() == [[0, 0], [1, 0]]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0, 2], [2, 0]]), r"holes in its ids: 1 of 0..2 are unused \(e.g. \[1\]\).*relabel"),
        (np.array([[0, -1], [1, 0]]), "negative ids"),
        (np.zeros((2, 2), np.float32), "dtype float32; expected an integer"),
        (np.zeros((2, 2, 2), np.int64), "expected a 2-D label map"),
        (np.zeros((0, 3), np.int64), "empty"),
    ],
)
def test_check_labels_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        check_labels(labels)


def test_check_labels_accepts_tensor():
    torch = pytest.importorskip("torch")
    labels, n = check_labels(torch.tensor([[0, 1], [2, 1]]))
    assert n == 3 and labels.dtype == np.int64
