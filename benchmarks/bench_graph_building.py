"""Benchmark: image -> graph building, against the pipeline a user writes by hand.

Part 1 (graph building, 224x224, 75 segments, colour + position features, region-adjacency edges):

- baseline: ``skimage.segmentation.slic`` + ``skimage.graph.rag_mean_color`` (edges and mean colour)
  + a Python loop over segments for the centroids (``np.nonzero(labels == i)``), then ``Data``;
- ours: ``bridge.ImageToGraph(features=("color_mean", "centroid"), edges="region")`` with scikit-image's
  SLIC (``method="slic"``) and with the default ``slic_torch``, one image per call; ``ImageToGraph.batch``
  of the 32 images (NumPy arrays); and the tensor path, ``ImageToGraph.batch_tensor`` of one
  ``(32, 224, 224, 3)`` uint8 tensor (segmentation, statistics, edges and graphs in torch);
- PyG's ``torch_geometric.transforms.ToSLIC`` alone (mean colour + centroid, *no edges*);
- ours (and the baseline) on 32x32 images.

Part 2 (CNN node features, efficientnet_lite0, batches of 32 at 224x224, same torch threads):

- bare backbone: ``backbone.features(x)`` on the already preprocessed batch;
- CNN node features with the segments given (``ImageToGraph.assemble``: resize/normalise with the
  backbone's config + forward + pooling of the stages into the nodes + the ``Data`` objects), with
  the default last 3 stages and with all 5;
- the whole image -> graph: ``ImageToGraph.batch`` (NumPy images) with grid patches, scikit-image's
  SLIC and ``slic_torch``, and ``ImageToGraph.batch_tensor`` of a uint8 tensor batch (the tensor path);
  the segmentation part alone for reference;
- the bare backbone and the tensor path again with ``cnn.fold_batchnorm(backbone)`` (BatchNorm folded
  into the convolutions), each against the unfolded bare backbone and the tensor path also against the
  folded one.

Every pipeline runs on the same images in one process. Each work unit (an image in part 1, a batch
in part 2) runs ``--repeats`` times, interleaved across the pipelines; the best time of each unit
counts (the least disturbed by other load on a shared machine). Ratios come from one run.

By default the process keeps glibc's malloc as it is, as a Python session does; ``--keep-freed-memory``
times it as the ``pixgraph`` command runs (:func:`engine.memory.keep_freed_memory`: the backbone's large
activations reuse freed memory instead of new pages, which makes the bare backbone faster and so
lowers the part 2 ratios).

Usage:
    .venv/bin/python benchmarks/bench_graph_building.py            # full (about 3-4 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_graph_building.py --quick    # smoke run
    .venv/bin/python benchmarks/bench_graph_building.py --profile 10   # where the tensor path's time goes
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

if __name__ == "__main__":  # run as a script: this checkout's packages first, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sample_images(n: int, size: int, *, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 RGB images ``(size, size, 3)``: random square crops of scikit-image's sample photos."""
    from skimage import data, transform

    photos = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
    ]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = transform.resize(photo[y : y + side, x : x + side], (size, size), anti_aliasing=True)
        out.append((crop * 255).round().astype(np.uint8))
    return out


def baseline_graph(image: np.ndarray, n_segments: int = 75, compactness: float = 10.0):
    """What a user writes from the anchors: slic + rag_mean_color + a loop over segments."""
    from skimage import graph, segmentation
    from torch_geometric.data import Data

    labels = segmentation.slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
    rag = graph.rag_mean_color(image, labels)
    h, w = labels.shape
    x = []
    for node in sorted(rag.nodes):
        ys, xs = np.nonzero(labels == node)
        mean = np.asarray(rag.nodes[node]["mean color"]) / 255.0
        x.append(np.concatenate([mean, [xs.mean() / (w - 1), ys.mean() / (h - 1)]]))
    edges = np.array([(a, b) for a, b in rag.edges if a != b], dtype=np.int64).reshape(-1, 2).T
    edge_index = torch.from_numpy(np.concatenate([edges, edges[::-1]], axis=1))
    x = torch.tensor(np.array(x), dtype=torch.float32)
    return Data(x=x, edge_index=edge_index, pos=x[:, 3:])


