"""Benchmark: ``gnn.models.dropout`` (a ``torch.rand_like`` mask) against ``F.dropout`` (torch's Bernoulli).

In one process, interleaved, the fastest of ``--repeats`` for every call:

- the dropout alone on the hidden node features of a batch of 32 superpixel graphs (65 nodes each;
  width 64, the default of arms C and D of ``pixgraph compare``, and 146, the width of
  ``GraphClassifier.preset("benchmark", ...)``) in training mode, forward only;
- a training step (forward, cross-entropy, backward, Adam) of a 4-layer GCN ``GraphClassifier`` of
  each width with ``dropout=0.5`` on such a batch, with the model's dropout as it is and with
  ``F.dropout`` put back in its place.

Printed: microseconds (or ms) per call of each and the ratio F.dropout / ours.

Usage:
    .venv/bin/python benchmarks/bench_dropout.py            # about 30 s on 2 cores
    .venv/bin/python benchmarks/bench_dropout.py --quick
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_graph_building import time_units  # noqa: E402


def fastest(fns: dict[str, Callable[[], object]], repeats: int, calls: int) -> dict[str, float]:
    """Seconds per call of each function after one warm-up call: ``calls`` work units of one call each,
    timed by :func:`bench_graph_building.time_units` (interleaved, the best of ``repeats`` per unit)."""
    for fn in fns.values():
        fn()
    total = time_units({name: [fn] * calls for name, fn in fns.items()}, repeats)
    return {name: seconds / calls for name, seconds in total.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; quick 1)")
    p.add_argument("--calls", type=int, default=None, help="calls per round (default 20; quick 2)")
    p.add_argument("--quick", action="store_true", help="1 round of 2 calls, unless given")
    args = p.parse_args(argv)
    for name, full, quick in (("repeats", 5, 1), ("calls", 20, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)

    from torch_geometric.data import Batch, Data

    from gnn import models

    torch.manual_seed(0)
    nodes = 32 * 65
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, best of {args.repeats} rounds x {args.calls} calls")
    print("| work | F.dropout | gnn.models.dropout | F.dropout / ours |")
    print("|---|---:|---:|---:|")
    for width in (64, 146):
        x = torch.randn(nodes, width)
        t = fastest(
            {"torch": lambda x=x: F.dropout(x, 0.5, True), "ours": lambda x=x: models.dropout(x, 0.5, True)},
            args.repeats,
            args.calls,
        )
        print(
            f"| dropout 0.5 of ({nodes}, {width}) | {t['torch'] * 1e6:.0f} us | {t['ours'] * 1e6:.0f} us "
            f"| {t['torch'] / t['ours']:.2f}x |"
        )

    graphs = []
    for i in range(32):
        pos = torch.rand(65, 2)
        src = torch.arange(65).repeat_interleave(6)
        dst = torch.cdist(pos, pos).topk(7, largest=False).indices[:, 1:].reshape(-1)
        graphs.append(Data(x=torch.randn(65, 5), edge_index=torch.stack([src, dst]), y=torch.tensor([i % 2])))
    batch = Batch.from_data_list(graphs)
    ours = models.dropout
    for hidden in (64, 146):
        model = models.GraphClassifier(5, 2, conv="gcn", hidden=hidden, layers=4, dropout=0.5).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> object:
            opt.zero_grad()
            loss = F.cross_entropy(model(batch), batch.y)
            loss.backward()
            opt.step()
            return loss

        def with_torch(step: Callable[[], object] = step) -> object:
            models.dropout = lambda x, p, training=True: F.dropout(x, p, training)  # type: ignore[assignment]
            try:
                return step()
            finally:
                models.dropout = ours

        t = fastest({"torch": with_torch, "ours": step}, args.repeats, args.calls)
        print(
            f"| GCN training step, 4 x {hidden}, dropout 0.5, 32 graphs | {t['torch'] * 1e3:.2f} ms | "
            f"{t['ours'] * 1e3:.2f} ms | {t['torch'] / t['ours']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
