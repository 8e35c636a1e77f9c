"""Benchmark: ``backbone.features(x)`` with and without its BatchNorm layers folded into the convolutions.

For every backbone named (random weights, ``weights=None``: the timing does not depend on the values),
:func:`cnn.fusion.fold_batchnorm` makes an inference copy; both run on the same preprocessed batches in
the same process, interleaved, best of ``--repeats`` per batch. Printed: the BatchNorm layers before and
after, the largest difference of the stage maps relative to the largest map value, images/s of both
and their ratio.

Usage:
    .venv/bin/python benchmarks/bench_fold_batchnorm.py                       # the lecture's backbones
    .venv/bin/python benchmarks/bench_fold_batchnorm.py --backbones resnet18 --quick   # smoke run
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The backbones of the lecture notes that this registry has, smallest first.
BACKBONES = (
    "efficientnet_lite0",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "inception_v3",
    "xception",
    "vgg16",
)


def measure(name: str, batch: int, batches: int, repeats: int) -> dict[str, float]:
    """Images/s of the backbone and of its folded copy, the BatchNorm counts and the largest difference."""
    from cnn.backbones import create_backbone
    from cnn.fusion import count_batchnorm, fold_batchnorm

    torch.manual_seed(0)
    model = create_backbone(name, weights=None).eval()
    fast = fold_batchnorm(model)
    size = int(model.cfg.input_size)
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(batch, 3, size, size, generator=gen) for _ in range(batches)]
    best = {"plain": [float("inf")] * batches, "folded": [float("inf")] * batches}
    with torch.inference_mode():
        worst = 0.0
        for a, b in zip(model.features(xs[0]), fast.features(xs[0]), strict=True):
            worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
        for _ in range(repeats):
            for i, x in enumerate(xs):
                for key, net in (("plain", model), ("folded", fast)):
                    start = time.perf_counter()
                    net.features(x)
                    best[key][i] = min(best[key][i], time.perf_counter() - start)
    n = batch * batches
    return {
        "bn": count_batchnorm(model),
        "bn_left": count_batchnorm(fast),
        "diff": worst,
        "plain": n / sum(best["plain"]),
        "folded": n / sum(best["folded"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default 16; quick: 2)")
    parser.add_argument("--batches", type=int, default=None, help="batches (default 2; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per batch (default 3; quick: 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="batches of 2, one batch, one repeat, unless those options are given",
    )
    args = parser.parse_args(argv)
    # --quick only fills in the options that were not given on the command line
    for name, full, quick in (("batch", 16, 2), ("batches", 2, 1), ("repeats", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.batch, args.batches, args.repeats) < 1:
        parser.error("--batch, --batches and --repeats must be at least 1")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, torch threads "
        f"{torch.get_num_threads()}; backbone.features(x) of {args.batches} batches of {args.batch} at each "
        f"backbone's input size, best of {args.repeats} per batch, interleaved"
    )
    print(
        "| backbone | BatchNorm layers (folded copy) | largest map difference | images/s | folded | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.backbones:
        r = measure(name, args.batch, args.batches, args.repeats)
        print(
            f"| {name} | {r['bn']} ({r['bn_left']}) | {r['diff']:.1e} | {r['plain']:.1f} | "
            f"{r['folded']:.1f} | {r['folded'] / r['plain']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
