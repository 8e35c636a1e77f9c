"""Node features of an image graph: region statistics and CNN feature maps pooled into regions.

Hand-made features (one ``np.bincount`` per column, no loop over regions or pixels):

============== ======= =====================================================================
name           columns meaning
============== ======= =====================================================================
``color_mean`` C       mean of each channel in ``[0, 1]`` (C = 3 for RGB, 1 for grayscale)
``color_std``  C       standard deviation of each channel
``centroid``   2       ``(x, y)`` centre of mass, normalised to ``[0, 1]`` by ``(W - 1, H - 1)``
``area``       1       number of pixels divided by ``H * W``
============== ======= =====================================================================

CNN features (:class:`CNNNodeFeatures`, :func:`pool_feature_maps`): the maps of several backbone
stages are averaged over each region, area-weighted: a map cell contributes to a node in proportion
to the number of the node's pixels that fall in the cell. Label maps are brought to each map's
resolution; feature maps are never upsampled. A node smaller than a cell gets the cell it sits in.

Example:
    >>> import numpy as np
    >>> img = np.zeros((4, 4, 3), np.uint8); img[:, 2:] = 255
    >>> labels = np.array([[0, 0, 1, 1]] * 4)
    >>> x, names = node_features(img, labels, features=("color_mean", "area"))
    >>> x.tolist(), names
    ([[0.0, 0.0, 0.0, 0.5], [1.0, 1.0, 1.0, 0.5]], ['color_mean_r', 'color_mean_g', 'color_mean_b', 'area'])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cnn.fusion import exact_float32
from engine.modes import eval_mode

from .checks import as_float_image, check_backbone, check_labels, check_positive_int, is_grey_rgb
from .edges import LabelRuns, label_runs, repeat_runs, sum_by_index
from .slic import block_sums, repeat_blocks

__all__ = [
    "DEFAULT_STAGES",
    "BackboneLike",
    "FEATURES",
    "CNNNodeFeatures",
    "batch_hand_features",
    "centroids",
    "check_features",
    "feature_names",
    "hand_features",
    "node_features",
    "pool_feature_maps",
    "weights_fingerprint",
]

FEATURES = ("color_mean", "color_std", "centroid", "area")
#: Backbone stages pooled by default: the last three (stride 8, 16, 32 for most CNNs; all if fewer).
DEFAULT_STAGES = (-3, -2, -1)


class _PreprocessLike(Protocol):
    """What :class:`CNNNodeFeatures` reads of a backbone's ``cfg`` (``interpolation`` is optional)."""

    @property
    def input_size(self) -> int: ...

    @property
    def mean(self) -> Sequence[float]: ...

    @property
    def std(self) -> Sequence[float]: ...


class BackboneLike(Protocol):
    """The part of the cnn backbone contract that CNN node features need (checked by ``check_backbone``).

    ``cnn.create_backbone(...)`` returns one; ``name``, ``feature_channels`` and ``parameters()``
    are used when present.
    """

    @property
    def cfg(self) -> _PreprocessLike: ...

    def features(self, x: torch.Tensor) -> list[torch.Tensor]: ...


