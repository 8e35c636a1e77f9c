"""The run folder of a comparison: its name, its lock, atomic JSON files, finished cells, versions.

Layout (older folders, without ``data.json`` or with a plain pid in ``.lock``, still resume)::

    <out>/config.json                 CompareConfig.to_dict(), indent 1
    <out>/data.json                   fingerprint of the prepared images and labels (checked on resume)
    <out>/cells/<arm>-seed<seed>.json one finished (or failed) cell, written atomically when it ends
    <out>/models/<arm>.pth            state dict of the first seed's model
    <out>/results.json, report.md, figures/*.png
    <out>/.lock                       {"pid", "hostname", "start"} of the run writing the folder
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bridge.compare.config import CompareConfig

__all__ = [
    "RunFolder",
    "RunLock",
    "atomic_write",
    "check_output_dir",
    "config_differences",
    "default_out_dir",
    "json_default",
    "process_start_time",
    "read_json",
    "versions",
]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (whole or not at all)."""
    from engine.files import atomic_open

    with atomic_open(path) as f:
        f.write(text.encode())


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars (NaN becomes ``null``)."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if math.isnan(o) else float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike, *, fix: str) -> Any:
    """The JSON content of ``path``; a file that is not valid JSON raises an error naming it and ``fix``.

    Raises:
        ValueError: empty, truncated or otherwise invalid JSON (or not UTF-8); the message names the
            file, the parser's position and what to do.

    Example:
        >>> read_json("runs/x/config.json", fix="start a new run")  # doctest: +SKIP
        {'data': 'digits', ...}
    """
    p = Path(path)
    try:
        return json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{str(p)!r} is not UTF-8 text (corrupt); {fix}") from None
    except json.JSONDecodeError as err:
        what = "is empty" if not err.doc.strip() else f"is not valid JSON ({err.msg} at line {err.lineno})"
        raise ValueError(f"{str(p)!r} {what}: it was truncated or edited; {fix}") from None


def check_output_dir(path: str | os.PathLike, *, name: str = "out") -> Path:
    """Check that folder ``path`` can be created (or exists) and is writable, before any work.

    The nearest existing folder on the way is tested by creating and deleting a probe file (so it also
    works for root, for whom permission bits mean little). Nothing is left behind.

    Args:
        path: the folder to write into.
        name: the option's name, for the message (``"out"`` gives ``--out``).

    Raises:
        ValueError: ``path`` (or a component of it) is an existing file, or the folder is not writable.

    Example:
        >>> check_output_dir("runs/new-run")  # doctest: +SKIP
        PosixPath('runs/new-run')
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    flag = f"--{name.replace('_', '-')}"
    probe_dir = p
    while not probe_dir.exists():
        if probe_dir.is_symlink():
            raise ValueError(f"{flag} {str(p)!r}: {str(probe_dir)!r} is a broken symbolic link; remove it")
        parent = probe_dir.parent
        if parent == probe_dir:
            break
        probe_dir = parent
    if not probe_dir.is_dir():
        where = "is" if probe_dir == p else f"lies under {str(probe_dir)!r}, which is"
        raise ValueError(
            f"{flag} {str(p)!r} {where} a file, not a folder; choose a folder path (or move the file away)"
        )
    probe = probe_dir / f".pixgraph-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.open("xb").close()
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"{flag} {str(p)!r}: cannot write into {str(probe_dir)!r} "
            f"({err.strerror or type(err).__name__}); choose a folder you can write to"
        ) from None
    return p


# ----------------------------------------------------------------------------------------------
# The lock


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque string (``None`` when it cannot be told).

    Linux: field 22 of ``/proc/<pid>/stat`` (clock ticks since boot); elsewhere psutil's
    ``create_time`` when psutil is installed. Two strings compare equal only for the same process, so
    a pid reused by a new process is recognised.

    Example:
        >>> process_start_time(os.getpid()) == process_start_time(os.getpid())
        True
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return "proc:" + text[text.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-untyped]

        return f"psutil:{psutil.Process(pid).create_time():.3f}"
    except Exception:  # noqa: BLE001 - no psutil, no such process, no access
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _read_lock(path: Path) -> dict[str, Any]:
    """The lock's owner: ``{"pid", "hostname", "start"}`` (older locks hold a plain pid)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        owner = None
    if isinstance(owner, int):
        return {"pid": owner}
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return {}
    return owner


