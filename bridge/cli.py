"""The ``pixgraph`` command.

Subcommands:

* ``compare``   CNN heads vs GNNs on one split and several seeds (report, results.json, pictures);
* ``finetune``  fine-tune a pretrained CNN (arm B of the comparison alone);
* ``train-gnn`` train a GNN on superpixel graphs (arm D, or C with ``--cnn-features``);
* ``graphs``    convert a dataset into graphs once (cached) and print their statistics;
* ``explain``   predictions, feature maps and Grad-CAM of a pretrained CNN for one image;
* ``show``      draw an image's superpixel graph over it (PNG, optional GraphML).

Bad arguments end with exit code 2 and one line ``pixgraph: error: ...`` (set ``PIXGRAPH_DEBUG=1``
for the full traceback).

Importing this module is cheap: Lightning, matplotlib, PyTorch Geometric and the comparison are imported
inside the command that needs them (``pixgraph compare --help`` reads the arm registry when it prints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .segmentation import METHODS

__all__ = ["main", "build_parser"]

_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _arms_help() -> str:
    from bridge.compare.registry import arm_titles

    arms = "; ".join(f"{name}: {title}" for name, title in arm_titles().items())
    return f"comma-separated arms (default: all): {arms}".replace("%", "%%")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with help texts computed when help is printed (``lazy_help[dest]``), so
    reading the arm registry costs nothing unless ``--help`` asks for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_help: dict[str, Callable[[], str]] = {}

    def format_help(self) -> str:
        for action in self._actions:
            fill = self.lazy_help.pop(action.dest, None)
            if fill is not None:
                action.help = fill()
        return super().format_help()


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def _weights(text: str) -> str | None:
    return None if text.lower() in ("none", "random") else text


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default="elpv", help="elpv (default), mnist5k, digits, or a folder of class sub-folders"
    )
    p.add_argument("--max-per-class", type=_positive, default=None, help="keep at most N images per class")
    p.add_argument("--backbone", default="efficientnet_lite0", help="CNN backbone (see cnn.list_backbones())")
    p.add_argument(
        "--weights", type=_weights, default="imagenet", help="imagenet (default), none, or a .pth path"
    )
    p.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--out", default=None, help="run folder (default: a new runs/compare-<data>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR")
    p.add_argument("--quick", action="store_true", help="a small setting that runs in about a minute")
    p.add_argument("--image-size", type=_positive, default=None, help="view size (default: the backbone's)")
    p.add_argument("--batch-size", type=_positive, default=None)
    p.add_argument("--n-segments", type=_positive, default=None, help="superpixels per image (default 75)")
    p.add_argument("--device", default=None, help="cpu (default), cuda, auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixgraph`` command (one sub-parser per subcommand)."""
    parser = _Parser(
        prog="pixgraph", description="Transfer learning with pretrained CNNs and GNNs on image graphs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("compare", help="CNN heads vs GNNs on the same data, split and seeds")
    _add_data(p)
    p.add_argument("--arms", default=None, help="comma-separated arms of the registry (default: all)")
    p.lazy_help["arms"] = _arms_help  # the registry's names and titles, read when --help prints
    p.add_argument("--gnn", default=None, help="graph convolution: gcn (default), gat, sage, gin")
    p.add_argument("--epochs-probe", type=_positive, default=None)
    p.add_argument("--epochs-finetune", type=_positive, default=None)
    p.add_argument("--epochs-gnn", type=_positive, default=None)
    p.add_argument("--similarity", choices=("high", "low"), default=None, help="data vs ImageNet, for B")

    p = sub.add_parser("finetune", help="fine-tune a pretrained CNN (arm B alone, same report)")
    _add_data(p)
    p.add_argument("--strategy", choices=("auto", "fine_tuning", "full"), default="auto")
    p.add_argument("--blocks", type=_positive, default=None, help="last N blocks to train (fine_tuning)")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--similarity", choices=("high", "low"), default=None)

    p = sub.add_parser("train-gnn", help="train a GNN on superpixel graphs (arm D, or C with --cnn-features)")
    _add_data(p)
    p.add_argument("--gnn", default=None, help="gcn (default), gat, sage, gin")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--cnn-features", action="store_true", help="add the frozen backbone's pooled stage maps")

    p = sub.add_parser(
        "graphs", help="convert a dataset into superpixel graphs (cached) and print statistics"
    )
    p.add_argument("--data", default="elpv")
    p.add_argument("--max-per-class", type=_positive, default=None)
    p.add_argument("--n-segments", type=_positive, default=75)
    p.add_argument("--method", choices=METHODS, default="slic")
    p.add_argument("--edges", choices=("region", "knn", "knn_feature"), default="region")
    p.add_argument("--k", type=_positive, default=8)
    p.add_argument("--backbone", default=None, help="add CNN node features from this backbone")
    p.add_argument(
        "--cache",
        default=None,
        help="cache folder (default $PIXGRAPH_CACHE/graphs or ~/.cache/pixgraph/graphs)",
    )
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("explain", help="top-5 predictions, feature maps and Grad-CAM of one image")
    p.add_argument("image", help=f"an image file, or a scikit-image sample: {', '.join(_SAMPLES)}")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", type=_weights, default="imagenet")
    p.add_argument("--stage", type=int, default=1, help="backbone stage whose feature maps are drawn")
    p.add_argument("--out", default="runs/explain", help="folder for the PNG files")

    p = sub.add_parser("show", help="draw an image's superpixel graph over it")
    p.add_argument("image", help=f"an image file, or a scikit-image sample: {', '.join(_SAMPLES)}")
    p.add_argument("--n-segments", type=_positive, default=75)
    p.add_argument("--method", choices=METHODS, default="slic")
    p.add_argument("--edges", choices=("region", "knn"), default="region")
    p.add_argument("--out", default="graph.png", help="PNG to write")
    p.add_argument("--graphml", default=None, help="also export the graph to this GraphML file")
    return parser


# ----------------------------------------------------------------------------------------------


def _load_image(spec: str) -> Any:
    from cnn.io import read_image

    if not os.path.exists(spec) and spec in _SAMPLES:
        from skimage import data

        return getattr(data, spec)()
    if not os.path.exists(spec):
        raise CLIError(f"image {spec!r} does not exist (give a file, or one of {', '.join(_SAMPLES)})")
    return read_image(spec)


def _check_data(data: str) -> None:
    if data in ("elpv", "mnist5k", "digits"):
        return
    if not os.path.isdir(data):
        raise CLIError(f"--data {data!r} is not a folder nor one of elpv, mnist5k, digits")
    classes = [
        d for d in sorted(os.listdir(data)) if os.path.isdir(os.path.join(data, d)) and not d.startswith(".")
    ]
    if len(classes) < 2:
        raise CLIError(
            f"--data {data!r} has {len(classes)} class folder(s) {classes}; "
            "put each class in its own sub-folder (at least 2)"
        )


def _compare_config(args: argparse.Namespace, **fixed: Any) -> tuple[Any, Any]:
    from bridge.compare.config import CompareConfig, quick_config
    from cnn.backbones import check_backbone_name

    if args.resume:
        cfg_file = Path(args.resume) / "config.json"
        if not cfg_file.is_file():
            raise CLIError(f"--resume {args.resume!r}: no config.json there; is it a pixgraph run folder?")
        return CompareConfig.from_dict(json.loads(cfg_file.read_text())), Path(args.resume)
    _check_data(args.data)
    name = args.backbone
    try:
        check_backbone_name(name)
    except ValueError as err:
        raise CLIError(str(err)) from None
    kw: dict[str, Any] = {"data": args.data, "backbone": name, "weights": args.weights}
    for key in ("max_per_class", "image_size", "batch_size", "n_segments", "device", "seeds"):
        value = getattr(args, key, None)
        if value is not None:
            kw[key] = value
    kw.update({k: v for k, v in fixed.items() if v is not None})
    cfg = quick_config(**kw) if args.quick else CompareConfig(**kw)
    return cfg, (Path(args.out) if args.out else None)


def _run_compare(args: argparse.Namespace, **fixed: Any) -> int:
    from bridge.compare.run import compare

    cfg, out = _compare_config(args, **fixed)
    results = compare(cfg, out=out, progress=not args.no_progress, log=lambda m: print(m, flush=True))
    failed = [a for a, e in results["arms"].items() if e["status"] == "failed"]
    return 1 if failed and len(failed) == len(results["arms"]) else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else None
    return _run_compare(
        args,
        arms=arms,
        gnn=args.gnn,
        epochs_probe=args.epochs_probe,
        epochs_finetune=args.epochs_finetune,
        epochs_gnn=args.epochs_gnn,
        similarity=args.similarity,
    )


def _cmd_finetune(args: argparse.Namespace) -> int:
    strategy = None if args.strategy == "auto" else args.strategy
    return _run_compare(
        args,
        arms=("finetune",),
        strategy=strategy,
        trainable_blocks=args.blocks,
        epochs_finetune=args.epochs,
        similarity=args.similarity,
    )


def _cmd_train_gnn(args: argparse.Namespace) -> int:
    arm = "gnn_cnn" if args.cnn_features else "gnn_color"
    return _run_compare(args, arms=(arm,), gnn=args.gnn, epochs_gnn=args.epochs)


def _cmd_graphs(args: argparse.Namespace) -> int:
    import numpy as np

    from bridge.convert import ImageToGraph
    from bridge.dataset import GraphDataset, default_cache_dir
    from cnn.backbones import create_backbone
    from cnn.datasets import load_dataset

    _check_data(args.data)
    backbone = create_backbone(args.backbone) if args.backbone else None
    conv = ImageToGraph(
        n_segments=args.n_segments, method=args.method, edges=args.edges, k=args.k, backbone=backbone
    )
    ds = load_dataset(args.data, max_per_class=args.max_per_class)
    root = args.cache or default_cache_dir()
    graphs = GraphDataset(ds, conv, root=root, workers=args.workers, progress=not args.no_progress)
    nodes = np.array([g.num_nodes for g in graphs])
    edges = np.array([g.edge_index.shape[1] // 2 for g in graphs])
    print(conv)
    print(
        f"{len(graphs)} graphs ({'reused' if graphs.reused else 'built'}: {graphs.cache_path})\n"
        f"nodes per graph: mean {nodes.mean():.1f}, min {nodes.min()}, max {nodes.max()}\n"
        f"undirected edges per graph: mean {edges.mean():.1f}\n"
        f"node features: {graphs[0].x.shape[1]}"
    )
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import torch

    from cnn.backbones import create_backbone
    from cnn.explain import FeatureMaps, grad_cam
    from cnn.plots import plot_feature_maps, plot_grad_cam
    from cnn.transforms import center_view, normalize_images

    image = _load_image(args.image)
    model = create_backbone(args.backbone, weights=args.weights)
    cfg = model.cfg
    img = center_view(image, cfg.input_size, cfg.resize_size)
    x = normalize_images(img[None], cfg.mean, cfg.std)
    if not 0 <= args.stage < len(model.feature_channels):
        raise CLIError(f"--stage {args.stage}: the backbone has stages 0..{len(model.feature_channels) - 1}")
    with FeatureMaps(model, [args.stage]) as fm, torch.no_grad():
        probs = model(x).softmax(1)[0]
    maps = next(iter(fm.maps.values()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = _class_names(model.num_classes)
    for p, i in zip(*probs.topk(min(5, len(probs)))):
        print(f"{p.item():.3f}  {names[int(i)]}")
    plot_feature_maps(maps[0], path=out / "feature_maps.png")
    cam = grad_cam(model, x)[0].detach().numpy()
    plot_grad_cam(img, cam, path=out / "grad_cam.png")
    print(f"wrote {out / 'feature_maps.png'} and {out / 'grad_cam.png'}")
    return 0


def _class_names(n: int) -> list[str]:
    if n == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(n)]
    return [str(i) for i in range(n)]


def _cmd_show(args: argparse.Namespace) -> int:
    from bridge.convert import ImageToGraph
    from bridge.nxgraph import draw_graph, export_graphml

    image = _load_image(args.image)
    conv = ImageToGraph(n_segments=args.n_segments, method=args.method, edges=args.edges)
    data = conv(image)
    draw_graph(image, data, path=args.out)
    print(f"{data.num_nodes} nodes, {data.edge_index.shape[1] // 2} edges -> {args.out}")
    if args.graphml:
        export_graphml(data, args.graphml)
        print(f"GraphML -> {args.graphml}")
    return 0


_COMMANDS = {
    "compare": _cmd_compare,
    "finetune": _cmd_finetune,
    "train-gnn": _cmd_train_gnn,
    "graphs": _cmd_graphs,
    "explain": _cmd_explain,
    "show": _cmd_show,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pixgraph`` command; returns the exit code.

    Example:
        >>> main(["show", "coffee", "--out", "coffee_graph.png"])
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    # PyTorch Geometric scripts a few helpers at import; torch 2.14 warns about torch.jit.script on each
    # command. The warning concerns PyG's code, not the user's, so the command does not show it.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        return _COMMANDS[args.command](args)
    except CLIError as err:
        print(f"pixgraph: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as err:
        if os.environ.get("PIXGRAPH_DEBUG"):
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"pixgraph: error: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixgraph: interrupted; rerun with --resume <run folder> to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
