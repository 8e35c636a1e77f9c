"""A whole image dataset converted to graphs once, cached on disk, loaded as a PyG dataset.

:class:`GraphDataset` runs :class:`bridge.convert.ImageToGraph` over every ``(image, label)`` item:
segmentation, region statistics and edges in worker processes, CNN node features batched in the
main process (overlapping the workers' next chunk). The result is written to
``root/graphs-<key>.pt`` where ``key`` hashes the converter's :meth:`~ImageToGraph.config`
(backbone weights included) and a fingerprint of every item (:func:`data_fingerprint`); a later run
with the same key loads the file, a changed setting or a changed image gives another key and a fresh
conversion. Files are written to a temporary name and renamed, and hold only plain tensors plus a
SHA-256 checksum of them (read with ``torch.load(weights_only=True)``, verified on every load: a file
changed on disk is converted again, with a warning).

Example:
    >>> from skimage.data import astronaut, chelsea
    >>> from bridge.convert import ImageToGraph
    >>> items = [(astronaut(), 0), (chelsea(), 1)]
    >>> conv = ImageToGraph(n_segments=50, keep_segments=False)  # label maps of mixed sizes do not batch
    >>> ds = GraphDataset(items, conv, root="runs/graphs", progress=False)
    >>> ds.reused, len(ds)  # True on the second run
    (False, 2)
    >>> from torch_geometric.loader import DataLoader
    >>> next(iter(DataLoader(ds, batch_size=2))).num_graphs
    2
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from engine.files import CheckpointError, atomic_open, load_torch_file

from .checks import check_label
from .convert import ImageToGraph, prepare_many

__all__ = [
    "FINGERPRINTS",
    "GraphDataset",
    "check_cache_root",
    "check_fingerprint",
    "data_fingerprint",
    "default_cache_dir",
]


class Items(Protocol):
    """What GraphDataset converts: anything with ``len`` and ``[i]`` (a list, an array, a torch Dataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...


def default_cache_dir() -> Path:
    """Folder of cached graph datasets: ``$PIXGRAPH_CACHE/graphs``, else ``~/.cache/pixgraph/graphs``.

    Example:
        >>> default_cache_dir().name
        'graphs'
    """
    return Path(os.environ.get("PIXGRAPH_CACHE", Path.home() / ".cache" / "pixgraph")) / "graphs"


#: Part of the cache key (unchanged since the first release, so keys of the sampled mode stay the same).
_KEY_FORMAT = 1
#: Layout of the cache file; 2 added the payload checksum (files of format 1 are converted again).
_CACHE_FORMAT = 2
_SAMPLE = 32
FINGERPRINTS = ("full", "content", "sample")
# a file changed less than this long before it is fingerprinted may be changed again within the same
# clock tick without a new mtime: its bytes are hashed as well (git's "racily clean" rule)
_RACY_NS = 2_000_000_000


def check_fingerprint(mode: Any) -> str:
    """Validate a fingerprint mode (:data:`FINGERPRINTS`).

    Example:
        >>> check_fingerprint("full")
        'full'
    """
    if not isinstance(mode, str) or mode not in FINGERPRINTS:
        raise ValueError(
            f"fingerprint must be one of {', '.join(map(repr, FINGERPRINTS))}, got {mode!r}; use 'full' "
            f"(every item, the default), 'content' (every item's pixels, never file dates) or 'sample' "
            f"(32 items, fast but blind to changes elsewhere)"
        )
    return mode


def _item_files(items: Items) -> list[str] | None:
    """The files behind the items when their stat identifies them (file-backed, labels in ``targets``,
    no transform); ``None`` otherwise."""
    paths = getattr(items, "paths", None)
    targets = getattr(items, "targets", None)
    if paths is None or targets is None or getattr(items, "transform", None) is not None:
        return None
    try:
        files = [os.fspath(p) for p in paths]
    except TypeError:
        return None
    if len(files) != len(items) or len(np.asarray(targets)) != len(items):
        return None
    return files


def _content_digest(image: Any, i: int) -> str:
    arr = np.ascontiguousarray(np.asarray(image))
    if arr.dtype.hasobject:
        raise ValueError(
            f"item {i}: image is an array of Python objects ({type(image).__name__}); expected a numpy "
            f"image (H, W, 3) / (H, W), uint8 or float in [0, 1]"
        )
    digest = hashlib.blake2b(arr.reshape(-1).view(np.uint8).data, digest_size=16).hexdigest()
    return f"{arr.shape}:{arr.dtype}:{digest}"


def _file_digest(path: str, now_ns: int) -> str | None:
    """``size:mtime_ns:ctime_ns`` of a file (and a hash of its bytes when it changed just now)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    if now_ns - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        try:
            with open(path, "rb") as fh:
                text += ":" + hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        except OSError:
            return None
    return text


def data_fingerprint(items: Items, *, mode: str = "full") -> str:
    """SHA-256 fingerprint of an ``(image, label)`` sequence: the data part of a graph cache key.

    - ``mode="full"`` (default) covers every item: for a file-backed dataset (``items.paths`` and
      ``items.targets``, no transform, as :func:`cnn.load_dataset` gives for a folder) each file's
      path, size, mtime and ctime (plus a hash of its bytes when it changed in the last two seconds,
      or when it cannot be stat'ed: then the item is read); otherwise a BLAKE2b hash of every image's
      bytes, its shape, dtype and label.
    - ``mode="content"``: every image's bytes, even for file-backed datasets (reads every file).
    - ``mode="sample"``: the length, ``items.targets`` and the bytes of 32 evenly spaced items; fast,
      but a change to any other item goes unnoticed (the default before cache format 2).

    Every mode hashes the length and, when the dataset has it, ``items.targets``.

    Args:
        items: sequence of ``(image, label)`` with ``len`` and indexing.
        mode: ``"full"``, ``"content"`` or ``"sample"``.

    Returns:
        64 hex characters.

    Raises:
        ValueError: unknown ``mode``, or an item that is not an ``(image, label)`` pair.

    Shapes:
        - items[i]: ``((H, W[, C]) image, label)``

    Example:
        >>> a = [(np.zeros((2, 2), np.uint8), 0), (np.zeros((2, 2), np.uint8), 1)]
        >>> b = [a[0], (np.ones((2, 2), np.uint8), 1)]
        >>> len(data_fingerprint(a)), data_fingerprint(a) == data_fingerprint(b)
        (64, False)
    """
    mode = check_fingerprint(mode)
    n = len(items)
    h = hashlib.sha256(f"n={n}".encode())
    if mode != "sample":
        h.update(f"mode={mode};".encode())
    targets = getattr(items, "targets", None)
    if targets is not None:
        t = np.ascontiguousarray(np.asarray(targets))
        h.update(f"targets:{t.shape}:{t.dtype}".encode())
        h.update(t.tobytes())
    if mode == "sample":
        idx = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).round().astype(np.int64)).tolist()
        for i in idx:
            image, label = _split_item(items[i], i)
            arr = np.ascontiguousarray(np.asarray(image))
            h.update(f"{i}:{arr.shape}:{arr.dtype}:{label!r}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()
    files = _item_files(items) if mode == "full" else None
    now = time.time_ns()
    for i in range(n):  # one C-speed hash (or one stat) per item
        part = _file_digest(files[i], now) if files is not None else None
        if part is not None:
            h.update(f"{i}:file:{files[i]}:{part};".encode())  # type: ignore[index]
            continue
        image, label = _split_item(items[i], i)
        h.update(f"{i}:{_content_digest(image, i)}:{label!r};".encode())
    return h.hexdigest()


def _payload_checksum(payload: dict[str, Any]) -> str:
    """SHA-256 of everything in a cache payload except its ``checksum``: names, dtypes, shapes, bytes."""
    h = hashlib.sha256()

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(f"{prefix}/{k}", obj[k])
        elif isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        else:
            h.update(f"{prefix}={obj!r};".encode())

    walk("", {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def check_cache_root(root: str | os.PathLike) -> None:
    """Make sure the graph cache can be written under ``root`` (creates it; writes and removes a probe).

    Raises:
        ValueError: ``root`` is a file, lies under a file, or is not writable; the message says what to do.

    Example:
        >>> check_cache_root(tempfile.mkdtemp())
    """
    folder = os.fspath(root)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(
            f"root={folder!r} is a file; GraphDataset keeps its cache file in a folder: pass root= a "
            f"folder path (or move the file away)"
        )
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(
            f"root={folder!r} is not a writable folder ({err.strerror or type(err).__name__}); the graphs "
            f"could not be cached after the conversion: pass root= a folder you can write to (or fix its "
            f"permissions)"
        ) from None


def _split_item(item: Any, i: int) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(
            f"item {i} of the dataset is a {type(item).__name__}; expected (image, label) pairs "
            f"(numpy uint8 image (H, W, 3), int label)"
        )
    return item[0], item[1]


def _worker_init() -> None:
    torch.set_num_threads(1)


def _prepare_task(task: tuple[int, dict[str, Any], list[Any]]) -> list[dict[str, np.ndarray]]:
    """Segmentation, region statistics and edges of consecutive items ``first, first + 1, ...``."""
    first, params, images = task
    return prepare_many(params, images, first=first, name="item {}")


def _compact(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    dtype = np.int16 if top < 2**15 else np.int32
    return labels.astype(dtype).ravel()


class GraphDataset(InMemoryDataset):
    """Graphs of a whole image dataset, converted once in parallel and cached on disk.

    Args:
        images: sequence of ``(image, label)`` items (``len`` + indexing), images as numpy arrays
            ``(H, W, 3)`` / ``(H, W)`` (uint8, or float in ``[0, 1]``), labels integer class ids.
        converter: the :class:`~bridge.convert.ImageToGraph` to apply.
        root: folder for the cache file (created when missing; checked to be writable before a
            conversion starts).
        workers: worker processes for segmentation (``None`` = ``min(2, cpu count)``; ``0`` or ``1``
            = in this process).
        progress: show a tqdm progress bar.
        force: convert again even when a cache file exists (it is then replaced).
        fingerprint: how the data part of the cache key is computed (:func:`data_fingerprint`):
            ``"full"`` (default; every item: file size and dates for a folder dataset, else a hash
            of every image), ``"content"`` (every image's pixels) or ``"sample"`` (32 items; fast,
            but a changed image elsewhere reuses stale graphs).
        transform: optional PyG transform applied on access.
        chunk_size: images handed to the workers at once (default: ``max(converter.batch_size,
            8 * workers)``).

    Attributes:
        key: the cache key; cache_path: the cache file; reused: ``True`` when it was loaded from the
        cache; config: the converter configuration stored with it.

    The cache file holds a SHA-256 checksum of its tensors, verified on every load: a file that was
    changed on disk (bit rot, an edited tensor), truncated or is unreadable is converted again and
    replaced, with one warning that names it.

    Raises:
        ValueError: bad arguments, a bad item (named by its index), or a ``root`` that cannot hold the
            cache (a file, or not writable; found before any conversion).
        TypeError: ``images`` is not a sequence of items (an int, a path), or ``converter`` is not an
            :class:`~bridge.convert.ImageToGraph`.

    Shapes:
        - item ``ds[i]``: ``Data(x (N_i, F), edge_index (2, E_i), edge_attr (E_i, 2), pos (N_i, 2),
          y (1,), segments (1, H, W))``

    Example:
        >>> items = [(np.zeros((32, 32, 3), np.uint8), 0), (np.full((32, 32, 3), 9, np.uint8), 1)]
        >>> ds = GraphDataset(items, ImageToGraph(n_segments=4), root=tmp, workers=2, progress=False)
        >>> ds.reused, GraphDataset(items, ImageToGraph(n_segments=4), root=tmp, progress=False).reused
        (False, True)
    """

    def __init__(
        self,
        images: Items,
        converter: ImageToGraph,
        *,
        root: str | os.PathLike,
        workers: int | None = None,
        progress: bool = True,
        force: bool = False,
        fingerprint: str = "full",
        transform: Callable[[Data], Data] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(converter, ImageToGraph):
            raise TypeError(
                f"converter must be a bridge.ImageToGraph, got {type(converter).__name__}; "
                f"build one with ImageToGraph(...)"
            )
        sequence = hasattr(images, "__len__") and hasattr(images, "__getitem__")
        if isinstance(images, (str, bytes, os.PathLike)) or not (sequence or isinstance(images, Iterable)):
            raise TypeError(
                f"images must be a sequence of (image, label) items (with len() and [i]), got "
                f"{type(images).__name__} {images!r:.60}; pass e.g. a list of (array, int) pairs, or a "
                "dataset loaded with cnn.load_dataset(folder)"
            )
        if not sequence:
            images = list(cast(Iterable[Any], images))
        if len(images) == 0:
            raise ValueError("images is empty; expected a sequence of (image, label) items")
        if workers is None:
            workers = min(2, os.cpu_count() or 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 or None, got {workers!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if root is None or str(root) == "":
            raise ValueError("root must be a folder path for the cache file, got an empty value")
        fingerprint = check_fingerprint(fingerprint)
        super().__init__(None, transform)
        self.converter = converter
        self.workers = workers
        self.config = converter.config()
        data_key = data_fingerprint(images, mode=fingerprint)
        blob = json.dumps({"config": self.config, "data": data_key, "cache": _KEY_FORMAT}, sort_keys=True)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:24]
        self.cache_dir = os.fspath(root)
        self.cache_path = os.path.join(self.cache_dir, f"graphs-{self.key}.pt")
        self.reused = False
        self._segments: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        payload = None
        if not force and os.path.exists(self.cache_path):
            payload = self._read(self.cache_path, len(images))
        if payload is None:
            check_cache_root(self.cache_dir)  # before the conversion, not after it
            payload = self._build(images, progress=progress, chunk_size=chunk_size)
            self._write(payload)
        else:
            self.reused = True
        self._set(payload)

    # -- building ------------------------------------------------------------------------------
    def _build(self, images: Items, *, progress: bool, chunk_size: int | None) -> dict[str, Any]:
        from tqdm.auto import tqdm

        conv = self.converter
        n = len(images)
        params = conv.params()
        chunk = chunk_size or max(conv.batch_size, 8 * max(self.workers, 1))
        pool = None
        if self.workers > 1 and n > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(self.workers, initializer=_worker_init)
        graphs: list[Data] = []
        bar = tqdm(total=n, desc="image -> graph", unit="img", disable=not progress)

        def load(start: int) -> tuple[list[Any], list[int], Any]:
            imgs, ys = [], []
            for i in range(start, min(n, start + chunk)):
                image, label = _split_item(images[i], i)
                try:
                    ys.append(check_label(label))
                except ValueError as err:
                    raise ValueError(f"item {i}: {err}") from None
                imgs.append(image)
            # a few tasks per worker, each a run of images (a batched segmentation back-end such as
            # slic_torch segments a run in one pass)
            per = len(imgs) if pool is None else max(1, -(-len(imgs) // (2 * self.workers)))
            tasks = [(start + j, params, imgs[j : j + per]) for j in range(0, len(imgs), per)]
            if pool is None:
                return imgs, ys, tasks
            return imgs, ys, pool.map_async(_prepare_task, tasks, chunksize=1)

        def finish(imgs: list[Any], ys: list[int], job: Any) -> None:
            done = [_prepare_task(t) for t in job] if pool is None else job.get()
            parts = [p for run in done for p in run]
            graphs.extend(conv.assemble(imgs, parts, ys, first=len(graphs), name="item {}"))
            bar.update(len(imgs))

        try:
            pending = None
            for start in range(0, n, chunk):
                nxt = load(start)  # workers start on this chunk ...
                if pending is not None:
                    finish(*pending)  # ... while the main process finishes the previous one
                pending = nxt
            if pending is not None:
                finish(*pending)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        return self._pack(graphs)

    def _pack(self, graphs: list[Data]) -> dict[str, Any]:
        seg_flat, seg_shapes = [], []
        plain = []
        for g in graphs:
            seg = getattr(g, "segments", None)
            g = copy.copy(g)
            if seg is not None:
                del g.segments
                seg_shapes.append(tuple(seg.shape[-2:]))
                seg_flat.append(_compact(seg.numpy()))
            plain.append(g)
        data, slices = InMemoryDataset.collate(plain)
        payload: dict[str, Any] = {
            "format": _CACHE_FORMAT,
            "key": self.key,
            "config": json.dumps(self.config, sort_keys=True),
            "n": len(graphs),
            "data": {k: v for k, v in data.to_dict().items() if isinstance(v, torch.Tensor)},
            "slices": dict(slices),
        }
        if seg_flat and len(seg_flat) == len(graphs):
            dtype = np.int32 if any(s.dtype == np.int32 for s in seg_flat) else np.int16
            shapes = torch.tensor(seg_shapes, dtype=torch.long)
            offsets = torch.zeros(len(graphs) + 1, dtype=torch.long)
            offsets[1:] = torch.cumsum(shapes[:, 0] * shapes[:, 1], 0)
            payload["segments"] = torch.from_numpy(np.concatenate(seg_flat).astype(dtype))
            payload["segment_shapes"] = shapes
            payload["segment_offsets"] = offsets
        payload["checksum"] = _payload_checksum(payload)
        return payload

    # -- cache file ----------------------------------------------------------------------------
    def _write(self, payload: dict[str, Any]) -> None:
        with atomic_open(self.cache_path) as fh:  # a temporary name, renamed when complete
            torch.save(payload, fh)

    def _read(self, path: str, n: int) -> dict[str, Any] | None:
        """The verified payload of a cache file, or ``None`` (after one warning naming it): convert again."""
        try:
            payload = load_torch_file(path, expected="a graph cache file written by GraphDataset")
        except (CheckpointError, OSError) as err:  # unreadable, empty or truncated
            warnings.warn(
                f"graph cache file {path!r} could not be read ({err}); converting the images again and "
                f"replacing it",
                stacklevel=3,
            )
            return None
        if (
            not isinstance(payload, dict)
            or payload.get("format") != _CACHE_FORMAT
            or payload.get("key") != self.key
            or payload.get("n") != n
        ):
            warnings.warn(
                f"graph cache file {path!r} has another format, key or length (written by another "
                f"version?); converting the images again and replacing it",
                stacklevel=3,
            )
            return None
        if payload.get("checksum") != _payload_checksum(payload):
            warnings.warn(
                f"graph cache file {path!r} does not match its checksum: it was changed on disk after it "
                f"was written (bit rot or an edited tensor); converting the images again and replacing it",
                stacklevel=3,
            )
            return None
        return payload

    def _set(self, payload: dict[str, Any]) -> None:
        self._data = Data.from_dict(payload["data"])
        self.slices = payload["slices"]
        self._data_list = None
        if "segments" in payload:
            self._segments = (payload["segments"], payload["segment_shapes"], payload["segment_offsets"])

    # -- access --------------------------------------------------------------------------------
    def get(self, idx: int) -> Data:
        data = super().get(idx)
        if self._segments is not None:
            flat, shapes, offsets = self._segments
            h, w = shapes[idx].tolist()
            seg = flat[int(offsets[idx]) : int(offsets[idx + 1])]
            data.segments = seg.to(torch.long).view(1, h, w)
        return data

    def copy(self, idx: Any = None) -> GraphDataset:
        """A copy (of a subset) with every graph in memory; label maps are then stored with the graphs."""
        out = super().copy(idx)
        out._segments = None
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)}, key={self.key!r}, reused={self.reused}, "
            f"cache_path={self.cache_path!r}, converter={self.converter!r})"
        )
