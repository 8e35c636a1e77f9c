"""The run folder of a comparison: its name, its lock, atomic JSON files, finished cells, versions.

Layout (unchanged since the first version, so old folders resume)::

    <out>/config.json                 CompareConfig.to_dict(), indent 1
    <out>/cells/<arm>-seed<seed>.json one finished (or failed) cell, written atomically when it ends
    <out>/models/<arm>.pth            state dict of the first seed's model
    <out>/results.json, report.md, figures/*.png
    <out>/.lock                       pid of the run writing the folder
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from bridge.compare.config import CompareConfig

__all__ = ["RunFolder", "RunLock", "atomic_write", "default_out_dir", "json_default", "versions"]


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file ``<folder>/.lock``: two runs never write into the same folder.

    A lock left by a dead process is taken over; one held by a live process raises ``RuntimeError``.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / ".lock"

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise RuntimeError(
                        f"another comparison (pid {pid}) is writing to {self.path.parent}; "
                        "wait for it or choose another --out"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale lock of a dead run
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RuntimeError(f"could not lock {self.path.parent}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def default_out_dir(data: str, root: str | os.PathLike = "runs") -> Path:
    """A new, unused run folder ``<root>/compare-<data>-<YYYYmmdd-HHMMSS>``; ``-2``, ``-3``... when taken.

    Nothing is created; the name is free when this returns.

    Example:
        >>> default_out_dir("digits").name.startswith("compare-digits-")
        True
    """
    stem = Path(data).name if os.path.isdir(data) else data
    base = Path(root) / f"compare-{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages a result depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
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


class RunFolder:
    """Paths and files of one run folder (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.models_dir = self.root / "models"
        self.fig_dir = self.root / "figures"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    def check_config(self, cfg: CompareConfig) -> bool:
        """Write ``config.json``; ``True`` when the folder already held this configuration (a resume).

        Raises:
            ValueError: the folder holds another configuration.
        """
        path = self.root / "config.json"
        resumed = path.exists()
        if resumed and json.loads(path.read_text()) != json.loads(json.dumps(cfg.to_dict())):
            raise ValueError(
                f"{self.root} holds a comparison with another configuration; resume it with "
                f"`pixgraph compare --resume {self.root}` or choose a new --out"
            )
        atomic_write(path, json.dumps(cfg.to_dict(), indent=1))
        return resumed

    def cell_path(self, arm: str, seed: int) -> Path:
        return self.cells_dir / f"{arm}-seed{seed}.json"

    def finished_cell(self, arm: str, seed: int) -> dict[str, Any] | None:
        """The cell of (arm, seed) if it finished successfully, else ``None`` (missing or failed)."""
        path = self.cell_path(arm, seed)
        if not path.exists():
            return None
        cell = json.loads(path.read_text())
        return cell if cell.get("status") == "ok" else None

    def write_cell(self, cell: dict[str, Any]) -> None:
        atomic_write(
            self.cell_path(cell["arm"], cell["seed"]), json.dumps(cell, indent=1, default=json_default)
        )

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.root / name, json.dumps(obj, indent=1, default=json_default))