def colour_rms(image: np.ndarray, labels: np.ndarray) -> float:
    """Root mean square distance of each pixel's CIELAB colour to its superpixel's mean colour."""
    from skimage.color import rgb2lab

    lab = rgb2lab(image).reshape(-1, 3)
    flat = labels.ravel()
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n)
    total = 0.0
    for c in range(3):
        s1 = np.bincount(flat, lab[:, c], minlength=n)
        s2 = np.bincount(flat, lab[:, c] ** 2, minlength=n)
        total += float((s2 - s1 * s1 / counts).sum())
    return float(np.sqrt(total / flat.size))


def time_units(fns: dict[str, list[Callable[[], object]]], repeats: int) -> dict[str, float]:
    """Seconds per pipeline: the sum over work units (an image, a batch) of each unit's best time.

    Every unit runs ``repeats`` times, interleaved across pipelines (unit j of every pipeline, then
    unit j + 1, ...), so all pipelines see the same machine; the best of each unit is the least
    disturbed by other load on a shared machine.
    """
    n_units = len(next(iter(fns.values())))
    best = {name: [float("inf")] * n_units for name in fns}
    for _ in range(repeats):
        for j in range(n_units):
            for name, units in fns.items():
                start = time.perf_counter()
                units[j]()
                best[name][j] = min(best[name][j], time.perf_counter() - start)
    return {name: sum(b) for name, b in best.items()}


def row(name: str, n: int, seconds: float, ref: float | None, note: str = "") -> str:
    ips = n / seconds
    ratio = f"{ips / ref:.2f}x" if ref else "1.00x"
    return f"| {name} | {ips:8.1f} | {1000 * seconds / n:8.2f} | {ratio} | {note} |"


