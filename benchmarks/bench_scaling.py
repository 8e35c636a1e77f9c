"""Benchmark: how the cost of graph building grows with the image size and the number of segments.

Graph building on the tensor path (:meth:`bridge.convert.ImageToGraph.batch_tensor` on a uint8
``(B, S, S, 3)`` tensor: ``slic_torch`` segmentation, colour + centroid node features, region edges,
the ``Data`` objects) for image sides 112, 224, 448 px and 25, 75, 200, 400 segments asked, on the
same photo crops as ``bench_graph_building.py``. Printed: images/s per cell, and each cell's ratio to
the 224 px / 75 segments cell (the setting of the other benchmarks), from one run.

Usage:
    .venv/bin/python benchmarks/bench_scaling.py            # 32 images per cell, best of 3 (about 1 minute)
    .venv/bin/python benchmarks/bench_scaling.py --quick    # 4 images, sizes 112 and 224
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_graph_building import sample_images  # noqa: E402

SIZES = (112, 224, 448)
SEGMENTS = (25, 75, 200, 400)
REFERENCE = (224, 75)


def measure(
    images: torch.Tensor, n_segments: int, repeats: int, features: Sequence[str] = ("color_mean", "centroid")
) -> tuple[float, float]:
    """Best seconds of ``repeats`` conversions of the batch (after one warm-up) and nodes per graph."""
    from bridge.convert import ImageToGraph

    conv = ImageToGraph(n_segments=n_segments, features=tuple(features), edges="region")
    graphs = conv.batch_tensor(images)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        conv.batch_tensor(images)
        best = min(best, time.perf_counter() - start)
    return best, float(np.mean([g.num_nodes for g in graphs]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=None, help="images per batch, one batch per cell (default 32; quick: 4)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per cell (default 3; quick: 1)"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help=f"image sides (default {' '.join(map(str, SIZES))}; quick: 112 224)",
    )
    parser.add_argument("--segments", type=int, nargs="+", default=list(SEGMENTS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 images, sizes 112 and 224, one repeat, unless those options are given",
    )
    args = parser.parse_args(argv)
    # --quick only fills in the options that were not given on the command line
    args.images = args.images if args.images is not None else (4 if args.quick else 32)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    args.sizes = args.sizes if args.sizes is not None else ([112, 224] if args.quick else list(SIZES))
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, torch threads "
        f"{torch.get_num_threads()}; ImageToGraph.batch_tensor (slic_torch, colour + centroid, region "
        f"edges) of {args.images} uint8 photo crops per cell, best of {args.repeats}"
    )
    rate: dict[tuple[int, int], float] = {}
    nodes: dict[tuple[int, int], float] = {}
    for size in args.sizes:
        images = torch.from_numpy(np.stack(sample_images(args.images, size, seed=size)))
        for n in args.segments:
            seconds, per_graph = measure(images, n, args.repeats)
            rate[size, n] = args.images / seconds
            nodes[size, n] = per_graph
    ref = rate.get(REFERENCE)
    print("\nimages/s (ratio to the 224 px / 75 segments cell); nodes per graph in brackets")
    print("| size \\ segments | " + " | ".join(str(n) for n in args.segments) + " |")
    print("|---:|" + "---:|" * len(args.segments))
    for size in args.sizes:
        cells = []
        for n in args.segments:
            ratio = f", {rate[size, n] / ref:.2f}x" if ref else ""
            cells.append(f"{rate[size, n]:.0f}{ratio} [{nodes[size, n]:.0f}]")
        print(f"| {size} px | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
