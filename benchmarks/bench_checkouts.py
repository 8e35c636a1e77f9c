"""Benchmark: the tensor path of several checkouts of pixgraph, side by side in one run.

A ratio against the scikit-image baseline moves with the state of a shared machine (torch and
scikit-image do not slow down alike), so a lower ratio than last week's does not tell whether the
code got slower. This script answers that question: it times ``slic_batch`` and
:meth:`bridge.convert.ImageToGraph.batch_tensor` (``slic_torch``, colour + centroid or ``--features``,
region edges, 32 uint8 photo crops of 224 px or ``--size``, 75 segments; ``--gray``: the crops in grey,
given as RGB) for the code of every checkout given, in a fresh process per checkout (each imports its own
``bridge``), in interleaved rounds, with this environment's packages. Printed: images/s (best over
the rounds) and the ratio to the first checkout, with the nodes per graph each one builds.

Usage:
    git worktree add /tmp/old <commit>
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old .       # 3 rounds, about 1 minute
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --rounds 1 --images 4   # smoke run
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --cnn   # also CNN node features (~3 minutes)
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --size 160 --gray   # make demo's elpv view
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --features color_mean,color_std,centroid
    .venv/bin/python benchmarks/bench_checkouts.py /tmp/old . --labels elpv:160 photos:224   # same labels?
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent

# run in a child process with the checkout first on sys.path (bench_scaling.measure: the default
# back-end, slic_torch in every checkout since ae20d29); prints one JSON line
_CHILD = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
from bench_graph_building import sample_images
from bench_scaling import measure
from bridge.slic import slic_batch
n, repeats, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
imgs = torch.from_numpy(np.stack(sample_images(n, size)))
if sys.argv[7] == "gray":  # grey photos as RGB (R = G = B), as pixgraph compare gives elpv and MNIST
    imgs = imgs.float().mul(torch.tensor([0.299, 0.587, 0.114])).sum(-1).round().to(torch.uint8)
    imgs = imgs.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
x = imgs.float() / 255
slic_batch(x, n_segments=75)  # warm-up, untimed, as measure() and best() do
slic = float("inf")
for _ in range(repeats):
    t = time.perf_counter(); slic_batch(x, n_segments=75); slic = min(slic, time.perf_counter() - t)
tensor, nodes = measure(imgs, 75, repeats, sys.argv[8].split(","))
out = {"slic": n / slic, "tensor": n / tensor, "nodes": nodes}
if sys.argv[5] == "cnn":  # CNN node features: the backbone alone, the pooling alone, the whole path
    from bridge.convert import ImageToGraph
    from bridge.features import pool_feature_maps
    from cnn.backbones import create_backbone
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", weights=None).eval()
    conv = ImageToGraph(features=("color_mean", "centroid"), edges="region", backbone=backbone)
    labels = slic_batch(x, n_segments=75)
    prep = conv.cnn.preprocess(x)
    with torch.inference_mode():
        maps = conv.cnn._select(backbone.features(prep))
    def best(fn):
        fn()
        seconds = float("inf")
        for _ in range(repeats):
            t = time.perf_counter(); fn(); seconds = min(seconds, time.perf_counter() - t)
        return n / seconds
    with torch.inference_mode():
        out["bare"] = best(lambda: backbone.features(prep))
        out["pool"] = best(lambda: pool_feature_maps(maps, labels))
    out["cnn"] = best(lambda: conv.batch_tensor(imgs))
print(json.dumps(out))
"""


# labels of every image of each setting, saved to one .npz (argv[3]); settings "<data>:<size>" (every image
# of a pixgraph compare dataset as compare prepares it, 75 segments, batches of 32) or "photos:<size>"
# (the 32 photo crops, 25 / 75 / 200 segments)
_LABELS_CHILD = """
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
from bench_graph_building import sample_images
from bridge.slic import slic_batch
out = {}
for spec in sys.argv[4:]:
    name, size = spec.split(":")[0], int(spec.split(":")[1])
    if name == "photos":
        x = torch.from_numpy(np.stack(sample_images(32, size))).float() / 255
        for n in (25, 75, 200):
            out[f"photos:{size}:{n}"] = slic_batch(x, n_segments=n).numpy()
        continue
    from bridge.compare.config import CompareConfig
    from bridge.compare.workbench import Workbench
    cfg = CompareConfig(data=name, image_size=size, seeds=(0,), device="cpu", weights=None)
    images = Workbench(cfg, None, log=lambda m: None, progress=False, download=False).data.images
    x = torch.from_numpy(images).float() / 255
    maps = [slic_batch(x[i : i + 32], n_segments=75) for i in range(0, len(x), 32)]
    out[f"{name}:{size}:75"] = torch.cat(maps).numpy()
np.savez_compressed(sys.argv[3], **out)
"""


