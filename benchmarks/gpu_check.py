"""Device check: images/s of every stage of the bridge on one device, and its peak memory.

What issue 12 asks to see on a GPU: the image -> graph path running in torch on the device it is
given (no host round trip inside a batch), stage by stage, on ``--batches`` batches of
``--batch-size`` photo crops (uint8 ``(B, H, W, 3)`` tensors, already on the device):

- ``segmentation``: :func:`bridge.segmentation.superpixels_batch` with ``method="slic_torch"``;
- ``graph building``: :meth:`bridge.convert.ImageToGraph.batch_tensor` (segmentation, colour +
  centroid node features, region edges and the ``Data`` objects);
- ``backbone forward``: ``backbone.features(x)`` of ``efficientnet_lite0`` (weights=None: timing only)
  on the preprocessed batch, the reference of the next row;
- ``CNN node features``: ``ImageToGraph(backbone=...).batch_tensor``: the whole image -> graph with
  the last 3 stage maps pooled into the nodes;
- ``GNN forward``: a ``gnn.GraphClassifier`` (GCN) on the collated graphs of the previous row;
- ``compare --quick``: ``pixgraph compare --quick --data digits --weights none --device <device>`` end
  to end with an empty graph cache, in a subprocess (wall time; ``--no-compare`` leaves it out).

Every stage runs once to warm up, then ``--repeats`` times; the best time counts. Peak memory per
stage is ``torch.cuda.max_memory_allocated`` on CUDA (reset before each stage; in brackets the part
above what was allocated when the stage started: the resident images, inputs, graphs and backbones);
on the CPU the process's peak resident memory is printed instead. Output is unbuffered line by line
(``gpu_check.sh``), and ``--budget`` caps the compare run at what is left of the script's time.

Usage:
    benchmarks/gpu_check.sh                                          # on a GPU machine, < 5 minutes
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # the same code on the CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: When this process started work (before torch's import, which can take seconds on a GPU host):
#: ``--budget`` counts from here.
STARTED = time.monotonic()

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(ROOT))

from bench_graph_building import sample_images  # noqa: E402

#: The rows of the table, in order.
STAGES = (
    "segmentation",
    "graph building",
    "backbone forward",
    "CNN node features",
    "backbone forward, BatchNorm folded",
    "CNN node features, BatchNorm folded",
    "GNN forward",
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device, before: int = 0) -> str:
    """Peak memory since the last :func:`reset_peak`: the device's allocator on CUDA (with what the stage
    added to the ``before`` bytes allocated when it started), else the process."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        return f"{peak / 2**20:.0f} (+{(peak - before) / 2**20:.0f})"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{rss_kib / 1024:.0f} (process RSS)"


