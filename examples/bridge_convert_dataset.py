"""Convert a whole image dataset into superpixel graphs once; the second run loads the cache.

Segmentation runs in worker processes, CNN node features (``--cnn``) in batches, from a copy of the
backbone with its BatchNorm layers folded into the convolutions (``cnn.fold_batchnorm``: the same maps up
to float rounding, faster; the backbone only extracts features here); the cache file's name is a key of the
converter's configuration and of the data, so a changed setting builds a new one.

Run:  python examples/bridge_convert_dataset.py --data mnist5k --n-segments 75
      python examples/bridge_convert_dataset.py --quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bridge import GraphDataset, ImageToGraph
from cnn import load_dataset
from engine import keep_freed_memory


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="dataset name or folder (default mnist5k; quick: digits)")
    p.add_argument(
        "--n-segments", type=int, default=None, help="superpixels per image (default 75; quick: 20)"
    )
    p.add_argument(
        "--max-per-class", type=int, default=None, help="images kept per class (default: all; quick: 10)"
    )
    p.add_argument("--cnn", action="store_true", help="add efficientnet_lite0 stage features")
    p.add_argument("--cache", default="runs/graph_cache")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--quick",
        action="store_true",
        help="digits, 10 images per class, 20 segments, unless those options are given",
    )
    args = p.parse_args(argv)
    keep_freed_memory()  # Linux: the backbone's activations reuse freed memory (README, "Memory on the CPU")
    # --quick only fills in the options that were not given on the command line
    args.data = args.data if args.data is not None else ("digits" if args.quick else "mnist5k")
    args.n_segments = args.n_segments if args.n_segments is not None else (20 if args.quick else 75)
    if args.max_per_class is None and args.quick:
        args.max_per_class = 10
    images = load_dataset(args.data, max_per_class=args.max_per_class)
    backbone = None
    if args.cnn:
        from cnn import create_backbone, fold_batchnorm

        backbone = fold_batchnorm(create_backbone("efficientnet_lite0", weights="imagenet"))
    conv = ImageToGraph(n_segments=args.n_segments, features=("color_mean", "centroid"), backbone=backbone)
    for attempt in (1, 2):
        t0 = time.perf_counter()
        graphs = GraphDataset(images, conv, root=args.cache, workers=args.workers, progress=not args.quick)
        took = time.perf_counter() - t0
        print(
            f"run {attempt}: {len(graphs)} graphs {'loaded from cache' if graphs.reused else 'built'} "
            f"in {took:.2f} s ({graphs.cache_path})"
        )
    nodes = np.array([g.num_nodes for g in graphs])
    print(
        f"nodes per graph: mean {nodes.mean():.1f} (min {nodes.min()}, max {nodes.max()}); "
        f"node features: {graphs[0].x.shape[1]}"
    )
    return {"graphs": len(graphs), "mean_nodes": float(nodes.mean()), "reused": float(graphs.reused)}


if __name__ == "__main__":
    main()
