"""Graph datasets by name: the superpixel benchmarks whose published numbers GNN papers quote.

``load_graph_dataset("gnnbench-mnist")`` returns PyG's ``GNNBenchmarkDataset`` (Dwivedi et al.,
"Benchmarking Graph Neural Networks": MNIST and CIFAR10 turned into SLIC superpixel graphs, with their
fixed train/val/test split), ``"mnist-superpixels"`` PyG's ``MNISTSuperpixels`` (Monti et al., 75
nodes per graph). Both are downloaded once with PyG's own code into a cache folder (``$PIXGRAPH_DATA``
or ``~/.cache/pixgraph/data``, or ``root=``), in a temporary folder renamed into place when complete;
offline, :class:`DatasetNotAvailableError` says what to download and the exact folder to put it in.

Every graph has ``x`` (node features: by default the superpixel's intensity or colour followed by
its position, as Benchmarking-GNNs feeds its models, via :class:`ConcatPos`), ``edge_index``,
``edge_attr``, ``pos`` and ``y``. This module imports neither ``cnn`` nor ``bridge``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch_geometric.transforms import BaseTransform

from engine.files import DatasetNotAvailableError, default_data_root, replace_folder

__all__ = [
    "GRAPH_DATASETS",
    "ConcatPos",
    "DatasetNotAvailableError",
    "default_data_root",
    "list_graph_datasets",
    "load_graph_dataset",
]


class ConcatPos(BaseTransform):
    """Append node positions to node features: ``x <- [x, pos]`` (Benchmarking-GNNs' superpixel input).

    Like every PyG transform it shallow-copies the graph first; the input graph is not changed.
    A graph without ``x`` gets ``x = pos``; a 1-D ``x`` counts as one feature per node.

    Shapes:
        - input: ``x`` (N, F) or (N,), ``pos`` (N, D)
        - output: ``x`` (N, F + D) in ``x``'s floating dtype (float32 when ``x`` is an integer tensor)

    Example:
        >>> data = Data(x=torch.ones(3, 1), pos=torch.zeros(3, 2))
        >>> ConcatPos()(data).x.shape
        torch.Size([3, 3])
    """

    def forward(self, data: Any) -> Any:
        pos = getattr(data, "pos", None)
        if pos is None:
            raise ValueError(
                "ConcatPos needs node positions: the graph has no 'pos'; leave the transform out "
                "(pos_in_x=False) for graphs without positions"
            )
        x = getattr(data, "x", None)
        if x is None:
            data.x = pos.clone()
            return data
        if x.dim() == 1:
            x = x.unsqueeze(-1)
        if x.size(0) != pos.size(0):
            raise ValueError(
                f"x has {x.size(0)} nodes but pos has {pos.size(0)}; they must describe the same nodes"
            )
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        data.x = torch.cat([x.to(dtype), pos.to(dtype)], dim=-1)
        return data


@dataclass(frozen=True)
class _GraphSpec:
    description: str
    splits: tuple[str, ...]
    pyg_name: str | None  # GNNBenchmarkDataset name; None: MNISTSuperpixels
    raw: str  # raw sub-folder of the dataset folder (where PyG looks for the downloaded file)
    processed: str  # processed sub-folder
    processed_files: tuple[str, ...]

    def url(self) -> str:
        from torch_geometric.datasets import GNNBenchmarkDataset, MNISTSuperpixels

        return GNNBenchmarkDataset.urls[self.pyg_name] if self.pyg_name else MNISTSuperpixels.url


#: Names :func:`load_graph_dataset` accepts, with what they hold.
GRAPH_DATASETS: dict[str, str] = {
    "gnnbench-cifar10": "Benchmarking-GNNs CIFAR10 superpixels: 10 classes, x = RGB + position (5), "
    "train 45,000 / val 5,000 / test 10,000 (PyG GNNBenchmarkDataset)",
    "gnnbench-mnist": "Benchmarking-GNNs MNIST superpixels: 10 classes, x = intensity + position (3), "
    "train 55,000 / val 5,000 / test 10,000 (PyG GNNBenchmarkDataset)",
    "mnist-superpixels": "MNIST as 75-node superpixel graphs (Monti et al.), x = intensity + position (3), "
    "train 60,000 / test 10,000 (PyG MNISTSuperpixels)",
}

_SPECS: dict[str, _GraphSpec] = {
    "gnnbench-cifar10": _GraphSpec(
        GRAPH_DATASETS["gnnbench-cifar10"],
        ("train", "val", "test"),
        "CIFAR10",
        "CIFAR10/raw",
        "CIFAR10/processed",
        ("train_data.pt", "val_data.pt", "test_data.pt"),
    ),
    "gnnbench-mnist": _GraphSpec(
        GRAPH_DATASETS["gnnbench-mnist"],
        ("train", "val", "test"),
        "MNIST",
        "MNIST/raw",
        "MNIST/processed",
        ("train_data.pt", "val_data.pt", "test_data.pt"),
    ),
    "mnist-superpixels": _GraphSpec(
        GRAPH_DATASETS["mnist-superpixels"],
        ("train", "test"),
        None,
        "raw",
        "processed",
        ("train_data.pt", "test_data.pt"),
    ),
}


def list_graph_datasets() -> list[str]:
    """Names accepted by :func:`load_graph_dataset`.

    Example:
        >>> list_graph_datasets()
        ['gnnbench-cifar10', 'gnnbench-mnist', 'mnist-superpixels']
    """
    return sorted(_SPECS)


def _raw_name(spec: _GraphSpec) -> str:
    """The file PyG reads from the raw folder: ``MNIST_v2.zip`` -> ``MNIST_v2.pt``."""
    return spec.url().rsplit("/", 1)[-1][: -len(".zip")] + ".pt"


def _is_ready(spec: _GraphSpec, folder: Path) -> bool:
    raw = folder / spec.raw / _raw_name(spec)  # PyG downloads again when the raw file is missing
    return raw.is_file() and all((folder / spec.processed / f).is_file() for f in spec.processed_files)


def _not_available(name: str, spec: _GraphSpec, folder: Path, reason: str) -> DatasetNotAvailableError:
    url = spec.url()
    zip_name = url.rsplit("/", 1)[-1]
    message = (
        f"graph dataset {name!r} is not in {str(folder)!r} and was not downloaded: {reason}.\n"
        f"To use it offline, download\n  {url}\n"
        f"and put it, as downloaded ({zip_name}, or the {_raw_name(spec)} inside it), in the folder\n"
        f"  {folder / spec.raw}\n"
        "then run again: PyG extracts and processes it once. Or, for a folder that holds it, pass "
        "--data-root DIR on the command line (root= in Python) or set $PIXGRAPH_DATA."
    )
    return DatasetNotAvailableError(message, name=name, folder=folder, urls=[url])


def _open(spec: _GraphSpec, folder: Path, split: str, transform: Any) -> Any:
    from torch_geometric.datasets import GNNBenchmarkDataset, MNISTSuperpixels

    if spec.pyg_name is not None:
        return GNNBenchmarkDataset(str(folder), spec.pyg_name, split=split, transform=transform)
    return MNISTSuperpixels(str(folder), train=split == "train", transform=transform)


def _carry_raw(spec: _GraphSpec, target: Path, tmp: Path) -> None:
    """Link (or copy) the downloaded file(s) already in ``target``'s raw folder into ``tmp``'s."""
    zip_name = spec.url().rsplit("/", 1)[-1]
    for file in (_raw_name(spec), zip_name):
        src = target / spec.raw / file
        if src.is_file():
            dst = tmp / spec.raw / file
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            if file != zip_name:
                return  # the extracted file is enough; the zip is not needed


_DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError, zipfile.BadZipFile, EOFError)


def _prepare(name: str, spec: _GraphSpec, root: Path, *, download: bool) -> Path:
    """``root/<name>`` with the dataset downloaded and processed, made atomically when it was not."""
    target = root / name
    if _is_ready(spec, target):
        return target
    zip_name = spec.url().rsplit("/", 1)[-1]
    local = any((target / spec.raw / f).is_file() for f in (_raw_name(spec), zip_name))
    if not download and not local:  # a file put there by hand needs no network: process it below
        raise _not_available(name, spec, target, "download=False")
    tmp = root / f".{name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        try:
            tmp.mkdir(parents=True)
            _carry_raw(spec, target, tmp)
            _open(spec, tmp, spec.splits[0], None)  # PyG downloads, extracts and processes
        except _DOWNLOAD_ERRORS as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")
            raise _not_available(name, spec, target, reason) from err
        if not _is_ready(spec, tmp):
            raise _not_available(name, spec, target, f"PyG left no complete dataset in {str(tmp)!r}")
        replace_folder(tmp, target, done=lambda folder: _is_ready(spec, folder))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_graph_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    split: str = "train",
    download: bool = True,
    pos_in_x: bool = True,
) -> Any:
    """A benchmark graph dataset by name, downloaded once into a cache folder.

    - ``"gnnbench-mnist"``, ``"gnnbench-cifar10"``: PyG ``GNNBenchmarkDataset`` (``"MNIST"``,
      ``"CIFAR10"``) with Benchmarking-GNNs' split: ``"train"`` (55,000 / 45,000), ``"val"`` (5,000),
      ``"test"`` (10,000). Published (Dwivedi et al., 100k parameters, 4 layers): GCN 90.705 +- 0.218 on
      MNIST and 55.710 +- 0.381 on CIFAR10 test accuracy.
    - ``"mnist-superpixels"``: PyG ``MNISTSuperpixels``, ``"train"`` (60,000) or ``"test"`` (10,000).

    The dataset lives in ``root/<name>``; when it is missing it is downloaded (PyG's code, no checksum
    published) and processed in a temporary folder next to it, renamed into place when complete. A
    downloaded file put into the raw folder by hand is processed without going online.

    Args:
        name: one of :func:`list_graph_datasets`.
        root: the cache folder (default :func:`default_data_root`).
        split: ``"train"``, ``"val"`` (gnnbench only) or ``"test"``.
        download: ``False`` never goes online (a missing dataset is an error; a file put there by hand
            is still processed).
        pos_in_x: append each node's position to its features (:class:`ConcatPos`), as
            Benchmarking-GNNs does (MNIST: 1 + 2 = 3 features, CIFAR10: 3 + 2 = 5); ``False`` keeps PyG's
            ``x`` (intensity or colour only).

    Returns:
        A PyG ``InMemoryDataset`` of ``Data(x, edge_index, edge_attr, pos, y)``.

    Shapes:
        - ``x``: (N, 3) for MNIST, (N, 5) for CIFAR10 with ``pos_in_x``; ``pos``: (N, 2);
          ``edge_index``: (2, E); ``edge_attr``: (E,) or (E, 1); ``y``: (1,).

    Raises:
        ValueError: unknown name (lists the known ones) or split.
        DatasetNotAvailableError: the dataset is missing and cannot be downloaded (says what and where).

    Example:
        >>> train = load_graph_dataset("gnnbench-mnist", split="train")  # doctest: +SKIP
        >>> train.num_node_features, train.num_classes, len(train)  # doctest: +SKIP
        (3, 10, 55000)
    """
    if not isinstance(name, str) or name.lower() not in _SPECS:
        raise ValueError(f"unknown graph dataset {name!r}; known names: {', '.join(list_graph_datasets())}")
    key = name.lower()
    spec = _SPECS[key]
    if split not in spec.splits:
        raise ValueError(
            f"split={split!r} is not known for {key!r}; use one of {', '.join(map(repr, spec.splits))}"
        )
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder path or None, got {type(root).__name__}")
    for flag, value in (("download", download), ("pos_in_x", pos_in_x)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    folder = default_data_root() if root is None else Path(os.path.expanduser(os.fspath(root)))
    target = _prepare(key, spec, folder.absolute(), download=download)
    return _open(spec, target, split, ConcatPos() if pos_in_x else None)