def best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up call, device work included."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def run_compare(device: str, timeout: float) -> tuple[float | None, str]:
    """Wall time of ``pixgraph compare --quick --data digits --device DEVICE --weights none`` in a
    subprocess, end to end: its own empty graph cache (``PIXGRAPH_CACHE``), so graphs are built, and no
    pretrained weights to find (the stages above use ``weights=None`` too). On a timeout the whole
    process group (data loader workers included) is killed."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bridge.cli", "compare", "--quick", "--data", "digits"]
        cmd += ["--weights", "none", "--device", device, "--out", str(Path(tmp) / "run"), "--no-progress"]
        env = {**os.environ, "PIXGRAPH_CACHE": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        pipe = subprocess.PIPE
        kwargs = {"cwd": ROOT, "env": env, "stdout": pipe, "stderr": pipe, "start_new_session": True}
        proc = subprocess.Popen(cmd, text=True, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as exc:  # the timeout, or SIGINT / Ctrl-C: no compare may outlive this script
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                return None, f"timed out after {timeout:.0f} s"
            raise
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-5:]
        return None, f"failed (exit {proc.returncode}): " + " / ".join(tail)
    return seconds, "ok"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed run")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--segments", type=int, default=75, help="superpixels asked for")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    parser.add_argument("--no-compare", action="store_true", help="leave out the compare --quick run")
    parser.add_argument("--compare-timeout", type=float, default=180.0, help="seconds for compare --quick")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole script: compare gets what is left"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch_size = min(args.batch_size, 8)
        args.batches, args.repeats = min(args.batches, 2), 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here; use --device cpu", file=sys.stderr)
        return 2

    from bridge.convert import ImageToGraph
    from bridge.segmentation import superpixels_batch
    from cnn.backbones import create_backbone
    from cnn.fusion import fold_batchnorm
    from gnn.models import GraphClassifier

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device {device} ({name}), torch {torch.__version__}, python {platform.python_version()}, "
        f"torch threads {torch.get_num_threads()}; {args.batches} batches of {args.batch_size} images "
        f"{args.size}x{args.size}, {args.segments} superpixels asked, best of {args.repeats}"
    )
    n_images = args.batches * args.batch_size
    host = sample_images(n_images, args.size, seed=3)
    batches = [
        torch.from_numpy(np.stack(host[i : i + args.batch_size])).to(device)
        for i in range(0, n_images, args.batch_size)
    ]
    backbone = create_backbone("efficientnet_lite0", weights=None).to(device).eval()
    common = {"n_segments": args.segments, "features": ("color_mean", "centroid"), "edges": "region"}
    conv = ImageToGraph(**common)
    conv_cnn = ImageToGraph(**common, backbone=backbone, batch_size=args.batch_size)
    folded = fold_batchnorm(backbone)  # on the device: the probe batch follows the parameters
    conv_folded = ImageToGraph(**common, backbone=folded, batch_size=args.batch_size)
    inputs = [conv_cnn.cnn.preprocess(b.float().div(255.0)) for b in batches]
    graphs = [conv_cnn.batch_tensor(b, collate=True) for b in batches]
    gnn = GraphClassifier(graphs[0].num_features, 10, conv="gcn").to(device).eval()

    def bare(net: torch.nn.Module = backbone) -> None:
        with torch.inference_mode():
            for x in inputs:
                net.features(x)

    def classify() -> None:
        with torch.inference_mode():
            for g in graphs:
                gnn(g)

    work: dict[str, Callable[[], object]] = {
        "segmentation": lambda: [superpixels_batch(b, n_segments=args.segments) for b in batches],
        "graph building": lambda: [conv.batch_tensor(b) for b in batches],
        "backbone forward": bare,
        "CNN node features": lambda: [conv_cnn.batch_tensor(b) for b in batches],
        "backbone forward, BatchNorm folded": lambda: bare(folded),
        "CNN node features, BatchNorm folded": lambda: [conv_folded.batch_tensor(b) for b in batches],
        "GNN forward": classify,
    }
    notes = {
        "segmentation": "superpixels_batch, slic_torch",
        "graph building": "ImageToGraph.batch_tensor, colour + centroid, region edges",
        "backbone forward": "efficientnet_lite0 features(x), preprocessed",
        "CNN node features": "image -> graph, last 3 stages pooled",
        "backbone forward, BatchNorm folded": "cnn.fold_batchnorm(backbone).features(x)",
        "CNN node features, BatchNorm folded": "image -> graph on the folded backbone",
        "GNN forward": f"GCN on {graphs[0].num_features} node features",
    }
    print("| stage | images/s | ms/image | peak memory, MiB (+ added by the stage) | what |")
    print("|---|---:|---:|---:|---|")
    overall = 0
    for stage in STAGES:
        synchronize(device)
        reset_peak(device)
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        seconds = best_seconds(work[stage], args.repeats, device)
        if device.type == "cuda":
            overall = max(overall, torch.cuda.max_memory_allocated(device))
        print(
            f"| {stage} | {n_images / seconds:.1f} | {1000 * seconds / n_images:.2f} | "
            f"{peak_mib(device, before)} | {notes[stage]} |"
        )
    if device.type == "cuda":
        print(f"peak memory over all stages: {overall / 2**20:.0f} MiB (torch.cuda.max_memory_allocated)")
    else:
        print("peak memory: not measured by torch on the CPU (the process RSS is shown)")
    if args.no_compare:
        print("compare --quick: skipped (--no-compare)")
    else:
        limit = args.compare_timeout
        if args.budget is not None:
            left = args.budget - (time.monotonic() - STARTED) - 5.0
            if left < min(limit, 30.0):  # too little left of the budget for a run worth timing
                print(f"compare --quick: skipped (--budget {args.budget:.0f} s: {left:.0f} s left)")
                return 0
            limit = min(limit, left)
        seconds, status = run_compare(str(device), limit)
        if seconds is None:
            print(f"compare --quick --data digits --device {device}: {status}")
        else:
            print(f"compare --quick --data digits --device {device}: {seconds:.1f} s wall, end to end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
