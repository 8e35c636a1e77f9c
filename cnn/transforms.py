"""Preprocessing that follows a backbone's config: train / eval pipelines and their inverse for display.

:func:`build_transforms` reads everything (input size, resize size, mean, std, interpolation) from the
backbone's :class:`~cnn.backbones.PreprocessConfig`, so nothing here hard-codes ImageNet numbers.
:func:`denormalize` and :func:`to_display` undo the normalisation for plotting. :func:`center_view` and
:func:`normalize_images` do the evaluation view and the normalisation on numpy uint8 images in batches
(OpenCV resize, one tensor operation for a whole batch), as the comparison and ``pixgraph explain`` use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from cnn.backbones import PreprocessConfig
from cnn.io import to_rgb_uint8

__all__ = ["ToRGBImage", "build_transforms", "center_view", "denormalize", "normalize_images", "to_display"]

_TENSOR_INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")


def _config(backbone_or_cfg: Any, argname: str = "backbone_or_cfg") -> PreprocessConfig:
    if isinstance(backbone_or_cfg, PreprocessConfig):
        return backbone_or_cfg
    cfg = getattr(backbone_or_cfg, "cfg", None)
    if isinstance(cfg, PreprocessConfig):
        return cfg
    raise TypeError(
        f"{argname} must be a Backbone (from cnn.create_backbone) or a PreprocessConfig, "
        f"got {type(backbone_or_cfg).__name__}"
    )


def _interpolation(cfg: PreprocessConfig) -> InterpolationMode:
    name = str(cfg.interpolation).lower()
    if name not in _TENSOR_INTERPOLATIONS:
        raise ValueError(
            f"cfg.interpolation={cfg.interpolation!r} is not supported for tensor images; use one of "
            f"{', '.join(repr(n) for n in _TENSOR_INTERPOLATIONS)}"
        )
    return InterpolationMode(name)


# PIL modes converted by PIL first (to a mode below), and the modes whose arrays go to cnn.io's
# conversion as they are: 1-bit, palette, premultiplied-alpha and non-RGB colour spaces are the former.
_PIL_CONVERT = {
    "1": "L",
    "PA": "RGBA",
    "La": "LA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_PIL_ARRAY_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _pil_to_rgb(img: Any) -> np.ndarray:
    """A PIL image as uint8 RGB ``(H, W, 3)``, converted exactly as :func:`cnn.io.read_image` converts
    the same pixels from a file (16-bit scaled by 1/257, float taken as 0..1, alpha over white)."""
    mode = img.mode
    target = _PIL_CONVERT.get(mode)
    if mode == "P":
        target = "RGBA" if "transparency" in img.info else "RGB"
    if target is not None:
        try:
            img = img.convert(target)
        except ValueError as err:
            raise ValueError(
                f"PIL image of mode {mode!r} cannot be converted to RGB ({err}); convert it to 'RGB' "
                "yourself, or read the file with cnn.read_image"
            ) from None
    if img.mode not in _PIL_ARRAY_MODES:
        raise ValueError(
            f"PIL image mode {img.mode!r} is not supported; supported modes: "
            f"{', '.join(sorted({*_PIL_ARRAY_MODES, *_PIL_CONVERT, 'P'}))}; convert it to 'RGB' first "
            "(img.convert('RGB')) or read the file with cnn.read_image"
        )
    arr = np.asarray(img)
    if not arr.dtype.isnative:  # 'I;16B': big-endian 16 bits
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if img.mode == "I":  # 32-bit integers: how older Pillow opens 16-bit grey files
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"PIL image of mode 'I' holds values {lo}..{hi}, outside the 16-bit range 0..65535 that "
                "it is read as; scale it to 0..255 and pass np.uint8 pixels"
            )
        arr = arr.astype(np.uint16)
    return to_rgb_uint8(arr, f"<PIL image, mode {img.mode}>", bgr=False)


class ToRGBImage:
    """Turn a numpy array, PIL image or tensor into a 3-channel ``tv_tensors.Image`` (uint8 stays uint8).

    The first step of every pipeline from :func:`build_transforms`. Grey inputs get their channel
    repeated; the input is never modified. A PIL image is converted as :func:`cnn.io.read_image`
    converts the same file: 16-bit modes (``I;16``, and ``I`` with values in 0..65535) are scaled to
    0..255 (``round(v / 257)``), ``F`` is taken as 0..1, an alpha channel is composited over white;
    ``1``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and ``RGBX`` go through PIL's own conversion.

    Shapes:
        - input: numpy ``(H, W, 3)`` / ``(H, W)`` / ``(H, W, 1)`` uint8, a PIL image (modes above, and
          ``L``, ``LA``, ``RGB``, ``RGBA``), or a tensor ``(3, H, W)`` / ``(1, H, W)`` (uint8, or float in
          ``[0, 1]``).
        - output: ``(3, H, W)``.

    Raises:
        ValueError: a PIL mode not listed above, or a mode ``I`` image with values outside 0..65535.

    Example:
        >>> ToRGBImage()(np.zeros((4, 5), np.uint8)).shape
        torch.Size([3, 4, 5])
    """

    def __call__(self, img: Any) -> tv_tensors.Image:
        from PIL import Image as PILImage

        if isinstance(img, PILImage.Image):
            img = _pil_to_rgb(img)
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8:
                raise TypeError(
                    f"image arrays must be uint8 (as cnn.read_image returns them), got {img.dtype}; "
                    "scale to 0..255 and use .astype(np.uint8)"
                )
            if img.ndim == 2:
                img = img[:, :, None]
            if img.ndim != 3 or img.shape[2] not in (1, 3):
                raise ValueError(
                    f"image arrays must be (H, W, 3) RGB or (H, W) grey, got shape {img.shape}; "
                    "cnn.read_image converts any image file to (H, W, 3)"
                )
            if not img.flags.writeable:  # torch warns on read-only arrays (e.g. from PIL)
                img = img.copy()
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        elif isinstance(img, torch.Tensor):
            if img.ndim != 3 or img.shape[0] not in (1, 3):
                raise ValueError(f"image tensors must be (3, H, W) or (1, H, W), got {tuple(img.shape)}")
            t = img.as_subclass(torch.Tensor)
        else:
            raise TypeError(
                f"expected a numpy uint8 array (H, W, 3), a PIL image or a tensor (3, H, W), "
                f"got {type(img).__name__}"
            )
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        return tv_tensors.Image(t.contiguous())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_transforms(
    backbone_or_cfg: Any,
    *,
    train: bool,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
) -> v2.Compose:
    """The preprocessing a backbone expects, for training (augmented) or evaluation (deterministic).

    - ``train=True``: ``RandomResizedCrop(S, scale, ratio)`` -> ``RandomHorizontalFlip(hflip)`` ->
      float in ``[0, 1]`` (``ToTensor``) -> ``Normalize(mean, std)``.
    - ``train=False``: ``Resize(resize_size)`` (shorter side; 256 for S = 224 at crop_pct 0.875) ->
      ``CenterCrop(S)`` -> ``ToTensor`` -> ``Normalize(mean, std)``.

    ``S``, ``resize_size``, ``mean``, ``std`` and the interpolation come from the config. Randomness
    uses torch's global generator: ``torch.manual_seed`` makes training crops repeatable.

    Args:
        backbone_or_cfg: a :class:`~cnn.backbones.Backbone` (its ``.cfg`` is used) or a
            :class:`~cnn.backbones.PreprocessConfig`.
        train: training pipeline (random crop and flip) or evaluation pipeline.
        scale: area range of the random crop, as a fraction of the image (training only); raise the
            lower bound (e.g. ``(0.5, 1.0)``) for small or already centred images.
        ratio: aspect ratio range of the random crop (training only).
        hflip: probability of a horizontal flip (training only); 0 turns flipping off.

    Returns:
        A ``torchvision.transforms.v2.Compose`` (its ``repr`` lists the steps).

    Shapes:
        - input: numpy uint8 ``(H, W, 3)`` RGB (as :func:`cnn.io.read_image` and
          :func:`cnn.datasets.load_dataset` give), numpy ``(H, W)`` grey, or a PIL image.
        - output: float32 tensor ``(3, S, S)``.

    Example:
        >>> tf = build_transforms(create_backbone("efficientnet_lite0"), train=False)
        >>> tf(np.zeros((300, 400, 3), np.uint8)).shape
        torch.Size([3, 224, 224])
    """
    cfg = _config(backbone_or_cfg)
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")
    interp = _interpolation(cfg)
    size = int(cfg.input_size)
    steps: list[Any] = [ToRGBImage()]
    if train:
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio!r}")
        if not 0.0 <= float(hflip) <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip!r}")
        steps += [
            v2.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), interpolation=interp),
            v2.RandomHorizontalFlip(p=float(hflip)),
        ]
    else:
        steps += [
            v2.Resize(int(cfg.resize_size), interpolation=interp, antialias=True),
            v2.CenterCrop(size),
        ]
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def _mean_std(cfg: PreprocessConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(cfg.mean, dtype=like.dtype, device=like.device).view(-1, 1, 1)
    std = torch.as_tensor(cfg.std, dtype=like.dtype, device=like.device).view(-1, 1, 1)
    return mean, std


def denormalize(tensor: torch.Tensor, cfg: Any) -> torch.Tensor:
    """Undo ``Normalize(cfg.mean, cfg.std)``: ``x * std + mean``, clamped to ``[0, 1]``.

    Args:
        tensor: normalised image(s); not modified.
        cfg: the :class:`~cnn.backbones.PreprocessConfig` (or the Backbone) that normalised them.

    Returns:
        A new float tensor in ``[0, 1]``.

    Shapes:
        - tensor: ``(3, H, W)`` or ``(B, 3, H, W)``; output: the same.

    Example:
        >>> cfg = PreprocessConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> denormalize(torch.zeros(3, 2, 2), cfg).unique()
        tensor([0.5000])
    """
    cfg = _config(cfg, "cfg")
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != len(cfg.mean):
        raise ValueError(
            f"tensor must be (3, H, W) or (B, 3, H, W) with {len(cfg.mean)} channels, "
            f"got shape {tuple(tensor.shape)}"
        )
    x = tensor.detach().as_subclass(torch.Tensor)
    if not x.is_floating_point():
        x = x.float()
    mean, std = _mean_std(cfg, x)
    return (x * std + mean).clamp(0.0, 1.0)


def to_display(tensor: torch.Tensor | np.ndarray, cfg: Any = None) -> np.ndarray:
    """A normalised image tensor as a numpy array ready for ``plt.imshow``.

    Denormalises with ``cfg`` (skip it with ``cfg=None`` for tensors already in ``[0, 1]``), moves the
    channels last with ``np.transpose(x, (1, 2, 0))`` and clips to ``[0, 1]``, as in the lecture notes.

    Args:
        tensor: one image or a batch (torch tensor or numpy array); not modified.
        cfg: the :class:`~cnn.backbones.PreprocessConfig` or Backbone whose mean/std normalised it.

    Returns:
        float32 numpy array in ``[0, 1]``.

    Shapes:
        - tensor ``(3, H, W)`` -> ``(H, W, 3)``; ``(B, 3, H, W)`` -> ``(B, H, W, 3)``.

    Example:
        >>> x = build_transforms(cfg, train=False)(img)  # (3, 224, 224)
        >>> plt.imshow(to_display(x, cfg))
    """
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor or numpy array, got {type(tensor).__name__}")
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"tensor must be (3, H, W) or (B, 3, H, W), got shape {tuple(tensor.shape)}")
    if cfg is not None:
        x = denormalize(tensor, cfg)
    else:
        x = tensor.detach().as_subclass(torch.Tensor).float()
    arr = x.cpu().numpy().astype(np.float32, copy=False)
    arr = np.transpose(arr, (1, 2, 0)) if arr.ndim == 3 else np.transpose(arr, (0, 2, 3, 1))
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


def center_view(image: np.ndarray, size: int, resize_size: int) -> np.ndarray:
    """The evaluation view of an image: shorter side resized to ``resize_size``, centre crop ``size``.

    The numpy (OpenCV) twin of the evaluation pipeline of :func:`build_transforms`: ``area``
    interpolation when shrinking, ``cubic`` when enlarging. Grey images get their channel repeated; the
    input is never modified.

    Args:
        image: a numpy image.
        size: side of the square crop (the backbone's ``cfg.input_size``).
        resize_size: shorter side before the crop (``cfg.resize_size``); at least ``size``.

    Returns:
        A new uint8 array.

    Shapes:
        - image: ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)`` uint8 -> ``(size, size, 3)`` uint8.

    Example:
        >>> center_view(np.zeros((300, 400, 3), np.uint8), 224, 256).shape
        (224, 224, 3)
    """
    from cnn.io import resize

    for name, value in (("size", size), ("resize_size", resize_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if resize_size < size:
        raise ValueError(
            f"resize_size={resize_size} is smaller than size={size}; the crop must fit in the resized "
            "image: use resize_size >= size (e.g. cfg.resize_size)"
        )
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {img.dtype}; scale to 0..255 and use .astype(np.uint8)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise ValueError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {np.shape(image)}")
    h, w = img.shape[:2]
    scale = resize_size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = resize(img, (nh, nw), interpolation="area" if scale < 1 else "cubic")
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def normalize_images(images: np.ndarray, mean: Any, std: Any) -> torch.Tensor:
    """A batch of uint8 images as one normalised float tensor: ``(x / 255 - mean) / std``, channels first.

    Args:
        images: RGB uint8 images (e.g. from :func:`center_view`, stacked); not modified.
        mean, std: three numbers each, the backbone's ``cfg.mean`` and ``cfg.std``.

    Returns:
        A new float32 tensor.

    Shapes:
        - images: ``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` float32.

    Example:
        >>> x = normalize_images(np.full((2, 4, 4, 3), 255, np.uint8), (0.5,) * 3, (0.5,) * 3)
        >>> x.shape, x.unique()
        (torch.Size([2, 3, 4, 4]), tensor([1.]))
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {arr.dtype}; scale to 0..255 and use .astype(np.uint8)")
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(
            f"images must be a batch (B, H, W, 3), got shape {arr.shape}; for one image use image[None]"
        )
    m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    if m.numel() != 3 or s.numel() != 3:
        raise ValueError(f"mean and std need 3 values each (R, G, B), got mean={mean!r}, std={std!r}")
    if bool((s <= 0).any()):
        raise ValueError(f"std must be positive, got {std!r}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - m.view(1, 3, 1, 1)) / s.view(1, 3, 1, 1)
