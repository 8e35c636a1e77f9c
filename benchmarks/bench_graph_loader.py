"""Benchmark: mini-batches of an in-memory graph list, PyG's ``DataLoader`` against ``gnn.graph_loader``.

Both loaders get the same list of synthetic superpixel-like graphs
(``bench_gnn_training.superpixel_like_graphs``: 75 nodes, 8-nearest-centroid edges both ways; here with
edge attributes, positions and a label), shaped like ``pixgraph compare``'s arms: arm C's (480 node
features and a 1280-wide graph vector ``u``) and arm D's (8 node features), batches of 32, reshuffled
every epoch from the same seed. Timed in ``--repeats`` interleaved rounds, in one process: an epoch of
batches (collation alone), and ``gnn.fit`` of arm D's model (GCN, 64 hidden, 4 layers) on each loader,
whose weights must come out equal. Printed: batches/s of the fastest pass of each and their ratio, with
the median of the rounds' ratios.

Usage:
    .venv/bin/python benchmarks/bench_graph_loader.py            # about a minute on 2 CPU cores
    .venv/bin/python benchmarks/bench_graph_loader.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gcn_adjacency import timed_rounds
from bench_gnn_training import superpixel_like_graphs
from torch_geometric.loader import DataLoader

from gnn.loader import graph_loader


def shaped_graphs(n: int, features: int, global_width: int, seed: int = 0) -> list:
    """``n`` graphs with ``features`` node features, edge attributes, positions and, when
    ``global_width`` > 0, a ``(1, global_width)`` graph vector ``u``."""
    graphs = superpixel_like_graphs(n, classes=2, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for d in graphs:
        d.x = torch.rand(d.num_nodes, features, generator=g)
        d.edge_attr = torch.rand(d.edge_index.shape[1], 2, generator=g)
        if global_width:
            d.u = torch.rand(1, global_width, generator=g)
    return graphs


def _epoch(loader: DataLoader) -> None:
    """One epoch of batches, collated and thrown away."""
    for _ in loader:
        pass


def _train(
    name: str, loader: DataLoader, features: int, epochs: int, weights: dict[str, list[torch.Tensor]]
) -> None:
    """``gnn.fit`` of arm D's model from seed 0 on ``loader``; its weights land in ``weights[name]``."""
    from gnn import GraphClassifier
    from gnn.training import fit

    torch.manual_seed(0)
    model = GraphClassifier(features, 2, hidden=64, layers=4)
    fit(model, loader, epochs=epochs, progress=False, accelerator="cpu")
    weights[name] = [q.detach().clone() for q in model.parameters()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graphs", type=int, default=None, help="graphs in the list (default 352; quick: 64)")
    p.add_argument("--epochs", type=int, default=None, help="fit epochs per pass (default 3; quick: 1)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; quick: 1)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    for name, full, quick in (("graphs", 352, 64), ("epochs", 3, 1), ("repeats", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.graphs, args.epochs, args.repeats) < 1:
        p.error("--graphs, --epochs and --repeats must be at least 1")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.graphs} graphs, batches of 32, "
        f"best and median of {args.repeats} interleaved rounds"
    )
    print("| graphs like | pass | PyG DataLoader (batches/s) | graph_loader (batches/s) | ratio | median |")
    print("|---|---|---:|---:|---:|---:|")
    shapes = (("arm C: 480 features, u of 1280", 480, 1280), ("arm D: 8 features", 8, 0))
    for label, features, width in shapes:
        graphs = shaped_graphs(args.graphs, features, width)
        loaders = {
            name: make(graphs, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
            for name, make in (("pyg", DataLoader), ("ours", graph_loader))
        }
        n_batches = len(loaders["pyg"])
        epochs: dict[str, Callable[[], None]] = {k: partial(_epoch, v) for k, v in loaders.items()}
        passes = {"collation, one epoch": (epochs, n_batches)}
        weights: dict[str, list[torch.Tensor]] = {}
        if width == 0:
            runs = {k: partial(_train, k, v, features, args.epochs, weights) for k, v in loaders.items()}
            passes[f"gnn.fit, {args.epochs} epochs"] = (runs, n_batches * args.epochs)
        for mode, (todo, count) in passes.items():
            times = timed_rounds(todo, args.repeats)
            best = {k: count / min(t) for k, t in times.items()}
            med = statistics.median(a / b for a, b in zip(times["pyg"], times["ours"]))
            ratio = best["ours"] / best["pyg"]
            print(
                f"| {label} | {mode} | {best['pyg']:.0f} | {best['ours']:.0f} | {ratio:.2f}x | {med:.2f}x |",
                flush=True,
            )
        if weights:
            same = all(torch.equal(a, b) for a, b in zip(weights["pyg"], weights["ours"]))
            print(f"trained weights equal on both loaders: {same}")
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