def part_graphs(n_images: int, repeats: int) -> None:
    from torch_geometric.transforms import ToSLIC

    from bridge.convert import ImageToGraph

    images = sample_images(n_images, 224)
    small = sample_images(n_images, 32, seed=1)
    tensor = torch.from_numpy(np.stack(images))  # (B, 224, 224, 3) uint8
    common = {
        "n_segments": 75,
        "compactness": 10.0,
        "features": ("color_mean", "centroid"),
        "edges": "region",
    }
    conv_sk = ImageToGraph(method="slic", **common)
    conv = ImageToGraph(batch_size=len(images), **common)  # the default: slic_torch
    to_slic = ToSLIC(n_segments=75, compactness=10.0)

    def run(fn: Callable, imgs: Sequence[np.ndarray]) -> list[Callable[[], object]]:
        return [lambda im=im: fn(im) for im in imgs]

    def slic_pyg(im: np.ndarray):
        return to_slic(torch.from_numpy(im).permute(2, 0, 1).float().div(255.0))

    fns = {
        "baseline": run(baseline_graph, images),
        "ours_sk": run(conv_sk, images),
        "ours": run(conv, images),
        "toslic": run(slic_pyg, images),
        "baseline32": run(baseline_graph, small),
        "ours32": run(conv, small),
    }
    for units in fns.values():  # warm-up (imports, caches)
        units[0]()
    best = time_units(fns, repeats)
    batched = {"batch": [lambda: conv.batch(images)], "tensor": [lambda: conv.batch_tensor(tensor)]}
    for units in batched.values():
        units[0]()
    best.update(time_units(batched, repeats))
    ours_sk = [conv_sk(im) for im in images]
    ours_t = conv.batch_tensor(tensor)
    base = [baseline_graph(im) for im in images]
    nodes_sk = np.mean([d.num_nodes for d in ours_sk])
    nodes_t = np.mean([d.num_nodes for d in ours_t])
    nodes_base = np.mean([d.num_nodes for d in base])
    edges_sk = np.mean([d.num_edges for d in ours_sk])
    edges_t = np.mean([d.num_edges for d in ours_t])
    edges_base = np.mean([d.num_edges for d in base])
    rms_sk = np.mean([colour_rms(im, d.segments[0].numpy()) for im, d in zip(images, ours_sk)])
    rms_t = np.mean([colour_rms(im, d.segments[0].numpy()) for im, d in zip(images, ours_t)])
    n = len(images)
    b = n / best["baseline"]
    print(
        f"\nPart 1: graph building, {n} images, 75 segments asked, "
        f"best of {repeats} interleaved runs per image (per batch for the batched rows)"
    )
    print(
        f"nodes/graph: scikit-image SLIC {nodes_sk:.1f}, slic_torch {nodes_t:.1f}, "
        f"baseline {nodes_base:.1f}; "
        f"directed edges/graph: scikit-image SLIC {edges_sk:.1f}, slic_torch {edges_t:.1f}, "
        f"baseline {edges_base:.1f}"
    )
    print(
        f"within-superpixel colour RMS (CIELAB, lower = more homogeneous): scikit-image SLIC {rms_sk:.2f}, "
        f"slic_torch {rms_t:.2f}"
    )
    print("| pipeline | images/s | ms/image | vs baseline | note |")
    print("|---|---:|---:|---:|---|")
    print(row("baseline: slic + rag_mean_color + loop, 224 px", n, best["baseline"], None))
    print(row("ours, method='slic' (scikit-image), one image per call", n, best["ours_sk"], b))
    print(row("ours, slic_torch (default), one image per call", n, best["ours"], b))
    print(row(f"ours, slic_torch, ImageToGraph.batch of {n} arrays", n, best["batch"], b))
    print(
        row(
            f"ours, slic_torch, ImageToGraph.batch_tensor of a ({n}, 224, 224, 3) uint8 tensor",
            n,
            best["tensor"],
            b,
            "tensor path",
        )
    )
    print(row("PyG ToSLIC alone (no edges), 224 px", n, best["toslic"], b))
    print(row("baseline, 32 px", n, best["baseline32"], None))
    print(row("ours (slic_torch), 32 px, one image per call", n, best["ours32"], n / best["baseline32"]))
    print(
        f"ours vs baseline (224 px): {best['baseline'] / best['ours_sk']:.2f}x with scikit-image's SLIC, "
        f"{best['baseline'] / best['ours']:.2f}x slic_torch one image per call, "
        f"{best['baseline'] / best['batch']:.2f}x ImageToGraph.batch"
    )
    print(
        f"tensor path (ImageToGraph.batch_tensor) vs baseline: {best['baseline'] / best['tensor']:.1f}x, "
        f"{n / best['tensor']:.0f} images/s (target >= 100x, about 700 images/s)"
    )
    print(
        f"ours vs ToSLIC alone (224 px): {best['toslic'] / best['ours']:.2f}x with slic_torch, "
        f"{best['toslic'] / best['ours_sk']:.2f}x with scikit-image's SLIC (ToSLIC builds no edges)"
    )
    print(f"ours at 32x32: {n / best['ours32']:.0f} images/s")


