import numpy as np
import pytest
from scipy import ndimage

import bridge.segmentation as seg
from bridge.edges import region_adjacency
from bridge.segmentation import (
    SegmentationBackend,
    get_segmentation,
    list_segmentations,
    register_segmentation,
    relabel,
    superpixels,
    superpixels_batch,
    unregister_segmentation,
)

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
    assert info == {"n_segments_requested": 4, "n_segments": 4, "method": "slic_torch"}
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


def test_relabel_makes_contiguous_connected_ids():
    labels = np.array([[5, 5, 9, 9], [7, 5, 5, 9], [7, 7, 9, 5]])
    out = relabel(labels)
    # 9 and 5 each appear as two regions: the lone 9 and 5 in the last row are new labels
    assert out.tolist() == [[0, 0, 1, 1], [2, 0, 0, 1], [2, 2, 3, 4]]
    assert relabel(np.array([[-3, -3], [4, -3]])).tolist() == [[0, 0], [1, 0]]


# -- the back-end table ----------------------------------------------------------------------------


def halves(img, *, n_segments, compactness, sigma):
    """A test back-end: top half 0, bottom half 1, whatever the options."""
    return np.repeat((np.arange(img.shape[0]) >= img.shape[0] // 2)[:, None], img.shape[1], axis=1).astype(
        np.int64
    )


@pytest.fixture
def halves_backend():
    backend = register_segmentation("test_halves", halves, version="h-1", description="top and bottom")
    yield backend
    unregister_segmentation("test_halves")


def test_table_lists_the_built_ins_first():
    assert list_segmentations()[:3] == ["slic", "slic_torch", "grid"]
    assert seg.METHODS == tuple(list_segmentations())
    assert [get_segmentation(m).version for m in ("slic", "slic_torch", "grid")] == [None, 6, 2]
    assert [get_segmentation(m).batched for m in ("slic", "slic_torch", "grid")] == [False, True, False]
    assert all(get_segmentation(m).description for m in list_segmentations())


@pytest.mark.parametrize("name", ["watershed", None, ["slic"]])
def test_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ValueError, match=r"unknown method .*; expected one of 'slic', 'slic_torch', 'grid'"):
        get_segmentation(name)


@pytest.mark.parametrize("name", list_segmentations())
def test_every_backend_keeps_the_contract_on_four_quadrants(name):
    img = quadrants()
    labels = superpixels(img, n_segments=4, method=name)
    assert labels.shape == (32, 32)
    assert_contiguous_connected(labels)
    corners = [labels[:16, :16], labels[:16, 16:], labels[16:, :16], labels[16:, 16:]]
    assert all((c == c[0, 0]).all() for c in corners)
    assert labels.max() + 1 == 4
    ei = region_adjacency(labels)
    tl, tr, bl, br = (int(c[0, 0]) for c in corners)
    expected = {tuple(sorted(p)) for p in [(tl, tr), (tl, bl), (tr, br), (bl, br)]}
    assert {(a, b) for a, b in ei.t().tolist() if a < b} == expected  # 4 borders, no diagonal
    # the batch entry gives the same label maps as the single-image one
    batch = superpixels_batch([img, img[:, ::-1].copy()], n_segments=4, method=name)
    np.testing.assert_array_equal(batch[0], labels)
    assert batch[1].max() + 1 == 4


def test_registered_backend_is_used_and_listed(halves_backend):
    assert isinstance(halves_backend, SegmentationBackend)
    assert "test_halves" in list_segmentations() and "test_halves" in seg.METHODS
    img = np.zeros((6, 4, 3), np.uint8)
    labels, info = superpixels(img, n_segments=5, method="test_halves", return_info=True)
    assert labels[:3].max() == 0 and labels[3:].min() == 1
    assert info == {"n_segments_requested": 5, "n_segments": 2, "method": "test_halves"}
    # no batch function: the batch entry segments image by image
    assert not halves_backend.batched
    out = superpixels_batch([img, np.zeros((2, 2), np.uint8)], n_segments=2, method="test_halves")
    assert [o.tolist() for o in out] == [labels.tolist(), [[0, 0], [1, 1]]]


