"""Segmentation: an image becomes a label map of superpixels (SLIC) or square patches (grid).

The segmentation back-ends live in one table (:class:`SegmentationBackend`, filled with
:func:`register_segmentation`, read with :func:`get_segmentation` and :func:`list_segmentations`):

============== ========================================================================= ==========
name           back-end                                                                  batched
============== ========================================================================= ==========
``slic``       :func:`skimage.segmentation.slic`, one image at a time (the default)      no
``slic_torch`` the same algorithm batched in torch (:func:`bridge.slic.slic_batch`)      yes
``grid``       square patches of side ``~sqrt(H * W / n_segments)`` (the ViG patch graph) no
============== ========================================================================= ==========

:func:`superpixels`, :func:`superpixels_batch`, :class:`bridge.convert.ImageToGraph` (segmentation
and cache key) and :class:`bridge.dataset.GraphDataset` look a method up in the table; none of them
tests a method's name. :data:`METHODS` is the tuple of the table's names.

Every label map returned here is *contiguous* (ids ``0 .. N-1``, each used) and every id is
*one connected region* under 4-connectivity, so downstream code (adjacency, node features,
CNN pooling) can use ``np.bincount`` with ``minlength=N`` and never meets an empty node.

Example:
    >>> import numpy as np
    >>> img = np.zeros((32, 32, 3), np.uint8)
    >>> img[:16, 16:] = 255
    >>> labels, info = superpixels(img, n_segments=4, return_info=True)
    >>> labels.shape, labels.dtype, info["n_segments"]
    ((32, 32), dtype('int64'), 4)
    >>> list_segmentations()
    ['slic', 'slic_torch', 'grid']
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checks import as_float_image, check_compactness, check_n_segments, check_sigma, check_size
from .slic import VERSION as SLIC_TORCH_VERSION
from .slic import slic_batch

__all__ = [
    "METHODS",
    "SegmentationBackend",
    "check_options",
    "get_segmentation",
    "list_segmentations",
    "register_segmentation",
    "relabel",
    "superpixels",
    "superpixels_batch",
    "unregister_segmentation",
]

#: The names of the back-end table, as a tuple (read on access: back-ends registered later are in it).
METHODS: tuple[str, ...]  # served by the module's __getattr__

#: One image: ``fn(img, *, n_segments, compactness, sigma) -> labels``.
SegmentFn = Callable[..., np.ndarray]
#: Many images: ``fn(imgs, *, n_segments, compactness, sigma) -> [labels, ...]``.
SegmentBatchFn = Callable[..., Sequence[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SegmentationBackend:
    """One entry of the segmentation table: how a ``method`` name segments images.

    The functions receive images already checked by :func:`bridge.checks.as_float_image` (``(H, W, C)``
    float32 in ``[0, 1]``, ``C`` in ``{1, 3}``) and options already checked (``n_segments`` an int in
    ``1 .. H * W``, ``compactness > 0``, ``sigma >= 0``; a back-end may ignore the last two), all as
    keyword arguments. They must return ``(H, W)`` int64 label maps with ids ``0 .. N-1``, every id
    one 4-connected region (:func:`relabel` brings any label map there). They never modify their input.

    Attributes:
        name: the ``method`` name (``superpixels(..., method=name)``).
        single: ``single(img, *, n_segments, compactness, sigma) -> labels`` for one image.
        batch: ``batch(imgs, *, n_segments, compactness, sigma) -> [labels, ...]`` for a list of images
            (sizes may differ), or ``None`` when the back-end gains nothing from batches (then
            :meth:`segment_many` calls ``single`` per image and converters spread images over threads).
        version: the version of the back-end's results, or ``None``. When set, graph caches record it
            as ``config[name] = version`` (:meth:`bridge.convert.ImageToGraph.config`), so a new
            version gives a new cache key. scikit-image's version is recorded for every method.
        description: one line for listings (``pixgraph graphs --help``, reports).

    Shapes:
        - single: ``(H, W, C)`` -> ``(H, W)``
        - batch: ``[(H_i, W_i, C)]`` -> ``[(H_i, W_i)]``

    Example:
        >>> backend = get_segmentation("grid")
        >>> backend.segment(np.zeros((4, 4, 1), np.float32), n_segments=4).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
        >>> backend.batched, get_segmentation("slic_torch").batched
        (False, True)
    """

    name: str
    single: SegmentFn
    batch: SegmentBatchFn | None = None
    version: str | int | None = None
    description: str = ""

    @property
    def batched(self) -> bool:
        """Whether the back-end segments a list of images in one pass."""
        return self.batch is not None

    def segment(
        self, img: np.ndarray, *, n_segments: int, compactness: float = 10.0, sigma: float = 0.0
    ) -> np.ndarray:
        """Label map of one checked image (see the class docstring); refuses more segments than pixels.

        Shapes:
            - img: ``(H, W, C)``
            - output: ``(H, W)``
        """
        check_size(img.shape[0], img.shape[1], n_segments)
        labels = self.single(img, n_segments=n_segments, compactness=compactness, sigma=sigma)
        return self._checked(labels, img, n_segments)

    def segment_many(
        self, imgs: Sequence[np.ndarray], *, n_segments: int, compactness: float = 10.0, sigma: float = 0.0
    ) -> list[np.ndarray]:
        """Label maps of many checked images: one call of ``batch``, else ``single`` per image.

        Shapes:
            - imgs: ``[(H_i, W_i, C)]``
            - output: ``[(H_i, W_i)]``
        """
        imgs = list(imgs)
        if self.batch is None:
            return [
                self.segment(im, n_segments=n_segments, compactness=compactness, sigma=sigma) for im in imgs
            ]
        for im in imgs:
            check_size(im.shape[0], im.shape[1], n_segments)
        out = list(self.batch(imgs, n_segments=n_segments, compactness=compactness, sigma=sigma))
        if len(out) != len(imgs):
            raise ValueError(
                f"segmentation back-end {self.name!r} returned {len(out)} label maps for {len(imgs)} "
                f"images; its batch function must return one label map per image"
            )
        return [self._checked(lab, im, n_segments) for lab, im in zip(out, imgs)]

    def _checked(self, labels: Any, img: np.ndarray, n_segments: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != img.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"segmentation back-end {self.name!r} returned a label map of dtype {labels.dtype} and "
                f"shape {labels.shape} for an image of {img.shape[:2]}; a back-end must return an integer "
                f"(H, W) label map (fix the back-end, see bridge.segmentation.SegmentationBackend)"
            )
        labels = labels.astype(np.int64, copy=False)
        height, width = img.shape[:2]
        if max(height, width) > _ELONGATED * min(height, width):
            got = int(labels.max()) + 1 if labels.size else 0
            if got < _TOO_FEW * n_segments:
                # one text per method and n_segments: Python's default filter shows it once, not per image
                warnings.warn(
                    f"method={self.name!r} gives far fewer segments than n_segments={n_segments} for very "
                    f"elongated images (aspect ratio above {_ELONGATED}:1; e.g. a 1x2000 strip gives 1): its "
                    f"seeds lie on a square grid that a thin strip defeats; use method='grid', or resize or "
                    f"crop the images to a less elongated shape",
                    UserWarning,
                    stacklevel=2,
                )
        return labels


#: An image is "very elongated" when its longer side exceeds this many times its shorter side ...
_ELONGATED = 20
#: ... and then it warns when fewer than this fraction of the segments asked for come back.
_TOO_FEW = 0.25

_REGISTRY: dict[str, SegmentationBackend] = {}
_BUILTIN = ("slic", "slic_torch", "grid")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_segmentation(
    name: str,
    single: SegmentFn,
    *,
    batch: SegmentBatchFn | None = None,
    version: str | int | None = None,
    description: str = "",
    replace: bool = False,
) -> SegmentationBackend:
    """Add a segmentation back-end to the table (the contract is in :class:`SegmentationBackend`).

    Converter workers look a method up by name: a back-end registered at run time reaches worker
    processes started with ``fork`` (Linux), not with ``spawn``; register it at import of your module
    for those.

    Args:
        name: the ``method`` name: lower case letters, digits and ``_``, starting with a letter.
        single: the one-image function.
        batch: the many-images function, or ``None``.
        version: version of the back-end's results (part of graph cache keys), or ``None``.
        description: one line for listings.
        replace: allow replacing a registered back-end of this name (the built-ins cannot be replaced).

    Returns:
        The new table entry.

    Raises:
        ValueError: a bad or taken name, or a built-in name.
        TypeError: ``single`` or ``batch`` not callable.

    Example:
        >>> def halves(img, *, n_segments, compactness, sigma):
        ...     return np.repeat([[0] * (img.shape[1] // 2) + [1] * (img.shape[1] - img.shape[1] // 2)],
        ...                      img.shape[0], axis=0)
        >>> _ = register_segmentation("halves", halves, version="1", description="left and right half")
        >>> superpixels(np.zeros((2, 4), np.uint8), n_segments=2, method="halves").tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1]]
        >>> _ = unregister_segmentation("halves")
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"segmentation name must be lower case letters, digits and '_' starting with a letter, "
            f"got {name!r}"
        )
    if name in _BUILTIN and name in _REGISTRY:
        raise ValueError(
            f"{name!r} is a built-in segmentation back-end and cannot be replaced; pick another name"
        )
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"a segmentation back-end named {name!r} is already registered; pass replace=True or pick "
            f"another name"
        )
    if not callable(single):
        raise TypeError(
            f"single must be callable as single(img, *, n_segments, compactness, sigma), got {single!r}"
        )
    if batch is not None and not callable(batch):
        raise TypeError(
            f"batch must be None or callable as batch(imgs, *, n_segments, compactness, sigma), got {batch!r}"
        )
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise TypeError(f"version must be a str, an int or None, got {version!r}")
    backend = SegmentationBackend(name, single, batch, version, str(description))
    _REGISTRY[name] = backend
    return backend