def part_cnn(n_batches: int, batch_size: int, repeats: int) -> None:
    from bridge.convert import ImageToGraph, prepare_many

    try:
        from cnn.backbones import create_backbone
        from cnn.fusion import fold_batchnorm
    except ImportError as err:  # pragma: no cover - cnn is part of this repository
        print(f"\nPart 2 skipped: cnn.backbones not importable ({err})")
        return
    backbone = create_backbone("efficientnet_lite0", weights=None).eval()
    folded = fold_batchnorm(backbone)  # the same network with its BatchNorm layers folded into the convs
    common = {"features": ("color_mean", "centroid"), "edges": "region", "backbone": backbone}
    slic_t = ImageToGraph(n_segments=75, batch_size=batch_size, **common)  # default: slic_torch, last 3
    slic_all = ImageToGraph(n_segments=75, batch_size=batch_size, stages=None, **common)
    grid = ImageToGraph(n_segments=196, method="grid", batch_size=batch_size, **common)
    slic = ImageToGraph(n_segments=75, method="slic", batch_size=batch_size, **common)
    slic_f = ImageToGraph(n_segments=75, batch_size=batch_size, **{**common, "backbone": folded})
    images = sample_images(n_batches * batch_size, 224, seed=2)
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    tensors = [torch.from_numpy(np.stack(b)) for b in batches]  # (B, 224, 224, 3) uint8
    inputs = [slic_t.cnn.preprocess(b) for b in batches]
    parts = [prepare_many(slic_t.params(), b) for b in batches]

    def bare(x: torch.Tensor, net: torch.nn.Module = backbone) -> None:
        with torch.inference_mode():
            net.features(x)

    pairs = list(zip(batches, parts))
    fns: dict[str, list[Callable[[], object]]] = {
        "bare": [lambda x=x: bare(x) for x in inputs],
        "bare_f": [lambda x=x: bare(x, folded) for x in inputs],
        "tensor_f": [lambda t=t: slic_f.batch_tensor(t) for t in tensors],
        "cnn3": [lambda b=b, p=p: slic_t.assemble(b, p) for b, p in pairs],
        "cnn5": [lambda b=b, p=p: slic_all.assemble(b, p) for b, p in pairs],
        "grid": [lambda b=b: grid.batch(b) for b in batches],
        "slic": [lambda b=b: slic.batch(b) for b in batches],
        "slic_t": [lambda b=b: slic_t.batch(b) for b in batches],
        "tensor": [lambda t=t: slic_t.batch_tensor(t) for t in tensors],
        "segment": [lambda b=b: [slic.prepare(im) for im in b] for b in batches],
        "segment_t": [lambda b=b: prepare_many(slic_t.params(), b) for b in batches],
    }
    for units in fns.values():
        units[0]()
    best = time_units(fns, repeats)
    n = len(images)
    ref = n / best["bare"]
    print(
        f"\nPart 2: CNN node features, efficientnet_lite0 (weights=None), {n_batches} batches of "
        f"{batch_size} at 224 px, torch threads {torch.get_num_threads()}, best of {repeats} per batch"
    )
    c3, c5 = slic_t.cnn.stage_channels, slic_all.cnn.stage_channels
    print(
        f"node features: colour 3 + centroid 2 + stages {c3} = {5 + sum(c3)} (all stages {c5}: {5 + sum(c5)})"
    )
    print("| pipeline | images/s | ms/image | vs bare | note |")
    print("|---|---:|---:|---:|---|")
    print(row("bare backbone.features(x), preprocessed batches", n, best["bare"], None))
    note = "ImageToGraph.assemble"
    print(row("CNN node features (last 3 stages, default), segments given", n, best["cnn3"], ref, note))
    print(row("CNN node features (all 5 stages), segments given", n, best["cnn5"], ref, note))
    note = "ImageToGraph.batch"
    print(row("image -> graph, grid patches (196, ViG), last 3 stages", n, best["grid"], ref, note))
    print(row("image -> graph, SLIC 75 (scikit-image), last 3 stages", n, best["slic"], ref, note))
    print(row("image -> graph, slic_torch 75, last 3 stages", n, best["slic_t"], ref, note))
    print(
        row(
            "image -> graph, slic_torch 75, last 3 stages, uint8 tensor batch",
            n,
            best["tensor"],
            ref,
            "ImageToGraph.batch_tensor",
        )
    )
    print(
        row(
            "SLIC 75 (scikit-image) + colour/position features + edges alone",
            n,
            best["segment"],
            ref,
            "ImageToGraph.prepare",
        )
    )
    print(
        row(
            "slic_torch 75 + colour/position features + edges alone",
            n,
            best["segment_t"],
            ref,
            "batched prepare",
        )
    )
    note = "cnn.fold_batchnorm"
    print(
        row("bare backbone.features(x), BatchNorm folded into the convolutions", n, best["bare_f"], ref, note)
    )
    print(row("image -> graph as batch_tensor above, BatchNorm folded", n, best["tensor_f"], ref, note))
    print(
        f"folded backbone: {best['bare'] / best['bare_f']:.2f}x the backbone's images/s; image -> graph "
        f"(batch_tensor) with it {best['bare_f'] / best['tensor_f']:.2f} of the folded backbone's images/s, "
        f"{best['bare'] / best['tensor_f']:.2f} of the unfolded one's"
    )
    print(
        f"ours / bare images/s: CNN node features {best['bare'] / best['cnn3']:.2f} "
        f"(all stages {best['bare'] / best['cnn5']:.2f}), grid graphs {best['bare'] / best['grid']:.2f}, "
        f"slic_torch graphs {best['bare'] / best['slic_t']:.2f} (ImageToGraph.batch), "
        f"{best['bare'] / best['tensor']:.2f} (batch_tensor; target >= 0.9), scikit-image SLIC graphs "
        f"{best['bare'] / best['slic']:.2f}"
    )