def test_unregistered_backend_is_gone():
    register_segmentation("test_gone", halves)
    assert unregister_segmentation("test_gone").name == "test_gone"
    assert "test_gone" not in list_segmentations()
    with pytest.raises(ValueError, match="unknown method 'test_gone'"):
        superpixels(np.zeros((4, 4), np.uint8), n_segments=2, method="test_gone")


def test_batch_function_is_called_once(halves_backend):
    calls = []

    def many(imgs, *, n_segments, compactness, sigma):
        calls.append(len(imgs))
        return [halves(im, n_segments=n_segments, compactness=compactness, sigma=sigma) for im in imgs]

    register_segmentation("test_halves", halves, batch=many, replace=True)
    out = superpixels_batch([np.zeros((4, 4), np.uint8)] * 3, n_segments=2, method="test_halves")
    assert calls == [3] and len(out) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "slic"}, ValueError, "'slic' is a built-in segmentation back-end and cannot be replaced"),
        ({"name": "Bad-Name"}, ValueError, "lower case letters, digits and '_'"),
        ({"name": "test_halves"}, ValueError, "'test_halves' is already registered; pass replace=True"),
        ({"name": "test_x", "single": "slic"}, TypeError, "single must be callable"),
        ({"name": "test_x", "batch": 3}, TypeError, "batch must be None or callable"),
        ({"name": "test_x", "version": 1.5}, TypeError, "version must be a str, an int or None, got 1.5"),
        ({"name": "test_x", "blocks": lambda *a, **k: None}, TypeError, "with a tensor function beside it"),
        ({"name": "test_x", "tensor": lambda *a, **k: None, "blocks": 3}, TypeError, "blocks must be None"),
    ],
)
def test_register_errors(halves_backend, kwargs, error, match):
    kwargs = {"single": halves, **kwargs}
    with pytest.raises(error, match=match):
        register_segmentation(kwargs.pop("name"), kwargs.pop("single"), **kwargs)
    assert "test_x" not in list_segmentations()


def test_built_ins_cannot_be_removed():
    with pytest.raises(ValueError, match="'grid' is a built-in segmentation back-end and cannot be removed"):
        unregister_segmentation("grid")
    assert "grid" in list_segmentations()


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (
            lambda img: np.zeros((3, 3), np.int64),
            r"dtype int64 and shape \(3, 3\) for an image of \(4, 4\)",
        ),
        (lambda img: np.zeros(img.shape[:2], np.float32), "returned a label map of dtype float32"),
    ],
)
def test_backend_output_is_checked(labels, match):
    register_segmentation("test_bad", lambda img, **_: labels(img))
    try:
        with pytest.raises(ValueError, match=match):
            superpixels(np.zeros((4, 4), np.uint8), n_segments=2, method="test_bad")
    finally:
        unregister_segmentation("test_bad")


# -- very elongated images ----------------------------------------------------------------------


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient(h: int, w: int) -> np.ndarray:
    ramp = np.linspace(0, 255, w).astype(np.uint8)
    return np.repeat(np.broadcast_to(ramp[None, :, None], (h, w, 1)), 3, axis=2)


