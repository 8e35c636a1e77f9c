"""kill -9 in the middle of long work, then a new process continues (issue 13).

Each case runs a small driver script in a child process, waits for a file or a line that shows the work
is under way, sends SIGKILL (no cleanup code runs), and then checks that a new process finishes the job
from what was left: training resumes from ``last.ckpt`` up to the requested epochs, a graph cache is
rebuilt whole, ``pixgraph compare --resume`` keeps finished cells byte for byte and takes over the dead
run's lock. No temporary or partial file may be left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240.0  # seconds; only reached when something hangs


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by _kill / _finish through the process's lifetime
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT
    )
    proc._log_file = fh  # type: ignore[attr-defined]
    return proc


def _close(proc: subprocess.Popen) -> None:
    proc._log_file.close()  # type: ignore[attr-defined]


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], log: Path) -> None:
    """Poll until ``ready()``; fail with the child's output if it ends first or hangs."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            _close(proc)
            pytest.fail(f"the child ended (code {proc.returncode}) before the kill point:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            _close(proc)
            pytest.fail(f"the kill point never came:\n{log.read_text()}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    _close(proc)


def _finish(args: list[str], log: Path) -> str:
    proc = _start(args, log)
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    _close(proc)
    out = log.read_text()
    assert code == 0, f"exit code {code}:\n{out}"
    return out


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial files under ``folder`` (atomic_open's ``.<name>.<pid>.<hex>.tmp`` and such)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and (p.name.endswith((".tmp", ".partial")) or ".partial-" in p.name or ".tmp" in p.suffixes)
    )


# ----------------------------------------------------------------------------------------------
# (a) cnn.fit / gnn.fit with a checkpoint folder

FIT_DRIVER = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from lightning.pytorch.callbacks import Callback

    family, ckpt, epochs, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    class Pause(Callback):
        # from the second epoch on, wait at its start: last.ckpt of the first epoch is then complete
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch >= 1 and pause:
                print("EPOCH", trainer.current_epoch, "STARTED", flush=True)
                time.sleep(pause)

    torch.manual_seed(0)
    common = dict(epochs=epochs, checkpoint_dir=ckpt, progress=False, accelerator="cpu", callbacks=[Pause()])
    if family == "cnn":
        import cnn
        from torch.utils.data import DataLoader, TensorDataset

        model = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )
        data = TensorDataset(torch.randn(16, 3, 8, 8), torch.arange(16) % 2)
        loader = DataLoader(data, batch_size=8)
        history = cnn.fit(model, loader, loader, **common)
    else:
        import gnn
        from torch_geometric.data import Data
        from torch_geometric.loader import DataLoader

        edges = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
        graphs = [Data(x=torch.randn(4, 3), edge_index=edges, y=torch.tensor([i % 2])) for i in range(12)]
        model = gnn.GraphClassifier(3, 2, hidden=8, layers=2)
        loader = DataLoader(graphs, batch_size=4)
        history = gnn.fit(model, loader, loader, **common)
    print("EPOCHS", len(history.train_loss), flush=True)
    """
)


def _fit_killed_then_resumed(tmp_path: Path, family: str) -> None:
    driver = tmp_path / "fit_driver.py"
    driver.write_text(FIT_DRIVER)
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "first.log"
    proc = _start([str(driver), family, str(ckpt), "3", "60"], log)
    _wait_for(proc, lambda: (ckpt / "last.ckpt").is_file() and "STARTED" in log.read_text(), log)
    _kill(proc)
    assert "EPOCHS" not in log.read_text()  # it really died in the middle

    out = _finish([str(driver), family, str(ckpt), "3", "0"], tmp_path / "second.log")
    assert "EPOCHS 3" in out, out  # the History holds the restored epoch and the two new ones
    assert (ckpt / "last.ckpt").is_file() and (ckpt / "best.pth").is_file()
    assert _leftovers(ckpt) == []

    import torch

    state = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 - 1 or state["epoch"] == 3, state["epoch"]  # Lightning counts 0-based


def test_cnn_fit_killed_after_first_checkpoint_resumes_to_the_requested_epochs(tmp_path):
    _fit_killed_then_resumed(tmp_path, "cnn")


def test_gnn_fit_killed_after_first_checkpoint_resumes_to_the_requested_epochs(tmp_path):
    _fit_killed_then_resumed(tmp_path, "gnn")


# ----------------------------------------------------------------------------------------------
# (b) GraphDataset: killed while converting, and while writing the cache file

GRAPHS_DRIVER = textwrap.dedent(
    """
    import io, sys, time
    import numpy as np
    import torch
    import bridge

    root, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Items:
        # n small images; in mode 'convert', reading slows down once the conversion is under way
        def __init__(self):
            self.reads = 0

        def __len__(self):
            return n

        def __getitem__(self, i):
            if not 0 <= i < n:
                raise IndexError(i)
            self.reads += 1
            if mode == "convert" and self.reads == n + 3:
                print("CONVERTING", flush=True)
            if mode == "convert" and self.reads > n + 3:
                time.sleep(0.5)
            img = np.zeros((16, 16, 3), np.uint8)
            img[: 1 + i % 15, :, 0] = 255
            img[:, 8:, 1 + i % 2] = 128
            return img, i % 2

    if mode == "write":
        real_save = torch.save

        def half_save(obj, f, *args, **kwargs):
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            print("WRITING", flush=True)
            time.sleep(120)

        torch.save = half_save

    converter = bridge.ImageToGraph(n_segments=4, method="grid", features=("color_mean",))
    ds = bridge.GraphDataset(Items(), converter, root=root, workers=0, progress=False)
    assert len(ds) == n and ds[n - 1].num_nodes == 4
    print("DONE", len(ds), "reused" if ds.reused else "built", flush=True)
    """
)


def _graphs_killed_then_rebuilt(tmp_path: Path, mode: str) -> Path:
    driver = tmp_path / "graphs_driver.py"
    driver.write_text(GRAPHS_DRIVER)
    root = tmp_path / "cache"
    log = tmp_path / "first.log"
    proc = _start([str(driver), str(root), mode, "40"], log)
    marker = {"convert": "CONVERTING", "write": "WRITING"}[mode]
    _wait_for(proc, lambda: marker in log.read_text(), log)
    _kill(proc)
    assert list(root.glob("graphs-*.pt")) == []  # never a half-written cache under the real name

    out = _finish([str(driver), str(root), "plain", "40"], tmp_path / "second.log")
    assert "DONE 40 built" in out, out
    out = _finish([str(driver), str(root), "plain", "40"], tmp_path / "third.log")
    assert "DONE 40 reused" in out, out  # the rebuilt cache is whole and valid
    assert len(list(root.glob("graphs-*.pt"))) == 1
    return root


def test_graph_dataset_killed_while_converting_is_rebuilt(tmp_path):
    root = _graphs_killed_then_rebuilt(tmp_path, "convert")
    assert _leftovers(root) == []


def test_graph_dataset_killed_while_writing_leaves_no_partial_file(tmp_path):
    root = _graphs_killed_then_rebuilt(tmp_path, "write")
    assert _leftovers(root) == []


# ----------------------------------------------------------------------------------------------
# (c) pixgraph compare --quick, then --resume

COMPARE = [
    "-c",
    "import sys; from bridge.cli import main; sys.exit(main(sys.argv[1:]))",
]
QUICK = [
    "compare",
    "--quick",
    "--data",
    "digits",
    "--max-per-class",
    "8",
    "--arms",
    "linear_probe,gnn_color",
    "--seeds",
    "0,1",
    "--image-size",
    "32",
    "--n-segments",
    "16",
    "--no-progress",
]


def _compare_killed_after_first_cell(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    run = tmp_path / "run"
    log = tmp_path / "first.log"
    proc = _start([*COMPARE, *QUICK, "--out", str(run)], log)
    _wait_for(proc, lambda: any((run / "cells").glob("*.json")), log)
    _kill(proc)
    cells = {p.name: p.read_bytes() for p in (run / "cells").glob("*.json")}
    assert cells and len(cells) < 4
    assert (run / ".lock").is_file()  # kill -9 ran no cleanup: the dead run's lock is still there
    assert not (run / "report.md").exists()
    return run, cells


def _resume_and_check(tmp_path: Path, run: Path, cells: dict[str, bytes]) -> None:
    out = _finish([*COMPARE, "compare", "--resume", str(run), "--no-progress"], tmp_path / "resume.log")
    done = sorted(p.name for p in (run / "cells").glob("*.json"))
    assert done == [f"{a}-seed{s}.json" for a in ("gnn_color", "linear_probe") for s in (0, 1)], out
    for name, data in cells.items():
        assert (run / "cells" / name).read_bytes() == data, f"{name} was recomputed or rewritten"
    results = json.loads((run / "results.json").read_text())
    assert results and (run / "report.md").is_file()
    assert not (run / ".lock").exists()
    assert _leftovers(run) == []


@pytest.mark.slow
def test_compare_killed_after_first_cell_resumes_and_keeps_finished_cells(tmp_path):
    run, cells = _compare_killed_after_first_cell(tmp_path)
    _resume_and_check(tmp_path, run, cells)


@pytest.mark.slow
def test_compare_resume_takes_over_a_lock_whose_pid_was_reused(tmp_path):
    run, cells = _compare_killed_after_first_cell(tmp_path)
    # the dead run's pid now belongs to another live process (this one), started at another time
    lock = {"pid": os.getpid(), "hostname": socket.gethostname(), "start": "not-this-process"}
    (run / ".lock").write_text(json.dumps(lock))
    _resume_and_check(tmp_path, run, cells)
