"""Benchmark: CNN passes on the CPU with glibc's default malloc, then with freed memory kept for reuse.

:func:`engine.memory.keep_freed_memory` (what the ``pixgraph`` command turns on) cannot be undone in a
process, and glibc's behaviour depends on what the process allocated before, so every unit runs in a
fresh process with each setting, on the same inputs (efficientnet_lite0 without weights, batches of
``--batch-size``):

- ``forward``: ``backbone.features(x)`` in inference mode, at each ``--sizes`` px;
- ``train step``: forward, cross-entropy, backward and an SGD step of the whole network with a new head;
- ``image -> graph``: ``ImageToGraph.batch_tensor`` with CNN node features (the tensor path of issue 12).

Printed per row: images/s with each allocator setting, the ratio kept / default, and the minor page
faults and system (kernel) seconds per batch of each (fresh pages the kernel had to map and zero).
Every unit runs in a fresh process per setting (the allocator's state depends on what ran before it),
``--repeats`` calls each, the fastest counting, and the pair of processes ``--rounds`` times,
alternating.

Usage:
    .venv/bin/python benchmarks/bench_keep_freed_memory.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_keep_freed_memory.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(run: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Fastest seconds of ``repeats`` calls (after one warm-up), minor faults and system seconds per call."""
    run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return best, (after.ru_minflt - before.ru_minflt) / repeats, (after.ru_stime - before.ru_stime) / repeats


UNITS = ("forward", "train step", "image -> graph")


def child(unit: str, size: int, batch: int, repeats: int, keep: bool) -> str:
    """One unit in this (fresh) process: ``seconds faults system_seconds`` of its fastest call."""
    from bridge.convert import ImageToGraph
    from cnn.backbones import create_backbone
    from engine.memory import keep_freed_memory

    if keep and not keep_freed_memory(children=False):
        return "nan 0 0"
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size)
    if unit == "forward":
        backbone = create_backbone("efficientnet_lite0", weights=None).eval()

        def run() -> object:
            with torch.inference_mode():
                return backbone.features(x)

    elif unit == "train step":
        net = create_backbone("efficientnet_lite0", weights=None, num_classes=2).train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        y = torch.arange(batch) % 2

        def run() -> object:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss

    else:
        conv = ImageToGraph(
            n_segments=75, batch_size=batch, backbone=create_backbone("efficientnet_lite0", weights=None)
        )
        images = torch.from_numpy(
            np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        )

        def run() -> object:
            return conv.batch_tensor(images)

    best, faults, sys_s = measure(run, repeats)
    return f"{best} {faults} {sys_s}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="image sizes (default 160 224; quick 64)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default 32; quick 4)")
    p.add_argument(
        "--repeats", type=int, default=None, help="calls per process, fastest counts (default 5; quick 1)"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="process pairs per unit, fastest counts (default 2; quick 1)"
    )
    p.add_argument(
        "--quick", action="store_true", help="64 px, batches of 4, 1 repeat, 1 round, unless given"
    )
    p.add_argument("--child", nargs=3, metavar=("UNIT", "SIZE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, full, quick in (
        ("sizes", [160, 224], [64]),
        ("batch_size", 32, 4),
        ("repeats", 5, 1),
        ("rounds", 2, 1),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.child:
        unit, size, mode = args.child
        print("RESULT", child(unit, int(size), args.batch_size, args.repeats, mode == "kept"))
        return 0

    here = str(Path(__file__).resolve())
    # glibc's default in every child: no malloc, huge-page or preloaded-allocator setting, no opt-out
    drop = ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", "PIXGRAPH_KEEP_FREED_MEMORY")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in drop}
    results: dict[tuple[str, int, str], tuple[float, float, float]] = {}
    for _ in range(args.rounds):  # default and kept alternate, so a change of load hits both
        for size in args.sizes:
            for unit in UNITS:
                for mode in ("default", "kept"):
                    cmd = [sys.executable, here, "--child", unit, str(size), mode]
                    cmd += ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
                    if out.returncode or not lines:
                        sys.stderr.write(out.stderr)
                        raise RuntimeError(f"{' '.join(cmd)} failed (exit code {out.returncode})")
                    t, faults, sys_s = (float(v) for v in lines[-1].split()[1:])
                    key = (unit, size, mode)
                    if key not in results or t < results[key][0]:
                        results[key] = (t, faults, sys_s)
    bs = args.batch_size
    print(
        f"efficientnet_lite0 (no weights), batches of {bs}, {torch.get_num_threads()} threads; a fresh "
        f"process per unit and setting, {args.rounds} round(s), fastest of {args.repeats} calls each"
    )
    print(
        "| unit | default img/s | kept img/s | kept / default | page faults per batch (default / kept) "
        "| system s per batch (default / kept) |"
    )
    print("|---|---:|---:|---:|---|---|")
    for size in args.sizes:
        for unit in UNITS:
            (t0, f0, s0), (t1, f1, s1) = results[(unit, size, "default")], results[(unit, size, "kept")]
            if t1 != t1:  # NaN: not glibc
                print(f"| {unit}, {size} px | {bs / t0:.1f} | - | - | not glibc: nothing to keep | |")
                continue
            print(
                f"| {unit}, {size} px | {bs / t0:.1f} | {bs / t1:.1f} | {t0 / t1:.2f}x "
                f"| {f0:,.0f} / {f1:,.0f} | {s0:.3f} / {s1:.3f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