def compare_labels(roots: list[Path], settings: list[str]) -> None:
    """Label maps of every checkout on the same images (:data:`_LABELS_CHILD`), against the first one's:
    pixels and images with another label."""
    with tempfile.TemporaryDirectory() as tmp:
        got = []
        for k, root in enumerate(roots):
            path = Path(tmp) / f"{k}.npz"
            cmd = [sys.executable, "-c", _LABELS_CHILD, str(root), str(HERE), str(path), *settings]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"labels of {root} failed:\n{done.stderr.strip()[-2000:]}")
            with np.load(path) as f:
                got.append({key: f[key] for key in f.files})
    print(
        "| setting (data:size:segments) | images | pixels | checkout | pixels differing | images differing |"
    )
    print("|---|---:|---:|---|---:|---:|")
    for key, ref in got[0].items():
        for root, labels in zip(roots[1:], got[1:]):
            diff = (labels[key] != ref).reshape(len(ref), -1)
            print(
                f"| {key} | {len(ref)} | {ref.size} | {describe(root)} | {int(diff.sum())} | "
                f"{int(diff.any(1).sum())} |"
            )


def run_child(
    checkout: Path,
    images: int,
    repeats: int,
    cnn: bool = False,
    size: int = 224,
    gray: bool = False,
    features: str = "color_mean,centroid",
) -> dict[str, float]:
    """Time one checkout in a fresh interpreter; returns images/s of every stage and nodes per graph."""
    cmd = [sys.executable, "-c", _CHILD, str(checkout), str(HERE), str(images), str(repeats)]
    cmd += ["cnn" if cnn else "-", str(size), "gray" if gray else "-", features]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"timing {checkout} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(root: Path) -> str:
    """``root`` and the commit checked out there (``git rev-parse --short HEAD``; ``?`` outside git)."""
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return f"{root} ({done.stdout.strip() or '?'})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkouts", nargs="+", type=Path, help="repository roots (worktrees); first = reference")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the checkouts (default 3)")
    ap.add_argument("--images", type=int, default=32, help="images per batch (default 32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per stage and round (default 5)")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    ap.add_argument(
        "--gray",
        action="store_true",
        help="grey photos given as RGB (R = G = B), as pixgraph compare gives elpv and MNIST",
    )
    ap.add_argument(
        "--features",
        default="color_mean,centroid",
        help="node features of batch_tensor, comma-separated (default color_mean,centroid; pixgraph "
        "compare's: color_mean,color_std,centroid)",
    )
    ap.add_argument(
        "--labels",
        nargs="+",
        metavar="DATA:SIZE",
        help="instead of timing: compare the label maps of every checkout with the first one's, on every "
        "image of pixgraph compare datasets (e.g. elpv:160 mnist5k:64) or on the photo crops (photos:224)",
    )
    ap.add_argument(
        "--cnn",
        action="store_true",
        help="also time CNN node features (efficientnet_lite0, weights=None, last 3 stages): the bare "
        "backbone, pool_feature_maps alone and batch_tensor with the backbone",
    )
    args = ap.parse_args(argv)
    roots = [c.resolve() for c in args.checkouts]
    for root in roots:
        if not (root / "bridge" / "slic.py").is_file():
            raise SystemExit(f"{root} has no bridge/slic.py; give the root of a pixgraph checkout")
    if min(args.rounds, args.images, args.repeats) < 1:
        raise SystemExit("--rounds, --images and --repeats must be at least 1")
    if args.size < 16:
        raise SystemExit(f"--size must be at least 16 pixels, got {args.size}")
    if args.labels:
        bad = [s for s in args.labels if len(s.split(":")) != 2 or not s.split(":")[1].isdigit()]
        if bad:
            raise SystemExit(f"--labels takes DATA:SIZE settings such as elpv:160 or photos:224, got {bad}")
        compare_labels(roots, args.labels)
        return
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}; "
        f"{args.images} {'grey ' if args.gray else ''}images of {args.size} px, 75 segments, "
        f"features {args.features}, "
        f"best of {args.rounds} rounds x {args.repeats} calls"
    )
    runs: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            runs[root].append(
                run_child(root, args.images, args.repeats, args.cnn, args.size, args.gray, args.features)
            )
    best = {
        root: {key: (value if key == "nodes" else max(r[key] for r in got)) for key, value in got[0].items()}
        for root, got in runs.items()
    }
    ref = best[roots[0]]
    print("| checkout | slic_batch images/s | vs first | batch_tensor images/s | vs first | nodes/graph |")
    print("|---|---:|---:|---:|---:|---:|")
    for root in roots:
        r = best[root]
        print(
            f"| {describe(root)} | {r['slic']:.0f} | {r['slic'] / ref['slic']:.2f}x | {r['tensor']:.0f} | "
            f"{r['tensor'] / ref['tensor']:.2f}x | {r['nodes']:.1f} |"
        )
    if args.cnn:
        print("\nCNN node features (images/s; the last column: the whole path over the bare backbone)")
        print(
            "| checkout | bare backbone | pool_feature_maps | vs first | batch_tensor + CNN | vs first "
            "| / bare |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for root in roots:
            r = best[root]
            print(
                f"| {describe(root)} | {r['bare']:.1f} | {r['pool']:.0f} | {r['pool'] / ref['pool']:.2f}x | "
                f"{r['cnn']:.1f} | {r['cnn'] / ref['cnn']:.2f}x | {r['cnn'] / r['bare']:.2f} |"
            )


if __name__ == "__main__":
    main()
