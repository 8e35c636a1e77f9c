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

Under ``torchrun`` or Lightning DDP the conversion is split by rank: each process converts its own
contiguous block of items and writes it as a shard next to the cache file, rank 0 merges the shards
into the one cache file (the same bytes a one-process run writes), and every rank then loads that
file (see ``distributed`` in :class:`GraphDataset`).

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

import contextlib
import copy
import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.collate import collate
from torch_geometric.data.separate import separate

from engine.files import CheckpointError, atomic_open, load_torch_file

from .checks import check_label
from .convert import ImageToGraph, prepare_many

__all__ = [
    "DEFAULT_TIMEOUT",
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


def _file_digest(path: str) -> tuple[str, int] | None:
    """``size:mtime_ns:ctime_ns`` of a file and its latest change time in ns, or ``None`` (no stat)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}", max(st.st_mtime_ns, st.st_ctime_ns)


def _file_digests(files: Sequence[str]) -> list[str | None]:
    """:func:`_file_digest` of every file, taken when none changed within the last ``_RACY_NS``.

    A change within the timestamps' resolution of the stat could go unseen later, so files changed just
    now are waited for (at most ``_RACY_NS``, 2 s, once) and stat'ed again: the digests then depend on
    the files alone, not on when they were taken (the same key in every process and every later run).
    A file still that recent afterwards is dated in the future (clock skew, an archive from a machine
    whose clock ran ahead): its bytes are hashed as well, every time, so its key is stable too.
    """
    stats = [_file_digest(f) for f in files]
    latest = max((st[1] for st in stats if st is not None), default=0)
    wait = latest + _RACY_NS - time.time_ns()
    if wait > 0:
        time.sleep(min(wait, _RACY_NS) / 1e9)
        stats = [_file_digest(f) for f in files]
    now = time.time_ns()
    out: list[str | None] = []
    for path, st in zip(files, stats):
        if st is not None and now - st[1] < _RACY_NS:  # dated in the future
            try:
                with open(path, "rb") as fh:
                    digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
            except OSError:
                out.append(None)  # the item is read instead
                continue
            out.append(f"{st[0]}:{digest}")
        else:
            out.append(None if st is None else st[0])
    return out


def data_fingerprint(items: Items, *, mode: str = "full") -> str:
    """SHA-256 fingerprint of an ``(image, label)`` sequence: the data part of a graph cache key.

    - ``mode="full"`` (default) covers every item: for a file-backed dataset (``items.paths`` and
      ``items.targets``, no transform, as :func:`cnn.load_dataset` gives for a folder) each file's
      path, size, mtime and ctime (files changed in the last two seconds are waited for, at most 2 s,
      so that the key depends on the files, not on when it is computed; a file dated in the future is
      hashed as well; an item that cannot be stat'ed is read);
      otherwise a BLAKE2b hash of every image's bytes, its shape, dtype and label (as an int: NumPy
      and Python ints give the same key).
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
            h.update(f"{i}:{arr.shape}:{arr.dtype}:{_label_key(label)}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()
    files = _item_files(items) if mode == "full" else None
    parts = _file_digests(files) if files is not None else [None] * n
    for i in range(n):  # one C-speed hash (or one stat) per item
        part = parts[i]
        if part is not None:
            h.update(f"{i}:file:{files[i]}:{part};".encode())  # type: ignore[index]
            continue
        image, label = _split_item(items[i], i)
        h.update(f"{i}:{_content_digest(image, i)}:{_label_key(label)};".encode())
    return h.hexdigest()


def _label_key(label: Any) -> str:
    """A label as the key sees it: a class index as a plain int (``np.int64(1)`` and ``1`` alike)."""
    try:
        return repr(check_label(label))
    except ValueError:
        return repr(label)  # the conversion names a bad label; the key need not


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


def _channels(image: Any) -> int | None:
    """Colour channels of an item's image from its shape (1 or 3), ``None`` when the shape is not one
    of an image (the conversion then names the problem)."""
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) not in (2, 3):
        return None
    if len(shape) == 2:
        return 1
    return int(shape[2]) if int(shape[2]) in (1, 3) else None


def _mixed_channels(i: int, image: Any, channels: int, first: int, widths: dict[int, int]) -> str:
    """The message for item ``i`` whose channel count differs from item 0's."""
    kind = {1: "grayscale", 3: "RGB"}
    return (
        f"item {i} is {kind[channels]} (shape {tuple(image.shape)}) but item 0 is {kind[first]}: their "
        f"node features have {widths[channels]} and {widths[first]} columns and cannot share one dataset; "
        f"convert the grayscale images to RGB (np.repeat(image[..., None], 3, axis=-1) for an (H, W) "
        f"array, np.repeat(image, 3, axis=-1) for (H, W, 1), or PIL's image.convert('RGB'))"
    )


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


# -- distributed conversion ------------------------------------------------------------------------
#: Default seconds a rank waits for the other ranks' shards or for the merged cache file.
DEFAULT_TIMEOUT = 1800.0
_POLL_FIRST, _POLL_MAX = 0.05, 2.0


@dataclass(frozen=True)
class _World:
    """Where this process stands in a distributed run: its rank, the number of ranks, and how they meet.

    ``group`` is ``True`` when a ``torch.distributed`` process group connects the ranks (collectives
    for agreement and errors); ``False`` when only ``RANK``/``WORLD_SIZE`` are known (files and polling).
    """

    rank: int = 0
    size: int = 1
    group: bool = False

    def bounds(self, n: int) -> tuple[int, int]:
        """The contiguous block ``[start, stop)`` of ``n`` items that this rank converts."""
        return self.rank * n // self.size, (self.rank + 1) * n // self.size


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={text!r} is not an integer; torchrun sets RANK and WORLD_SIZE to "
            f"integers: unset it, or pass distributed=False to convert everything in this process"
        ) from None


