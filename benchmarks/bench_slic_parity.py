"""Benchmark: quality parity of ``method="slic_torch"`` (the default) with scikit-image's SLIC.

For every image size (112, 224, 448 px) and segment count asked (25, 75, 200, 400), both back-ends
segment the same images (square crops of scikit-image's sample photos, as in
``bench_graph_building.py``) with the same request (``compactness=10``, ``sigma=0``), through
:func:`bridge.segmentation.superpixels_batch`. Printed per cell, as ratios slic_torch / scikit-image:

- **count**: superpixels returned, summed over the images (the default's condition: within 5 %);
- **RMS**: the root mean square CIELAB distance of each pixel to its superpixel's mean colour
  (lower = more homogeneous superpixels; the condition: not worse, ratio <= 1).

Usage:
    .venv/bin/python benchmarks/bench_slic_parity.py            # 12 images per cell (about 1 minute)
    .venv/bin/python benchmarks/bench_slic_parity.py --quick    # 3 images, 2 sizes
    .venv/bin/python benchmarks/bench_slic_parity.py --cell-px 1000 --max-iter 10 --downsample 1
        # slic_torch iterating on the full image, as scikit-image does
    .venv/bin/python benchmarks/bench_slic_parity.py --data elpv --sizes 160 224 --segments 25 75 200
        # the same on a dataset of pixgraph compare (its first images at each size) instead of photos
    .venv/bin/python benchmarks/bench_slic_parity.py --why
        # also where scikit-image's superpixels go: centres seeded, clusters that keep pixels, clusters
        # with a 4-connected piece of at least min_size pixels (the ones its merging keeps)
    .venv/bin/python benchmarks/bench_slic_parity.py --min-size-factor 0.55
        # slic_torch merging pieces under 0.55 instead of 0.5 of the pixels per superpixel asked
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_graph_building import colour_rms, sample_images  # noqa: E402

SIZES = (112, 224, 448)
SEGMENTS = (25, 75, 200, 400)


def dataset_images(name: str, n: int, size: int) -> list[np.ndarray]:
    """The first ``n`` images of ``pixgraph compare --data name`` at ``size`` px (uint8, as compare sees
    them; grayscale sets come as three equal channels)."""
    from bridge.compare.config import CompareConfig
    from bridge.compare.workbench import Workbench

    cfg = CompareConfig(data=name, max_per_class=max(n, 4), image_size=size, seeds=(0,), device="cpu")
    images = Workbench(cfg, None, log=lambda _msg: None, progress=False).data.images[:n]
    return list(images)


def parity(images: Sequence[np.ndarray], n_segments: int, **slic_torch: float) -> dict[str, float]:
    """Counts and colour RMS of both back-ends on ``images``, and their ratios (torch / scikit-image).

    ``slic_torch``: options of :func:`bridge.slic.slic_batch` (``cell_px``, ``max_iter``,
    ``downsample``, ``min_size_factor``) instead of the back-end's defaults.
    """
    from bridge.segmentation import superpixels_batch
    from bridge.slic import slic_batch

    sk = superpixels_batch(images, n_segments=n_segments, method="slic")
    if slic_torch:
        batch = np.stack(images).astype(np.float32) / 255.0
        th = list(slic_batch(batch, n_segments=n_segments, **slic_torch))
    else:
        th = superpixels_batch(images, n_segments=n_segments, method="slic_torch")
    count_sk = sum(int(lab.max()) + 1 for lab in sk)
    count_th = sum(int(lab.max()) + 1 for lab in th)
    rms_sk = float(np.mean([colour_rms(im, lab) for im, lab in zip(images, sk)]))
    rms_th = float(np.mean([colour_rms(im, lab) for im, lab in zip(images, th)]))
    return {
        "count_sk": count_sk / len(images),
        "count_th": count_th / len(images),
        "count_ratio": count_th / count_sk,
        "rms_sk": rms_sk,
        "rms_th": rms_th,
        "rms_ratio": rms_th / rms_sk,
    }


def fragmentation(images: Sequence[np.ndarray], n_segments: int) -> dict[str, float]:
    """Where scikit-image's superpixels go, per image on average: ``centres`` seeded (its grid),
    ``clusters`` that own pixels after the k-means iterations (no connectivity step), ``kept``
    clusters with a 4-connected piece of at least ``min_size`` pixels (scikit-image's threshold:
    half of the pixels per centre), ``final`` superpixels after its connectivity step.

    A cluster whose pieces are all smaller than ``min_size`` is merged away whole: ``clusters - kept``
    is the count lost to fragmentation (``final`` can exceed ``kept``: scikit-image also splits
    pieces over ``max_size``, three times the pixels per centre).
    """
    from skimage.measure import label as components
    from skimage.segmentation import slic

    from bridge.slic import _seeds_per_side

    out = {"centres": 0.0, "clusters": 0.0, "kept": 0.0, "final": 0.0}
    for im in images:
        common = {"n_segments": n_segments, "compactness": 10, "sigma": 0, "start_label": 0}
        raw = slic(im, enforce_connectivity=False, **common)
        final = slic(im, **common)
        gh, gw = _seeds_per_side(im.shape[0], im.shape[1], n_segments)
        min_size = int(0.5 * raw.size / (gh * gw))
        piece = components(raw, background=-1, connectivity=1).ravel()  # pieces of equal ids
        size = np.bincount(piece)
        owner = np.zeros(size.shape[0], np.int64)
        owner[piece] = raw.ravel()  # the cluster of every piece
        largest = np.zeros(int(raw.max()) + 1, np.int64)
        np.maximum.at(largest, owner[1:], size[1:])
        out["centres"] += gh * gw
        out["clusters"] += np.unique(raw).size
        out["kept"] += int((largest >= min_size).sum())
        out["final"] += int(final.max()) + 1
    return {k: v / len(images) for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help="images per cell (default 12; quick: 3)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help=f"image sizes (default {' '.join(map(str, SIZES))}; quick: 112 224)",
    )
    parser.add_argument(
        "--segments",
        type=int,
        nargs="+",
        default=list(SEGMENTS),
        help=f"superpixels asked (default {' '.join(map(str, SEGMENTS))})",
    )
    parser.add_argument(
        "--data",
        default="photos",
        help="photos (default: crops of scikit-image's sample photos) or a dataset of pixgraph compare",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 images, sizes 112 and 224, unless those options are given"
    )
    parser.add_argument(
        "--why", action="store_true", help="also print where scikit-image's superpixels go (fragmentation)"
    )
    for name, what in (
        ("cell-px", "pixels per cell side of the iterations (default 4; 1000 = the working copy)"),
        ("max-iter", "k-means iterations (default 5)"),
        ("downsample", "working-copy factor (default: automatic; 1 = full resolution)"),
    ):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"slic_torch option: {what}")
    parser.add_argument(
        "--min-size-factor",
        type=float,
        default=None,
        help="slic_torch option: pieces under this share of H * W / n_segments pixels merge (default 0.5)",
    )
    args = parser.parse_args(argv)
    opts = {
        k: v
        for k, v in (
            ("cell_px", args.cell_px),
            ("max_iter", args.max_iter),
            ("downsample", args.downsample),
            ("min_size_factor", args.min_size_factor),
        )
        if v is not None
    }
    # --quick only fills in the options that were not given on the command line
    args.images = args.images if args.images is not None else (3 if args.quick else 12)
    args.sizes = args.sizes if args.sizes is not None else ([112, 224] if args.quick else list(SIZES))
    what = "photo crops" if args.data == "photos" else f"{args.data} images"
    print(
        f"slic_torch{opts or ''} / scikit-image SLIC, {args.images} {what} per cell, compactness 10; "
        "count ratio (target 0.95 .. 1.05) and within-superpixel CIELAB RMS ratio (target <= 1)"
    )
    print("| size | segments asked | count sk | count torch | count ratio | RMS sk | RMS torch | RMS ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")

    def load(size: int) -> list[np.ndarray]:
        if args.data == "photos":
            return sample_images(args.images, size, seed=size)
        return dataset_images(args.data, args.images, size)

    ok = True
    for size in args.sizes:
        images = load(size)
        for n in args.segments:
            r = parity(images, n, **opts)
            good = 0.95 <= r["count_ratio"] <= 1.05 and r["rms_ratio"] <= 1.0
            ok &= good
            print(
                f"| {size} | {n} | {r['count_sk']:.1f} | {r['count_th']:.1f} | {r['count_ratio']:.3f} | "
                f"{r['rms_sk']:.2f} | {r['rms_th']:.2f} | {r['rms_ratio']:.3f}{'' if good else ' (!)'} |"
            )
    print(f"parity in every cell: {'yes' if ok else 'no (cells marked (!))'}")
    if args.why:
        print(
            "\nscikit-image, per image: centres seeded, clusters owning pixels, "
            "clusters with a piece >= min_size, final"
        )
        print("| size | segments asked | centres | clusters | kept | final |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            images = load(size)
            for n in args.segments:
                f = fragmentation(images, n)
                cols = " | ".join(f"{f[k]:.1f}" for k in ("centres", "clusters", "kept", "final"))
                print(f"| {size} | {n} | {cols} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
