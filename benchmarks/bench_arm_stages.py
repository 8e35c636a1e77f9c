"""Benchmark: where the inference time of `pixgraph compare`'s arm C goes, next to arm B, in one process.

On the working images of a comparison (``CompareConfig`` with ``--data``, ``--max-per-class`` and
``--image-size``; elpv at 160 px and 250 per class is `make demo`'s setting), the first ``--images``
test images go through, batch by batch (the comparison's batch size), in ``--repeats`` rounds of one
pass per stage in turn (interleaved: a slower minute of a shared machine falls on every stage alike);
the fastest pass of each counts, and the slowest is printed beside it:

- ``B``: the backbone with a new 2-class head (arm B's network; untrained, the cost does not depend on
  the weights), from uint8 images to logits;
- ``C``: image -> graph with CNN node features and the backbone's embedding (``ImageToGraph.batch_tensor``
  on the frozen view, as arm C runs it) -> collate -> an untrained arm-C GNN;
- ``C without the GNN``: the graphs alone;
- ``frozen features``: the frozen view's stage maps alone (what C's backbone pass costs);
- ``D graphs``: colour graphs without any CNN (arm D's converter: segmentation, edges, statistics).

Like the ``pixgraph`` command, the script keeps freed memory for reuse
(:func:`engine.memory.keep_freed_memory`) unless ``--glibc-default``. Printed: images/s and ms per image
of each, and C / B. Arm C's cost beyond the backbone is ``C - frozen features`` per image, from the
fastest passes and as the median of the rounds (steadier: the two passes of a round are seconds apart);
`make demo`'s target C/B >= 0.8 bounds it.

Usage:
    .venv/bin/python benchmarks/bench_arm_stages.py --data elpv --max-per-class 250 --image-size 160
    .venv/bin/python benchmarks/bench_arm_stages.py --data digits --image-size 64 --quick   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pass_rates(
    runs: dict[str, Callable[[np.ndarray], Any]], images: np.ndarray, batch: int, rounds: int
) -> dict[str, list[float]]:
    """Images/s of every pass of every run, round by round: one warm-up batch each, then ``rounds``
    rounds of one pass per run in turn (interleaved, so that a slower minute of the machine falls on
    every run alike)."""
    for run in runs.values():
        run(images[:batch])
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            for i in range(0, len(images), batch):
                run(images[i : i + batch])
            rates[name].append(len(images) / (time.perf_counter() - t0))
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="elpv", help="a dataset name of pixgraph compare (default elpv)")
    p.add_argument("--max-per-class", type=int, default=None, help="default 250 (quick: 20)")
    p.add_argument("--image-size", type=int, default=160, help="the working view (default 160)")
    p.add_argument("--images", type=int, default=None, help="test images timed (default 64; quick: 8)")
    p.add_argument(
        "--repeats", type=int, default=None, help="rounds, the fastest pass counts (default 3; quick: 1)"
    )
    p.add_argument("--quick", action="store_true", help="20 per class, 8 images, 1 pass, unless given")
    p.add_argument(
        "--glibc-default",
        action="store_true",
        help="leave glibc's malloc as it is (default: keep freed memory, as the pixgraph command does)",
    )
    args = p.parse_args(argv)
    kept = False
    if not args.glibc_default:
        from engine.memory import keep_freed_memory

        kept = keep_freed_memory(children=False)
    # --quick only fills in the options that were not given on the command line
    for name, full, quick in (("max_per_class", 250, 20), ("images", 64, 8), ("repeats", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.images, args.repeats) < 1:
        p.error(f"--images and --repeats must be at least 1, got {args.images} and {args.repeats}")

    from bridge.compare.config import CompareConfig
    from bridge.compare.workbench import Workbench
    from cnn.transforms import normalize_images

    cfg = CompareConfig(
        data=args.data, max_per_class=args.max_per_class, image_size=args.image_size, seeds=(0,), device="cpu"
    )
    bench = Workbench(cfg, None, log=lambda _msg: None, progress=False)
    data = bench.data
    imgs = data.images[data.test[: args.images]]
    bs = cfg.batch_size
    model_b = bench.backbone(num_classes=len(data.classes)).eval()
    conv_c, conv_d, view = bench.converter(True), bench.converter(False), bench.frozen_view
    frozen = bench.frozen
    with torch.inference_mode():
        width = int(conv_c.batch_tensor(torch.from_numpy(imgs[:1]))[0].x.shape[1])
    gnn = bench.gnn_model(width, with_cnn=True).eval()

    def run_b(x: np.ndarray) -> Any:
        return model_b(normalize_images(x, model_b.cfg.mean, model_b.cfg.std))

    def graphs_c(x: np.ndarray) -> Any:
        view.take()  # forget earlier embeddings, as arm C's timing does
        return conv_c.batch_tensor(torch.from_numpy(x), collate=True)  # one Batch, as arm C runs it

    def run_c(x: np.ndarray) -> Any:
        batch = graphs_c(x)
        batch.u = view.take().float()
        return gnn(batch)

    def features(x: np.ndarray) -> Any:
        out = view.features(normalize_images(x, frozen.cfg.mean, frozen.cfg.std))
        view.take()
        return out

    stages = [
        ("B", run_b),
        ("C", run_c),
        ("C without the GNN", graphs_c),
        ("frozen features", features),
        ("D graphs", lambda x: conv_d.batch_tensor(torch.from_numpy(x))),
    ]
    print(
        f"{args.data}: {len(imgs)} test images at {imgs.shape[1]} px, {cfg.n_segments} segments "
        f"({cfg.segmentation}), batch {bs}, {torch.get_num_threads()} threads, best of {args.repeats} "
        "interleaved rounds, "
        f"freed memory {'kept' if kept else 'given back (glibc default)'}"
    )
    with torch.inference_mode():
        passes = pass_rates(dict(stages), imgs, bs, args.repeats)
    rates = {name: max(r) for name, r in passes.items()}
    for name, r in passes.items():
        spread = f"passes {min(r):.1f} .. {max(r):.1f} img/s" if len(r) > 1 else ""
        print(f"{name:20s} {max(r):8.1f} img/s {1e3 / max(r):7.2f} ms/img   {spread}", flush=True)
    beyond = 1e3 / rates["C"] - 1e3 / rates["frozen features"]
    # the same per round (C's pass and the frozen features' pass of one round are seconds apart): the
    # difference of two fastest passes moves with the machine by about as much as a change of the graph
    # side, the median of the rounds less
    beyond_rounds = 1e3 / np.asarray(passes["C"]) - 1e3 / np.asarray(passes["frozen features"])
    # C / B of each round (the passes of one round are seconds apart), and their median: what
    # `pixgraph compare` reports from the backbone timed beside each arm
    per_round = np.asarray(passes["C"]) / np.asarray(passes["B"])
    print(
        f"C / B: {rates['C'] / rates['B']:.2f}x (fastest passes), {float(np.median(per_round)):.2f}x (median "
        f"of the rounds, {per_round.min():.2f} .. {per_round.max():.2f}); C beyond its backbone pass: "
        f"{beyond:.2f} ms/img (fastest passes), {float(np.median(beyond_rounds)):.2f} ms/img (median of the "
        f"rounds, {beyond_rounds.min():.2f} .. {beyond_rounds.max():.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