def _detect_world(distributed: bool | None) -> _World:
    """The distributed context: an initialised process group, else ``RANK``/``WORLD_SIZE``, else alone."""
    if distributed is False:
        return _World()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return _World(dist.get_rank(), dist.get_world_size(), group=True)
    rank, size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is not None and size is not None:
        if size < 1 or not 0 <= rank < size:
            raise ValueError(
                f"environment variables RANK={rank} and WORLD_SIZE={size} do not describe a rank of a "
                f"distributed run (0 <= RANK < WORLD_SIZE); fix them, or pass distributed=False"
            )
        return _World(rank, size, group=False)
    if distributed:
        raise ValueError(
            "distributed=True but this process is not part of a distributed run: torch.distributed is not "
            "initialised and RANK/WORLD_SIZE are not set; start it with torchrun (or "
            "torch.distributed.init_process_group), or pass distributed=None to detect it"
        )
    return _World()


def _all_gather(obj: Any, size: int) -> list[Any]:
    """Every rank's ``obj`` (a collective: also a barrier); works for gloo and nccl groups."""
    out: list[Any] = [None] * size
    torch.distributed.all_gather_object(out, obj)
    return out


def _raise_remote(errors: list[str | None], rank: int, step: str) -> None:
    """After a collective: raise when another rank failed (this rank's own error is raised by itself)."""
    failed = [(r, e) for r, e in enumerate(errors) if e is not None and r != rank]
    if failed:
        what = "; ".join(f"rank {r}: {e}" for r, e in failed)
        raise RuntimeError(
            f"the distributed graph conversion stopped on rank {rank}: another rank failed {step} ({what}); "
            f"fix that error and run again"
        )


def _file_identity(path: str) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from another (device, inode, size, mtime); ``None`` if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _poll(missing: Callable[[], list[str]], timeout: float, fail: Callable[[list[str]], str]) -> None:
    """Wait until ``missing()`` is empty; after ``timeout`` s a TimeoutError with ``fail(still missing)``."""
    deadline = time.monotonic() + timeout
    pause = _POLL_FIRST
    while True:
        left = missing()
        if not left:
            return
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(fail(left))
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 1.5, _POLL_MAX)