def unregister_segmentation(name: str) -> SegmentationBackend:
    """Remove a back-end added with :func:`register_segmentation` and return it.

    Raises:
        ValueError: an unknown name or a built-in back-end.

    Example:
        >>> unregister_segmentation("slic")
        Traceback (most recent call last):
        ...
        ValueError: 'slic' is a built-in segmentation back-end and cannot be removed
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in segmentation back-end and cannot be removed")
    backend = get_segmentation(name)
    del _REGISTRY[name]
    return backend


def get_segmentation(name: Any) -> SegmentationBackend:
    """The table entry of a method name.

    Raises:
        ValueError: an unknown name; the message lists the known ones.

    Example:
        >>> get_segmentation("slic_torch").version
        1
        >>> get_segmentation("watershed")
        Traceback (most recent call last):
        ...
        ValueError: unknown method 'watershed'; expected one of 'slic', 'slic_torch', 'grid' ...
    """
    backend = _REGISTRY.get(name) if isinstance(name, str) else None
    if backend is None:
        raise ValueError(
            f"unknown method {name!r}; expected one of {', '.join(map(repr, _REGISTRY))} "
            f"(or add one with bridge.segmentation.register_segmentation)"
        )
    return backend


def list_segmentations() -> list[str]:
    """Names of the registered segmentation back-ends, built-ins first, then in order of registration.

    Example:
        >>> list_segmentations()[:3]
        ['slic', 'slic_torch', 'grid']
    """
    return list(_REGISTRY)


def __getattr__(name: str) -> Any:
    # METHODS follows the table, so back-ends registered later appear in it too
    if name == "METHODS":
        return tuple(_REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_options(n_segments: Any, compactness: Any, method: Any, sigma: Any) -> int:
    """Check the segmentation options of :func:`superpixels` and return ``n_segments`` as an int.

    Raises:
        ValueError: ``n_segments`` not a positive int, an unknown ``method``, ``compactness <= 0``
            or ``sigma < 0`` (checked in this order).

    Example:
        >>> check_options(np.int64(10), 10.0, "grid", 0.0)
        10
    """
    n = check_n_segments(n_segments)
    get_segmentation(method)
    check_compactness(compactness)
    check_sigma(sigma)
    return n


def relabel(labels: Any) -> np.ndarray:
    """Make ids contiguous and split every id into its 4-connected regions.

    Regions are numbered in raster order of their first pixel, ``0 .. N-1``. Vectorised
    (``skimage.measure.label``), no loop over regions.

    Args:
        labels: ``(H, W)`` integer label map with any ids (negative ids allowed, each its own label).

    Returns:
        ``(H, W)`` int64 label map, contiguous and connected.

    Shapes:
        - labels: ``(H, W)``
        - output: ``(H, W)``

    Example:
        >>> relabel(np.array([[5, 5, 9], [7, 5, 5]])).tolist()
        [[0, 0, 1], [2, 0, 0]]
    """
    from skimage.measure import label as cc_label

    if hasattr(labels, "detach") and hasattr(labels, "numpy"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"labels has shape {labels.shape}; expected a non-empty 2-D label map (H, W)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels has dtype {labels.dtype}; expected an integer label map")
    labels = labels.astype(np.int64, copy=False)
    lo = int(labels.min())
    # skimage.measure.label treats one value as background; shift so that no id equals it.
    shifted = labels - lo if lo < 0 else labels
    out = cc_label(shifted, background=-1, connectivity=1)
    out = out.astype(np.int64, copy=False)
    out -= 1
    return out


# -- the built-in back-ends ----------------------------------------------------------------------


def _is_flat(img: np.ndarray) -> bool:
    return bool((img == img[:1, :1]).all())


def _grid(img: np.ndarray, *, n_segments: int, compactness: float = 10.0, sigma: float = 0.0) -> np.ndarray:
    """``rows x cols`` rectangular patches of side ``~sqrt(H * W / n_segments)``; ignores the content."""
    height, width = img.shape[:2]
    side = math.sqrt(height * width / n_segments)
    rows = min(height, max(1, round(height / side)))
    cols = min(width, max(1, round(width / side)))
    r = (np.arange(height, dtype=np.int64) * rows) // height
    c = (np.arange(width, dtype=np.int64) * cols) // width
    return r[:, None] * cols + c[None, :]


def _slic(img: np.ndarray, *, n_segments: int, compactness: float, sigma: float) -> np.ndarray:
    """scikit-image SLIC (Lab for RGB, ``enforce_connectivity``), relabelled; one region if flat."""
    if n_segments == 1 or _is_flat(img):
        return np.zeros(img.shape[:2], np.int64)
    from skimage.segmentation import slic

    color = img.shape[2] == 3
    seg = slic(
        img if color else img[:, :, 0],
        n_segments=n_segments,
        compactness=float(compactness),
        sigma=float(sigma),
        enforce_connectivity=True,
        start_label=0,
        channel_axis=-1 if color else None,
    )
    return relabel(seg)


def _slic_torch(img: np.ndarray, *, n_segments: int, compactness: float, sigma: float) -> np.ndarray:
    """:func:`bridge.slic.slic_batch` of one image; one region if flat."""
    if n_segments == 1 or _is_flat(img):
        return np.zeros(img.shape[:2], np.int64)
    return slic_batch(img[None], n_segments=n_segments, compactness=compactness, sigma=sigma)[0]


def _slic_torch_batch(
    imgs: Sequence[np.ndarray], *, n_segments: int, compactness: float, sigma: float
) -> list[np.ndarray]:
    """:func:`bridge.slic.slic_batch` once per group of equal shapes; flat images give one region."""
    out: list[np.ndarray | None] = [None] * len(imgs)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(imgs):
        if n_segments == 1 or _is_flat(im):
            out[i] = np.zeros(im.shape[:2], np.int64)
        else:
            groups.setdefault(im.shape, []).append(i)
    for idx in groups.values():
        labels = slic_batch(
            np.stack([imgs[i] for i in idx]), n_segments=n_segments, compactness=compactness, sigma=sigma
        )
        for i, lab in zip(idx, labels):
            out[i] = lab
    return out  # type: ignore[return-value]


register_segmentation("slic", _slic, description="scikit-image SLIC, one image at a time (the default)")
register_segmentation(
    "slic_torch",
    _slic_torch,
    batch=_slic_torch_batch,
    version=SLIC_TORCH_VERSION,
    description="SLIC batched in torch (bridge.slic.slic_batch), ~10x faster per image in batches",
)
register_segmentation("grid", _grid, description="square patches of side ~sqrt(H * W / n_segments)")


# -- the public calls ----------------------------------------------------------------------------


def superpixels(
    image: Any,
    *,
    n_segments: int = 75,
    compactness: float = 10.0,
    method: str = "slic",
    sigma: float = 0.0,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Segment an image into superpixels (SLIC) or square patches (grid).

    ``method="slic"`` runs :func:`skimage.segmentation.slic` (Lab colour space for RGB, grayscale
    as is, ``enforce_connectivity=True``) and relabels the result into connected, contiguous ids.
    SLIC returns about ``n_segments`` regions, often fewer; ``return_info=True`` reports both.
    On a very elongated image (longer side more than 20 times the shorter) it may return far fewer
    (a noisy 1x2000 strip gives 1 for 10 asked): then a ``UserWarning`` suggests ``method="grid"``
    or resizing (shown once per method and ``n_segments``, not once per image).
    An image whose pixels are all equal gives a single region.
    ``method="slic_torch"`` runs the same algorithm batched in torch (:mod:`bridge.slic`; about 10x
    faster per image in batches, see :func:`superpixels_batch`), on a 2x smaller copy for 224 px
    images with 75 segments (borders exact to 2 px).
    ``method="grid"`` cuts the image into ``rows x cols`` rectangular patches of side
    ``~sqrt(H * W / n_segments)`` (the ViG patch graph; 224x224 with 196 segments gives 14x14
    patches of 16 px). The grid ignores the image content, so a flat image still gives patches.

    Args:
        image: uint8 or float (in ``[0, 1]``) image, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``;
            never modified.
        n_segments: number of segments asked for, ``1 <= n_segments <= H * W``.
        compactness: SLIC balance of colour and space (higher = squarer superpixels), ``> 0``.
        method: a name of the back-end table (:func:`list_segmentations`): ``"slic"``
            (scikit-image), ``"slic_torch"`` (:mod:`bridge.slic`), ``"grid"``, or one added with
            :func:`register_segmentation`.
        sigma: width of a Gaussian pre-smoothing for SLIC (0 = none).
        return_info: also return a dict with ``n_segments_requested``, ``n_segments`` (got) and
            ``method``.

    Returns:
        ``labels`` (``(H, W)`` int64, ids ``0 .. N-1``), or ``(labels, info)`` with ``return_info``.

    Raises:
        ValueError: bad image (see :func:`bridge.checks.as_float_image`), ``n_segments`` outside
            ``1 .. H*W``, unknown ``method``, ``compactness <= 0`` or ``sigma < 0``.

    Shapes:
        - image: ``(H, W)`` or ``(H, W, C)``
        - labels: ``(H, W)``

    Example:
        >>> img = np.zeros((20, 20, 3), np.uint8); img[:10, :10] = 200
        >>> int(superpixels(img, n_segments=4).max()) + 1
        4
    """
    img = as_float_image(image)
    n_segments = check_options(n_segments, compactness, method, sigma)
    backend = get_segmentation(method)
    labels = backend.segment(img, n_segments=n_segments, compactness=compactness, sigma=sigma)
    if return_info:
        info = {
            "n_segments_requested": n_segments,
            "n_segments": int(labels.max()) + 1,
            "method": method,
        }
        return labels, info
    return labels


