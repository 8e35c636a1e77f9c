"""Transfer learning on solar-cell images (elpv), step by step as in the lecture notes.

1. load the data and split it (stratified, seeded);
2. build the preprocessing from the backbone's own config and iterate a DataLoader
   (the first batch is shown through ``next(iter(loader))``);
3. freeze: feature extraction (only the new head trains) or fine-tuning (last blocks + head);
4. train, plot the train/val accuracy curves, evaluate with ``torch.max`` + ``preds.eq(labels).sum()``;
5. draw the 2x10 prediction grid (green = right, red = wrong), save the ``.pth`` and find it again.

Run:  python examples/cnn_transfer_learning.py --strategy feature_extraction
      python examples/cnn_transfer_learning.py --strategy fine_tuning --blocks 2
      python examples/cnn_transfer_learning.py --quick          (a few seconds, for tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import cnn
import engine


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="elpv")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="imagenet, or none for a random-init control")
    p.add_argument(
        "--strategy", default="feature_extraction", choices=("feature_extraction", "fine_tuning", "full")
    )
    p.add_argument("--blocks", type=int, default=2, help="last blocks to train with fine_tuning")
    p.add_argument("--epochs", type=int, default=None, help="default 5 (quick: 1)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--max-per-class", type=int, default=None, help="images kept per class (default: all; quick: 20)"
    )
    p.add_argument("--out", default="runs/transfer")
    p.add_argument(
        "--image-size", type=int, default=None, help="network input size (default: the backbone's; quick: 96)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="20 images per class, 96 px, 1 epoch, unless those options are given",
    )
    args = p.parse_args(argv)
    # --quick only fills in the options that were not given on the command line
    args.epochs = args.epochs if args.epochs is not None else (1 if args.quick else 5)
    if args.max_per_class is None and args.quick:
        args.max_per_class = 20
    if args.image_size is None and args.quick:
        args.image_size = 96
    weights = None if args.weights.lower() == "none" else args.weights
    out = Path(args.out)
    torch.manual_seed(0)
    # Linux: large CPU tensors reuse freed memory instead of new pages, as the pixgraph command does
    # (README, "Memory on the CPU": CNN passes about 2x as fast on the CPU; results unchanged)
    engine.keep_freed_memory()

    # 1. data
    data = cnn.load_dataset(args.data, max_per_class=args.max_per_class)
    train_idx, val_idx, test_idx = cnn.split(data.targets, val=0.15, test=0.15, seed=0)
    print(
        f"{args.data}: {len(data)} images, classes {data.classes}; train/val/test {len(train_idx)}/"
        f"{len(val_idx)}/{len(test_idx)}"
    )

    # 2. model, preprocessing from its config, loaders
    model = cnn.create_backbone(args.backbone, weights=weights, num_classes=len(data.classes))
    if args.image_size:  # a smaller input: faster, usually less accurate (the weights were trained at cfg's)
        model.cfg = dataclasses.replace(model.cfg, input_size=args.image_size)
    train_ds = data.subset(train_idx).with_transform(cnn.build_transforms(model, train=True))
    val_ds = data.subset(val_idx).with_transform(cnn.build_transforms(model, train=False))
    test_ds = data.subset(test_idx).with_transform(cnn.build_transforms(model, train=False))
    g = torch.Generator().manual_seed(0)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, generator=g)
    val_loader = DataLoader(val_ds, batch_size=64)
    test_loader = DataLoader(test_ds, batch_size=64)
    images, labels = next(iter(train_loader))
    print(f"first batch: images {tuple(images.shape)}, labels {labels[:10].tolist()}")
    cnn.show_images(
        images[:8], model.cfg, labels=labels[:8], classes=data.classes, path=out / "first_batch.png"
    )

    # 3. freeze
    cnn.freeze(model, args.strategy, trainable_blocks=args.blocks if args.strategy == "fine_tuning" else None)
    trainable, total = cnn.count_parameters(model)
    print(f"{args.strategy}: {trainable:,} of {total:,} parameters train")

    # 4. train, curves, evaluate
    t0 = time.perf_counter()
    history = cnn.fit(
        model,
        train_loader,
        val_loader,
        epochs=args.epochs,
        lr=args.lr,
        checkpoint_dir=out / "checkpoints",
        progress=not args.quick,
    )
    print(f"trained {args.epochs} epochs in {time.perf_counter() - t0:.1f} s")
    cnn.plot_history(history, path=out / "accuracy.png")
    result = cnn.evaluate(model, test_loader)
    print(
        f"test accuracy {result['accuracy']:.4f} ({result['correct']}/{result['n']}), "
        f"macro-F1 {result['macro_f1']:.4f}"
    )

    # 5. prediction grid, checkpoint
    preds, _ = cnn.predict(model, test_loader)
    n = min(20, len(test_ds))
    shown = torch.stack([test_ds[i][0] for i in range(n)])
    cnn.plot_predictions(
        shown,
        data.targets[test_idx][:n],
        preds[:n].numpy(),
        data.classes,
        cfg=model.cfg,
        rows=2 if n > 10 else 1,
        cols=min(10, n),
        path=out / "predictions.png",
    )
    cnn.save_checkpoint(model, out / f"{args.backbone}_{args.strategy}.pth", classes=data.classes)
    print("checkpoints:", [str(c) for c in cnn.find_checkpoints(out)])
    return result


if __name__ == "__main__":
    main()