class RunLock:
    """An exclusive lock file ``<folder>/.lock``: two runs never write into the same folder.

    The lock holds the owner's pid, hostname and process start time. It is stale, and taken over, when
    its process is gone, or when its pid now belongs to another process (a different start time); a
    lock written on another host cannot be checked and counts as held. A held lock raises
    ``RuntimeError`` saying how to clear it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"

    def _holder(self) -> dict[str, Any] | None:
        """The live owner of an existing lock file, or ``None`` when it is stale."""
        owner = _read_lock(self.path)
        pid = owner.get("pid", 0)
        if not pid or pid < 0:
            return None
        host = owner.get("hostname")
        if host is not None and host != socket.gethostname():
            return owner  # another machine's process: cannot be checked here
        start = owner.get("start")
        if start is None and pid == os.getpid():
            return None  # an old-format lock with our pid: left by an earlier process
        if not _pid_alive(pid):
            return None
        now = process_start_time(pid)
        if start is not None and now is not None and start != now:
            return None  # the pid was reused by another process
        return owner

    def __enter__(self) -> RunLock:
        """Publish the owner's record as ``.lock`` in one step (``os.link`` of a finished temporary file),
        so that the lock never exists half-written; take over a stale lock only if it is still the file
        that was judged stale."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self.owner = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "start": process_start_time(os.getpid()),
        }
        tmp = folder / f".lock.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(self.owner))
        try:
            for _ in range(_LOCK_TRIES):
                try:
                    if _publish(tmp, self.path):
                        return self
                except FileExistsError:
                    pass
                try:
                    seen = os.stat(self.path)
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                raw = _read_lock(self.path)
                if not raw and seen.st_size == 0 and time.time() - seen.st_mtime < _EMPTY_LOCK_GRACE_S:
                    time.sleep(0.05)  # an older pixgraph creates the file first, then writes its owner
                    continue
                owner = self._holder()
                if owner is not None:
                    host = owner.get("hostname") or "this host"
                    raise RuntimeError(
                        f"another comparison (pid {owner['pid']} on {host}) is writing to "
                        f"{folder}; wait for it or choose another --out. If no run is using "
                        f"the folder, delete {self.path} and run again"
                    )
                self._remove_if_same(seen)  # a stale lock of a dead run
        finally:
            tmp.unlink(missing_ok=True)
        raise RuntimeError(f"could not lock {folder}; delete {self.path} if no run is using it")

    def _remove_if_same(self, seen: os.stat_result) -> None:
        """Remove ``.lock`` if it is still the file ``seen`` (the stale one), never a live lock.

        One process at a time breaks a stale lock (``.lock.break``, created exclusively; one older than
        ``_BREAK_STALE_S`` was left by a crash and is removed); under it ``.lock`` is stat'ed again and
        removed only if it is the same file (device, inode, size, ctime). A new lock can only appear
        after that removal, so no live lock is ever removed.
        """
        breaker = self.path.with_name(".lock.break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - os.stat(breaker).st_mtime > _BREAK_STALE_S:
                    breaker.unlink()
            time.sleep(0.02)  # another run is breaking it: look again
            return
        os.close(fd)
        try:
            now = os.stat(self.path)
            same = (now.st_dev, now.st_ino, now.st_size, now.st_ctime_ns) == (
                seen.st_dev,
                seen.st_ino,
                seen.st_size,
                seen.st_ctime_ns,
            )
            if same:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            breaker.unlink(missing_ok=True)

    def __exit__(self, *exc: Any) -> None:
        """Release the lock if it is still this run's (never another run's)."""
        owner = _read_lock(self.path)
        mine = getattr(self, "owner", None)
        if mine is not None and owner.get("pid") == mine["pid"] and owner.get("start") == mine["start"]:
            self.path.unlink(missing_ok=True)


def _publish(tmp: Path, lock: Path) -> bool:
    """Make ``lock`` exist with ``tmp``'s content if it does not exist yet (``FileExistsError`` if it
    does): a hard link, in one step; where the file system has none (FAT, some network shares), an
    exclusive create and a write (the short empty window is what the empty-lock grace covers)."""
    try:
        os.link(tmp, lock)
        return True
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        pass
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
        f.write(tmp.read_text())
    return True


#: Attempts to take the lock (each after a release, a stale lock removed or a short wait).
_LOCK_TRIES = 100
#: An empty lock file younger than this is being written by its owner (older pixgraph); older: stale.
_EMPTY_LOCK_GRACE_S = 2.0
#: A ``.lock.break`` older than this was left by a run that crashed while breaking a stale lock.
_BREAK_STALE_S = 10.0


def default_out_dir(data: str, root: str | os.PathLike = "runs") -> Path:
    """A new, unused run folder ``<root>/compare-<data>-<YYYYmmdd-HHMMSS>``; ``-2``, ``-3``... when taken.

    Nothing is created; the name is free when this returns.

    Example:
        >>> default_out_dir("digits").name.startswith("compare-digits-")
        True
    """
    path = Path(data)
    stem = path.name if path.is_dir() else path.stem if path.is_file() else data
    base = Path(root) / f"compare-{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    """Python, platform, CPU and torch threads, and the versions of the packages a result depends on.

    The CPU model, torch's CPU instruction set and its thread count are recorded because float
    results of training (arm B's fine-tuning most visibly) change with them at the last bits, and a
    few epochs can carry that into different predictions; the same seed on the same environment
    gives the same result.
    """
    import importlib.metadata as md

    import torch

    out = {"python": platform.python_version(), "platform": platform.platform()}
    out["cpu"] = _cpu_model()
    out["torch cpu capability"] = torch.backends.cpu.get_cpu_capability()
    out["torch threads"] = str(torch.get_num_threads())
    for pkg in (
        "pixgraph",
        "torch",
        "torchvision",
        "timm",
        "torch-geometric",
        "lightning",
        "numpy",
        "scikit-image",
        "opencv-python-headless",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ----------------------------------------------------------------------------------------------
# The folder


def _show(value: Any) -> str:
    return json.dumps(value)


class RunFolder:
    """Paths and files of one run folder (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.models_dir = self.root / "models"
        self.fig_dir = self.root / "figures"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def read_config(self) -> tuple[CompareConfig, list[str]]:
        """The stored configuration and the fields it lacked (an older version wrote it: defaults used).

        Raises:
            FileNotFoundError: no ``config.json`` (not a run folder).
            ValueError: ``config.json`` is not valid JSON or holds invalid values; the message names it.

        Example:
            >>> cfg, missing = RunFolder("runs/old").read_config()  # doctest: +SKIP
        """
        path = self.config_path
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist; is {str(self.root)!r} a pixgraph run folder?"
            )
        fix = f"the run cannot be resumed: start a new run (another --out), or restore {path.name}"
        d = read_json(path, fix=fix)
        if not isinstance(d, dict):
            raise ValueError(f"{str(path)!r} holds a {type(d).__name__}, not a configuration; {fix}")
        missing = [f.name for f in dataclasses.fields(CompareConfig) if f.name not in d]
        try:
            cfg = CompareConfig.from_dict(d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{str(path)!r} holds an invalid configuration ({err}); {fix}") from None
        return cfg, missing

    def check_config(self, cfg: CompareConfig) -> bool:
        """Write ``config.json``; ``True`` when the folder already held this configuration (a resume).

        A stored configuration of an older version (fields missing) counts as holding the defaults of
        the missing fields; it is left as it was.

        Raises:
            ValueError: the folder holds another configuration (the differences are listed), or its
                ``config.json`` cannot be read.
        """
        if not self.config_path.exists():
            atomic_write(self.config_path, json.dumps(cfg.to_dict(), indent=1))
            return False
        stored, _ = self.read_config()
        diff = config_differences(stored.to_dict(), cfg.to_dict())
        if diff:
            raise ValueError(
                f"{self.root} holds a comparison with another configuration ({'; '.join(diff)}); resume it "
                f"with `pixgraph compare --resume {self.root}` or choose a new --out"
            )
        return True

    def check_data(self, fingerprint: dict[str, Any]) -> str | None:
        """Store the data fingerprint, or check it against the stored one on a resume.

        Args:
            fingerprint: ``{"sha256", "n_images", "classes", "counts", "image_size"}`` of the prepared data.

        Returns:
            A line to log when the folder had no fingerprint (an older run: recorded now), else ``None``.

        Raises:
            ValueError: the data differs from what the finished cells were computed on; the message says
                what changed and to start a new run.
        """
        path = self.root / "data.json"
        fix = "start a new run (another --out) so that no result mixes old and new data"
        if not path.exists():
            atomic_write(path, json.dumps(fingerprint, indent=1))
            if any(self.cells_dir.glob("*.json")):
                return f"{path} was missing (a run of an older version): recorded the data's fingerprint now"
            return None
        stored = read_json(path, fix=f"delete {path.name} to record the data again, or {fix}")
        if not isinstance(stored, dict) or stored.get("sha256") == fingerprint["sha256"]:
            if not isinstance(stored, dict):
                raise ValueError(f"{str(path)!r} is not a data fingerprint; delete it, or {fix}")
            return None
        changes = []
        for key, what in (("n_images", "images"), ("classes", "classes"), ("counts", "images per class")):
            if key in stored and stored[key] != fingerprint.get(key):
                changes.append(f"{what}: {_show(stored[key])} then, {_show(fingerprint.get(key))} now")
        if "image_size" in stored and stored["image_size"] != fingerprint.get("image_size"):
            changes.append(f"view size: {stored['image_size']} then, {fingerprint.get('image_size')} now")
        if not changes:
            changes.append("same images and labels counts, but the pixels or labels changed")
        raise ValueError(
            f"the data of {self.root} changed since the run started ({'; '.join(changes)}); its finished "
            f"cells were computed on the old data: {fix}"
        )

    def cell_path(self, arm: str, seed: int) -> Path:
        return self.cells_dir / f"{arm}-seed{seed}.json"

    def finished_cell(self, arm: str, seed: int) -> dict[str, Any] | None:
        """The cell of (arm, seed) if it finished successfully, else ``None`` (missing or failed).

        Raises:
            ValueError: the cell file is not valid JSON; the message names it and says to delete it.
        """
        path = self.cell_path(arm, seed)
        if not path.exists():
            return None
        fix = f"delete {path} to recompute that cell"
        cell = read_json(path, fix=fix)
        if not isinstance(cell, dict):
            raise ValueError(f"{str(path)!r} holds a {type(cell).__name__}, not a result cell; {fix}")
        if cell.get("status") == "ok" and not isinstance(cell.get("test"), dict):
            raise ValueError(f"{str(path)!r} is a finished cell without test results; {fix}")
        return cell if cell.get("status") == "ok" else None

    def check_cells(self, arms: Iterable[str], seeds: Iterable[int]) -> None:
        """Read every existing cell file of the run once, before any training (see :meth:`finished_cell`)."""
        seeds = list(seeds)
        for arm in arms:
            for seed in seeds:
                self.finished_cell(arm, seed)

    def write_cell(self, cell: dict[str, Any]) -> None:
        atomic_write(
            self.cell_path(cell["arm"], cell["seed"]), json.dumps(cell, indent=1, default=json_default)
        )

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.root / name, json.dumps(obj, indent=1, default=json_default))


def config_differences(
    stored: dict[str, Any], given: dict[str, Any], keys: Iterable[str] | None = None
) -> list[str]:
    """``"field: stored X, given Y"`` for every field (of ``keys``, default all) whose values differ.

    Example:
        >>> config_differences({"seeds": [0]}, {"seeds": [1]})
        ['seeds: stored [0], given [1]']
    """
    names = list(keys) if keys is not None else sorted(set(stored) | set(given))
    norm = json.loads(json.dumps({"s": stored, "g": given}, default=json_default))
    return [
        f"{k}: stored {_show(norm['s'].get(k))}, given {_show(norm['g'].get(k))}"
        for k in names
        if norm["s"].get(k) != norm["g"].get(k)
    ]