def superpixels_batch(
    images: Sequence[Any],
    *,
    n_segments: int = 75,
    compactness: float = 10.0,
    method: str = "slic_torch",
    sigma: float = 0.0,
) -> list[np.ndarray]:
    """:func:`superpixels` of many images; a batched back-end (``method="slic_torch"``, the default
    here) segments images of equal shape together in one pass (:func:`bridge.slic.slic_batch`).

    Args:
        images: sequence of images as accepted by :func:`superpixels` (sizes may differ).
        n_segments, compactness, method, sigma: as in :func:`superpixels`.

    Returns:
        list of ``(H_i, W_i)`` int64 label maps with ids ``0 .. N_i - 1``, each one connected region.

    Raises:
        ValueError: as :func:`superpixels`; the message names the index of a bad image.

    Shapes:
        - images[i]: ``(H_i, W_i)`` or ``(H_i, W_i, C)``
        - output[i]: ``(H_i, W_i)``

    Example:
        >>> from skimage.data import astronaut, coffee
        >>> labels = superpixels_batch([astronaut()[:224, :224], coffee()[:224, :224]], n_segments=75)
        >>> [lab.shape for lab in labels]
        [(224, 224), (224, 224)]
    """
    n_segments = check_options(n_segments, compactness, method, sigma)
    backend = get_segmentation(method)
    imgs = []
    for i, image in enumerate(images):
        try:
            imgs.append(as_float_image(image))
            check_size(imgs[-1].shape[0], imgs[-1].shape[1], n_segments)
        except ValueError as err:
            raise ValueError(f"images[{i}]: {err}") from None
    return backend.segment_many(imgs, n_segments=n_segments, compactness=compactness, sigma=sigma)
