"""Benchmark: training throughput of ``gnn.fit`` (Lightning engine) against a hand-written PyG loop.

Both train the same ``GraphClassifier.preset("benchmark", 5, 10, conv=...)`` (about 100k
parameters, 4 layers; Benchmarking-GNNs MNIST set-up) with Adam on the same pre-collated batches
of 128 synthetic superpixel-like graphs (75 nodes, 5 features = 3 "colour" + 2 position, edges to
the 8 nearest centroids, both directions; moved to ``--device`` before any timing, so neither side
times host-to-device copies), in one process, with the same torch threads:

- baseline: ``for batch in batches: optimizer.zero_grad(); loss = cross_entropy(model(batch),
  batch.y); loss.backward(); optimizer.step()``;
- ours: ``gnn.fit(model, batches, epochs=..., progress=False)`` (History, epoch metrics, seed;
  no checkpoints, no validation).

Throughput is graphs per second over the epochs after ``--warmup`` warm-up epochs, measured from
the start of the first counted epoch to the end of the last one (for ``fit``: with a callback that
stamps epoch starts and ends, so inter-epoch work counts). Runs are interleaved ``--repeats`` times
and the best run of each counts (the least disturbed by other load). Ratios come from one run.

Usage:
    .venv/bin/python benchmarks/bench_gnn_training.py             # about 2-4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_gnn_training.py --quick     # smoke run
    .venv/bin/python benchmarks/bench_gnn_training.py --device cuda --threads 8
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torch_geometric
from torch_geometric.data import Batch, Data
from torch_geometric.utils import coalesce

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gnn import GraphClassifier, fit


def superpixel_like_graphs(
    n: int, *, nodes: int = 75, k: int = 8, classes: int = 10, seed: int = 0
) -> list[Data]:
    """``n`` random graphs shaped like MNIST superpixel graphs (vectorised k-NN over all graphs)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, nodes, 2, generator=g)
    colour = torch.rand(n, nodes, 3, generator=g)
    dist = torch.cdist(pos, pos)
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nbr = dist.topk(k, dim=2, largest=False).indices  # (n, nodes, k)
    src = torch.arange(nodes).view(1, nodes, 1).expand(n, nodes, k).reshape(n, -1)
    dst = nbr.reshape(n, -1)
    edge_index = torch.stack(
        [torch.cat([src, dst], 1), torch.cat([dst, src], 1)], dim=1
    )  # (n, 2, 2 * nodes * k)
    labels = torch.randint(0, classes, (n,), generator=g)
    x = torch.cat([colour, pos], dim=2)
    # Symmetrise: drop the duplicate of every mutual neighbour pair.
    return [
        Data(x=x[i], edge_index=coalesce(edge_index[i], num_nodes=nodes), pos=pos[i], y=labels[i : i + 1])
        for i in range(n)
    ]


class _EpochStamps(L.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.ends.append(time.perf_counter())

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)


def _model(conv: str, seed: int, device: torch.device) -> GraphClassifier:
    torch.manual_seed(seed)
    return GraphClassifier.preset("benchmark", 5, 10, conv=conv).to(device)


def hand_loop(
    conv: str, batches: list[Batch], *, epochs: int, warmup: int, lr: float, device: torch.device
) -> float:
    """Graphs/s of the minimal PyG training loop over the counted epochs."""
    model = _model(conv, 0, device)
    batches = [b.to(device) for b in batches]  # untimed, as for engine(): see there
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = 0.0
    for epoch in range(epochs):
        if epoch == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(batch), batch.y)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return sum(b.num_graphs for b in batches) * (epochs - warmup) / elapsed


def engine(
    conv: str, batches: list[Batch], *, epochs: int, warmup: int, lr: float, device: torch.device
) -> float:
    """Graphs/s of gnn.fit over the counted epochs."""
    model = _model(conv, 0, device)
    stamps = _EpochStamps()
    # Both sides get the batches already on the device, moved before the timer (hand_loop does the
    # same): no host-to-device copies are timed on either side. Lightning's per-batch
    # ``batch.to(device)`` is then a no-op call, which counts as fit's own overhead.
    batches = [b.to(device) for b in batches]
    if device.type == "cuda":
        # the GPU asked for: cuda:N -> devices=[N]; plain "cuda" -> the current one, as torch does
        index = device.index if device.index is not None else torch.cuda.current_device()
        accelerator, devices = "gpu", [index]
    else:
        accelerator, devices = "cpu", 1
    fit(
        model,
        batches,
        epochs=epochs,
        lr=lr,
        progress=False,
        accelerator=accelerator,
        devices=devices,
        callbacks=[stamps],
    )
    elapsed = stamps.ends[-1] - stamps.starts[warmup]
    return sum(b.num_graphs for b in batches) * (epochs - warmup) / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 batches, 2 epochs, 1 warm-up, 1 repeat, unless those options are given",
    )
    parser.add_argument("--convs", default="gcn,gat")
    parser.add_argument("--batches", type=int, default=None, help="batches per epoch (default 4; quick: 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run, warm-up included (default 3; quick: 2)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="warm-up epochs (default 1; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs (default 3; quick: 1)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    # --quick only fills in the options that were not given on the command line
    for name, full, quick in (("batches", 4, 2), ("epochs", 3, 2), ("warmup", 1, 1), ("repeats", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.batches, args.epochs, args.repeats) < 1 or not 0 <= args.warmup < args.epochs:
        parser.error("--batches, --epochs and --repeats must be at least 1, and 0 <= --warmup < --epochs")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    graphs = superpixel_like_graphs(args.batches * args.batch_size)
    batches = [
        Batch.from_data_list(graphs[i : i + args.batch_size]) for i in range(0, len(graphs), args.batch_size)
    ]
    print(
        f"torch {torch.__version__}, torch_geometric {torch_geometric.__version__},"
        f" lightning {L.__version__}, python {platform.python_version()},"
        f" device {device}, threads {torch.get_num_threads()}"
    )
    edges = batches[0].num_edges // args.batch_size
    print(
        f"{len(batches)} batches x {args.batch_size} graphs of 75 nodes ({edges} directed edges each),"
        f" {args.epochs} epochs per run ({args.warmup} warm-up), best of {args.repeats}"
    )
    kwargs = {"epochs": args.epochs, "warmup": args.warmup, "lr": 1e-3, "device": device}
    rows = []
    for conv in args.convs.split(","):
        params = sum(p.numel() for p in _model(conv, 0, device).parameters())
        hand, ours = [], []
        for _ in range(args.repeats):  # interleaved, so slow phases of the machine hit both
            hand.append(hand_loop(conv, batches, **kwargs))
            ours.append(engine(conv, batches, **kwargs))
        rows.append((conv, params, max(hand), max(ours)))
        print(f"  {conv}: hand {[round(v) for v in hand]}  fit {[round(v) for v in ours]} graphs/s")

    print(f"\n{'conv':6s}{'params':>9s}{'hand-written loop':>20s}{'gnn.fit':>12s}{'ratio':>8s}")
    for conv, params, hand, ours in rows:
        print(f"{conv:6s}{params:9d}{hand:16.0f} g/s{ours:8.0f} g/s{ours / hand:8.2f}")
    print("ratio = gnn.fit / hand-written loop (target >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
