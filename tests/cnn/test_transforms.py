"""cnn.transforms: pipelines built from a PreprocessConfig, and their inverse for display."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cnn.backbones import PreprocessConfig
from cnn.io import read_image, write_image
from cnn.transforms import (
    ToRGBImage,
    build_transforms,
    center_view,
    denormalize,
    normalize_images,
    to_display,
)

IMAGENET = PreprocessConfig(input_size=32, crop_pct=0.8)  # resize 40, crop 32, ImageNet mean/std
HALF = PreprocessConfig(input_size=32, crop_pct=0.8, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
NEAREST = PreprocessConfig(input_size=32, crop_pct=0.8, interpolation="nearest")


def _img(h: int = 50, w: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _normalised(img: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(cfg.mean).view(3, 1, 1)) / torch.tensor(cfg.std).view(3, 1, 1)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("cfg", [IMAGENET, HALF], ids=["imagenet", "half"])
def test_output_shape_and_dtype(cfg, train):
    tf = build_transforms(cfg, train=train)
    for img in (_img(), _img()[:, :, 0], Image.fromarray(_img()), Image.fromarray(_img()).convert("L")):
        out = tf(img)
        assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 32, 32)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("cfg", [IMAGENET, HALF], ids=["imagenet", "half"])
def test_constant_127_gives_known_values(cfg, train):
    out = build_transforms(cfg, train=train)(np.full((48, 64, 3), 127, np.uint8))
    expected = (127 / 255 - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(out.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out.std(dim=(1, 2)).numpy(), 0.0, atol=1e-5)
    if cfg is IMAGENET:  # the numbers of the lecture notes
        np.testing.assert_allclose(expected, [0.0569, 0.1877, 0.4091], atol=1e-4)


def test_eval_is_resize_then_centre_crop():
    img = _img(40, 40)  # resize_size is 40: the resize keeps it, the crop takes the middle 32x32
    out = build_transforms(NEAREST, train=False)(img)
    torch.testing.assert_close(out, _normalised(img[4:36, 4:36], NEAREST))


def test_eval_resizes_shorter_side_to_resize_size():
    # a 20x80 stripe image: the shorter side becomes 40 (-> 40x160), the crop keeps columns 64..96
    img = np.zeros((20, 80, 3), np.uint8)
    img[:, 40:] = 255
    out = build_transforms(NEAREST, train=False)(img)
    shown = to_display(out, NEAREST)
    assert (shown[:, :16] < 0.01).all() and (shown[:, 16:] > 0.99).all()


def test_eval_is_deterministic_and_leaves_input_alone():
    img = _img()
    copy = img.copy()
    tf = build_transforms(HALF, train=False)
    torch.testing.assert_close(tf(img), tf(img))
    np.testing.assert_array_equal(img, copy)


def test_train_is_random_but_seeded():
    img = _img(seed=1)
    tf = build_transforms(IMAGENET, train=True)
    torch.manual_seed(0)
    a = [tf(img) for _ in range(3)]
    torch.manual_seed(0)
    b = [tf(img) for _ in range(3)]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert not torch.equal(a[0], a[1])


def test_train_flips_half_the_time():
    img = _img(32, 32, seed=2)
    tf = build_transforms(NEAREST, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # crop = whole image
    plain, flipped = _normalised(img, NEAREST), _normalised(img[:, ::-1].copy(), NEAREST)
    torch.manual_seed(0)
    outs = [tf(img) for _ in range(200)]
    n_plain = sum(torch.allclose(o, plain, atol=1e-5) for o in outs)
    n_flipped = sum(torch.allclose(o, flipped, atol=1e-5) for o in outs)
    assert n_plain + n_flipped == 200
    assert 70 <= n_flipped <= 130
    never = build_transforms(NEAREST, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)
    assert all(torch.allclose(never(img), plain, atol=1e-5) for _ in range(20))


def test_accepts_backbone_like_object_and_uses_its_cfg():
    out = build_transforms(SimpleNamespace(cfg=HALF), train=False)(np.full((40, 40, 3), 255, np.uint8))
    torch.testing.assert_close(out, torch.ones(3, 32, 32))  # (1 - 0.5) / 0.5


def test_repr_shows_the_configuration():
    text = repr(build_transforms(HALF, train=True))
    assert "ToRGBImage" in text and "RandomResizedCrop" in text and "BICUBIC" in text
    assert "RandomHorizontalFlip(p=0.5)" in text and "mean=[0.5, 0.5, 0.5]" in text
    text = repr(build_transforms(IMAGENET, train=False))
    assert "Resize(size=[40]" in text and "CenterCrop(size=(32, 32))" in text and "0.485" in text


def test_errors():
    with pytest.raises(TypeError, match="Backbone .* or a PreprocessConfig"):
        build_transforms("resnet18", train=False)
    with pytest.raises(TypeError, match="train must be True or False"):
        build_transforms(HALF, train="yes")
    with pytest.raises(ValueError, match="cfg.interpolation='lanczos'.*'bilinear'"):
        build_transforms(PreprocessConfig(interpolation="lanczos"), train=False)
    with pytest.raises(ValueError, match="scale"):
        build_transforms(HALF, train=True, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="hflip"):
        build_transforms(HALF, train=True, hflip=2)
    tf = build_transforms(HALF, train=False)
    with pytest.raises(TypeError, match="uint8"):
        tf(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        tf(np.zeros((8, 8, 4), np.uint8))


def test_to_rgb_image_tensor_inputs():
    t = torch.rand(1, 5, 6)
    out = ToRGBImage()(t)
    assert out.shape == (3, 5, 6) and torch.equal(out[2], t[0])
    assert repr(ToRGBImage()) == "ToRGBImage()"


def _grey16() -> np.ndarray:
    img = np.full((4, 5), 20000, np.uint16)
    img[0, 0], img[0, 1] = 60000, 300
    return img


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("grey16.png", _grey16()),  # PIL mode I;16
        ("rgb.png", _img(4, 5, seed=1)),
        ("rgba.png", np.dstack([_img(4, 5, seed=2), np.arange(20, dtype=np.uint8).reshape(4, 5) * 13])),
        ("grey_alpha.png", np.dstack([_img(4, 5, seed=3)[:, :, :1], np.full((4, 5, 1), 100, np.uint8)])),
    ],
)
def test_to_rgb_image_converts_pil_images_as_read_image_does(tmp_path, name, pixels):
    path = tmp_path / name
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha: PIL writes it, cnn.io does not
        Image.fromarray(pixels, mode="LA").save(path)
    else:
        write_image(path, pixels)
    with Image.open(path) as pil:
        out = ToRGBImage()(pil)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), read_image(path))


def test_to_rgb_image_scales_16_bit_and_float_pil_modes():
    grey16 = _grey16()
    expected = np.rint(grey16 / 257.0).astype(np.uint8)  # 233, 1, 78: not clipped to 255
    for pil, mode in ((Image.fromarray(grey16), "I;16"), (Image.fromarray(grey16.astype(np.int32)), "I")):
        assert pil.mode == mode
        np.testing.assert_array_equal(ToRGBImage()(pil).numpy(), np.broadcast_to(expected, (3, 4, 5)))
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], np.float32))  # mode F: 0..1, clipped
    assert f.mode == "F" and ToRGBImage()(f)[0, 0].tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match=r"mode 'I' holds values -5\.\.70000, outside .*0\.\.65535"):
        ToRGBImage()(Image.fromarray(np.array([[-5, 70000]], np.int32)))
    palette = Image.fromarray(_img(4, 5)).convert("P")
    np.testing.assert_array_equal(
        ToRGBImage()(palette).permute(1, 2, 0).numpy(), np.asarray(palette.convert("RGB"))
    )


def test_denormalize_inverts_normalize():
    img = _img(40, 40, seed=3)
    out = build_transforms(NEAREST, train=False)(img)
    back = denormalize(out, NEAREST)
    expected = torch.from_numpy(img[4:36, 4:36]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, expected, atol=1e-6, rtol=0)
    batch = denormalize(torch.stack([out, out]), SimpleNamespace(cfg=NEAREST))
    assert batch.shape == (2, 3, 32, 32)
    assert denormalize(torch.full((3, 2, 2), 10.0), HALF).max() == 1.0  # clamped


def test_to_display_layout_and_range():
    x = torch.randn(3, 4, 5) * 3
    shown = to_display(x, HALF)
    assert shown.shape == (4, 5, 3) and shown.dtype == np.float32
    assert shown.min() >= 0 and shown.max() <= 1
    expected = np.clip(np.transpose(x.numpy() * 0.5 + 0.5, (1, 2, 0)), 0, 1)
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert to_display(torch.rand(2, 3, 4, 5), HALF).shape == (2, 4, 5, 3)
    raw = torch.rand(3, 4, 5)
    np.testing.assert_allclose(to_display(raw), np.transpose(raw.numpy(), (1, 2, 0)))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_display(torch.rand(4, 5), HALF)


def test_center_view_resizes_shorter_side_then_crops_the_middle():
    # 20x80 stripes: shorter side 20 -> 40 (40x160); the 32x32 crop keeps columns 64..96 of 160,
    # i.e. 32..48 of the original, half black (< 40) and half white (>= 40)
    img = np.zeros((20, 80), np.uint8)
    img[:, 40:] = 255
    out = center_view(img, 32, 40)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, :14] < 5).all() and (out[:, 18:] > 250).all()
    # resize_size == size on a square image of that size: the view is the image itself
    rgb = _img(32, 32)
    np.testing.assert_array_equal(center_view(rgb, 32, 32), rgb)
    # shrinking (area): a 64x64 image made of 2x2 constant blocks comes back as the blocks
    blocks = _img(32, 32, seed=4)
    np.testing.assert_array_equal(center_view(blocks.repeat(2, 0).repeat(2, 1), 32, 32), blocks)


def test_center_view_leaves_input_alone_and_checks_arguments():
    img = _img(30, 50, seed=5)
    copy = img.copy()
    center_view(img, 16, 20)
    np.testing.assert_array_equal(img, copy)
    with pytest.raises(ValueError, match="resize_size=10 is smaller than size=16"):
        center_view(img, 16, 10)
    with pytest.raises(ValueError, match="size must be a positive int, got 0"):
        center_view(img, 0, 10)
    with pytest.raises(TypeError, match="image must be uint8, got float32"):
        center_view(img.astype(np.float32), 16, 20)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB or \(H, W\) grey, got shape \(30, 50, 4\)"):
        center_view(np.zeros((30, 50, 4), np.uint8), 16, 20)


def test_normalize_images_known_values_and_layout():
    imgs = np.zeros((2, 4, 5, 3), np.uint8)
    imgs[..., 0], imgs[..., 1], imgs[..., 2] = 0, 127, 255
    imgs[1] = 255
    x = normalize_images(imgs, IMAGENET.mean, IMAGENET.std)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    expected = (np.array([0, 127, 255]) / 255 - np.array(IMAGENET.mean)) / np.array(IMAGENET.std)
    np.testing.assert_allclose(x[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        x[1].mean(dim=(1, 2)).numpy(), (1 - np.array(IMAGENET.mean)) / np.array(IMAGENET.std), atol=1e-5
    )
    # the same numbers as the evaluation pipeline on an image already at its size
    img = _img(32, 32, seed=6)
    torch.testing.assert_close(normalize_images(img[None], HALF.mean, HALF.std)[0], _normalised(img, HALF))


def test_normalize_images_errors():
    with pytest.raises(ValueError, match=r"batch \(B, H, W, 3\).*image\[None\]"):
        normalize_images(_img(4, 4), HALF.mean, HALF.std)
    with pytest.raises(TypeError, match="images must be uint8, got float64"):
        normalize_images(np.zeros((1, 4, 4, 3)), HALF.mean, HALF.std)
    with pytest.raises(ValueError, match="3 values each"):
        normalize_images(np.zeros((1, 4, 4, 3), np.uint8), (0.5, 0.5), HALF.std)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize_images(np.zeros((1, 4, 4, 3), np.uint8), HALF.mean, (0.5, 0.0, 0.5))
