"""How faithful is an explanation? Deletion and insertion curves scored on pixels, for any model.

An explanation is a map of importance per pixel. If it is faithful, removing the pixels it ranks first
makes the model lose confidence at once (*deletion*: a low area under the curve), and adding them first
to an uninformative image restores confidence at once (*insertion*: a high area under the curve).
Both curves are compared with the same curves for a random pixel order (the baseline every faithful
map should beat).

Everything works on images and a scoring function ``score(images) -> class probabilities``, so a CNN
and a GNN on superpixel graphs are scored on the same pixels with the same metric: a GNN's node
importance is painted onto its superpixels first (each pixel gets the importance of its node), and its
scoring function builds the graphs of the perturbed images. Removed pixels are replaced by a blurred copy
of the image (``fill="blur"``) or by the image's mean colour (``fill="mean"``). All perturbed images of
one curve go through ``score`` in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["FILLS", "Faithfulness", "faithfulness", "perturbation_curves"]

#: What removed pixels become.
FILLS = ("blur", "mean")

Score = Callable[[np.ndarray], Any]


def _scorers(score: Score | Sequence[Score], n: int) -> list[Score]:
    """One scoring function per image: the same for all, or one each (e.g. a GNN over that image's
    superpixels)."""
    if callable(score):
        return [score] * n
    if isinstance(score, (str, bytes)) or not isinstance(score, Iterable):
        raise TypeError(
            f"score must be a function (images -> class probabilities) or a list of one function per image "
            f"({n}), got {type(score).__name__} {score!r:.40}; pass e.g. the model's predict function, "
            "not its name"
        )
    scorers = list(score)
    if len(scorers) != n:
        raise ValueError(
            f"score must be a function or one function per image ({n}), got {len(scorers)} items"
        )
    bad = next((i for i, s in enumerate(scorers) if not callable(s)), None)
    if bad is not None:
        raise TypeError(
            f"score must be a function or one function per image ({n}), but score[{bad}] is a "
            f"{type(scorers[bad]).__name__}, not a function"
        )
    return scorers


def _check(images: Any, maps: Any, steps: int, fill: str) -> tuple[np.ndarray, np.ndarray]:
    imgs = np.asarray(images)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise ValueError(
            f"images must be a (B, H, W, 3) uint8 array, got {imgs.dtype} {imgs.shape}; "
            "give the same RGB views the models see"
        )
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if m.shape != imgs.shape[:3]:
        raise ValueError(
            f"maps must have shape (B, H, W) = {imgs.shape[:3]}, got {m.shape}; one map per image"
        )
    if not np.isfinite(m).all():
        raise ValueError("maps hold NaN or inf; an importance map must be finite")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (the curve has steps + 1 points), got {steps!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(map(repr, FILLS))}, got {fill!r}")
    return imgs, m.astype(np.float64)


def _fill(imgs: np.ndarray, fill: str) -> np.ndarray:
    """The uninformative version of every image: a strong blur or the mean colour."""
    if fill == "mean":
        mean = imgs.reshape(len(imgs), -1, 3).mean(axis=1).round().astype(np.uint8)
        return np.broadcast_to(mean[:, None, None, :], imgs.shape).copy()
    sigma = max(imgs.shape[1:3]) / 16
    return np.stack([cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma) for img in imgs])


def _ranks(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel (0 = most important) per image; ties broken at random, not in raster order."""
    b, h, w = maps.shape
    flat = maps.reshape(b, -1)
    perm = rng.permuted(np.tile(np.arange(h * w), (b, 1)), axis=1)
    shuffled = np.take_along_axis(flat, perm, axis=1)
    order = np.take_along_axis(perm, np.argsort(-shuffled, axis=1, kind="stable"), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(h * w)[None, :].repeat(b, 0), axis=1)
    return ranks.reshape(b, h, w)


def _probs(score: Score, images: np.ndarray) -> torch.Tensor:
    out = score(images)
    p = torch.as_tensor(out).detach().float().cpu()
    if p.dim() != 2 or p.shape[0] != len(images):
        raise ValueError(
            f"score must return class probabilities (N, C) with N = {len(images)}, got {tuple(p.shape)}"
        )
    return p


