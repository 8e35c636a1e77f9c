"""Figures for the CNN side: training curves, prediction grids, image batches, feature maps, Grad-CAM.

Every function returns the :class:`matplotlib.figure.Figure` it drew on. With ``path=`` the figure is
written to that file (format from the extension, PNG when there is none) through a temporary file in
the same folder and :func:`os.replace`, and a figure the function created is then closed, so scripts
that save many plots do not pile up open figures. Nothing here picks a backend: the code works under
``Agg`` on machines without a display.

Images come in two forms: ``uint8`` arrays ``(H, W, 3)`` (what :mod:`cnn.datasets` yields) or
normalised float tensors ``(3, H, W)``, which are turned back into pictures with the backbone's
``cfg.mean`` / ``cfg.std`` as in the lecture notes: ``np.transpose(x, (1, 2, 0)) * std + mean``,
clipped to ``[0, 1]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnn.io import atomic_open

__all__ = [
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_grad_cam",
    "plot_history",
    "plot_predictions",
    "save_figure",
    "show_images",
]

RIGHT_COLOR = "green"
WRONG_COLOR = "red"


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    The format comes from the extension (``.png``, ``.pdf``, ``.svg``, ...); PNG without one.
    Missing parent folders are created.

    Example:
        >>> fig, ax = plt.subplots()
        >>> save_figure(fig, "out/empty.png").name
        'empty.png'
    """
    target = Path(path)
    fmt = target.suffix[1:].lower() or "png"
    with atomic_open(target) as f:
        fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
    return target


def _finish(fig: Figure, path: str | os.PathLike | None, *, created: bool) -> Figure:
    if path is not None:
        save_figure(fig, path)
        if created:
            plt.close(fig)
    return fig