def part_profile(n_images: int, calls: int) -> None:
    """Where the tensor path's time goes: ``cProfile`` of ``calls`` ``ImageToGraph.batch_tensor`` calls
    on ``n_images`` uint8 photo crops (224 px, 75 segments, colour + centroid, region edges), the
    functions of ``bridge`` by cumulative time in ms per image (the profiler's overhead included)."""
    import cProfile
    import pstats

    from bridge.convert import ImageToGraph

    tensor = torch.from_numpy(np.stack(sample_images(n_images, 224)))
    conv = ImageToGraph(n_segments=75, features=("color_mean", "centroid"), edges="region")
    conv.batch_tensor(tensor)  # warm-up
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        conv.batch_tensor(tensor)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    per_image = 1000.0 / (calls * n_images)
    rows = [
        (cum * per_image, f"{Path(file).parent.name}/{Path(file).name}:{func}", n)
        for (file, _, func), (_, n, _, cum, _) in stats.items()
        if f"{os.sep}bridge{os.sep}" in file and cum * per_image >= 0.01
    ]
    print(f"\nProfile: {calls} x ImageToGraph.batch_tensor of {n_images} images, ms per image (cumulative)")
    print("| function | ms/image | calls |")
    print("|---|---:|---:|")
    for ms, name, n in sorted(rows, reverse=True):
        print(f"| {name} | {ms:.2f} | {n} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help="images for part 1 (default 32; quick: 4)")
    parser.add_argument(
        "--batches", type=int, default=None, help="batches of --batch-size for part 2 (default 2; quick: 1)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per batch (default 32; quick: 4)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs of each work unit (default 5; quick: 1)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: 4 images, 1 batch of 4, 1 repeat, unless those options are given",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="CALLS", help="only profile CALLS tensor-path calls"
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="keep freed memory for reuse, as the pixgraph command does (default: glibc's malloc as is, "
        "as in a Python session)",
    )
    args = parser.parse_args(argv)
    kept = False
    if args.keep_freed_memory:
        from engine.memory import keep_freed_memory

        kept = keep_freed_memory(children=False)
    # --quick only fills in the options that were not given on the command line
    for name, full, quick in (("images", 32, 4), ("batches", 2, 1), ("batch_size", 32, 4), ("repeats", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.threads:
        torch.set_num_threads(args.threads)
    import skimage
    import torch_geometric

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch_geometric {torch_geometric.__version__}, "
        f"scikit-image {skimage.__version__}, {platform.processor() or platform.machine()}, "
        f"cpu count {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"freed memory {'kept (engine.memory.keep_freed_memory)' if kept else 'given back (glibc default)'}"
    )
    if args.profile:
        part_profile(args.images, args.profile)
        return
    part_graphs(args.images, args.repeats)
    if not args.skip_cnn:
        part_cnn(args.batches, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
