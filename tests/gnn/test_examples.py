"""Runs the gnn examples end to end with --quick (each in a fresh interpreter)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    # One thread: steady timings on a shared machine (see conftest._one_thread).
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_dense_gcn_example_shows_equality_and_trains():
    out = _run("gnn_dense_gcn.py", "--quick")
    assert "->  equal (tolerance 1e-5)" in out
    accuracy = float(out.rsplit("test accuracy:", 1)[1].split()[0])
    assert accuracy >= 0.8


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


@pytest.mark.skipif(
    not (_has("bridge", "ImageToGraph") and _has("cnn", "load_dataset") and _has("cnn", "split")),
    reason="needs bridge.ImageToGraph and cnn.load_dataset/split",
)
def test_mnist_superpixels_example_runs(tmp_path):
    out_json = tmp_path / "result.json"
    out = _run("gnn_mnist_superpixels.py", "--quick", "--out", str(out_json))
    assert "Benchmarking-GNNs GCN, full MNIST" in out
    report = json.loads(out_json.read_text())
    assert report["sizes"] == {"train": 280, "val": 40, "test": 80}
    assert 0.0 <= report["test"]["accuracy"] <= 1.0 and report["epochs"] == 2
