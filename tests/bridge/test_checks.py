"""Tests of bridge.checks: the input checks shared by the bridge modules."""

import dataclasses

import numpy as np
import pytest
import torch

from bridge.checks import (
    all_finite,
    as_float_image,
    check_backbone,
    check_compactness,
    check_label,
    check_labels,
    check_n_segments,
    check_sigma,
    check_size,
    is_grey_rgb,
)


def test_as_float_image_scales_uint8():
    out = as_float_image(np.array([[0, 255]], np.uint8))
    assert out.shape == (1, 2, 1) and out.dtype == np.float32
    assert out.ravel().tolist() == [0.0, 1.0]


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


def test_as_float_image_keeps_floats_and_never_modifies_input():
    img = np.array([[0.25, 1.0]], np.float64)
    out = as_float_image(img)
    out[0, 0, 0] = 0.0
    assert img[0, 0] == 0.25 and out.dtype == np.float32


def test_as_float_image_names_the_argument():
    with pytest.raises(ValueError, match=r"images\[3\] has dtype int16"):
        as_float_image(np.zeros((2, 2), np.int16), name="images[3]")


@pytest.mark.parametrize(("label", "expected"), [(3, 3), (np.int64(2), 2), (torch.tensor([4]), 4)])
def test_check_label_accepts_integer_ids(label, expected):
    assert check_label(label) == expected


@pytest.mark.parametrize(
    ("label", "match"),
    [
        (1.5, r"label must be an integer class id, got 1.5 \(float\)"),
        (True, "got True"),
        ("3", "got '3'"),
        (torch.tensor([1, 2]), r"one integer class id, got a tensor of shape \(2,\)"),
        (-1, r"class id >= 0, got -1"),
        (np.int64(-3), r"class id >= 0, got -3"),
    ],
)
def test_check_label_errors(label, match):
    with pytest.raises(ValueError, match=match):
        check_label(label)


def test_option_checks_return_plain_numbers():
    assert check_n_segments(np.int16(7)) == 7 and type(check_n_segments(np.int16(7))) is int
    assert check_compactness(3) == 3.0 and check_sigma(0) == 0.0


@pytest.mark.parametrize(
    ("check", "value", "match"),
    [
        (check_n_segments, True, "n_segments must be a positive int, got True"),
        (check_n_segments, -2, "n_segments must be a positive int, got -2"),
        (check_compactness, float("inf"), "compactness must be a positive finite number, got inf"),
        (check_compactness, "10", "compactness must be a positive finite number, got '10'"),
        (check_sigma, float("nan"), "sigma must be a finite number >= 0, got nan"),
    ],
)
def test_option_check_errors(check, value, match):
    with pytest.raises(ValueError, match=match):
        check(value)


def test_check_size():
    check_size(3, 4, 12)  # exactly H*W is fine
    with pytest.raises(ValueError, match=r"n_segments=13 is larger than the number of pixels \(3x4 = 12\)"):
        check_size(3, 4, 13)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    input_size: int = 32
    mean: tuple = (0.5, 0.5, 0.5)


class _Backbone:
    cfg = _Cfg()

    def features(self, x):
        return [x]


def test_check_backbone_errors():
    with pytest.raises(TypeError, match=r"backbone int lacks \['features', 'cfg'\]"):
        check_backbone(3)
    with pytest.raises(TypeError, match=r"backbone.cfg lacks \['std'\]"):
        check_backbone(_Backbone())


def test_is_grey_rgb():
    grey = torch.rand(2, 5, 7, 1).expand(-1, -1, -1, 3).contiguous()
    assert is_grey_rgb(grey) and is_grey_rgb(grey.reshape(-1, 3)) and is_grey_rgb(grey.double())
    for channel in (0, 1, 2):  # one pixel off in any channel
        off = grey.clone()
        off[1, 4, 6, channel] += 0.25
        assert not is_grey_rgb(off)
    nan = grey.clone()
    nan[0, 0, 0] = float("nan")  # NaN equals nothing: not grey, and the finiteness checks see it
    assert not is_grey_rgb(nan)
    assert not is_grey_rgb(grey[..., :1]) and not is_grey_rgb(torch.zeros(2, 3, 3, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_all_finite_is_isfinite_all(dtype):
    """The answer of ``torch.isfinite(t).all()`` for one NaN, +inf or -inf anywhere (first, middle,
    last element, a row or a column), and for finite tensors of extreme values."""
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(37, 29, generator=gen).to(dtype)
    assert all_finite(base)
    big = torch.finfo(dtype).max
    assert all_finite(torch.tensor([big, -big, torch.finfo(dtype).tiny, 0.0], dtype=dtype))
    for bad in (float("nan"), float("inf"), -float("inf")):
        for at in ((0, 0), (18, 11), (36, 28), (slice(None), 3), (5, slice(None))):
            t = base.clone()
            t[at] = bad
            assert all_finite(t) is bool(torch.isfinite(t).all()) is False
    assert not all_finite(base[:, 3].clone().fill_(float("nan")).view(-1, 1).expand(-1, 4))  # a strided view


def test_all_finite_of_empty_and_integer_tensors():
    assert all_finite(torch.empty(0, 5)) and all_finite(torch.arange(6)) and all_finite(torch.zeros(2, 0))
