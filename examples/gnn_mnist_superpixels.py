"""A GCN on MNIST digits turned into superpixel graphs (the Benchmarking-GNNs set-up, small).

1. Load mnist5k (5,000 MNIST digits, 500 per class) and split it (70 / 10 / 20, stratified).
2. Turn each image into a graph: about 75 SLIC superpixels as nodes, node features = mean
   colour + centroid (5 numbers), edges between touching superpixels.
3. Train the Benchmarking-GNNs GCN (4 layers, about 100k parameters, mean readout, residual,
   batch norm) with gnn.fit, pick the epoch with the best validation loss, report test accuracy
   next to the Benchmarking-GNNs figure for GCN on full MNIST (55,000 training graphs): 90.7%.

Run:
    python examples/gnn_mnist_superpixels.py                 # all 5,000 digits, 60 epochs
    python examples/gnn_mnist_superpixels.py --quick         # 400 digits, 2 epochs (smoke run)
    python examples/gnn_mnist_superpixels.py --conv gat --out runs/mnist_gat.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch_geometric
from torch_geometric.loader import DataLoader

from bridge import ImageToGraph
from cnn import load_dataset, split
from gnn import GraphClassifier, evaluate, fit, list_convs, load_checkpoint

BENCHMARK_GCN_MNIST = 0.9071  # Dwivedi et al., Benchmarking Graph Neural Networks, GCN on MNIST, 100k budget


def subsample(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(idx):
        return np.asarray(idx)
    return np.random.default_rng(seed).choice(idx, size=n, replace=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="400 digits, 2 epochs unless --epochs is given: checks that everything runs",
    )
    parser.add_argument("--conv", default="gcn", choices=list_convs())
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 60; quick: 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-segments", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-dir", default=None, help="keep checkpoints here (resumable); default: temp"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 60)

    t0 = time.perf_counter()
    dataset = load_dataset("mnist5k")
    train_idx, val_idx, test_idx = split(dataset.targets, val=0.1, test=0.2, seed=args.seed)
    if args.quick:
        train_idx = subsample(train_idx, 280, args.seed)
        val_idx = subsample(val_idx, 40, args.seed)
        test_idx = subsample(test_idx, 80, args.seed)
    converter = ImageToGraph(n_segments=args.n_segments, features=("color_mean", "centroid"), edges="region")
    print(converter)

    def graphs(indices: np.ndarray) -> list:
        return [converter(*dataset[int(i)]) for i in indices]

    train, val, test = graphs(train_idx), graphs(val_idx), graphs(test_idx)
    nodes = np.array([g.num_nodes for g in train])
    print(
        f"{len(train)} / {len(val)} / {len(test)} graphs (train / val / test) built in "
        f"{time.perf_counter() - t0:.1f} s; nodes per graph {nodes.mean():.1f} (min {nodes.min()}, "
        f"max {nodes.max()}); {train[0].num_features} features per node"
    )

    torch.manual_seed(args.seed)
    model = GraphClassifier.preset("benchmark", train[0].num_features, len(dataset.classes), conv=args.conv)
    n_params = sum(p.numel() for p in model.parameters())
    print(model)

    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val, batch_size=args.batch_size)
    test_loader = DataLoader(test, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = Path(args.checkpoint_dir or tmp)
        t1 = time.perf_counter()
        history = fit(
            model,
            train_loader,
            val_loader,
            epochs=epochs,
            lr=args.lr,
            scheduler="cosine",
            checkpoint_dir=ckpt_dir,
            seed=args.seed,
            progress=not args.quick,
        )
        train_time = time.perf_counter() - t1
        last = evaluate(model, test_loader)
        load_checkpoint(ckpt_dir / "best.pth", model)  # weights of the epoch with the best val_loss
        best_epoch = int(np.argmin(history.val_loss)) + 1
    result = evaluate(model, test_loader)

    print(f"\nepochs trained: {len(history)} in {train_time:.0f} s; best val_loss at epoch {best_epoch}")
    print(f"{'':34s}{'accuracy':>10s}{'macro-F1':>10s}")
    print(f"{'test, best-val epoch':34s}{result['accuracy']:10.4f}{result['macro_f1']:10.4f}")
    print(f"{'test, last epoch':34s}{last['accuracy']:10.4f}{last['macro_f1']:10.4f}")
    print(f"{'Benchmarking-GNNs GCN, full MNIST':34s}{BENCHMARK_GCN_MNIST:10.4f}{'':>10s}")
    print(
        f"(here: {len(train)} training graphs from mnist5k; the benchmark trains on 55,000 MNIST graphs,"
        " so expect lower accuracy)"
    )

    if args.out:
        report = {
            "conv": args.conv,
            "params": n_params,
            "converter": repr(converter),
            "model": model.config,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "epochs": len(history),
            "best_epoch": best_epoch,
            "test": result,
            "test_last_epoch": last,
            "benchmark_gcn_mnist": BENCHMARK_GCN_MNIST,
            "history": history.to_dict(),
            "seed": args.seed,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torch_geometric": torch_geometric.__version__,
            },
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp_out = Path(args.out).with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(report, indent=2, default=str))
        tmp_out.replace(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
