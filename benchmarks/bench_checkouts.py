"""Benchmark: the tensor path of several checkouts of pixgraph, side by side in one run.

A ratio against the scikit-image baseline moves with the state of a shared machine (torch and
scikit-image do not slow down alike), so a lower ratio than last week's does not tell whether the
code got slower. This script answers that question: it times ``slic_batch`` and
:meth:`bridge.convert.ImageToGraph.batch_tensor` (``slic_torch``, colour + centroid, region edges,
32 uint8 photo crops of 224 px or ``--size``, 75 segments; ``--gray``: the crops in grey, given as RGB)
for the code of every checkout given, in a fresh process per checkout (each imports its own
``bridge``), in interleaved rounds, with this environment's packages. Printed: images/s (best over
the rounds) and the ratio to the first checkout, with the nodes per graph each one builds.

Usage:
    git worktree add /tmp/old <commit>
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old .       # 3 rounds, about 1 minute
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --rounds 1 --images 4   # smoke run
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --cnn   # also CNN node features (~3 minutes)
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --size 160 --gray   # make demo's elpv view
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

# run in a child process with the checkout first on sys.path (bench_scaling.measure: the default
# back-end, slic_torch in every checkout since ae20d29); prints one JSON line
_CHILD = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
from bench_graph_building import sample_images
from bench_scaling import measure
from bridge.slic import slic_batch
n, repeats, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
imgs = torch.from_numpy(np.stack(sample_images(n, size)))
if sys.argv[7] == "gray":  # grey photos as RGB (R = G = B), as pixgraph compare gives elpv and MNIST
    imgs = imgs.float().mul(torch.tensor([0.299, 0.587, 0.114])).sum(-1).round().to(torch.uint8)
    imgs = imgs.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
x = imgs.float() / 255
slic_batch(x, n_segments=75)  # warm-up, untimed, as measure() and best() do
slic = float("inf")
for _ in range(repeats):
    t = time.perf_counter(); slic_batch(x, n_segments=75); slic = min(slic, time.perf_counter() - t)
tensor, nodes = measure(imgs, 75, repeats)
out = {"slic": n / slic, "tensor": n / tensor, "nodes": nodes}
if sys.argv[5] == "cnn":  # CNN node features: the backbone alone, the pooling alone, the whole path
    from bridge.convert import ImageToGraph
    from bridge.features import pool_feature_maps
    from cnn.backbones import create_backbone
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", weights=None).eval()
    conv = ImageToGraph(features=("color_mean", "centroid"), edges="region", backbone=backbone)
    labels = slic_batch(x, n_segments=75)
    prep = conv.cnn.preprocess(x)
    with torch.inference_mode():
        maps = conv.cnn._select(backbone.features(prep))
    def best(fn):
        fn()
        seconds = float("inf")
        for _ in range(repeats):
            t = time.perf_counter(); fn(); seconds = min(seconds, time.perf_counter() - t)
        return n / seconds
    with torch.inference_mode():
        out["bare"] = best(lambda: backbone.features(prep))
        out["pool"] = best(lambda: pool_feature_maps(maps, labels))
    out["cnn"] = best(lambda: conv.batch_tensor(imgs))
print(json.dumps(out))
"""


def run_child(
    checkout: Path, images: int, repeats: int, cnn: bool = False, size: int = 224, gray: bool = False
) -> dict[str, float]:
    """Time one checkout in a fresh interpreter; returns images/s of every stage and nodes per graph."""
    cmd = [sys.executable, "-c", _CHILD, str(checkout), str(HERE), str(images), str(repeats)]
    cmd += ["cnn" if cnn else "-", str(size), "gray" if gray else "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"timing {checkout} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(root: Path) -> str:
    """``root`` and the commit checked out there (``git rev-parse --short HEAD``; ``?`` outside git)."""
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return f"{root} ({done.stdout.strip() or '?'})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkouts", nargs="+", type=Path, help="repository roots (worktrees); first = reference")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the checkouts (default 3)")
    ap.add_argument("--images", type=int, default=32, help="images per batch (default 32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per stage and round (default 5)")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    ap.add_argument(
        "--gray",
        action="store_true",
        help="grey photos given as RGB (R = G = B), as pixgraph compare gives elpv and MNIST",
    )
    ap.add_argument(
        "--cnn",
        action="store_true",
        help="also time CNN node features (efficientnet_lite0, weights=None, last 3 stages): the bare "
        "backbone, pool_feature_maps alone and batch_tensor with the backbone",
    )
    args = ap.parse_args(argv)
    roots = [c.resolve() for c in args.checkouts]
    for root in roots:
        if not (root / "bridge" / "slic.py").is_file():
            raise SystemExit(f"{root} has no bridge/slic.py; give the root of a pixgraph checkout")
    if min(args.rounds, args.images, args.repeats) < 1:
        raise SystemExit("--rounds, --images and --repeats must be at least 1")
    if args.size < 16:
        raise SystemExit(f"--size must be at least 16 pixels, got {args.size}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}; "
        f"{args.images} {'grey ' if args.gray else ''}images of {args.size} px, 75 segments, "
        f"best of {args.rounds} rounds x {args.repeats} calls"
    )
    runs: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            runs[root].append(run_child(root, args.images, args.repeats, args.cnn, args.size, args.gray))
    best = {
        root: {key: (value if key == "nodes" else max(r[key] for r in got)) for key, value in got[0].items()}
        for root, got in runs.items()
    }
    ref = best[roots[0]]
    print("| checkout | slic_batch images/s | vs first | batch_tensor images/s | vs first | nodes/graph |")
    print("|---|---:|---:|---:|---:|---:|")
    for root in roots:
        r = best[root]
        print(
            f"| {describe(root)} | {r['slic']:.0f} | {r['slic'] / ref['slic']:.2f}x | {r['tensor']:.0f} | "
            f"{r['tensor'] / ref['tensor']:.2f}x | {r['nodes']:.1f} |"
        )
    if args.cnn:
        print("\nCNN node features (images/s; the last column: the whole path over the bare backbone)")
        print(
            "| checkout | bare backbone | pool_feature_maps | vs first | batch_tensor + CNN | vs first "
            "| / bare |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for root in roots:
            r = best[root]
            print(
                f"| {describe(root)} | {r['bare']:.1f} | {r['pool']:.0f} | {r['pool'] / ref['pool']:.2f}x | "
                f"{r['cnn']:.1f} | {r['cnn'] / ref['cnn']:.2f}x | {r['cnn'] / r['bare']:.2f} |"
            )


if __name__ == "__main__":
    main()
