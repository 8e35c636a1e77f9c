"""Benchmark: GCN (and GIN) with the adjacency built once per forward (a sparse CSR matrix, the
default of ``GraphClassifier(conv="gcn")`` and ``conv="gin"``) against PyG's default, every layer taking
the edge list (``GCNConv`` normalising it again) and gathering / scattering one row per edge.

Both sides are the same model with the same weights (the baseline is a copy whose layers take the
edge list, GCN layers normalising it themselves, as ``GCNConv()`` does), on the same pre-collated
batches of synthetic superpixel-like graphs (``bench_gnn_training.superpixel_like_graphs``: 75 nodes,
8-nearest-centroid edges both ways), in one process. Two shapes per layer (``--convs``): the
Benchmarking-GNNs preset (5 features, about 100k parameters, 4 layers, batches of 128) and the shape of
``pixgraph compare``'s arm C (477 node features: colour, centroid and three pooled stages of
efficientnet_lite0; hidden 64, 4 layers; batches of 32). For each: inference (eval,
``torch.inference_mode``) and a training step (forward, cross-entropy, backward, Adam), in
``--repeats`` interleaved rounds; printed: graphs/s of the fastest pass of each side and the ratio,
and the median of the rounds' ratios. The outputs of both sides are compared first. The training step
also runs a third copy, the adjacency built once but multiplied by PyG's own layer classes, whose
backward is torch's (``torch.sparse.mm`` converts the transpose to CSR in every layer): the last two
columns are the default's speed over it (what the transpose shared by all layers' backward passes
gives).

Usage:
    .venv/bin/python benchmarks/bench_gcn_adjacency.py            # about a minute on 2 CPU cores
    .venv/bin/python benchmarks/bench_gcn_adjacency.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gnn_training import superpixel_like_graphs

from gnn import GraphClassifier


def per_layer_copy(model: GraphClassifier) -> GraphClassifier:
    """The same model and weights, every layer taking the edge list, a GCN layer normalising it itself
    (PyG's default)."""
    from torch_geometric.nn import GCNConv

    ref = copy.deepcopy(model)
    ref._prepare = None
    for conv in ref.convs:
        if isinstance(conv, GCNConv):
            conv.normalize = conv.add_self_loops = True
    return ref


def torch_backward_copy(model: GraphClassifier) -> GraphClassifier:
    """The same model and weights, the adjacency built once, its layers PyG's own classes: the backward
    of their products is torch's (the transpose converted to CSR in every layer)."""
    from torch_geometric.nn import GCNConv, GINConv

    from gnn import models

    ref = copy.deepcopy(model)
    plain = {models._SharedGCNConv: GCNConv, models._SharedGINConv: GINConv}
    for conv in ref.convs:
        conv.__class__ = plain.get(type(conv), type(conv))
    return ref


def _batches(n_batches: int, size: int, features: int, seed: int) -> list[Batch]:
    graphs = superpixel_like_graphs(n_batches * size, classes=2, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for d in graphs:
        if features != d.x.shape[1]:
            d.x = torch.cat([d.x, torch.rand(d.num_nodes, features - d.x.shape[1], generator=g)], dim=1)
    return [Batch.from_data_list(graphs[i : i + size]) for i in range(0, len(graphs), size)]


def _infer(model: GraphClassifier, batches: list[Batch]) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(b)

    return run


def _train(model: GraphClassifier, batches: list[Batch]) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        for b in batches:
            opt.zero_grad()
            F.cross_entropy(model(b), b.y).backward()
            opt.step()

    return run


def timed_rounds(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds of every pass of every run: one warm-up pass each, then ``rounds`` interleaved rounds."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=None, help="batches per pass (default 4; quick: 1)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 7; quick: 2)")
    p.add_argument("--convs", default="gcn,gin", help="layers to time (default gcn,gin)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    n_batches = args.batches if args.batches is not None else (1 if args.quick else 4)
    rounds = args.repeats if args.repeats is not None else (2 if args.quick else 7)
    if n_batches < 1 or rounds < 1:
        p.error(f"--batches and --repeats must be at least 1, got {n_batches} and {rounds}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n_batches} batches per pass, "
        f"best and median of {rounds} interleaved rounds"
    )
    convs = [c for c in args.convs.split(",") if c]
    shapes = [
        (f"{conv}, {label}", conv, features, size, dict(kw))
        for conv in convs
        for label, features, size, kw in (
            ("benchmark preset, 5 features, batch 128", 5, 128, {"preset": True}),
            ("arm C's shape, 477 features, hidden 64, batch 32", 477, 32, {"hidden": 64, "layers": 4}),
        )
    ]
    print(
        "| model | pass | edge list in every layer (graphs/s) | adjacency once, torch's backward (graphs/s) "
        "| adjacency once (graphs/s) | ratio | median ratio | over torch's backward | median |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    diffs = []
    for label, conv, features, size, kw in shapes:
        torch.manual_seed(0)
        if kw.pop("preset", False):
            model = GraphClassifier.preset("benchmark", features, 2, conv=conv)
        else:
            model = GraphClassifier(features, 2, conv=conv, **kw)
        ref = per_layer_copy(model)
        plain = torch_backward_copy(model)
        batches = _batches(n_batches, size, features, seed=1)
        with torch.inference_mode():
            diff = (model.eval()(batches[0]) - ref.eval()(batches[0])).abs().max().item()
        graphs = n_batches * size
        for mode in ("inference", "training step"):
            for m in (model, ref, plain):
                m.train(mode != "inference")
            make = _infer if mode == "inference" else _train
            if mode == "inference":  # the same forward as the default: not timed again
                runs = {"ref": make(ref, batches), "ours": make(model, batches)}
            else:  # the training step changes the weights: each side trains its own copy from one start
                sides = {"ref": ref, "plain": plain, "ours": model}
                runs = {name: make(copy.deepcopy(m), batches) for name, m in sides.items()}
            times = timed_rounds(runs, rounds)
            best = {name: graphs / min(t) for name, t in times.items()}
            med = statistics.median(r / o for r, o in zip(times["ref"], times["ours"]))
            cells = [f"{best['ref']:.0f}", "-", f"{best['ours']:.0f}", f"{best['ours'] / best['ref']:.2f}x"]
            cells += [f"{med:.2f}x", "-", "-"]
            if "plain" in times:  # the default over torch's backward of the products
                med_plain = statistics.median(r / o for r, o in zip(times["plain"], times["ours"]))
                cells[1] = f"{best['plain']:.0f}"
                cells[5:] = [f"{best['ours'] / best['plain']:.2f}x", f"{med_plain:.2f}x"]
            print(f"| {label} | {mode} | " + " | ".join(cells) + " |", flush=True)
        diffs.append(f"{label}: {diff:.1e}")
    print("largest logit difference between the two sides, eval: " + "; ".join(diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
