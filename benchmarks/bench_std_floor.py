"""Validation experiment: how to standardise features that are (nearly) constant on the training split.

``bridge.compare.workbench.scale_of`` divides each feature by its training std, floored at
``STD_FLOOR`` times the median std. This script is where that floor was chosen, on validation data
only: scikit-learn's digits (8 px, upscaled to 64 px with ``cv2.INTER_LINEAR``, grey -> RGB),
efficientnet_lite0's ImageNet embedding (1280 dims), a random 1257 / 270 train / validation split
(seed 0; the test images are never used), and a linear probe trained with Adam (lr 1e-3, batch 32,
60 epochs) on features standardised by each rule. Printed: the constant dims, and per rule the best
validation loss and the validation accuracy at that epoch, without and with weight decay 1e-3.

Usage:
    .venv/bin/python benchmarks/bench_std_floor.py      # about 20 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """``(1797, 1280)`` embeddings of the upscaled digits and their ``(1797,)`` labels."""
    import cv2
    from sklearn.datasets import load_digits

    from cnn.backbones import create_backbone
    from cnn.transforms import normalize_images

    digits = load_digits()
    grey = [(im / 16 * 255).astype(np.uint8) for im in digits.images]
    images = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_LINEAR) for im in grey])
    images = np.repeat(images[..., None], 3, axis=-1)
    model = create_backbone("efficientnet_lite0", weights="imagenet").eval()
    with torch.inference_mode():
        emb = torch.cat(
            [
                model.embed(normalize_images(images[i : i + 128], model.cfg.mean, model.cfg.std))
                for i in range(0, len(images), 128)
            ]
        )
    return emb.float(), torch.as_tensor(digits.target)


def probe(
    xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, wd: float
) -> tuple[float, float]:
    """Best validation loss of a linear probe over 60 epochs, and the validation accuracy at that epoch."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(xtr.shape[1], int(ytr.max()) + 1)
    opt = torch.optim.Adam(lin.parameters(), 1e-3, weight_decay=wd)
    best, best_acc = float("inf"), 0.0
    for _ in range(60):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 32):
            b = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(lin(xtr[b]), ytr[b]).backward()
            opt.step()
        with torch.no_grad():
            logits = lin(xva)
            loss = float(F.cross_entropy(logits, yva))
        if loss < best:
            best, best_acc = loss, float((logits.argmax(1) == yva).float().mean())
    return best, best_acc


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    emb, y = embeddings()
    idx = np.random.default_rng(0).permutation(len(emb))
    tr, va = torch.as_tensor(idx[:1257]), torch.as_tensor(idx[1257:1527])
    sd, mu = emb[tr].std(0), emb[tr].mean(0)
    med = float(torch.quantile(sd, 0.5))
    print(
        f"{sd.numel()} dims, median std {med:.3f}; "
        f"std < 1e-6: {int((sd < 1e-6).sum())}, < 0.1: {int((sd < 0.1).sum())}"
    )
    rules = {
        "std, floor 1e-6 (before)": sd.clamp_min(1e-6),
        "std, 1 for constant dims (scikit-learn)": torch.where(sd < 1e-6, torch.ones_like(sd), sd),
        "std, floor 0.1 x median (scale_of)": sd.clamp_min(0.1 * med),
        "std, floor 0.3 x median": sd.clamp_min(0.3 * med),
    }
    print("| rule | val loss, wd 0 | val acc, wd 0 | val loss, wd 1e-3 | val acc, wd 1e-3 |")
    print("|---|---:|---:|---:|---:|")
    for name, scale in rules.items():
        xtr, xva = (emb[tr] - mu) / scale, (emb[va] - mu) / scale
        l0, a0 = probe(xtr, y[tr], xva, y[va], 0.0)
        l3, a3 = probe(xtr, y[tr], xva, y[va], 1e-3)
        print(f"| {name} | {l0:.3f} | {a0:.3f} | {l3:.3f} | {a3:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