def elongation_warnings(call) -> list[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's default: once per text and place
        call()
    return [str(w.message) for w in caught if "elongated" in str(w.message)]


@pytest.mark.parametrize(
    ("call", "count"),
    [
        (lambda: superpixels(noise(1, 2000), n_segments=10, method="slic"), 1),  # 1 segment for 10 asked
        (lambda: superpixels(noise(2000, 1), n_segments=10, method="slic"), 1),  # standing strips too
        (lambda: [superpixels(noise(1, 2000, seed=s), n_segments=10, method="slic") for s in range(3)], 1),
        (lambda: superpixels_batch([noise(1, 2000), noise(1, 1000)], n_segments=10, method="slic"), 1),
        (lambda: superpixels(noise(1, 2000), n_segments=10, method="grid"), 0),  # grid keeps the count
        (lambda: superpixels(gradient(1, 2000), n_segments=10, method="slic"), 0),  # SLIC did give 10
        (lambda: superpixels(noise(1, 20), n_segments=10, method="slic"), 0),  # ratio 20: not "very"
        (lambda: superpixels(noise(64, 64), n_segments=10, method="slic"), 0),
    ],
    ids=["strip", "standing", "three-strips", "batch", "grid", "smooth-strip", "ratio-20", "square"],
)
def test_far_fewer_segments_on_an_elongated_image_warn_once(call, count):
    messages = elongation_warnings(call)
    assert len(messages) == count
    if count:
        assert "method='slic' gives far fewer segments than n_segments=10" in messages[0]
        assert "use method='grid', or resize" in messages[0]


def test_elongated_image_labels_are_unchanged_by_the_warning():
    img = noise(1, 2000)
    with pytest.warns(UserWarning, match="very elongated"):
        labels, info = superpixels(img, n_segments=10, method="slic", return_info=True)
    assert info["n_segments"] == 1 and labels.shape == (1, 2000) and not labels.any()


# -- labels at block resolution -------------------------------------------------------------------


def test_segment_tensor_blocks_repeat_to_segment_tensor():
    import torch

    from bridge.slic import repeat_blocks

    imgs = torch.from_numpy(np.stack([noise(96, 120, seed=s) for s in range(2)])).float() / 255
    backend = get_segmentation("slic_torch")
    full = backend.segment_tensor(imgs, n_segments=15)
    small, fy, fx = backend.segment_tensor_blocks(imgs, n_segments=15)
    assert (fy, fx) == (2, 2) and small.shape == (2, 48, 60) and small.dtype == torch.int64
    assert torch.equal(repeat_blocks(small, fy, fx), full)
    # a back-end without a blocks function: its full-resolution maps and (1, 1)
    labels, fy, fx = get_segmentation("grid").segment_tensor_blocks(imgs, n_segments=15)
    assert (fy, fx) == (1, 1)
    assert torch.equal(labels, get_segmentation("grid").segment_tensor(imgs, n_segments=15))


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (lambda imgs: (imgs[..., 0].long(), 2, 2), r"returned torch.int64 \(1, 8, 8\) with blocks \(2, 2\)"),
        (lambda imgs: (imgs[:, ::3, ::3, 0].long(), 3, 3), r"with blocks \(3, 3\)"),
        (lambda imgs: (imgs[:, ::2, ::2, 0], 2, 2), r"returned torch.float32"),
        (lambda imgs: (imgs[..., 0].long(), 0, 1), r"with blocks \(0, 1\)"),
    ],
)
def test_backend_blocks_output_is_checked(result, match):
    import torch

    def tensor(images, **_):
        return torch.zeros(images.shape[:3], dtype=torch.int64)

    register_segmentation("test_blocks", halves, tensor=tensor, blocks=lambda images, **_: result(images))
    try:
        with pytest.raises(ValueError, match=match):
            get_segmentation("test_blocks").segment_tensor_blocks(torch.zeros(1, 8, 8, 3), n_segments=2)
    finally:
        unregister_segmentation("test_blocks")


def test_backend_tensor_output_is_checked():
    import torch

    register_segmentation("test_tensor", halves, tensor=lambda images, **_: images[:, ::2, :, 0].long())
    try:
        with pytest.raises(
            ValueError, match=r"returned torch.int64 \(1, 4, 8\) for a tensor batch of \(1, 8, 8\)"
        ):
            get_segmentation("test_tensor").segment_tensor(torch.zeros(1, 8, 8, 3), n_segments=2)
    finally:
        unregister_segmentation("test_tensor")