def _check_targets(targets: torch.Tensor, lo: int, hi: int, n_classes: int) -> None:
    """``targets[lo:hi]`` must be classes of a score that gives ``n_classes`` probabilities."""
    bad = torch.nonzero((targets[lo:hi] < 0) | (targets[lo:hi] >= n_classes)).flatten()
    if len(bad):
        j = lo + int(bad[0])
        raise ValueError(
            f"targets[{j}] = {int(targets[j])} is not a class of the score's output, which gives "
            f"{n_classes} class probabilities; targets must lie in 0..{n_classes - 1}"
        )


def perturbation_curves(
    score: Score | Sequence[Score],
    images: Any,
    maps: Any,
    *,
    steps: int = 20,
    fill: str = "blur",
    targets: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Deletion and insertion curves of one importance map per image.

    Args:
        score: ``score(images) -> probabilities``: a batch of ``(N, H, W, 3)`` uint8 images to
            ``(N, C)`` class probabilities (tensor or array); or one such function per image, called
            only with copies of its image (e.g. a GNN that keeps the image's superpixels).
        images: the images.
        maps: one importance map per image (higher = more important); ties are broken at random.
        steps: points of the curve after the first (``steps=20``: 5% of the pixels per step).
        fill: what removed pixels become: ``"blur"`` (a blurred copy) or ``"mean"`` (the mean colour).
        targets: the class followed per image; default: the class predicted for the intact image.
        seed: seed of the tie-breaking.

    Returns:
        ``{"fractions": (S+1,), "deletion": (B, S+1), "insertion": (B, S+1), "targets": (B,)}``:
        the probability of the target class after removing (deletion) or keeping (insertion) the
        first ``fraction`` of the pixels, as float64 NumPy arrays (targets int64).

    Shapes:
        - images: ``(B, H, W, 3)`` uint8; maps: ``(B, H, W)``.

    Raises:
        ValueError: bad images, maps, ``steps`` or ``fill``; a score that does not return ``(N, C)``
            probabilities; ``targets`` that are not one class index per image, or a target outside
            ``0..C-1`` (checked once the score's first output gives ``C``).

    Example:
        >>> imgs = np.zeros((1, 8, 8, 3), np.uint8); imgs[:, :4, :4, 0] = 255
        >>> red = lambda x: torch.tensor(x[:, :4, :4, 0].mean(axis=(1, 2)) / 255.0)
        >>> score = lambda x: torch.stack([red(x), 1 - red(x)], dim=1)
        >>> maps = np.zeros((1, 8, 8)); maps[:, :4, :4] = 1
        >>> c = perturbation_curves(score, imgs, maps, steps=4, fill="mean")
        >>> c["deletion"][0].round(2).tolist()
        [1.0, 0.25, 0.25, 0.25, 0.25]
    """
    imgs, m = _check(images, maps, steps, fill)
    b, h, w, _ = imgs.shape
    scorers = _scorers(score, b)
    filled = _fill(imgs, fill)
    if targets is None and callable(score):
        targets_t = _probs(score, imgs).argmax(dim=1)
    elif targets is None:
        targets_t = torch.cat([_probs(scorers[i], imgs[i : i + 1]).argmax(dim=1) for i in range(b)])
    else:
        given = np.asarray(targets)
        whole = given.dtype.kind == "f" and bool(np.all(given == np.round(given)))  # 1.0: class 1
        if given.dtype.kind not in "iu" and not whole:
            raise ValueError(
                f"targets must be class indices (ints), got {given.dtype} {given.tolist()!r:.80}"
            )
        targets_t = torch.as_tensor(given).long().reshape(-1)
        if targets_t.numel() != b:
            raise ValueError(f"targets must give one class per image ({b}), got {targets_t.numel()}")
    ranks = _ranks(m, np.random.default_rng(seed))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * h * w).astype(np.int64)
    deletion = np.empty((b, steps + 1))
    insertion = np.empty((b, steps + 1))
    for i in range(b):  # one batch of 2 (S + 1) perturbed images per image
        first = ranks[i][None, :, :, None] < counts[:, None, None, None]  # (S+1, H, W, 1)
        batch = np.concatenate([np.where(first, filled[i], imgs[i]), np.where(first, imgs[i], filled[i])])
        probs = _probs(scorers[i], batch)
        _check_targets(targets_t, i, b if callable(score) else i + 1, probs.shape[1])  # one model: all
        p = probs[:, int(targets_t[i])].double().numpy()
        deletion[i], insertion[i] = p[: steps + 1], p[steps + 1 :]
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "targets": targets_t.numpy(),
    }


def _auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoid areas over ``fractions`` (0 .. 1), one per curve."""
    return ((curves[..., 1:] + curves[..., :-1]) / 2 * np.diff(fractions)).sum(axis=-1)


@dataclass(frozen=True)
class Faithfulness:
    """Faithfulness scores of one explanation method on a batch of images (one value per image).

    Attributes:
        deletion_auc: area under the deletion curve; lower = more faithful.
        insertion_auc: area under the insertion curve; higher = more faithful.
        random_deletion_auc: the same for a random pixel order (the baseline).
        random_insertion_auc: the same for a random pixel order.
        curves: the curves (see :func:`perturbation_curves`), with ``random_deletion`` and
            ``random_insertion``.
    """

    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    random_deletion_auc: np.ndarray
    random_insertion_auc: np.ndarray
    curves: dict[str, Any]

    def summary(self) -> dict[str, float]:
        """Means over the images, JSON-ready."""
        return {
            "deletion_auc": float(self.deletion_auc.mean()),
            "insertion_auc": float(self.insertion_auc.mean()),
            "random_deletion_auc": float(self.random_deletion_auc.mean()),
            "random_insertion_auc": float(self.random_insertion_auc.mean()),
            "n": int(self.deletion_auc.size),
        }


def faithfulness(
    score: Score | Sequence[Score],
    images: Any,
    maps: Any,
    *,
    steps: int = 20,
    fill: str = "blur",
    seed: int = 0,
) -> Faithfulness:
    """Deletion / insertion areas of ``maps`` and of a random pixel order, on the same images.

    Args:
        score: ``score(images) -> probabilities``, or one per image (see :func:`perturbation_curves`).
        images: ``(B, H, W, 3)`` uint8 images.
        maps: ``(B, H, W)`` importance maps.
        steps: points of each curve after the first.
        fill: ``"blur"`` or ``"mean"``.
        seed: seed of the random order and of tie-breaking.

    Returns:
        A :class:`Faithfulness` with one area per image and the curves.

    Shapes:
        - images: ``(B, H, W, 3)`` uint8; maps: ``(B, H, W)``; areas: ``(B,)``.

    Example:
        >>> imgs = np.zeros((2, 8, 8, 3), np.uint8); imgs[:, :4, :4, 0] = 255
        >>> red = lambda x: torch.tensor(x[:, :4, :4, 0].mean(axis=(1, 2)) / 255.0)
        >>> score = lambda x: torch.stack([red(x), 1 - red(x)], dim=1)
        >>> maps = np.zeros((2, 8, 8)); maps[:, :4, :4] = 1
        >>> f = faithfulness(score, imgs, maps, steps=8, fill="mean")
        >>> bool(f.deletion_auc.mean() < f.random_deletion_auc.mean())
        True
    """
    imgs, m = _check(images, maps, steps, fill)
    if not callable(score):  # a generator of scorers is read once, for both orders
        score = _scorers(score, len(imgs))
    curves = perturbation_curves(score, imgs, m, steps=steps, fill=fill, seed=seed)
    noise = np.random.default_rng(seed + 1).random(m.shape)
    rand = perturbation_curves(
        score, imgs, noise, steps=steps, fill=fill, targets=curves["targets"], seed=seed
    )
    fr = curves["fractions"]
    curves["random_deletion"], curves["random_insertion"] = rand["deletion"], rand["insertion"]
    return Faithfulness(
        deletion_auc=_auc(curves["deletion"], fr),
        insertion_auc=_auc(curves["insertion"], fr),
        random_deletion_auc=_auc(rand["deletion"], fr),
        random_insertion_auc=_auc(rand["insertion"], fr),
        curves=curves,
    )