def _mean_std(cfg: Any, *, channels: int, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` as ``(C,)`` arrays from a PreprocessConfig, a Backbone (``.cfg``), or None; their
    length must be the images' ``channels`` (a 1-channel batch is not coloured by a 3-channel mean)."""
    if cfg is None:
        return None
    cfg = getattr(cfg, "cfg", cfg)
    if not (hasattr(cfg, "mean") and hasattr(cfg, "std")):
        raise TypeError(
            f"cfg must have .mean and .std (a cnn.PreprocessConfig or a Backbone), got {type(cfg).__name__}"
        )
    mean, std = np.asarray(cfg.mean, dtype=np.float32), np.asarray(cfg.std, dtype=np.float32)
    if mean.size not in (1, channels):  # one value for every channel broadcasts, as in normalisation
        raise ValueError(
            f"{name} have {channels} channel(s) but cfg has {mean.size} means: denormalising would mix "
            f"channels; pass the images as they were normalised (e.g. x.repeat(1, 3, 1, 1) for grey "
            "images normalised as RGB), or cfg=None for images that are not normalised"
        )
    return mean, std


def _imshow_options(pic: np.ndarray) -> dict[str, Any]:
    """A grey ``(H, W)`` picture is drawn on the full range of its type (0..255 for uint8, 0..1 for
    float), as colour pictures are, not stretched to its own minimum and maximum."""
    if pic.ndim != 2:
        return {}
    return {"cmap": "gray", "vmin": 0, "vmax": 255 if pic.dtype == np.uint8 else 1.0}


def _to_display(images: Any, cfg: Any, *, name: str = "images") -> list[np.ndarray]:
    """A batch of images as a list of ``(H, W, 3)`` or ``(H, W)`` arrays ready for ``imshow``.

    uint8 arrays pass through; float arrays are clipped to ``[0, 1]``; tensors ``(B, C, H, W)`` are
    denormalised with ``cfg`` (when given), moved channel-last and clipped.
    """
    if isinstance(images, torch.Tensor):
        batch = images.detach().cpu()
        batch = batch.float() if batch.is_floating_point() else batch.float() / 255.0
        if batch.dim() == 3:
            batch = batch[None]
        if batch.dim() != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(
                f"{name} as a tensor must be (B, 3, H, W) or (3, H, W), got {tuple(images.shape)}"
            )
        arr = np.transpose(batch.numpy(), (0, 2, 3, 1))
        ms = _mean_std(cfg, channels=arr.shape[-1], name=name)
        if ms is not None:
            arr = arr * ms[1] + ms[0]
        arr = np.clip(arr, 0.0, 1.0)
        return list(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        items = list(images)  # (B, H, W, 3) colour or (B, H, W) grey
    elif isinstance(images, Sequence) and not isinstance(images, str):
        items = list(images)
    else:
        raise TypeError(
            f"{name} must be a sequence of (H, W, 3) uint8 arrays or a normalised (B, 3, H, W) tensor, "
            f"got {type(images).__name__}"
        )
    if items and all(isinstance(i, torch.Tensor) for i in items):
        return _to_display(torch.stack(items), cfg, name=name)
    out = []
    for i, img in enumerate(items):
        a = np.asarray(img)
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
            hint = " (channel-first? use np.transpose(img, (1, 2, 0)))" if a.ndim == 3 else ""
            raise ValueError(f"{name}[{i}] must be (H, W, 3) or (H, W), got shape {a.shape}{hint}")
        out.append(a if a.dtype == np.uint8 else np.clip(a.astype(np.float32), 0.0, 1.0))
    return out


def _int_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"{name} must be a 1-D sequence of class indices, got shape {arr.shape} ({arr.dtype})"
        )
    return arr.astype(np.int64)


def _check_classes(arr: np.ndarray, n: int, name: str) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(
            f"{name} holds class indices {arr.min()}..{arr.max()} but classes has {n} names; "
            "pass the full class list"
        )


# ----------------------------------------------------------------------------------------------
# Training curves


def plot_history(history: Any, path: str | os.PathLike | None = None) -> Figure:
    """Train vs validation accuracy per epoch (left) and loss (right).

    Args:
        history: a :class:`cnn.training.History` (anything with ``.to_dict()``) or a mapping with
            lists ``train_acc``, ``val_acc``, ``train_loss``, ``val_loss`` (missing or empty lists are
            skipped, e.g. no validation set).
        path: where to save the figure.

    Raises:
        ValueError: none of the four curves is present.

    Example:
        >>> fig = plot_history({"train_acc": [0.5, 0.8], "val_acc": [0.4, 0.7]}, "history.png")
    """
    if hasattr(history, "to_dict"):
        history = history.to_dict()
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history must be a History (with .to_dict()) or a dict, got {type(history).__name__}"
        )
    keys = ("train_acc", "val_acc", "train_loss", "val_loss")
    curves = {
        k: np.asarray(history[k], dtype=np.float64)
        for k in keys
        if history.get(k) is not None and len(history[k]) > 0
    }
    if not curves:
        raise ValueError(f"history has none of {list(keys)}; got keys {sorted(history)}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for split, style in (("train", "-o"), ("val", "--s")):
            y = curves.get(f"{split}_{metric}")
            if y is not None:
                ax.plot(np.arange(1, len(y) + 1), y, style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"train vs val {label}")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return _finish(fig, path, created=True)


# ----------------------------------------------------------------------------------------------
# Images and predictions


def plot_predictions(
    images: Any,
    labels: Any,
    preds: Any,
    classes: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    cfg: Any = None,
    rows: int = 2,
    cols: int = 10,
) -> Figure:
    """A grid of images titled ``"pred (true)"``, green when the prediction is right, red when wrong.

    Args:
        images: ``uint8`` arrays ``(H, W, 3)`` or a normalised tensor batch.
        labels: true class index per image.
        preds: predicted class index per image.
        classes: class names, indexed by the class ids.
        path: where to save the figure.
        cfg: a :class:`~cnn.backbones.PreprocessConfig` (or a Backbone) to undo the normalisation of
            tensor images.
        rows: grid rows.
        cols: grid columns; the first ``rows * cols`` images are shown, extra cells are left blank.

    Raises:
        ValueError: ``images``, ``labels`` and ``preds`` differ in length, or ids outside ``classes``.

    Shapes:
        - images: ``B x (H, W, 3)`` uint8, or ``(B, 3, H, W)`` float
        - labels, preds: ``(B,)``

    Example:
        >>> fig = plot_predictions(images, labels, preds, ["cat", "dog"], "preds.png")
        >>> len(fig.axes)
        20
    """
    for arg, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg} must be a positive int, got {v!r}")
    pics = _to_display(images, cfg)
    y, p = _int_array(labels, "labels"), _int_array(preds, "preds")
    if not len(pics) == len(y) == len(p):
        raise ValueError(
            f"images, labels and preds must have the same length, got {len(pics)}, {len(y)} and {len(p)}"
        )
    classes = list(classes)
    _check_classes(y, len(classes), "labels")
    _check_classes(p, len(classes), "preds")
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= len(pics):
            continue
        ax.imshow(pics[i], **_imshow_options(pics[i]))
        right = y[i] == p[i]
        ax.set_title(
            f"{classes[p[i]]} ({classes[y[i]]})", color=RIGHT_COLOR if right else WRONG_COLOR, fontsize=8
        )
    fig.tight_layout()
    return _finish(fig, path, created=True)


def show_images(
    batch: torch.Tensor,
    cfg: Any,
    *,
    labels: Any = None,
    classes: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Show a normalised batch as one strip, the lecture-notes way.

    The normalisation is undone (``std * x + mean``), the batch is tiled with
    ``torchvision.utils.make_grid`` (white gaps), then ``np.transpose(..., (1, 2, 0))`` and
    ``np.clip(..., 0, 1)``; the title lists the class of each image.

    Args:
        batch: normalised images.
        cfg: a :class:`~cnn.backbones.PreprocessConfig` or a Backbone (its ``cfg``); ``None`` shows the
            tensor as is (already in ``[0, 1]``).
        labels: class index per image, for the title.
        classes: names for the labels (ids are shown without them).
        path: where to save the figure.

    Shapes:
        - batch: ``(B, 3, H, W)`` or ``(3, H, W)``
        - labels: ``(B,)``

    Example:
        >>> inputs, classes_ = next(iter(loader))
        >>> fig = show_images(inputs, backbone.cfg, labels=classes_, classes=dataset.classes)
    """
    import torchvision

    if not isinstance(batch, torch.Tensor) or batch.dim() not in (3, 4):
        got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"batch must be a (B, 3, H, W) tensor, got {got}")
    batch = batch.detach().cpu().float()
    if batch.dim() == 3:
        batch = batch[None]
    title = None
    if labels is not None:
        ids = _int_array(labels, "labels")
        if len(ids) != len(batch):
            raise ValueError(f"labels has {len(ids)} entries for a batch of {len(batch)} images")
        if classes is not None:
            _check_classes(ids, len(classes), "labels")
            title = ", ".join(str(classes[i]) for i in ids)
        else:
            title = ", ".join(str(i) for i in ids)
    ms = _mean_std(cfg, channels=int(batch.shape[1]), name="batch")
    if ms is not None:  # std * x + mean, per channel, for the whole batch at once
        batch = batch * torch.from_numpy(ms[1])[:, None, None] + torch.from_numpy(ms[0])[:, None, None]
    grid = torchvision.utils.make_grid(batch, nrow=min(len(batch), 8), padding=2, pad_value=1.0)
    inp = np.clip(np.transpose(grid.numpy(), (1, 2, 0)), 0.0, 1.0)
    rows = -(-len(batch) // 8)
    fig, ax = plt.subplots(figsize=(min(len(batch), 8) * 1.5 + 1, rows * 1.5 + 0.6))
    ax.imshow(inp)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, created=True)


def plot_feature_maps(
    maps: torch.Tensor | np.ndarray, *, max_maps: int = 16, path: str | os.PathLike | None = None
) -> Figure:
    """The first ``max_maps`` channels of one image's feature maps, as a grid of small images.

    Args:
        maps: one image's maps, e.g. ``FeatureMaps(...).maps[name][0]``.
        max_maps: how many channels to show.
        path: where to save the figure.

    Raises:
        ValueError: more than one image in the batch axis, or not 3-D / 4-D.

    Shapes:
        - maps: ``(C, h, w)`` or ``(1, C, h, w)``

    Example:
        >>> with FeatureMaps(model, [1]) as fm:
        ...     _ = model(x)
        >>> fig = plot_feature_maps(fm[1][0], max_maps=16, path="layer1.png")
    """
    if isinstance(max_maps, bool) or not isinstance(max_maps, int) or max_maps < 1:
        raise ValueError(f"max_maps must be a positive int, got {max_maps!r}")
    arr = maps.detach().cpu().float().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(
                f"maps has a batch of {arr.shape[0]} images (shape {arr.shape}); pass one image: maps[0]"
            )
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"maps must be (C, h, w) or (1, C, h, w), got shape {arr.shape}")
    arr = arr[:max_maps]
    n = len(arr)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], cmap="viridis")
            ax.set_title(f"ch {i}", fontsize=7)
    fig.tight_layout()
    return _finish(fig, path, created=True)


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes, bool]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax, True
    return ax.figure, ax, False  # type: ignore[return-value]


def plot_grad_cam(
    image: Any,
    cam: torch.Tensor | np.ndarray,
    *,
    path: str | os.PathLike | None = None,
    ax: Axes | None = None,
    alpha: float = 0.5,
    colorbar: bool = True,
) -> Figure:
    """Overlay a Grad-CAM heat map on its image.

    The map is stretched over the whole ``image``, so ``image`` must be the view the network saw: with
    the evaluation transforms (resize, then a centre crop) that is the crop, not the original photo
    (``cnn.center_view(photo, cfg.input_size, cfg.resize_size)``, or ``cnn.to_display(x[0], cfg)``
    for the normalised input); on the whole photo the map would sit off by the cropped margins.

    Args:
        image: the picture, ``uint8`` (or float in ``[0, 1]``).
        cam: the heat map in ``[0, 1]`` (one row of :func:`cnn.explain.grad_cam`).
        path: where to save the figure.
        ax: draw into these axes (the figure is then not closed after saving).
        alpha: opacity of the heat map.
        colorbar: add a colour bar (turn off in dense grids of panels).

    Shapes:
        - image: ``(H, W, 3)`` or ``(H, W)``
        - cam: ``(h, w)``

    Example:
        >>> cam = grad_cam(model, x)[0]  # x: the normalised, centre-cropped input of the photo
        >>> fig = plot_grad_cam(to_display(x[0], model.cfg), cam, path="cam.png")
    """
    (pic,) = _to_display([image], None, name="image")
    heat = cam.detach().cpu().float().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam, float)
    if heat.ndim == 3 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise ValueError(f"cam must be one (H, W) map, got shape {heat.shape}; for a batch pass cam[i]")
    h, w = pic.shape[:2]
    fig, ax, created = _axes(ax, (4, 4))
    ax.imshow(pic, **_imshow_options(pic))
    overlay = ax.imshow(
        heat,
        cmap="jet",
        alpha=alpha,
        vmin=0.0,
        vmax=1.0,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="bilinear",
    )
    if colorbar:
        fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    ax.axis("off")
    return _finish(fig, path, created=created)


def plot_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[str],
    path: str | os.PathLike | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted) with the count in every cell.

    Args:
        y_true: true class per sample.
        y_pred: predicted class per sample.
        classes: class names.
        path: where to save the figure.
        ax: draw into these axes (the figure is then not closed after saving).

    Raises:
        ValueError: different lengths, or ids outside ``classes``.

    Shapes:
        - y_true, y_pred: ``(N,)``; the image shown is ``(len(classes), len(classes))`` counts.

    Example:
        >>> fig = plot_confusion_matrix([0, 1, 1], [0, 1, 0], ["ok", "defect"], "cm.png")
        >>> fig.axes[0].images[0].get_array().tolist()
        [[1, 0], [1, 1]]
    """
    t, p = _int_array(y_true, "y_true"), _int_array(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    classes = list(classes)
    n = len(classes)
    if n == 0:
        raise ValueError("classes is empty; pass the class names")
    _check_classes(t, n, "y_true")
    _check_classes(p, n, "y_pred")
    counts = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    fig, ax, created = _axes(ax, (1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(counts, cmap="Blues", vmin=0)
    ax.set_xticks(np.arange(n), classes, rotation=45, ha="right")
    ax.set_yticks(np.arange(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    half = counts.max() / 2 if counts.size else 0
    for (i, j), c in np.ndenumerate(counts):  # one label per cell (classes x classes), not per sample
        ax.text(j, i, str(c), ha="center", va="center", color="white" if c > half else "black", fontsize=8)
    return _finish(fig, path, created=created)