def check_features(features: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Validate a list of node feature names and return it as a tuple (one name is accepted too).

    Raises:
        ValueError: not a sequence, an unknown or repeated name, or empty unless ``allow_empty``.

    Example:
        >>> check_features("area")
        ('area',)
    """
    if isinstance(features, str):
        features = (features,)
    try:
        features = tuple(features)
    except TypeError:
        raise ValueError(f"features must be a sequence of names from {FEATURES}, got {features!r}") from None
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown node feature(s) {unknown}; known: {', '.join(FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"features lists a name twice: {features!r}")
    if not features and not allow_empty:
        raise ValueError(f"features is empty; choose at least one of {', '.join(FEATURES)}")
    return features


def feature_names(features: Sequence[str], channels: int = 3) -> list[str]:
    """Column names of :func:`node_features` for the given feature list.

    Args:
        features: names from :data:`FEATURES`.
        channels: colour channels of the image (3 or 1).

    Returns:
        One name per column, e.g. ``["color_mean_r", ..., "centroid_x", "centroid_y", "area"]``.

    Example:
        >>> feature_names(("centroid", "area"))
        ['centroid_x', 'centroid_y', 'area']
    """
    chans = ("r", "g", "b") if channels == 3 else ("gray",)
    names: list[str] = []
    for f in check_features(features, allow_empty=True):
        if f in ("color_mean", "color_std"):
            names += [f"{f}_{c}" for c in chans]
        elif f == "centroid":
            names += ["centroid_x", "centroid_y"]
        else:
            names.append("area")
    return names


@functools.lru_cache(maxsize=16)
def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel, flat, float64 (read-only, cached per image size)."""
    rows = np.repeat(np.arange(height, dtype=np.float64), width)
    cols = np.tile(np.arange(width, dtype=np.float64), height)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def _centroids(labels: np.ndarray, n: int, counts: np.ndarray) -> np.ndarray:
    height, width = labels.shape
    flat = labels.ravel()
    rows, cols = _coordinates(height, width)
    row_sum = np.bincount(flat, rows, minlength=n)
    col_sum = np.bincount(flat, cols, minlength=n)
    pos = np.stack([col_sum / counts / max(width - 1, 1), row_sum / counts / max(height - 1, 1)], axis=1)
    return pos.astype(np.float32)


def hand_features(
    img: np.ndarray, labels: np.ndarray, n: int, features: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy core of :func:`node_features` for inputs already checked, plus the centroids.

    Args:
        img: ``(H, W, C)`` float32 image from :func:`bridge.checks.as_float_image`.
        labels: ``(H, W)`` int64 label map with ids ``0 .. n-1``, each used.
        n: the number of labels.
        features: names from :data:`FEATURES` (checked with :func:`check_features`).

    Returns:
        ``(x, pos)``: ``(N, F)`` float32 features and ``(N, 2)`` float32 centroids ``(x, y)``.

    Shapes:
        - img: ``(H, W, C)``; labels: ``(H, W)``
        - x: ``(N, F)``; pos: ``(N, 2)``

    Example:
        >>> x, pos = hand_features(np.ones((2, 2, 1), np.float32), np.array([[0, 1], [0, 1]]), 2, ("area",))
        >>> x.tolist(), pos.tolist()
        ([[0.5], [0.5]], [[0.0, 0.5], [1.0, 0.5]])
    """
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    pos = _centroids(labels, n, counts)
    cols: list[np.ndarray] = []
    pix = img.reshape(-1, img.shape[2])
    mean: np.ndarray = np.empty((n, 0))  # (N, C) channel means when a colour feature is asked for
    if "color_mean" in features or "color_std" in features:
        mean = np.stack([np.bincount(flat, pix[:, c], minlength=n) for c in range(pix.shape[1])], 1)
        mean /= counts[:, None]
    for f in features:
        if f == "color_mean":
            cols.append(mean)
        elif f == "color_std":
            sq = np.stack(
                [
                    np.bincount(flat, np.square(pix[:, c], dtype=np.float64), minlength=n)
                    for c in range(pix.shape[1])
                ],
                1,
            )
            cols.append(np.sqrt(np.maximum(sq / counts[:, None] - np.square(mean), 0.0)))
        elif f == "centroid":
            cols.append(pos)
        elif f == "area":
            cols.append((counts / flat.size)[:, None])
    x = np.concatenate(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
    return x, pos


def batch_hand_features(
    images: torch.Tensor,
    labels: torch.Tensor,
    n_nodes: torch.Tensor,
    features: Sequence[str],
    *,
    runs: LabelRuns | None = None,
    blocks: tuple[int, int] = (1, 1),
    levels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`hand_features` of a whole batch in torch, on the batch's device, in global node ids.

    Node ``i`` of image ``b`` is row ``offset[b] + i`` (``offset`` = cumulative sum of ``n_nodes``).
    The statistics are gathered over the horizontal runs of equal ids (:func:`bridge.edges.label_runs`),
    not pixel by pixel: pixel counts and centroids come from the runs' positions and lengths (exact),
    colour sums from one ``torch.segment_reduce`` of the pixels over the runs, and standard deviations
    from the squared deviations to each run's mean (a second reduction, only for ``color_std``),
    combined per node in float64; with ``levels`` (8-bit images) both from whole-number sums, exact.
    The results agree with the NumPy version to float32 rounding.

    Args:
        images: ``(B, H, W, C)`` float32 in ``[0, 1]`` (:func:`bridge.segmentation.as_float_batch`).
        labels: ``(B, H, W)`` int64 label maps, ids ``0 .. n_nodes[b] - 1`` per image, each used.
        n_nodes: ``(B,)`` int64 node counts on the same device.
        features: names from :data:`FEATURES` (checked with :func:`check_features`).
        runs: ``bridge.edges.label_runs(labels)`` when already computed.
        blocks: ``(fy, fx)`` when every label of ``(B, H / fy, W / fx)`` ``labels`` stands for a
            ``fy x fx`` block of the images (:func:`bridge.slic.slic_batch_blocks`): pixel counts and
            centroids come from the small map's runs (the same values: sums of whole numbers), colour
            statistics from the full-resolution runs (:func:`bridge.edges.repeat_runs`).
        levels: the ``(B, H, W, C)`` uint8 images that ``images`` was made from (``images ==
            levels / 255``, as :func:`bridge.segmentation.as_float_batch` makes it): colour means and
            standard deviations then come from whole-number sums of the levels and their squares
            (:func:`_level_moments`; over every label's block, not every pixel), exact and so the same on
            any device, thread count or block size, rounded once at the end.

    Returns:
        ``(x, pos)``: ``(N, F)`` float32 features and ``(N, 2)`` float32 centroids ``(x, y)``,
        ``N = sum(n_nodes)``, on the batch's device.

    Shapes:
        - images: ``(B, H, W, C)``; labels: ``(B, H / fy, W / fx)``; n_nodes: ``(B,)``
        - x: ``(N, F)``; pos: ``(N, 2)``

    Example:
        >>> imgs = torch.ones(2, 2, 2, 1)
        >>> labels = torch.tensor([[[0, 1], [0, 1]], [[0, 0], [0, 0]]])
        >>> x, pos = batch_hand_features(imgs, labels, torch.tensor([2, 1]), ("area",))
        >>> x.tolist(), pos.tolist()
        ([[0.5], [0.5], [1.0]], [[0.0, 0.5], [1.0, 0.5], [0.5, 0.5]])
    """
    b, h, w, c = images.shape
    dev = images.device
    f64 = torch.float64
    fy, fx = blocks
    _check_cover(labels, images, blocks)
    if runs is None:
        runs = label_runs(labels)
    offset = torch.cumsum(n_nodes, 0) - n_nodes
    total = int(n_nodes.sum())
    hs, ws = h // fy, w // fx
    # pixel counts and centroids from the runs of the labels as given: a run of the small map at row y
    # and columns x0 .. x0 + L - 1 covers rows fy * y .. fy * y + fy - 1, columns fx * x0 ..
    # fx * (x0 + L) - 1 of the image (whole numbers in float64: the same sums as the large map's runs)
    first = runs.first
    node = runs.label + offset.index_select(0, torch.div(first, hs * ws, rounding_mode="floor"))
    run_len = runs.length.to(f64) * fx  # image pixels per row of the run
    counts = sum_by_index(node, run_len * fy, total)
    row = torch.div(first % (hs * ws), ws, rounding_mode="floor").to(f64) * fy + (fy - 1) / 2.0
    col = (first % ws).to(f64) * fx
    row_sum = sum_by_index(node, row * (run_len * fy), total)
    col_sum = sum_by_index(node, (run_len * fy) * (col + (run_len - 1.0) / 2.0), total)
    pos = torch.stack([col_sum / counts / max(w - 1, 1), row_sum / counts / max(h - 1, 1)], 1)
    pos = pos.to(torch.float32)
    cols_out: list[torch.Tensor] = []
    mean = torch.empty(total, 0, dtype=f64, device=dev)
    std: torch.Tensor | None = None
    colour = "color_mean" in features or "color_std" in features
    if colour and levels is not None:
        if levels.dtype != torch.uint8 or levels.shape != images.shape or levels.device != dev:
            raise ValueError(
                "levels must be the uint8 images the float images were made from, shape "
                f"{tuple(images.shape)} on {dev}; got {levels.dtype} {tuple(levels.shape)} on {levels.device}"
            )
        mean, std = _level_moments(levels, runs, node, counts, blocks, "color_std" in features)
    elif colour:
        if (fy, fx) != (1, 1):  # the runs of the image's pixels, one per row
            runs = repeat_runs(runs, fy, fx)
            node = runs.label + offset.index_select(0, torch.div(runs.first, h * w, rounding_mode="floor"))
            run_len = runs.length.to(f64)
        length = runs.length
        pix = images.reshape(-1, c)  # a copy of non-contiguous images: only for colour statistics
        # grey images given as RGB: the statistics of one channel, repeated (every channel is reduced
        # on its own: the same values)
        if is_grey_rgb(pix):
            pix = pix[:, :1].contiguous()
        run_sum = torch.segment_reduce(pix, "sum", lengths=length, axis=0, unsafe=True)  # (R, C or 1)
        sums = torch.zeros(total, pix.shape[1], dtype=f64, device=dev).index_add_(0, node, run_sum.to(f64))
        mean = sums / counts.unsqueeze(1)
    for f in features:
        if f == "color_mean":
            cols_out.append(mean.expand(-1, c))
        elif f == "color_std" and std is not None:
            cols_out.append(std.expand(-1, c))
        elif f == "color_std":
            # within each run around its own mean (float32, no cancellation), then between the runs
            run_mean = run_sum / length.unsqueeze(1).to(run_sum.dtype)
            dev_px = torch.repeat_interleave(run_mean, length, dim=0, output_size=pix.shape[0])
            dev_px.sub_(pix).square_()  # in place: one temporary of the image's size
            within = torch.segment_reduce(dev_px, "sum", lengths=length, axis=0, unsafe=True)
            between = (run_mean.to(f64) - mean.index_select(0, node)).square_().mul_(run_len.unsqueeze(1))
            m2 = torch.zeros(total, pix.shape[1], dtype=f64, device=dev)
            m2.index_add_(0, node, within.to(f64) + between)
            cols_out.append(torch.sqrt(torch.clamp_min(m2 / counts.unsqueeze(1), 0.0)).expand(-1, c))
        elif f == "centroid":
            cols_out.append(pos.to(f64))
        elif f == "area":
            cols_out.append((counts / (h * w)).unsqueeze(1))
    x = torch.cat(cols_out, 1).to(torch.float32) if cols_out else torch.zeros(total, 0, device=dev)
    return x, pos


def _level_moments(
    levels: torch.Tensor,
    runs: LabelRuns,
    node: torch.Tensor,
    counts: torch.Tensor,
    blocks: tuple[int, int],
    with_std: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Colour means and standard deviations per node from the 8-bit levels, in whole numbers.

    Every label of the ``(B, H / fy, W / fx)`` map covers a ``fy x fx`` block: the levels ``k`` (and
    ``k^2`` for the deviations) are summed per block (strided adds, then over the map's runs with one
    ``torch.segment_reduce``, then per node with ``index_add_`` in float64). Every sum is a whole number
    held exactly (float32 while its bound stays under 2^24, else float64), so the order of the additions
    does not matter; the mean ``S1 / n / 255`` and the variance ``(n S2 - S1^2) / n^2 / 255^2`` (whole
    numbers held exactly while ``n S2 < 2^53``, up to about 370,000 pixels per region) are rounded once.
    Grey images given as RGB are summed on one channel.

    Shapes:
        - levels: ``(B, H, W, C)`` uint8; runs: of the ``(B, H / fy, W / fx)`` label map
        - node, counts: ``(R,)`` global node of every run, ``(N,)`` float64 pixel counts per node
        - output: ``(N, C or 1)`` float64 means and standard deviations (``None`` without ``with_std``)
    """
    fy, fx = blocks
    ws = levels.shape[2] // fx
    if is_grey_rgb(levels):
        levels = levels[..., :1]
    c = levels.shape[-1]
    f32, f64 = torch.float32, torch.float64

    def node_sums(v: torch.Tensor, bound: int) -> torch.Tensor:  # (B * hs * ws, c) -> (N, c) float64
        v = v if bound * fy * fx * ws < 2**24 else v.to(f64)  # a run's sum held exactly
        run_sum = torch.segment_reduce(v, "sum", lengths=runs.length, axis=0, unsafe=True)
        return torch.zeros(counts.shape[0], c, dtype=f64, device=v.device).index_add_(
            0, node, run_sum.to(f64)
        )

    k = levels.to(f32)  # (B, H, W, c) whole numbers; summed per block below: (B * hs * ws, c), exact
    s1 = node_sums(block_sums(k, fy, fx).view(-1, c), 255)
    n = counts.unsqueeze(1)
    mean = s1 / n / 255.0
    if not with_std:
        return mean, None
    s2 = node_sums(block_sums(k.mul_(k), fy, fx).view(-1, c), 255 * 255)
    var = (s2 * n - s1 * s1) / (n * n)  # whole numbers before the division: no cancellation
    return mean, var.clamp_min_(0.0).sqrt_() / 255.0


def node_features(
    image: Any, labels: Any, *, features: Sequence[str] = FEATURES
) -> tuple[torch.Tensor, list[str]]:
    """Per-region statistics of an image, one row per label.

    Args:
        image: uint8 or float (``[0, 1]``) image, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``.
        labels: ``(H, W)`` label map with contiguous ids ``0 .. N-1``.
        features: any of ``"color_mean"``, ``"color_std"``, ``"centroid"``, ``"area"`` (in this
            order in the output when given in this order; columns follow the order given).

    Returns:
        ``(x, names)``: ``x`` ``(N, F)`` float32 tensor and the ``F`` column names.

    Raises:
        ValueError: bad image or labels, shapes that differ, unknown or empty ``features``.

    Shapes:
        - image: ``(H, W[, C])``
        - labels: ``(H, W)``
        - x: ``(N, F)``

    Example:
        >>> x, names = node_features(np.zeros((8, 8), np.uint8), np.zeros((8, 8), int))
        >>> x.shape, names
        (torch.Size([1, 5]), ['color_mean_gray', 'color_std_gray', 'centroid_x', 'centroid_y', 'area'])
    """
    features = check_features(features)
    img = as_float_image(image)
    labels, n = check_labels(labels)
    if labels.shape != img.shape[:2]:
        raise ValueError(
            f"labels has shape {labels.shape} but image is {img.shape[:2]}; "
            f"expected the label map of this image"
        )
    x, _ = hand_features(img, labels, n, features)
    return torch.from_numpy(x), feature_names(features, img.shape[2])


def centroids(labels: Any) -> torch.Tensor:
    """Centre of mass of every region as ``(x, y)``, normalised to ``[0, 1]`` by ``(W - 1, H - 1)``.

    Args:
        labels: ``(H, W)`` label map with contiguous ids ``0 .. N-1``.

    Returns:
        ``(N, 2)`` float32 tensor; column 0 is x (left to right), column 1 is y (top to bottom).

    Shapes:
        - labels: ``(H, W)``
        - output: ``(N, 2)``

    Example:
        >>> centroids(np.array([[0, 1, 1]])).tolist()
        [[0.0, 0.0], [0.75, 0.0]]
    """
    labels, n = check_labels(labels)
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    return torch.from_numpy(_centroids(labels, n, counts))


# ----------------------------------------------------------------------------------------------
# CNN feature maps pooled into regions

# Overlaps are counted with one bincount when the batch has at most this many (node, cell) counters
# (or not many more than run pieces); otherwise with torch.unique (a sort). Overlaps derived for a coarser
# stage are merged with a bincount up to this many counters, else kept with their duplicates (still exact).
_MERGE_MAX = 1 << 22
#: Largest (images x most nodes x cells of all stages) tables for the dense path of :func:`_pool`
#: (32 MB of float32 in all).
_DENSE_MAX = 1 << 23


def _run_cells(
    runs: LabelRuns, height: int, width: int, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pieces of the label runs that fall in the cells of an ``(h, w)`` map: ``(run, cell, pixels)``.

    Pixel ``(y, x)`` of an ``(height, width)`` label map falls in cell ``(y * h // height,
    x * w // width)``; a run of one row covers the cells ``x0 * w // width .. (x1 - 1) * w // width``,
    and its overlap with cell column ``c`` (pixels ``ceil(c * width / w) .. ceil((c + 1) * width / w) - 1``)
    is a difference of two ends. One piece per (run, covered cell column), a few per run; the
    divisions are done once per row, column and cell border (small tables), not per piece.

    Shapes:
        - output: three ``(P,)`` tensors: run index, cell ``row * w + column``, pixels (int64)
    """
    dev = runs.first.device
    pix = runs.first % (height * width)
    y = torch.div(pix, width, rounding_mode="floor")
    x0 = pix - y * width
    x1 = x0 + runs.length
    col_of_x = torch.div(torch.arange(width, device=dev) * w, width, rounding_mode="floor")
    row_of_y = torch.div(torch.arange(height, device=dev) * h, height, rounding_mode="floor")
    col_start = torch.div(torch.arange(w + 1, device=dev) * width + w - 1, w, rounding_mode="floor")
    c0 = col_of_x.index_select(0, x0)
    pieces = col_of_x.index_select(0, x1 - 1) - c0 + 1
    n = int(pieces.sum())
    run = torch.repeat_interleave(torch.arange(pieces.numel(), device=dev), pieces, output_size=n)
    shift = c0 - (torch.cumsum(pieces, 0) - pieces)  # column of a piece = its index + shift of its run
    col = torch.arange(n, device=dev) + shift.index_select(0, run)
    lo, hi = col_start.index_select(0, col), col_start.index_select(0, col + 1)
    pixels = torch.minimum(x1.index_select(0, run), hi) - torch.maximum(x0.index_select(0, run), lo)
    cell = (row_of_y.index_select(0, y) * w).index_select(0, run) + col
    return run, cell, pixels


def _block_sum(x: torch.Tensor, fy: int, fx: int) -> torch.Tensor:
    """Sums of ``fy x fx`` blocks of the last two dims: ``(..., H, W)`` -> ``(..., H / fy, W / fx)``.

    Added slice by slice (rows of every block, then its columns): several times faster on the CPU than
    ``view(..., h, fy, w, fx).sum((-3, -1))``, a reduction over strided dims.
    """
    *lead, height, width = x.shape
    h, w = height // fy, width // fx
    rows = x.reshape(*lead, h, fy, width)
    acc = rows[..., 0, :].clone()
    for dy in range(1, fy):
        acc += rows[..., dy, :]
    cols = acc.view(*lead, h, w, fx)
    out = cols[..., 0].clone()
    for dx in range(1, fx):
        out += cols[..., dx]
    return out


def _count_pairs(
    key: torch.Tensor, size: int, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique keys (sorted) and their summed weights (counts when ``weights`` is None)."""
    if size <= max(_MERGE_MAX, 2 * key.numel()):
        counts = sum_by_index(key, weights, size)
        nz = torch.nonzero(counts).squeeze(1)
        return nz, counts.index_select(0, nz)
    uniq, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    return uniq, counts if weights is None else sum_by_index(inverse, weights, uniq.numel())


def _label_groups(
    labels: torch.Tensor | Sequence[Any], batch: int, device: torch.device
) -> list[tuple[list[int], torch.Tensor]]:
    """Label maps as ``(image indices, (b, H, W) int64 tensor on device)`` groups of equal size."""
    if isinstance(labels, torch.Tensor):
        if labels.ndim != 3:
            raise ValueError(
                f"labels has shape {tuple(labels.shape)}; expected (B, H, W) or a list of (H, W)"
            )
        if labels.shape[0] != batch:
            raise ValueError(f"got {labels.shape[0]} label maps for a batch of {batch} feature maps")
        return [(list(range(batch)), labels.detach().to(device, torch.int64))]
    label_list = list(labels)
    if len(label_list) != batch:
        raise ValueError(f"got {len(label_list)} label maps for a batch of {batch} feature maps")
    tensors = []
    for lab in label_list:
        # a copy of a view with negative strides (np.fliplr(labels)), which torch cannot wrap
        t = lab.detach() if isinstance(lab, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(lab))
        if t.ndim != 2:
            raise ValueError(f"label map has shape {tuple(t.shape)}; expected (H, W)")
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"label map has dtype {t.dtype}; expected integer ids")
        tensors.append(t)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((int(t.shape[0]), int(t.shape[1])), []).append(i)
    return [(idx, torch.stack([tensors[i] for i in idx]).to(device, torch.int64)) for idx in groups.values()]


def pool_feature_maps(
    maps: Sequence[torch.Tensor],
    labels: torch.Tensor | Sequence[Any],
    n_nodes: Sequence[int] | torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Average feature maps over the regions of label maps (area-weighted, no upsampling).

    For a map of size ``(h, w)`` and a label map of size ``(H, W)``, pixel ``(y, x)`` falls in
    cell ``(y * h // H, x * w // W)``. Counting pixels per (node, cell) gives a ``(N, h*w)``
    sparse matrix; multiplied with the flattened map ``(h*w, C)`` and divided by the node's area it is
    the node's feature. Everything is torch on the maps' device (CPU or CUDA, the same code; label maps
    elsewhere are moved there once). The counts come from the horizontal runs of equal ids of the label
    maps (:func:`bridge.edges.label_runs`), not from the pixels: every run is cut at the cell borders it
    crosses and the pieces' lengths are summed per ``(image, node, cell)`` (a coarser stage whose grid
    divides a finer one is counted from the finer stage's counts). For equally sized label maps whose
    ``(B, max N_b, h * w)`` count tables are small (up to ``_DENSE_MAX`` entries over all stages; 32
    images at 224 px with 75 superpixels and the default 3 stages use under a third of it) the tables
    are dense and every stage is one batched matrix product (``torch.bmm``; only when float32 products
    are full float32 on the maps' device, :func:`cnn.fusion.exact_float32`: the default; TF32 or
    bfloat16 products would round the counts and features); otherwise the non-zero
    ``(node, cell)`` pairs are kept (one ``bincount`` or ``unique``) and the weighted sum is one gather
    + ``index_add_`` per stage. The per-stage results are concatenated along channels.

    Args:
        maps: stage maps, each ``(B, C_i, h_i, w_i)`` (any resolutions, same ``B``).
        labels: ``(B, H, W)`` long tensor, or a list of ``B`` label maps (``(H_b, W_b)``,
            arrays or tensors; sizes may differ), ids ``0 .. N_b-1``. The label map covers the
            whole image the maps were computed from.
        n_nodes: ``N_b`` per image (a sequence or a ``(B,)`` tensor); ``max + 1`` of each label map
            when omitted.

    Returns:
        ``B`` float32 tensors ``(N_b, sum_i C_i)`` on the maps' device.

    Raises:
        ValueError: no maps, maps with different batch sizes, a label count that differs from ``B``, or
            ids outside ``0 .. N_b - 1``.

    Shapes:
        - maps: ``[(B, C_i, h_i, w_i)]``
        - labels: ``(B, H, W)`` or ``[(H_b, W_b)]``
        - output: ``[(N_b, sum C_i)]``

    Example:
        >>> fmap = torch.arange(4.0).view(1, 1, 2, 2)
        >>> pool_feature_maps([fmap], torch.tensor([[[0, 0, 1, 1]] * 4]))[0].tolist()
        [[1.0], [2.0]]
    """
    pooled, counts = _pool(maps, labels, n_nodes)
    return list(torch.split(pooled, counts))


def _check_cover(labels: torch.Tensor, images: torch.Tensor, blocks: tuple[int, int]) -> None:
    """Raise unless ``(B, h, w)`` labels, every one a ``fy x fx`` block, cover ``(B, H, W, C)`` images."""
    fy, fx = blocks
    covered = (labels.shape[0], labels.shape[1] * fy, labels.shape[2] * fx) if labels.ndim == 3 else None
    if covered != tuple(images.shape[:3]):
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} with blocks {blocks} do not cover images of shape "
            f"{tuple(images.shape)}; expected (B, H / fy, W / fx) label maps"
        )


def _maps_divide(maps: Sequence[torch.Tensor], height: int, width: int) -> bool:
    """Whether every ``(B, C, h, w)`` map's ``h`` divides ``height`` and ``w`` divides ``width``: then a
    block of a label map of ``height x width`` (each label a block of the image) lies in one cell of every
    map."""
    return all(height % int(m.shape[2]) == 0 and width % int(m.shape[3]) == 0 for m in maps)


def _pool(
    maps: Sequence[torch.Tensor],
    labels: torch.Tensor | Sequence[Any],
    n_nodes: Sequence[int] | torch.Tensor | None = None,
    *,
    runs: LabelRuns | None = None,
    blocks: tuple[int, int] = (1, 1),
    check: bool = True,
) -> tuple[torch.Tensor, list[int]]:
    """:func:`pool_feature_maps` as one ``(sum N_b, sum C_i)`` tensor and the node counts; ``runs``:
    ``label_runs(labels)`` of a ``(B, H, W)`` label tensor, when already computed.

    ``blocks=(fy, fx)``: every label of the ``(B, h, w)`` tensor stands for a ``fy x fx`` block of the
    image (:func:`bridge.slic.slic_batch_blocks`); every map's size must divide ``(h, w)``, so that a
    block lies in one cell of every map, and the block's pixels are counted ``fy * fx`` times: the
    same (integer) counts as the repeated map's, from ``fy * fx`` times fewer pixels. ``check=False``
    skips the check that the ids lie in ``0 .. n_nodes[b] - 1`` (for ids checked before, as
    :meth:`bridge.convert.ImageToGraph.batch_tensor` checks them); without ``n_nodes`` the ids are
    always checked (their range gives the node counts)."""
    maps = list(maps)
    if not maps:
        raise ValueError("maps is empty; expected at least one (B, C, h, w) feature map")
    for i, m in enumerate(maps):
        if m.ndim != 4:
            raise ValueError(f"maps[{i}] has shape {tuple(m.shape)}; expected (B, C, h, w)")
    batch = int(maps[0].shape[0])
    if any(int(m.shape[0]) != batch for m in maps):
        raise ValueError(f"maps have different batch sizes {[int(m.shape[0]) for m in maps]}; expected one B")
    device = maps[0].device
    groups = _label_groups(labels, batch, device)
    fy, fx = blocks
    if (fy, fx) != (1, 1):
        for _, lab in groups:
            bad_maps = [tuple(m.shape[2:]) for m in maps if not _maps_divide([m], lab.shape[1], lab.shape[2])]
            if bad_maps:
                raise ValueError(
                    f"blocks={blocks}: maps of size {bad_maps[0]} do not divide the label maps' "
                    f"{tuple(lab.shape[1:])}; give the full-resolution labels instead"
                )
    if runs is not None and (len(groups) != 1 or runs.starts.shape != groups[0][1].shape):
        raise ValueError("runs must be label_runs(labels) of the (B, H, W) label tensor given")
    if runs is not None and runs.first.device != device:
        runs = None  # computed again next to the maps
    # every group's label runs: all counting below works on runs, not pixels
    group_runs = []
    for idx, lab in groups:
        if lab.numel() == 0:
            raise ValueError(f"label map {idx[0]} is empty; expected a non-empty map with ids 0..N-1")
        r = label_runs(lab) if runs is None else runs
        at = torch.tensor(idx, device=device)
        image = at.index_select(0, torch.div(r.first, lab.shape[1] * lab.shape[2], rounding_mode="floor"))
        group_runs.append((lab, r, image, at))
    if n_nodes is not None:
        n_t = torch.as_tensor(n_nodes, dtype=torch.int64).to(device).reshape(-1)
        if n_t.numel() != batch:
            raise ValueError(f"n_nodes has {n_t.numel()} entries for a batch of {batch}")
    if check or n_nodes is None:
        lo = torch.zeros(batch, dtype=torch.int64, device=device)
        hi = torch.zeros(batch, dtype=torch.int64, device=device)
        for _, r, image, _ in group_runs:  # the smallest and largest id of every image, from its runs
            lo.scatter_reduce_(0, image, r.label, "amin", include_self=False)
            hi.scatter_reduce_(0, image, r.label, "amax", include_self=False)
        if n_nodes is None:
            n_t = hi + 1
        bad = (lo < 0) | (hi >= n_t)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise ValueError(
                f"label map {b} has ids in [{int(lo[b])}, {int(hi[b])}]; "
                f"expected a non-empty map with ids 0..{int(n_t[b]) - 1}"
            )
    counts_n = n_t.tolist()
    offsets = torch.cumsum(n_t, 0) - n_t
    total = int(sum(counts_n))
    area = torch.zeros(total, dtype=torch.float64, device=device)
    for _, r, image, _ in group_runs:
        area.index_add_(0, offsets.index_select(0, image) + r.label, r.length.to(torch.float64) * (fy * fx))
    area = area.to(torch.float32).clamp_min_(1.0).unsqueeze(-1)
    image_of_node = torch.repeat_interleave(torch.arange(batch, device=device), n_t, output_size=total)

    # (node, cell, count) overlaps for the whole batch (global node ids), finest stage first; a
    # coarser stage whose grid divides a finer one is derived from that stage's overlaps instead of
    # from every pixel again (exact: y * h // H == (y * h_fine // H) // (h_fine // h)).
    order = sorted(range(len(maps)), key=lambda i: -int(maps[i].shape[2] * maps[i].shape[3]))
    pooled_stages: list[torch.Tensor | None] = [None] * len(maps)
    n_max = int(n_t.max())
    cells = sum(int(m.shape[2] * m.shape[3]) for m in maps)  # every stage's table may be kept
    exact = exact_float32(device)  # not TF32 / bfloat16 products
    if exact and len(group_runs) == 1 and batch * n_max * cells <= _DENSE_MAX:
        # one label size and a small enough (image, node, cell) table: dense overlap matrices and one
        # batched matrix product per stage, several times faster than the gathers of the general path
        lab, r, image, _ = group_runs[0]
        slot = image * n_max + r.label  # of every run in the (B * n_max) padded node table
        local = torch.arange(total, device=device) - offsets.index_select(0, image_of_node)
        rows_of_nodes = image_of_node * n_max + local
        dense: list[tuple[int, int, torch.Tensor]] = []
        for i in order:
            m = maps[i]
            _, channels, h, w = m.shape
            parent_d = next((d for d in reversed(dense) if d[0] % h == 0 and d[1] % w == 0), None)
            if parent_d is None:
                run, cell, pixels = _run_cells(r, lab.shape[1], lab.shape[2], h, w)
                weight = torch.zeros(batch * n_max * h * w, device=device)  # integer counts: exact in float32
                at = slot.index_select(0, run) * (h * w) + cell
                weight.index_add_(0, at, pixels.to(torch.float32) * (fy * fx))
                weight = weight.view(batch, n_max, h, w)
            else:
                ph, pw, pweight = parent_d
                weight = _block_sum(pweight, ph // h, pw // w)
            dense.append((h, w, weight))
            values = m.detach().to(torch.float32).reshape(batch, channels, h * w).transpose(1, 2)
            pooled = torch.bmm(weight.view(batch, n_max, h * w), values).view(batch * n_max, channels)
            pooled_stages[i] = pooled.index_select(0, rows_of_nodes) / area
        return torch.cat(pooled_stages, dim=1), counts_n  # type: ignore[arg-type]

    done: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for i in order:
        m = maps[i]
        _, channels, h, w = m.shape
        hw = h * w
        parent = next((d for d in reversed(done) if d[0] % h == 0 and d[1] % w == 0), None)
        if parent is None:
            parts_node, parts_cell, parts_count = [], [], []
            for lab, r, image, _ in group_runs:
                run, cell_of, pixels = _run_cells(r, lab.shape[1], lab.shape[2], h, w)
                node = offsets.index_select(0, image) + r.label  # global node of every run
                key = node.index_select(0, run) * hw + cell_of
                uniq, cnt = _count_pairs(key, total * hw, pixels.to(torch.float64) * (fy * fx))
                parts_node.append(torch.div(uniq, hw, rounding_mode="floor"))
                parts_cell.append(uniq % hw)
                parts_count.append(cnt.to(torch.float32))
            gnode, cell, count = torch.cat(parts_node), torch.cat(parts_cell), torch.cat(parts_count)
        else:
            ph, pw, pnode, pcell, pcount = parent
            row, col = torch.div(pcell, pw, rounding_mode="floor"), pcell % pw
            cell = torch.div(row, ph // h, rounding_mode="floor") * w + torch.div(
                col, pw // w, rounding_mode="floor"
            )
            gnode, count = pnode, pcount
            size = total * hw
            if size <= _MERGE_MAX:  # merge duplicates (fewer rows to gather below)
                uniq, count = _count_pairs(gnode * hw + cell, size, count)
                gnode, cell = torch.div(uniq, hw, rounding_mode="floor"), uniq % hw
        done.append((h, w, gnode, cell, count))
        rows = image_of_node.index_select(0, gnode) * hw + cell
        values = m.detach().to(torch.float32).permute(0, 2, 3, 1).reshape(batch * hw, channels)
        contrib = values.index_select(0, rows)
        contrib *= count.to(torch.float32).unsqueeze(1)
        out = torch.zeros(total, channels, device=device)
        out.index_add_(0, gnode, contrib)
        pooled_stages[i] = out / area
    return torch.cat(pooled_stages, dim=1), counts_n  # type: ignore[arg-type]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state (names, shapes, dtypes and values of parameters and buffers).

    Example:
        >>> len(weights_fingerprint(torch.nn.Linear(2, 2)))
        64
    """
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Run the block with ``module`` in eval mode; afterwards every submodule gets back its own
    ``training`` flag (a BatchNorm kept in eval inside a training model stays in eval, a head in
    train mode under an eval model stays in train)."""
    if isinstance(module, torch.nn.Module):
        with eval_mode(module):
            yield
        return
    was_training = bool(getattr(module, "training", False))  # a duck-typed backbone: its own flag only
    if hasattr(module, "eval"):
        module.eval()
    try:
        yield
    finally:
        if was_training and hasattr(module, "train"):
            module.train(True)


class CNNNodeFeatures:
    """Backbone stage maps pooled into the nodes of label maps, computed in batches.

    Images are resized to the backbone's square ``cfg.input_size`` (the whole image, no crop, so
    the label map of the original image covers the network input exactly), scaled to ``[0, 1]``
    and normalised with ``cfg.mean`` / ``cfg.std`` (in float32, then cast to the backbone's dtype, so a
    half / bfloat16 backbone works); then ``backbone.features(x)`` runs under ``torch.inference_mode``
    in eval mode (the train/eval flag of every submodule is restored afterwards, each to its own value)
    and the chosen stages are pooled into nodes with :func:`pool_feature_maps` (in float32).

    Args:
        backbone: a cnn backbone (``cnn.create_backbone(...)``): ``.features(x)`` returning a list
            of stage maps and ``.cfg`` with ``input_size``, ``mean``, ``std``, ``interpolation``.
        stages: indices into ``backbone.features(x)`` (negative allowed); default: the last three
            (all of them for a backbone with fewer); ``None`` = all stages. The shallow, high-resolution
            stages cost the most to pool and add little beyond the colour statistics of a superpixel.
        batch_size: images per forward pass.
        device: where the backbone runs; ``None`` = the device of its parameters at each call (a
            backbone moved with ``.to(...)`` after this was built is followed).

    Shapes:
        - images: list of ``(H_b, W_b, 3)`` (or grayscale ``(H_b, W_b)``) uint8 / float arrays
        - labels: list of ``(H_b, W_b)`` label maps
        - output: list of ``(N_b, out_channels)`` float32 CPU tensors

    Example:
        >>> from cnn.backbones import create_backbone
        >>> cnn = CNNNodeFeatures(create_backbone("efficientnet_lite0", weights=None))  # last 3 stages
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> labels = np.repeat([[0, 1]], 64, axis=0).repeat(32, axis=1)
        >>> [f.shape for f in cnn([image], [labels])]
        [torch.Size([2, 472])]
    """

    def __init__(
        self,
        backbone: BackboneLike,
        *,
        stages: Sequence[int] | None = DEFAULT_STAGES,
        batch_size: int = 32,
        device: str | torch.device | None = None,
    ) -> None:
        check_backbone(backbone)
        batch_size = check_positive_int(batch_size, "batch_size")
        channels = getattr(backbone, "feature_channels", None)
        self.n_stages = len(channels) if channels is not None else None
        # the default "last three" means all stages of a shallower backbone; without feature_channels
        # the stage count is only known from the maps (see _select)
        default = stages is not None and not isinstance(stages, int) and tuple(stages) == DEFAULT_STAGES
        self._all_if_fewer = default and self.n_stages is None
        if self.n_stages is not None and default and self.n_stages < len(DEFAULT_STAGES):
            stages = list(range(self.n_stages))
        if stages is not None:
            if isinstance(stages, int):
                stages = [stages]
            stages = list(stages)
            if not stages or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in stages):
                raise ValueError(f"stages must be a non-empty list of stage indices or None, got {stages!r}")
            if self.n_stages is not None:
                bad = [s for s in stages if not -self.n_stages <= s < self.n_stages]
                if bad:
                    raise ValueError(
                        f"stages {bad} out of range for backbone with {self.n_stages} stages "
                        f"(valid: {-self.n_stages}..{self.n_stages - 1})"
                    )
                stages = [int(s) % self.n_stages for s in stages]
            if len(set(stages)) != len(stages):
                raise ValueError(f"stages lists a stage twice: {stages!r}")
        self.backbone = backbone
        self.stages = None if stages is None else [int(s) for s in stages]
        self.batch_size = batch_size
        self._device = None if device is None else torch.device(device)

    def _parameter(self) -> torch.Tensor | None:
        """The backbone's first floating-point parameter (None without any)."""
        params = self.backbone.parameters() if hasattr(self.backbone, "parameters") else ()
        return next((p for p in params if p.is_floating_point()), None)

    @property
    def device(self) -> torch.device:
        """Where the backbone runs: the ``device`` given, else its parameters' device now (else CPU)."""
        if self._device is not None:
            return self._device
        param = self._parameter()
        return param.device if param is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network input: that of the backbone's parameters now (float32 without any)."""
        param = self._parameter()
        return param.dtype if param is not None else torch.float32

    @property
    def stage_channels(self) -> list[int] | None:
        """Channels of each selected stage (``None`` if the backbone does not list them)."""
        channels = getattr(self.backbone, "feature_channels", None)
        if channels is None:
            return None
        idx = range(len(channels)) if self.stages is None else self.stages
        return [int(channels[i]) for i in idx]

    @property
    def out_channels(self) -> int | None:
        """Width of the pooled node feature (sum of the selected stages' channels)."""
        ch = self.stage_channels
        return None if ch is None else sum(ch)

    def names(self) -> list[str]:
        """Column names ``cnn{stage}_{channel}`` of the pooled features."""
        ch = self.stage_channels or []
        idx = range(len(ch)) if self.stages is None else self.stages
        return [f"cnn{s}_{c}" for s, n in zip(idx, ch) for c in range(n)]

    def config(self) -> dict[str, Any]:
        """JSON-able description: backbone name, weights fingerprint, stages, preprocessing."""
        cfg = self.backbone.cfg
        return {
            "backbone": getattr(self.backbone, "name", type(self.backbone).__name__),
            "weights": weights_fingerprint(self.backbone)
            if isinstance(self.backbone, torch.nn.Module)
            else None,
            "stages": self.stages,
            "input_size": int(cfg.input_size),
            "mean": [float(v) for v in cfg.mean],
            "std": [float(v) for v in cfg.std],
            "interpolation": str(getattr(cfg, "interpolation", "bilinear")),
        }

    def __repr__(self) -> str:
        name = getattr(self.backbone, "name", type(self.backbone).__name__)
        return (
            f"{type(self).__name__}(backbone={name!r}, stages={self.stages}, "
            f"batch_size={self.batch_size}, device={str(self.device)!r}, "
            f"input_size={self.backbone.cfg.input_size})"
        )

    def preprocess(self, images: Sequence[Any] | torch.Tensor) -> torch.Tensor:
        """Images to the normalised network input ``(B, 3, S, S)`` on :attr:`device` in :attr:`dtype`.

        ``images``: a list of images (as :func:`bridge.checks.as_float_image` accepts them), or a
        checked ``(B, H, W, C)`` float32 tensor in ``[0, 1]`` (:func:`bridge.segmentation.as_float_batch`)
        on any device, which is resized and normalised there (in float32) after one move to :attr:`device`.

        Example:
            >>> cnn.preprocess([np.zeros((32, 48, 3), np.uint8)]).shape  # doctest: +SKIP
            torch.Size([1, 3, 224, 224])
        """
        cfg = self.backbone.cfg
        size = int(cfg.input_size)
        mode = str(getattr(cfg, "interpolation", "bilinear"))
        if mode not in ("bilinear", "bicubic", "nearest", "area"):
            mode = "bilinear"
        device, dtype = self.device, self.dtype
        if isinstance(images, torch.Tensor):  # a checked (B, H, W, C) float batch: no host copy
            groups_t = [(list(range(int(images.shape[0]))), images.to(device))]
        else:
            arrays = [as_float_image(im, name=f"images[{i}]") for i, im in enumerate(images)]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, a in enumerate(arrays):
                groups.setdefault(a.shape, []).append(i)
            groups_t = [
                (idx, torch.from_numpy(np.stack([arrays[i] for i in idx])).to(device))
                for idx in groups.values()
            ]
        out = torch.empty(sum(len(idx) for idx, _ in groups_t), 3, size, size, device=device)
        mean = torch.tensor(cfg.mean, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        for idx, t in groups_t:  # t: (b, H, W, C)
            shape = tuple(t.shape[1:])
            t = t.permute(0, 3, 1, 2)
            if shape[2] == 1:
                t = t.expand(-1, 3, -1, -1)
            if shape[:2] != (size, size):
                kw = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
                t = F.interpolate(t.contiguous(), size=(size, size), mode=mode, **kw).clamp_(0.0, 1.0)
            if len(idx) == out.shape[0]:
                torch.sub(t, mean, out=out)  # the channels-last batch read once
            else:
                out[idx] = t - mean
        return out.div_(std).to(dtype)

    def _select(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        maps = list(maps)
        if self.stages is None or (self._all_if_fewer and len(maps) < len(self.stages)):
            return maps  # None, or the default "last three" of a backbone with fewer stages: all of them
        bad = [s for s in self.stages if not -len(maps) <= s < len(maps)]
        if bad:
            raise ValueError(f"stages {bad} out of range: backbone.features returned {len(maps)} maps")
        return [maps[s] for s in self.stages]

    def pool_batch(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        n_nodes: torch.Tensor,
        *,
        runs: LabelRuns | None = None,
        blocks: tuple[int, int] = (1, 1),
        check: bool = True,
    ) -> torch.Tensor:
        """Pooled CNN features of a tensor batch, all on :attr:`device` (the torch path of
        :meth:`bridge.convert.ImageToGraph.batch_tensor`): no host copy of images, labels or features.

        Args:
            images: ``(B, H, W, C)`` float32 in ``[0, 1]`` (:func:`bridge.segmentation.as_float_batch`).
            labels: ``(B, H, W)`` int64 label maps with ids ``0 .. n_nodes[b] - 1``; with ``blocks``
                ``(B, H / fy, W / fx)``, every label standing for a ``fy x fx`` block of pixels.
            n_nodes: ``(B,)`` int64 node counts.
            runs: ``bridge.edges.label_runs(labels)`` when already computed (used when one chunk of
                ``batch_size`` holds the whole batch and the labels are on :attr:`device`).
            blocks: ``(fy, fx)`` of :func:`bridge.slic.slic_batch_blocks`' labels. Where every stage
                map's size divides the labels' (224 px, 75 superpixels and efficientnet_lite0: labels
                112 x 112, maps 28, 14 and 7), the overlaps are counted on the small map (the same
                counts); otherwise the labels are repeated to full resolution first.
            check: ``False`` skips the check of the ids against ``n_nodes`` (ids known to be valid).

        Returns:
            ``(sum N_b, out_channels)`` float32 on :attr:`device`, graph after graph.

        Raises:
            ValueError: labels (times ``blocks``) of another size than the images, or bad ids.

        Shapes:
            - images: ``(B, H, W, C)``; labels: ``(B, H / fy, W / fx)``; n_nodes: ``(B,)``
            - output: ``(N, out_channels)``

        Example:
            >>> imgs, labels = torch.rand(2, 64, 64, 3), torch.zeros(2, 64, 64, dtype=torch.long)
            >>> cnn.pool_batch(imgs, labels, torch.tensor([1, 1])).shape  # doctest: +SKIP
            torch.Size([2, 472])
        """
        module = self.backbone
        device = self.device
        fy, fx = blocks
        _check_cover(labels, images, blocks)
        whole = self.batch_size >= int(images.shape[0]) and labels.device == device
        labels = labels.to(device)
        n_nodes = n_nodes.to(device)
        full: torch.Tensor | None = None  # the labels repeated to full resolution, made when needed
        full_runs: LabelRuns | None = None
        out = []
        with _eval_mode(module):
            for start in range(0, int(images.shape[0]), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                x = self.preprocess(images[chunk])
                with torch.inference_mode():
                    maps = self._select(module.features(x))
                    given = runs if whole else None
                    if (fy, fx) == (1, 1) or _maps_divide(maps, labels.shape[1], labels.shape[2]):
                        pooled = _pool(
                            maps, labels[chunk], n_nodes[chunk], runs=given, blocks=blocks, check=check
                        )
                    else:  # a block may straddle cells: the full-resolution labels (and their runs)
                        if full is None:
                            full = repeat_blocks(labels, fy, fx)
                            full_runs = repeat_runs(given, fy, fx) if given is not None else None
                        pooled = _pool(maps, full[chunk], n_nodes[chunk], runs=full_runs, check=check)
                    out.append(pooled[0])
        return torch.cat(out)  # outside inference mode: a normal tensor

    def __call__(self, images: Sequence[Any], labels: Sequence[Any]) -> list[torch.Tensor]:
        """Pooled CNN features for each image's label map.

        Args:
            images: ``B`` images (``(H, W, 3)`` / ``(H, W)``, uint8 or float in ``[0, 1]``).
            labels: ``B`` label maps of the same sizes, ids ``0 .. N_b-1``.

        Returns:
            ``B`` float32 CPU tensors ``(N_b, out_channels)``.
        """
        images = list(images)
        labels = list(labels)
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} label maps; expected one per image")
        checked = []
        for i, (im, lab) in enumerate(zip(images, labels)):
            lab_np, n = check_labels(lab, name=f"labels[{i}]")
            if lab_np.shape != tuple(np.shape(im)[:2]):
                raise ValueError(
                    f"labels[{i}] has shape {lab_np.shape} but images[{i}] is {tuple(np.shape(im)[:2])}"
                )
            checked.append((torch.from_numpy(lab_np), n))
        results: list[torch.Tensor] = []
        module = self.backbone
        with _eval_mode(module):
            for start in range(0, len(images), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                x = self.preprocess(images[chunk])
                with torch.inference_mode():
                    maps = self._select(module.features(x))
                    pooled = pool_feature_maps(
                        maps, [lab for lab, _ in checked[chunk]], n_nodes=[n for _, n in checked[chunk]]
                    )
                results += [p.to("cpu", torch.float32) for p in pooled]
        return results
