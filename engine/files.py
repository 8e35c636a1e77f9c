"""Files that are never half-written and never unpickled: ``atomic_open``, ``load_torch_file``, folders.

Every file pixgraph writes (checkpoints, images, figures, run files) goes through :func:`atomic_open`;
every tensor file it reads (weights, checkpoints, cached graphs) goes through :func:`load_torch_file`,
which reads with ``torch.load(weights_only=True)`` and turns any failure into one
:class:`CheckpointError` that names the file, what was expected, and what to do. Downloaded datasets of
both families live under :func:`default_data_root`, are swapped in whole with :func:`replace_folder`,
and report a missing download with :class:`DatasetNotAvailableError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "CheckpointError",
    "DatasetNotAvailableError",
    "atomic_open",
    "default_data_root",
    "load_torch_file",
    "replace_folder",
]


class CheckpointError(ValueError):
    """A weights, checkpoint or cache file that cannot be read: empty, truncated, corrupt or not a torch file.

    Attributes:
        path: the file.
    """

    def __init__(self, message: str, path: str | os.PathLike) -> None:
        super().__init__(message)
        self.path = Path(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Writes go to a temporary file in the same folder (created with the usual permissions), which is
    flushed, synced and renamed over ``path`` when the block ends; on any error it is removed and ``path``
    keeps what it had. Missing parent folders are created. Temporary files of the same target left by a
    writer that was killed (its pid is no longer alive) are removed first; those of live processes never.

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
        NotADirectoryError: a parent of ``path`` is a file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out" / "x.pth"
        >>> with atomic_open(target) as f:
        ...     torch.save({"w": torch.ones(2)}, f)
        >>> sorted(p.name for p in target.parent.iterdir())
        ['x.pth']
    """
    target = Path(path)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = target.parent / f".{target.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_target(target: Path) -> None:
    """Refuse a target that is a folder, or that lies under a file, before anything is written."""
    if target.is_dir():
        raise IsADirectoryError(
            f"{str(target)!r} is a folder; give a file path inside it (e.g. {str(target / 'name')!r})"
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"{str(parent)!r} is a file, not a folder, so {str(target)!r} cannot be written under "
                    "it; give a path in a folder (or move the file away)"
                )
            return


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to someone else
        return True
    return True


#: This machine's name as it appears in temporary file names (a folder may be shared between machines).
_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"


def _remove_stale_temps(target: Path) -> None:
    """Remove ``.<name>.<host>.<pid>.<hex>.tmp`` files of ``target`` written on this machine by a process
    that is no longer alive (a process id says nothing about another machine's writers on a shared
    folder; files of the older ``.<name>.<pid>.<hex>.tmp`` form count as this machine's)."""
    if os.name != "posix":  # os.kill(pid, 0) is a liveness probe only on POSIX
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:({re.escape(_HOST)})\.)?(\d+)\.[0-9a-f]+\.tmp")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _pid_alive(int(match.group(2))):
            continue
        with contextlib.suppress(OSError):  # another writer may have removed it first
            (target.parent / name).unlink()


def _reason(err: BaseException, path: Path, size: int) -> str:
    """A short cause in plain words (never torch's advice to turn weights_only off)."""
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch's zip format nor its legacy pickle
        return f"the file ({size} bytes) is not a torch file"
    if head[:2] == b"PK" and not zipfile.is_zipfile(path):
        return f"the file ({size} bytes) is truncated (its zip index is missing)"
    text = str(err)
    if "weights_only" in text or "Unsupported global" in text:
        return "the file holds Python objects other than tensors and plain values, which are never unpickled"
    return f"the file ({size} bytes) is corrupt ({type(err).__name__})"


def load_torch_file(
    path: str | os.PathLike, *, expected: str = "a torch file", fix: str | None = None
) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one clear error for every failure.

    Args:
        path: the file.
        expected: what the caller expects there, for the message (e.g. ``"a checkpoint written by fit"``).
        fix: what the user should do; default: delete or replace the file.

    Returns:
        What the file holds (tensors, numbers, strings, lists, dicts), tensors on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file cannot be read safely; the message names the file and the fix.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "w.pth"
        >>> torch.save({"w": torch.zeros(1)}, p)
        >>> load_torch_file(p)["w"]
        tensor([0.])
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{str(p)!r} does not exist; expected {expected} there")
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a folder; expected {expected} (a file)", p)
    size = p.stat().st_size
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling and zip errors come in many types
        what = fix or "delete it and run again to recreate it, or give another file"
        raise CheckpointError(
            f"cannot read {str(p)!r} as {expected}: {_reason(err, p, size)}; {what}", p
        ) from None


class DatasetNotAvailableError(RuntimeError):
    """A dataset by name is not in its cache folder and could not be downloaded (offline, or refused).

    The message says which files to download, from which URLs, and the exact folder to put them in.

    Attributes:
        name: the dataset name.
        folder: its cache folder.
        urls: the files to download, in order.
    """

    def __init__(self, message: str, *, name: str, folder: Path, urls: Sequence[str]) -> None:
        super().__init__(message)
        self.name = name
        self.folder = Path(folder)
        self.urls = list(urls)

    def __reduce__(self):  # picklable across processes
        return (_rebuild_not_available, (str(self), self.name, str(self.folder), self.urls))


def _rebuild_not_available(message: str, name: str, folder: str, urls: list[str]) -> DatasetNotAvailableError:
    return DatasetNotAvailableError(message, name=name, folder=Path(folder), urls=urls)


def default_data_root() -> Path:
    """The cache folder of downloaded datasets: ``$PIXGRAPH_DATA`` if set, else ``~/.cache/pixgraph/data``.

    Each dataset lives in a sub-folder named like it (``<root>/cifar10``). Nothing is created here.

    Example:
        >>> default_data_root().parts[-2:] if "PIXGRAPH_DATA" not in os.environ else ("pixgraph", "data")
        ('pixgraph', 'data')
    """
    env = os.environ.get("PIXGRAPH_DATA")
    if env:
        return Path(os.path.expanduser(env))
    return Path.home() / ".cache" / "pixgraph" / "data"


def replace_folder(tmp: Path, target: Path, *, done: Callable[[Path], bool] | None = None) -> None:
    """Rename the finished folder ``tmp`` to ``target``; an old ``target`` is removed only afterwards.

    Readers see the old folder or the new one, never a half-written one. When the rename fails and
    ``done(target)`` says another process has already put a complete folder there, that one is kept.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "tmp").mkdir(); (root / "tmp" / "a.txt").write_text("new")
        3
        >>> replace_folder(root / "tmp", root / "data")
        >>> (root / "data" / "a.txt").read_text()
        'new'
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.rename(old, target)  # put the old folder back
            old = None
        if done is not None and done(target):  # e.g. another process put a complete folder there first
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