def _unpack(payload: dict[str, Any]) -> list[Data]:
    """The graphs of a packed payload, label maps included (the inverse of ``GraphDataset._pack``)."""
    n = int(payload["n"])
    if n == 0:
        return []
    data = Data.from_dict(payload["data"])
    slices = payload["slices"]
    graphs = []
    for i in range(n):  # one slice per graph, never a loop over nodes or pixels
        g = separate(cls=Data, batch=data, idx=i, slice_dict=slices, decrement=False)
        if "segments" in payload:
            h, w = payload["segment_shapes"][i].tolist()
            lo, hi = int(payload["segment_offsets"][i]), int(payload["segment_offsets"][i + 1])
            g.segments = payload["segments"][lo:hi].to(torch.long).view(1, h, w)
        graphs.append(g)
    return graphs


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
        progress: show a tqdm progress bar (on rank 0 only in a distributed run).
        force: convert again even when a cache file exists (it is then replaced).
        fingerprint: how the data part of the cache key is computed (:func:`data_fingerprint`):
            ``"full"`` (default; every item: file size and dates for a folder dataset, else a hash
            of every image), ``"content"`` (every image's pixels) or ``"sample"`` (32 items; fast,
            but a changed image elsewhere reuses stale graphs).
        transform: optional PyG transform applied on access.
        chunk_size: images handed to the workers at once (default: ``max(converter.batch_size,
            8 * workers)``).
        distributed: split the conversion over the ranks of a distributed run. ``None`` (default)
            detects it: an initialised ``torch.distributed`` process group gives the rank and world
            size, else the environment variables ``RANK`` and ``WORLD_SIZE`` (set by ``torchrun``);
            ``True`` does the same but raises when there is no distributed run; ``False`` converts
            everything in this process (e.g. in a Lightning ``prepare_data`` that only rank 0 runs).
        timeout: seconds a rank waits for the other ranks' shards (rank 0) or for the merged cache
            file (the other ranks) before a :class:`TimeoutError`; with a process group its own
            timeout bounds the waits at its collectives too.

    Distributed conversion: in a run of ``W`` ranks over ``n`` items, rank ``r`` converts the
    contiguous block ``[r * n // W, (r + 1) * n // W)`` (with its own ``workers``) and writes it
    atomically to ``root/graphs-<key>.shard-<r>-of-<W>.pt`` (rank 0 keeps its block in memory). Rank 0
    waits for the shards (after a collective when a process group connects the ranks, by polling the
    files otherwise), merges them in item order into the same cache file a one-process run writes
    (same key, same bytes), and deletes them; the other ranks wait for that file and load it. When the
    cache file exists and verifies, no rank converts anything. ``root`` must be a folder every rank
    sees (a shared file system when the ranks run on several machines). With a process group an error
    on one rank is raised on every rank; without one, the others wait until ``timeout``. Every rank
    must build the dataset (a rank that never does leaves the others waiting). A shard left by an
    interrupted run of the same key holds the same graphs and may be merged as it is. Lightning's own
    ``strategy="ddp"`` launcher starts its other processes at ``Trainer.fit``, after the main process
    built the cache, so they only load it.

    Attributes:
        key: the cache key; cache_path: the cache file; reused: ``True`` when it was loaded from the
        cache; config: the converter configuration stored with it; rank, world_size: this process's
        place in the conversion (``0``, ``1`` when alone); converted_indices: the items this process
        converted (``[]`` when the cache was reused; its block of items in a distributed run).

    The cache file holds a SHA-256 checksum of its tensors, verified on every load: a file that was
    changed on disk (bit rot, an edited tensor), truncated or is unreadable is converted again and
    replaced, with one warning that names it.

    Raises:
        ValueError: bad arguments, a bad item (named by its index; also a grayscale item among RGB
            ones or the reverse, when the node features' width depends on the channels), or a ``root``
            that cannot hold the cache (a file, or not writable; found before any conversion); bad
            ``RANK``/``WORLD_SIZE``.
        TypeError: ``images`` is not a sequence of items (an int, a path), or ``converter`` is not an
            :class:`~bridge.convert.ImageToGraph`; ``distributed`` is not ``None``/``True``/``False``.
        TimeoutError: a distributed run in which a rank's shard (named, with its rank) or the merged
            cache file did not appear within ``timeout``.
        RuntimeError: with a process group, another rank failed (its error is in the message).

    Shapes:
        - item ``ds[i]``: ``Data(x (N_i, F), edge_index (2, E_i), edge_attr (E_i, 2), pos (N_i, 2),
          y (1,), segments (1, H, W))``

    Example:
        >>> items = [(np.zeros((32, 32, 3), np.uint8), 0), (np.full((32, 32, 3), 9, np.uint8), 1)]
        >>> ds = GraphDataset(items, ImageToGraph(n_segments=4), root=tmp, workers=2, progress=False)
        >>> ds.reused, GraphDataset(items, ImageToGraph(n_segments=4), root=tmp, progress=False).reused
        (False, True)

        Under ``torchrun --nproc-per-node 2 train.py`` (same script on both ranks)::

            ds = GraphDataset(items, ImageToGraph(n_segments=4), root="/shared/graphs")
            ds.rank, ds.world_size, ds.converted_indices  # rank 1: (1, 2, [1]); the same file on both

        With an NCCL process group of your own, call ``torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))``
        first: torch.distributed's object collectives, which the ranks use to agree, run on the current
        GPU (every rank on GPU 0 otherwise). Lightning's DDP sets it itself.
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
        distributed: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
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
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(
                f"distributed must be None (detect torchrun / torch.distributed), True or False, got "
                f"{distributed!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(
                f"timeout must be a positive number of seconds, got {timeout!r}; the default waits "
                f"{DEFAULT_TIMEOUT:g} s for the other ranks"
            )
        fingerprint = check_fingerprint(fingerprint)
        world = _detect_world(distributed)
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
        self.rank, self.world_size = world.rank, world.size
        self.converted_indices: list[int] = []
        self._segments: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        before = _file_identity(self.cache_path)  # a waiting rank waits for another version than this
        payload = None
        if not force and before is not None:
            payload = self._read(self.cache_path, len(images))
        if world.size > 1 and world.group:  # every rank rebuilds when one of them cannot use the file
            if not all(_all_gather(payload is not None, world.size)):
                payload = None
        if payload is not None:
            self.reused = True
        elif world.size == 1:
            check_cache_root(self.cache_dir)  # before the conversion, not after it
            graphs = self._build(images, 0, len(images), progress=progress, chunk_size=chunk_size)
            self.converted_indices = list(range(len(images)))
            payload = self._pack(graphs)
            self._write(payload)
        else:
            payload = self._build_distributed(
                images, world, progress=progress, chunk_size=chunk_size, timeout=float(timeout), before=before
            )
        self._set(payload)

    # -- building ------------------------------------------------------------------------------
    def _build(
        self, images: Items, start: int, stop: int, *, progress: bool, chunk_size: int | None
    ) -> list[Data]:
        """The graphs of items ``start, ..., stop - 1``, in order."""
        from tqdm.auto import tqdm

        conv = self.converter
        params = conv.params()
        chunk = chunk_size or max(conv.batch_size, 8 * max(self.workers, 1))
        pool = None
        if self.workers > 1 and stop - start > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(self.workers, initializer=_worker_init)
        graphs: list[Data] = []
        desc = "image -> graph"
        if self.world_size > 1:
            desc += f" (rank {self.rank} of {self.world_size}: items {start}-{stop - 1})"
        # grayscale and RGB items give node features of different widths, which cannot be packed into
        # one dataset: every item is compared with item 0 (on every rank) before it is converted
        widths = {c: len(conv.feature_names(c)) for c in (1, 3)}
        first_channels = _channels(_split_item(images[0], 0)[0]) if widths[1] != widths[3] else None
        bar = tqdm(total=stop - start, desc=desc, unit="img", disable=not progress or self.rank != 0)

        def load(first: int) -> tuple[list[Any], list[int], Any]:
            imgs, ys = [], []
            for i in range(first, min(stop, first + chunk)):
                image, label = _split_item(images[i], i)
                try:
                    ys.append(check_label(label))
                except ValueError as err:
                    raise ValueError(f"item {i}: {err}") from None
                if first_channels is not None:
                    channels = _channels(image)
                    if channels is not None and channels != first_channels:
                        raise ValueError(_mixed_channels(i, image, channels, first_channels, widths))
                imgs.append(image)
            # a few tasks per worker, each a run of images (a batched segmentation back-end such as
            # slic_torch segments a run in one pass)
            per = len(imgs) if pool is None else max(1, -(-len(imgs) // (2 * self.workers)))
            tasks = [(first + j, params, imgs[j : j + per]) for j in range(0, len(imgs), per)]
            if pool is None:
                return imgs, ys, tasks
            return imgs, ys, pool.map_async(_prepare_task, tasks, chunksize=1)

        def finish(imgs: list[Any], ys: list[int], job: Any) -> None:
            done = [_prepare_task(t) for t in job] if pool is None else job.get()
            parts = [p for run in done for p in run]
            graphs.extend(conv.assemble(imgs, parts, ys, first=start + len(graphs), name="item {}"))
            bar.update(len(imgs))

        try:
            pending = None
            for first in range(start, stop, chunk):
                nxt = load(first)  # workers start on this chunk ...
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
        return graphs

    def _build_distributed(
        self,
        images: Items,
        world: _World,
        *,
        progress: bool,
        chunk_size: int | None,
        timeout: float,
        before: tuple[int, int, int, int] | None,
    ) -> dict[str, Any]:
        """Convert this rank's block; rank 0 merges the shards into the cache file; the payload to load."""
        n = len(images)
        start, stop = world.bounds(n)
        graphs: list[Data] = []
        error: BaseException | None = None
        if world.group:  # every rank must look for the same cache file, or they wait for each other in vain
            keys = _all_gather(self.key, world.size)
            if len(set(keys)) > 1:
                listed = ", ".join(f"rank {r}: {k}" for r, k in enumerate(keys))
                raise ValueError(
                    f"the ranks computed different graph cache keys ({listed}): they see different data "
                    "(another copy, or files that changed while the ranks started) or converter settings; "
                    "give every rank the same data and settings, or distributed=False"
                )
        try:
            check_cache_root(self.cache_dir)  # every rank writes there: checked before the conversion
            graphs = self._build(images, start, stop, progress=progress, chunk_size=chunk_size)
            self.converted_indices = list(range(start, stop))
            if world.rank != 0:
                self._write_shard(graphs, world, start, stop)
        except Exception as err:
            if not world.group:
                raise
            error = err
        if world.group:  # the barrier after the shards, and every rank learns of the others' errors
            errors = _all_gather(None if error is None else f"{type(error).__name__}: {error}", world.size)
            if error is not None:
                raise error
            _raise_remote(errors, world.rank, "while converting its shard")

        payload: dict[str, Any] | None = None
        if world.rank == 0:
            try:
                payload = self._merge(graphs, world, n, timeout)
            except Exception as err:
                if not world.group:
                    raise
                error = err
        if world.group:
            errors = _all_gather(None if error is None else f"{type(error).__name__}: {error}", world.size)
            if error is not None:
                raise error
            _raise_remote(errors, world.rank, "while merging the shards")
        if payload is not None:
            return payload

        def not_yet() -> list[str]:  # rank 0 writes a new version (a new inode) of the cache file
            now = _file_identity(self.cache_path)
            return [self.cache_path] if now is None or now == before else []

        _poll(
            not_yet,
            timeout,
            lambda _: (
                f"rank {world.rank} of {world.size} waited {timeout:g} s for rank 0 to merge the graph "
                f"shards into {self.cache_path!r}, which did not appear: rank 0 failed, is still converting "
                f"or waiting for another rank, does not see the same root folder, or computed another cache "
                f"key (other data or settings: compare the graphs-<key> names in the logs); pass "
                f"timeout= a longer wait, or distributed=False to convert everything in each process"
            ),
        )
        payload = self._read(self.cache_path, n)
        if payload is None:
            raise RuntimeError(
                f"rank {world.rank}: the graph cache file {self.cache_path!r} that rank 0 wrote cannot be "
                f"used (see the warning above); delete it and run again"
            )
        return payload

    # -- shards --------------------------------------------------------------------------------
    def shard_path(self, rank: int, world_size: int) -> str:
        """The file in which rank ``rank`` of ``world_size`` hands its graphs to rank 0.

        Example:
            >>> os.path.basename(ds.shard_path(1, 2))  # doctest: +SKIP
            'graphs-0123456789abcdef01234567.shard-1-of-2.pt'
        """
        return os.path.join(self.cache_dir, f"graphs-{self.key}.shard-{rank}-of-{world_size}.pt")

    def _write_shard(self, graphs: list[Data], world: _World, start: int, stop: int) -> None:
        payload = self._pack(graphs, shard=[world.rank, world.size, start, stop])
        with atomic_open(self.shard_path(world.rank, world.size)) as fh:  # whole or not at all
            torch.save(payload, fh)

    def _read_shard(self, rank: int, world: _World, n: int) -> list[Data]:
        path = self.shard_path(rank, world.size)
        start, stop = _World(rank, world.size).bounds(n)
        fix = f"delete {path!r} and run again"
        payload = load_torch_file(path, expected="a graph shard written by GraphDataset", fix=fix)
        if (
            not isinstance(payload, dict)
            or payload.get("format") != _CACHE_FORMAT
            or payload.get("key") != self.key
            or payload.get("shard") != [rank, world.size, start, stop]
            or payload.get("n") != stop - start
        ):
            raise ValueError(
                f"graph shard {path!r} is not the shard of rank {rank} of {world.size} for items "
                f"{start}-{stop - 1} of this dataset (written by another version?); {fix}"
            )
        if payload.get("checksum") != _payload_checksum(payload):
            raise ValueError(f"graph shard {path!r} does not match its checksum (changed on disk); {fix}")
        return _unpack(payload)

    def _merge(self, graphs: list[Data], world: _World, n: int, timeout: float) -> dict[str, Any]:
        """Rank 0: wait for the other shards, write the cache file of all graphs in order, delete them."""
        paths = {r: self.shard_path(r, world.size) for r in range(1, world.size)}

        def missing() -> list[str]:
            return [p for p in paths.values() if not os.path.exists(p)]

        def fail(left: list[str]) -> str:
            ranks = [r for r, p in paths.items() if p in left]
            return (
                f"rank 0 of {world.size} waited {timeout:g} s for the graph shards of rank(s) "
                f"{', '.join(map(str, ranks))}, which were not written: {', '.join(map(repr, left))}. A rank "
                f"failed, is still converting, does not see the same root folder, or computed another "
                f"cache key (other data or settings: its shard has another graphs-<key> name; see its log); "
                f"pass timeout= a longer wait, or distributed=False to convert everything in each process"
            )

        _poll(missing, timeout, fail)
        for r in range(1, world.size):
            graphs = graphs + self._read_shard(r, world, n)
        payload = self._pack(graphs)
        self._write(payload)
        for path in paths.values():
            with contextlib.suppress(OSError):
                os.remove(path)
        return payload

    def _pack(self, graphs: list[Data], *, shard: list[int] | None = None) -> dict[str, Any]:
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
        tensors: dict[str, Any] = {}
        slices: dict[str, Any] = {}
        if plain:  # what InMemoryDataset.collate does, also for a single graph
            data, slices, _ = collate(type(plain[0]), data_list=plain, increment=False, add_batch=False)
            tensors = {k: v for k, v in data.to_dict().items() if isinstance(v, torch.Tensor)}
        payload: dict[str, Any] = {
            "format": _CACHE_FORMAT,
            "key": self.key,
            "config": json.dumps(self.config, sort_keys=True),
            "n": len(graphs),
            "data": tensors,
            "slices": dict(slices),
        }
        if shard is not None:
            payload["shard"] = shard
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
        """A copy (of a subset) with every graph in memory; every graph keeps its own label map.

        The label maps stay apart from the collated graph tensors, as in the cache file, so that maps of
        different sizes (images of different sizes) can be copied too.
        """
        segments = self._segments
        self._segments = None  # the graphs without their label maps, which need not share one size
        try:
            out = super().copy(idx)
        finally:
            self._segments = segments
        if segments is not None:  # the selected graphs' label maps, in the copy's order
            flat, shapes, offsets = segments
            chosen = self.indices() if idx is None else self.index_select(idx).indices()
            keep = torch.as_tensor(list(chosen), dtype=torch.long)
            starts, sizes = (
                offsets[:-1].index_select(0, keep),
                (offsets[1:] - offsets[:-1]).index_select(0, keep),
            )
            new_offsets = torch.zeros(keep.numel() + 1, dtype=torch.long)
            new_offsets[1:] = torch.cumsum(sizes, 0)
            total = int(new_offsets[-1])
            pixel = torch.arange(total) + torch.repeat_interleave(
                starts - new_offsets[:-1], sizes, output_size=total
            )
            out._segments = (flat.index_select(0, pixel), shapes.index_select(0, keep), new_offsets)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)}, key={self.key!r}, reused={self.reused}, "
            f"cache_path={self.cache_path!r}, converter={self.converter!r})"
        )
