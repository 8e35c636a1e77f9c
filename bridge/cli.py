"""The ``pixgraph`` command.

Subcommands:

* ``compare``   CNN heads vs GNNs on one split and several seeds (report, results.json, pictures);
* ``finetune``  fine-tune a pretrained CNN (arm B of the comparison alone);
* ``train-gnn`` train a GNN on superpixel graphs (arm D, or C with ``--cnn-features``);
* ``graphs``    convert a dataset into graphs once (cached) and print their statistics;
* ``explain``   predictions, feature maps and Grad-CAM of a pretrained CNN for one image;
* ``show``      draw an image's superpixel graph over it (PNG, optional GraphML);
* ``data``      counts per class, image sizes and unreadable files of a dataset, before a long run.

Exit codes (also in ``pixgraph --help``): 0 done; 1 some arms failed (the report is still written);
2 usage or bad input, found before any training (one line ``pixgraph: error: ...`` on stderr; set
``PIXGRAPH_DEBUG=1`` for the full traceback); 130 interrupted.

On Linux (glibc) the command keeps the memory it frees for its next batches instead of giving large
blocks back to the kernel (:func:`engine.memory.keep_freed_memory`; about twice as fast CNN passes on
the CPU, a little more resident memory); ``PIXGRAPH_KEEP_FREED_MEMORY=0`` (or ``false``, ``no``,
``off``) leaves glibc's default.

Importing this module is cheap: Lightning, matplotlib, PyTorch Geometric and the comparison are imported
inside the command that needs them (``pixgraph compare --help`` reads the arm registry when it prints).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .segmentation import METHODS

__all__ = ["EXIT_CODES", "main", "build_parser"]

_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")

#: The exit codes of ``pixgraph``, as the help's epilog lists them.
EXIT_CODES: dict[int, str] = {
    0: "done: every arm of every seed finished (or the command succeeded)",
    1: "some arms failed; the report and results.json are still written (see their errors)",
    2: "usage or bad input, found before any training (also a dataset not available offline)",
    130: "interrupted (Ctrl-C); rerun with --resume RUN_DIR to continue a comparison",
}

_EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    + "\n\nenvironment:\n"
    + "  PIXGRAPH_DEBUG=1              full tracebacks\n"
    + "  PIXGRAPH_KEEP_FREED_MEMORY=0  glibc's default malloc (the command keeps freed memory for reuse)"
)

#: CLI option (dest) -> CompareConfig field, for checking options given with --resume.
_CONFIG_FIELDS = {
    "data": "data",
    "split": "data_split",
    "data_root": "data_root",
    "max_per_class": "max_per_class",
    "backbone": "backbone",
    "weights": "weights",
    "seeds": "seeds",
    "image_size": "image_size",
    "batch_size": "batch_size",
    "n_segments": "n_segments",
    "device": "device",
    "gnn": "gnn",
    "epochs_probe": "epochs_probe",
    "epochs_finetune": "epochs_finetune",
    "epochs_gnn": "epochs_gnn",
    "similarity": "similarity",
    "faithfulness_images": "faithfulness_images",
    "faithfulness_seeds": "faithfulness_seeds",
    "segmentation": "segmentation",
    "graph": "graph",
    "devices": "devices",
    "num_nodes": "num_nodes",
    "lightning_strategy": "lightning_strategy",
}

#: ``finetune --strategy fine_tuning|full`` meant the freezing before ``--strategy`` went to Lightning.
_FREEZING = ("fine_tuning", "full")


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


def _data_help() -> str:
    from cnn.datasets import DATASETS

    return (
        f"a dataset name ({', '.join(DATASETS)}; default elpv), a folder of class sub-folders, "
        "or a .csv manifest of 'path,label' lines"
    )


def _graph_data_help() -> str:
    from gnn.datasets import list_graph_datasets

    return _data_help() + f"; or a graph dataset, trained directly: {', '.join(list_graph_datasets())}"


def _add_source(p: _Parser, *, default: str | None = "elpv", graphs: bool = False) -> None:
    """--data (or a positional DATA when ``default`` is None), --split, --data-root, --no-download."""
    if default is None:
        p.add_argument("data", metavar="DATA", help="dataset name, folder or .csv manifest")
        p.lazy_help["data"] = _data_help
    else:
        p.add_argument("--data", default=default, help="dataset name, folder or .csv manifest")
        p.lazy_help["data"] = _graph_data_help if graphs else _data_help
    p.add_argument(
        "--split", default=None, help="downloaded datasets: the publisher's split (e.g. train, test, all)"
    )
    p.add_argument(
        "--data-root", default=None, help="downloaded datasets: cache folder (default $PIXGRAPH_DATA)"
    )
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is missing")


def _add_data(p: _Parser, *, graphs: bool = False) -> None:
    _add_source(p, graphs=graphs)
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
    p.add_argument(
        "--device", default=None, help="auto (default: the GPU when there is one), cpu, cuda, cuda:N"
    )
    p.add_argument(
        "--segmentation",
        default=None,
        help="superpixel back-end: slic_torch (default, batched torch SLIC), slic (scikit-image), grid",
    )
    p.add_argument(
        "--graph",
        choices=("superpixels", "patches"),
        default=None,
        help="graphs of arms C and E: superpixels (default) or the cells of the deepest stage map, "
        "linked by k-NN in feature space (ViG style)",
    )
    p.add_argument("--devices", type=_positive, default=None, help="devices per machine for training (1)")
    p.add_argument("--num-nodes", type=_positive, default=None, help="machines for training (1)")
    p.add_argument(
        "--strategy",
        dest="lightning_strategy",
        default=None,
        metavar="STRATEGY",
        help="Lightning strategy for training: auto (default; ddp_spawn with --devices > 1), ddp, ...",
    )
    _add_progress(p)


def _add_progress(p: _Parser) -> None:
    """``--progress`` / ``--no-progress``; neither: bars only when standard output and standard error are
    both a terminal (Lightning's bars go to standard output, the conversion's to standard error)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="progress bars also when the output is not a terminal (default: only when standard output "
        "and standard error both are, so that a log file gets the result lines, not thousands of bar "
        "updates)",
    )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: as asked, else when standard output and standard error are both a
    terminal (either one redirected to a file would fill it with bar updates)."""
    if args.progress is not None:
        return bool(args.progress)
    return bool(sys.stdout.isatty() and sys.stderr.isatty())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixgraph`` command (one sub-parser per subcommand)."""
    parser = _Parser(
        prog="pixgraph",
        description="Transfer learning with pretrained CNNs and GNNs on image graphs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, **kw: Any) -> Any:
        return sub.add_parser(
            name, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, **kw
        )

    p = add("compare", help="CNN heads vs GNNs on the same data, split and seeds")
    _add_data(p)
    p.add_argument("--arms", default=None, help="comma-separated arms of the registry (default: all)")
    p.lazy_help["arms"] = _arms_help  # the registry's names and titles, read when --help prints
    p.add_argument("--gnn", default=None, help="graph convolution: gcn (default), gat, sage, gin")
    p.add_argument("--epochs-probe", type=_positive, default=None)
    p.add_argument("--epochs-finetune", type=_positive, default=None)
    p.add_argument("--epochs-gnn", type=_positive, default=None)
    p.add_argument("--similarity", choices=("high", "low"), default=None, help="data vs ImageNet, for B")
    p.add_argument(
        "--faithfulness-images",
        type=int,
        default=None,
        help="test images whose explanations every arm scores by deletion/insertion (default 32; 0: off)",
    )
    p.add_argument(
        "--faithfulness-seeds",
        type=_positive,
        default=None,
        help="score the first N seeds' models (default 1)",
    )

    p = add(
        "finetune",
        help="fine-tune a pretrained CNN (arm B alone, same report; --head graph: arm E, CNN -> GNN)",
    )
    _add_data(p)
    p.add_argument(
        "--freeze",
        choices=("auto", "fine_tuning", "full"),
        default=None,
        help="which blocks train: auto (choose_strategy), fine_tuning (the last --blocks), full",
    )
    p.add_argument(
        "--head",
        choices=("linear", "graph"),
        default="linear",
        help="linear (arm B) or graph: a GNN over the image's regions, trained end to end (arm E)",
    )
    p.add_argument("--blocks", type=_positive, default=None, help="last N blocks to train (fine_tuning)")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--similarity", choices=("high", "low"), default=None)

    p = add(
        "train-gnn",
        help="train a GNN on superpixel graphs (arm D, or C with --cnn-features), or on a graph dataset",
    )
    _add_data(p, graphs=True)
    p.add_argument("--gnn", default=None, help="gcn (default), gat, sage, gin")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--cnn-features", action="store_true", help="add the frozen backbone's pooled stage maps")

    p = add("graphs", help="convert a dataset into superpixel graphs (cached) and print statistics")
    _add_source(p)
    p.add_argument("--max-per-class", type=_positive, default=None)
    p.add_argument("--n-segments", type=_positive, default=75)
    p.add_argument("--method", choices=METHODS, default="slic_torch")
    p.add_argument("--edges", choices=("region", "knn", "knn_feature"), default="region")
    p.add_argument("--k", type=_positive, default=8)
    p.add_argument("--backbone", default=None, help="add CNN node features from this backbone")
    p.add_argument(
        "--cache",
        default=None,
        help="cache folder (default $PIXGRAPH_CACHE/graphs or ~/.cache/pixgraph/graphs)",
    )
    p.add_argument("--workers", type=int, default=None)
    _add_progress(p)

    p = add(
        "explain",
        help="top-5 predictions, feature maps and Grad-CAM of one image; with --model, a compared arm's "
        "prediction, map and its faithfulness",
    )
    p.add_argument("image", help=f"an image file, or a scikit-image sample: {', '.join(_SAMPLES)}")
    p.add_argument(
        "--model",
        default=None,
        help="RUN_DIR/models/<arm>.pth of a finished comparison: explain with that arm (Grad-CAM for "
        "linear_probe and finetune, node saliency on superpixels for gnn_cnn and gnn_color) and score "
        "the map by deletion / insertion against a random pixel order",
    )
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", type=_weights, default="imagenet")
    p.add_argument("--stage", type=int, default=1, help="backbone stage whose feature maps are drawn")
    p.add_argument("--out", default="runs/explain", help="folder for the PNG files")

    p = add("show", help="draw an image's superpixel graph over it")
    p.add_argument("image", help=f"an image file, or a scikit-image sample: {', '.join(_SAMPLES)}")
    p.add_argument("--n-segments", type=_positive, default=75)
    p.add_argument("--method", choices=METHODS, default="slic_torch")
    p.add_argument("--edges", choices=("region", "knn"), default="region")
    p.add_argument("--out", default="graph.png", help="PNG to write")
    p.add_argument("--graphml", default=None, help="also export the graph to this GraphML file")

    p = add("data", help="counts per class, image sizes and unreadable files of a dataset")
    _add_source(p, default=None)
    p.add_argument("--max-per-class", type=_positive, default=None, help="keep at most N images per class")
    return parser


def _explicit(argv: Sequence[str] | None) -> set[str]:
    """The options (dests) the user actually passed: parsed again with every default suppressed."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                for a in subparser._actions:
                    a.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


# ----------------------------------------------------------------------------------------------


def _load_image(spec: str) -> Any:
    from cnn.io import read_image

    if not os.path.exists(spec) and spec in _SAMPLES:
        from skimage import data

        return getattr(data, spec)()
    if not os.path.exists(spec):
        raise CLIError(f"image {spec!r} does not exist (give a file, or one of {', '.join(_SAMPLES)})")
    return read_image(spec)


def _check_data(data: str, *, graphs: bool = False) -> str:
    """``"name"``, ``"graph"`` (a graph dataset, with ``graphs``), ``"folder"`` or ``"manifest"``."""
    from cnn.datasets import DATASETS

    if data.lower() in DATASETS:
        return "name"
    if graphs:
        from gnn.datasets import list_graph_datasets

        if data.lower() in list_graph_datasets():
            return "graph"
    if data.lower().endswith(".csv") and os.path.isfile(data):
        return "manifest"
    if not os.path.isdir(data):
        what = "an existing folder or .csv manifest"
        if os.path.isfile(data):
            what = "a folder or .csv manifest (it is a file without the .csv suffix)"
        names = ", ".join(DATASETS)
        if graphs:
            from gnn.datasets import list_graph_datasets

            names += ", " + ", ".join(list_graph_datasets())
        raise CLIError(f"--data {data!r} is not {what} nor one of the dataset names {names}")
    classes = [
        d for d in sorted(os.listdir(data)) if os.path.isdir(os.path.join(data, d)) and not d.startswith(".")
    ]
    if len(classes) < 2:
        raise CLIError(
            f"--data {data!r} has {len(classes)} class folder(s) {classes}; "
            "put each class in its own sub-folder (at least 2)"
        )
    return "folder"


def _check_source_options(args: argparse.Namespace) -> None:
    """--split and --data-root only make sense for downloaded datasets."""
    from cnn.datasets import DOWNLOADABLE

    given = [f for f, v in (("--split", args.split), ("--data-root", args.data_root)) if v is not None]
    if given and args.data.lower() not in DOWNLOADABLE:
        raise CLIError(
            f"{' and '.join(given)} only {'apply' if len(given) > 1 else 'applies'} to downloaded "
            f"datasets ({', '.join(DOWNLOADABLE)}), "
            f"not to --data {args.data!r}; leave {'them' if len(given) > 1 else 'it'} out"
        )
    if args.data_root is not None:
        from bridge.compare.rundir import check_output_dir

        try:
            check_output_dir(args.data_root, name="data_root")
        except ValueError as err:
            raise CLIError(str(err)) from None


def _config_kwargs(args: argparse.Namespace, fixed: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for dest, field in _CONFIG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None and field not in fixed:
            kw[field] = value
    kw["weights"] = args.weights
    kw.update({k: v for k, v in fixed.items() if v is not None})
    return kw


def _resume_config(args: argparse.Namespace, explicit: set[str], fixed: dict[str, Any]) -> tuple[Any, Path]:
    """The stored configuration of ``--resume RUN_DIR``, after checking the options given with it."""
    import dataclasses

    from bridge.compare.config import CompareConfig, quick_config
    from bridge.compare.rundir import RunFolder, config_differences

    run = Path(args.resume)
    if not (run / "config.json").is_file():
        raise CLIError(f"--resume {args.resume!r}: no config.json there; is it a pixgraph run folder?")
    if args.out is not None and Path(args.out).resolve() != run.resolve():
        raise CLIError(
            f"--out {args.out!r} and --resume {args.resume!r} name different folders; "
            "a resumed run writes into RUN_DIR: leave --out out"
        )
    stored, missing = RunFolder(run).read_config()
    if missing:
        print(
            f"pixgraph: {run / 'config.json'} is from an older version: using the defaults for "
            f"{', '.join(f'{m}={getattr(CompareConfig(), m)!r}' for m in missing)}",
            file=sys.stderr,
        )
    given_fields = {_CONFIG_FIELDS[d] for d in explicit if d in _CONFIG_FIELDS}
    given_fields |= {k for k, v in fixed.items() if v is not None}
    # the subcommand's own arm (finetune, train-gnn) counts as given, like --arms
    try:
        kw = {k: v for k, v in _config_kwargs(args, fixed).items() if k in given_fields}
        base = quick_config if "quick" in explicit else CompareConfig
        given = base(**{"data": stored.data, **kw})
    except ValueError as err:
        raise CLIError(str(err)) from None
    if "quick" in explicit:  # --quick stands for the fields it sets
        plain = CompareConfig(data=stored.data).to_dict()
        given_fields |= {k for k, v in quick_config(data=stored.data).to_dict().items() if plain[k] != v}
    diff = config_differences(stored.to_dict(), given.to_dict(), sorted(given_fields))
    if diff:
        flags = {field: "--" + dest.replace("_", "-") for dest, field in _CONFIG_FIELDS.items()}
        flags.update(arms="--arms", strategy="--freeze", trainable_blocks="--blocks")
        shown = [f"{flags.get(d.split(':')[0], d.split(':')[0])}:{d.split(':', 1)[1]}" for d in diff]
        raise CLIError(
            f"--resume {args.resume}: options differ from the run's configuration ({'; '.join(shown)}); "
            "leave them out to resume the run as it was, or start a new run with another --out"
        )
    return dataclasses.replace(stored), run


def _compare_config(args: argparse.Namespace, explicit: set[str], **fixed: Any) -> tuple[Any, Any]:
    from bridge.compare.config import CompareConfig, quick_config
    from cnn.backbones import check_backbone_name

    if args.resume:
        return _resume_config(args, explicit, fixed)
    _check_data(args.data)
    _check_source_options(args)
    try:
        check_backbone_name(args.backbone)
    except ValueError as err:
        raise CLIError(f"--backbone: {err}") from None
    kw = _config_kwargs(args, fixed)
    cfg = quick_config(**kw) if args.quick else CompareConfig(**kw)
    return cfg, (Path(args.out) if args.out else None)


def _log(message: str) -> None:
    print(message, file=sys.stderr if "FAILED" in message else sys.stdout, flush=True)


def _run_compare(args: argparse.Namespace, explicit: set[str], **fixed: Any) -> int:
    from bridge.compare.run import compare

    cfg, out = _compare_config(args, explicit, **fixed)
    results = compare(cfg, out=out, progress=_progress(args), log=_log, download=not args.no_download)
    failed = {a: e for a, e in results["arms"].items() if e["status"] != "ok"}
    if failed:
        for arm, entry in failed.items():
            errors = "; ".join(entry.get("errors", [])) or "no result"
            print(f"pixgraph: arm {arm} {entry['status']}: {errors}", file=sys.stderr)
        print(
            f"pixgraph: {len(failed)} of {len(results['arms'])} arm(s) failed; report still written: "
            f"{Path(results['out']) / 'report.md'} (exit code 1)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_compare(args: argparse.Namespace, explicit: set[str]) -> int:
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else None
    if args.arms is not None and not arms:
        raise CLIError(f"--arms {args.arms!r} names no arm; give comma-separated arm names")
    return _run_compare(
        args,
        explicit,
        arms=arms,
        gnn=args.gnn,
        epochs_probe=args.epochs_probe,
        epochs_finetune=args.epochs_finetune,
        epochs_gnn=args.epochs_gnn,
        similarity=args.similarity,
    )


def _refuse_unused(explicit: set[str], names: Sequence[str], by: str, needs: str) -> None:
    """A ``CLIError`` when the user gave options (``dest`` names) that the command's arm does not use."""
    given = [n for n in names if n in explicit]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise CLIError(
            f"{flags}: not used {by}; leave {'them' if len(given) > 1 else 'it'} out, or add {needs}"
        )


def _cmd_finetune(args: argparse.Namespace, explicit: set[str]) -> int:
    freeze = args.freeze
    if args.lightning_strategy in _FREEZING:  # the meaning of --strategy before it went to Lightning
        if freeze is not None and freeze != args.lightning_strategy:
            raise CLIError(
                f"--strategy {args.lightning_strategy} (the old name of --freeze) and --freeze {freeze} "
                "disagree; give --freeze only"
            )
        print(
            f"pixgraph: --strategy {args.lightning_strategy} is deprecated for the freezing of finetune; "
            f"use --freeze {args.lightning_strategy} (--strategy now names a Lightning strategy)",
            file=sys.stderr,
        )
        freeze, args.lightning_strategy = args.lightning_strategy, None
        explicit = (explicit - {"lightning_strategy"}) | {"freeze"}
    strategy = None if freeze in (None, "auto") else freeze
    if args.head != "graph":
        _refuse_unused(
            explicit,
            ("n_segments", "segmentation", "graph"),
            "by a fine-tuned CNN head (arm B)",
            "--head graph",
        )
    if args.blocks is not None and strategy != "fine_tuning":
        raise CLIError(f"--blocks {args.blocks} needs --freeze fine_tuning (got --freeze {freeze or 'auto'})")
    return _run_compare(
        args,
        explicit,
        arms=("e2e",) if args.head == "graph" else ("finetune",),
        strategy=strategy,
        trainable_blocks=args.blocks,
        epochs_finetune=args.epochs,
        similarity=args.similarity,
    )


def _cmd_train_gnn(args: argparse.Namespace, explicit: set[str]) -> int:
    if not args.resume and _check_data(args.data, graphs=True) == "graph":
        return _train_graph_dataset(args, explicit)
    if not args.cnn_features:
        _refuse_unused(
            explicit, ("graph",), "by the colour GNN (arm D: always superpixels)", "--cnn-features"
        )
    arm = "gnn_cnn" if args.cnn_features else "gnn_color"
    return _run_compare(args, explicit, arms=(arm,), gnn=args.gnn, epochs_gnn=args.epochs)


def _stratified(targets: Any, max_per_class: int | None, seed: int) -> Any:
    """Indices keeping at most ``max_per_class`` random items of every class (all when ``None``)."""
    import numpy as np

    idx = np.arange(len(targets))
    if max_per_class is None:
        return idx
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(idx[targets == c])[:max_per_class] for c in np.unique(targets)]
    return np.sort(np.concatenate(keep))


def _train_graph_dataset(args: argparse.Namespace, explicit: set[str]) -> int:
    """``train-gnn --data <graph dataset>``: a GNN on a benchmark's own train / val / test split."""
    import numpy as np
    import torch

    from bridge.compare.config import CompareConfig, check_config, check_device, quick_config
    from bridge.compare.rundir import atomic_write, check_output_dir, json_default
    from gnn import datasets as gds
    from gnn.models import GraphClassifier, list_convs
    from gnn.training import evaluate, fit

    name = args.data.lower()
    given = {
        "cnn_features",
        "image_size",
        "n_segments",
        "backbone",
        "weights",
        "split",
        "segmentation",
        "graph",
    }
    unused = given & explicit
    if unused:
        flags = ", ".join("--" + u.replace("_", "-") for u in sorted(unused))
        raise CLIError(
            f"{flags}: not used with the graph dataset {name!r} (its graphs are given); leave "
            f"{'them' if len(unused) > 1 else 'it'} out"
        )
    conv = args.gnn or "gcn"
    if conv not in list_convs():
        raise CLIError(
            f"--gnn {conv!r} is not a known graph convolution; use one of {', '.join(list_convs())}"
        )
    device = check_device(args.device or "auto", available=True)
    out = check_output_dir(args.out, name="out") if args.out else None
    base = quick_config if args.quick else CompareConfig
    cfg = base(data="digits", **({"seeds": args.seeds} if args.seeds else {}))
    devices, num_nodes = args.devices or 1, args.num_nodes or 1
    strategy = args.lightning_strategy or "auto"
    if device.startswith("cuda:") and devices > 1:
        raise CLIError(
            f"--device {device} trains on that one GPU but --devices {devices} asks for more; use "
            f"--device cuda --devices {devices} (the first {devices} GPUs) or leave --devices out"
        )
    try:  # the data-parallel options, checked as compare checks them
        check_config(
            dataclasses.replace(cfg, devices=devices, num_nodes=num_nodes, lightning_strategy=strategy)
        )
    except ValueError as err:
        raise CLIError(str(err)) from None
    if strategy == "auto" and (devices > 1 or num_nodes > 1):
        strategy = "ddp_spawn"  # as compare: this process loads the data and evaluates; only training spreads
    epochs = args.epochs or (2 if args.quick else cfg.epochs_gnn)
    batch_size = args.batch_size or 128
    mpc = args.max_per_class or (64 if args.quick else None)

    def load(split: str) -> Any:
        return gds.load_graph_dataset(name, root=args.data_root, split=split, download=not args.no_download)

    def subset(ds: Any, seed: int) -> list[Any]:
        ys = np.array([int(ds[i].y.view(-1)[0]) for i in range(len(ds))])
        return [ds[int(i)] for i in _stratified(ys, mpc, seed)]

    train_all = load("train")
    try:
        val: list[Any] | None = subset(load("val"), 1)
    except ValueError:  # no val split (mnist-superpixels): 10% of train, stratified and seeded
        val = None
    train = subset(train_all, 0)
    if val is None:
        ys = np.array([int(g.y.view(-1)[0]) for g in train])
        rng = np.random.default_rng(0)
        held = np.concatenate(
            [rng.permutation(np.flatnonzero(ys == c))[: max(1, (ys == c).sum() // 10)] for c in np.unique(ys)]
        )
        mask = np.zeros(len(train), bool)
        mask[held] = True
        val, train = [g for g, m in zip(train, mask) if m], [g for g, m in zip(train, mask) if not m]
    test = subset(load("test"), 2)
    num_classes = 1 + max(int(g.y.max()) for g in (*train, *val, *test))
    in_channels = int(train[0].x.shape[1])
    print(
        f"graph dataset {name!r}: train/val/test = {len(train)}/{len(val)}/{len(test)} graphs, "
        f"{in_channels} node features, {num_classes} classes, conv {conv}",
        flush=True,
    )
    from torch_geometric.loader import DataLoader as GraphLoader

    fit_kw: dict[str, Any] = {
        "accelerator": device,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
    }
    if device.startswith("cuda:"):
        fit_kw.update(accelerator="cuda", devices=[int(device[5:])])
    runs = []
    for seed in cfg.seeds:
        torch.manual_seed(seed)
        model = GraphClassifier(in_channels, num_classes, conv=conv, hidden=cfg.hidden, layers=cfg.layers)
        g = torch.Generator().manual_seed(seed)
        history = fit(
            model,
            GraphLoader(train, batch_size=batch_size, shuffle=True, generator=g),
            GraphLoader(val, batch_size=batch_size),
            epochs=epochs,
            lr=cfg.lr_gnn,
            seed=seed,
            progress=_progress(args),
            **fit_kw,
        )
        metrics = evaluate(model, GraphLoader(test, batch_size=batch_size))
        runs.append({"seed": seed, "test": metrics, "history": history.to_dict()})
        print(
            f"seed {seed}: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}",
            flush=True,
        )
    acc = np.array([r["test"]["accuracy"] for r in runs])
    std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
    print(f"{name} {conv}: test accuracy {acc.mean():.4f} +- {std:.4f} over {len(acc)} seed(s)")
    if out is not None:
        result = {
            "data": name,
            "conv": conv,
            "split": {"train": len(train), "val": len(val), "test": len(test)},
            "epochs": epochs,
            "runs": runs,
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": std,
        }
        atomic_write(out / "results.json", json.dumps(result, indent=1, default=json_default))
        print(f"results: {out / 'results.json'}")
    return 0


def _cmd_graphs(args: argparse.Namespace, explicit: set[str]) -> int:
    import numpy as np

    from bridge.compare.rundir import check_output_dir
    from bridge.convert import ImageToGraph
    from bridge.dataset import GraphDataset, default_cache_dir
    from cnn.backbones import check_backbone_name, create_backbone
    from cnn.datasets import load_dataset

    _check_data(args.data)
    _check_source_options(args)
    if args.backbone:
        try:
            check_backbone_name(args.backbone)
        except ValueError as err:
            raise CLIError(f"--backbone: {err}") from None
    if args.workers is not None and args.workers < 0:
        raise CLIError(f"--workers {args.workers}: use 0 (no worker processes) or a positive number")
    root = args.cache or default_cache_dir()
    try:
        check_output_dir(root, name="cache")
    except ValueError as err:
        raise CLIError(str(err)) from None
    backbone, note = None, ""
    if args.backbone:
        from cnn.fusion import count_batchnorm, fold_batchnorm

        # the backbone only computes node features here: its BatchNorm layers are folded into the
        # convolutions (the same maps up to float rounding, about 1.3x faster graphs with CNN features)
        backbone = create_backbone(args.backbone)
        n_bn = count_batchnorm(backbone)
        note = "no BatchNorm layers to fold"
        if n_bn:
            try:
                fast = fold_batchnorm(backbone)
            except RuntimeError as err:  # the copy would compute other maps: keep the backbone as it is
                note = f"BatchNorm not folded ({err})"
            else:
                folded = n_bn - count_batchnorm(fast)
                backbone, note = fast, f"{folded} BatchNorm layers folded into its convolutions"
    conv = ImageToGraph(
        n_segments=args.n_segments, method=args.method, edges=args.edges, k=args.k, backbone=backbone
    )
    ds = load_dataset(args.data, max_per_class=args.max_per_class, **_source_kwargs(args))
    graphs = GraphDataset(ds, conv, root=root, workers=args.workers, progress=_progress(args))
    nodes = np.array([g.num_nodes for g in graphs])
    edges = np.array([g.edge_index.shape[1] // 2 for g in graphs])
    print(conv)
    print(
        f"{len(graphs)} graphs ({'reused' if graphs.reused else 'built'}: {graphs.cache_path})\n"
        f"nodes per graph: mean {nodes.mean():.1f}, min {nodes.min()}, max {nodes.max()}\n"
        f"undirected edges per graph: mean {edges.mean():.1f}\n"
        f"node features: {graphs[0].x.shape[1]}"
    )
    if backbone is not None:
        print(f"backbone: {args.backbone}, {note}")
    return 0


def _source_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``split``, ``root``, ``download`` of ``load_dataset``, only where given (packaged sets refuse them)."""
    kw: dict[str, Any] = {}
    if args.split is not None:
        kw["split"] = args.split
    if args.data_root is not None:
        kw["root"] = args.data_root
    if args.no_download:
        kw["download"] = False
    return kw


def _cmd_data(args: argparse.Namespace, explicit: set[str]) -> int:
    from cnn.datasets import describe_dataset, format_description, load_dataset
    from gnn.datasets import list_graph_datasets

    if args.data.lower() in list_graph_datasets():
        raise CLIError(
            f"{args.data!r} is a graph dataset; `pixgraph data` describes image datasets. Train a GNN on it "
            f"with `pixgraph train-gnn --data {args.data}`"
        )
    _check_data(args.data)
    _check_source_options(args)
    with warnings.catch_warnings():  # the unreadable files are listed in the description
        warnings.simplefilter("ignore", UserWarning)
        ds = load_dataset(args.data, max_per_class=args.max_per_class, **_source_kwargs(args))
    print(format_description(describe_dataset(ds)))
    return 0


def _check_out_dir(path: str, name: str) -> Path:
    from bridge.compare.rundir import check_output_dir

    try:
        return check_output_dir(path, name=name)
    except ValueError as err:
        raise CLIError(str(err)) from None


def _check_out_file(path: str, name: str, suffixes: tuple[str, ...]) -> Path:
    """A file to write: not a folder, a known suffix, and its folder writable (checked before any work)."""
    p = Path(os.path.expanduser(path))
    flag = f"--{name}"
    if p.is_dir():
        raise CLIError(f"{flag} {path!r} is a folder; give a file name such as {p / ('graph' + suffixes[0])}")
    if p.suffix.lower() not in suffixes:
        raise CLIError(f"{flag} {path!r}: use a file name ending in {' or '.join(suffixes)}")
    _check_out_dir(str(p.parent), name)
    return p


def _cmd_explain(args: argparse.Namespace, explicit: set[str]) -> int:
    import torch

    from cnn.backbones import check_backbone_name, create_backbone
    from cnn.explain import FeatureMaps, grad_cam
    from cnn.plots import plot_feature_maps, plot_grad_cam
    from cnn.transforms import center_view, normalize_images

    out = _check_out_dir(args.out, "out")
    if args.model is not None:
        return _explain_arm(args, out)
    try:
        check_backbone_name(args.backbone)
    except ValueError as err:
        raise CLIError(f"--backbone: {err}") from None
    if args.weights not in (None, "imagenet") and not os.path.isfile(args.weights):
        raise CLIError(f"--weights {args.weights!r}: no such file; give a .pth state dict, imagenet or none")
    image = _load_image(args.image)
    model = create_backbone(args.backbone, weights=args.weights)
    cfg = model.cfg
    if not 0 <= args.stage < len(model.feature_channels):
        raise CLIError(f"--stage {args.stage}: the backbone has stages 0..{len(model.feature_channels) - 1}")
    img = center_view(image, cfg.input_size, cfg.resize_size)
    x = normalize_images(img[None], cfg.mean, cfg.std)
    with FeatureMaps(model, [args.stage]) as fm, torch.no_grad():
        probs = model(x).softmax(1)[0]
    maps = next(iter(fm.maps.values()))
    out.mkdir(parents=True, exist_ok=True)
    names = _class_names(model.num_classes, args.weights)
    for p, i in zip(*probs.topk(min(5, len(probs)))):
        print(f"{p.item():.3f}  {names[int(i)]}")
    plot_feature_maps(maps[0], path=out / "feature_maps.png")
    cam = grad_cam(model, x)[0].detach().numpy()
    plot_grad_cam(img, cam, path=out / "grad_cam.png")
    print(f"wrote {out / 'feature_maps.png'} and {out / 'grad_cam.png'}")
    return 0


def _explain_arm(args: argparse.Namespace, out: Path) -> int:
    """``explain IMAGE --model RUN/models/<arm>.pth``: the arm's prediction, map and faithfulness."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bridge.compare.explainers import load_explainer
    from bridge.compare.rundir import RunFolder
    from bridge.compare.workbench import Workbench
    from cnn.perturbation import faithfulness
    from cnn.transforms import center_view

    path = Path(args.model)
    if not path.is_file():
        raise CLIError(f"--model {args.model!r}: no such file; give RUN_DIR/models/<arm>.pth of a comparison")
    folder = RunFolder(path.parent.parent)
    try:
        cfg, _ = folder.read_config()
    except FileNotFoundError:
        raise CLIError(
            f"--model {args.model!r}: {str(folder.config_path)!r} is missing; the file must sit in the "
            "models/ folder of a pixgraph compare run"
        ) from None
    bench = Workbench(cfg, folder, log=lambda m: None, progress=False, download=False)
    explainer, classes = load_explainer(bench, path)
    pcfg = bench.frozen.cfg
    size = cfg.image_size or pcfg.input_size
    img = center_view(_load_image(args.image), size, int(round(size / pcfg.crop_pct)))[None]
    probs = explainer.probs(img)[0]
    cam = explainer.maps(img)
    for p, i in zip(*probs.topk(min(5, len(probs)))):
        print(f"{p.item():.3f}  {classes[int(i)]}")
    f = faithfulness(explainer.scorers(img), img, cam, steps=cfg.faithfulness_steps or 10, fill="blur")
    print(
        f"{explainer.arm} ({explainer.method}): deletion AUC {f.deletion_auc[0]:.3f} "
        f"(random order {f.random_deletion_auc[0]:.3f}, lower = more faithful), insertion AUC "
        f"{f.insertion_auc[0]:.3f} (random order {f.random_insertion_auc[0]:.3f}, higher = more faithful)"
    )
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    axes[0].imshow(img[0])
    axes[0].set_title(f"{explainer.arm} predicts {classes[int(probs.argmax())]} ({probs.max():.2f})")
    axes[1].imshow(img[0])
    axes[1].imshow(cam[0].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].set_title(explainer.method)
    x = np.linspace(0, 1, f.curves["deletion"].shape[1])
    for kind in ("deletion", "insertion"):
        (line,) = axes[2].plot(x, f.curves[kind][0], label=kind)
        axes[2].plot(x, f.curves[f"random_{kind}"][0], linestyle=":", color=line.get_color())
    axes[2].set(
        xlabel="fraction of pixels", ylabel="probability", ylim=(0, 1.02), title="dotted: random order"
    )
    axes[2].legend()
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"explain_{explainer.arm}.png"
    fig.savefig(target, dpi=90)
    plt.close(fig)
    print(f"wrote {target}")
    return 0


def _class_names(n: int, weights: str | None = None) -> list[str]:
    """The class names stored with a checkpoint ``weights`` when it has ``n`` of them, ImageNet's for
    1000 classes, else the class indices."""
    if weights not in (None, "imagenet", "none"):
        from engine.checkpoints import load_checkpoint

        try:
            stored = load_checkpoint(str(weights))["classes"]
        except (ValueError, OSError):  # a bare state dict or another format: no names to read
            stored = None
        if stored is not None and len(stored) == n:
            return [str(c) for c in stored]
    if n == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(n)]
    return [str(i) for i in range(n)]


def _cmd_show(args: argparse.Namespace, explicit: set[str]) -> int:
    """Draw the graph (and export GraphML): both files are written, or neither."""
    import secrets

    from bridge.convert import ImageToGraph
    from bridge.nxgraph import draw_graph, export_graphml

    png = _check_out_file(args.out, "out", (".png", ".jpg", ".jpeg", ".pdf", ".svg"))
    graphml = _check_out_file(args.graphml, "graphml", (".graphml", ".xml")) if args.graphml else None
    if graphml is not None and graphml.resolve() == png.resolve():
        raise CLIError(f"--out and --graphml name the same file {args.out!r}; give two file names")
    image = _load_image(args.image)
    conv = ImageToGraph(n_segments=args.n_segments, method=args.method, edges=args.edges)
    data = conv(image)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    targets = [(png, png.parent / f".{png.stem}.{tag}.tmp{png.suffix}")]
    if graphml is not None:
        targets.append((graphml, graphml.parent / f".{graphml.stem}.{tag}.tmp{graphml.suffix}"))
    try:
        for _, tmp in targets:
            tmp.parent.mkdir(parents=True, exist_ok=True)
        draw_graph(image, data, path=targets[0][1])
        if graphml is not None:
            export_graphml(data, targets[1][1])
        for final, tmp in targets:  # the last step: both files appear together
            os.replace(tmp, final)
    finally:
        for _, tmp in targets:
            tmp.unlink(missing_ok=True)
    print(f"{data.num_nodes} nodes, {data.edge_index.shape[1] // 2} edges -> {args.out}")
    if graphml is not None:
        print(f"GraphML -> {args.graphml}")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, set[str]], int]] = {
    "compare": _cmd_compare,
    "finetune": _cmd_finetune,
    "train-gnn": _cmd_train_gnn,
    "graphs": _cmd_graphs,
    "explain": _cmd_explain,
    "show": _cmd_show,
    "data": _cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pixgraph`` command; returns the exit code (see :data:`EXIT_CODES`).

    Every error goes to stderr: a user error as one line ``pixgraph: error: ...`` (exit code 2, before
    any training); a dataset that is not available offline as its full message (what to download,
    where to put it), also exit code 2.

    Example:
        >>> main(["show", "coffee", "--out", "coffee_graph.png"])
        65 nodes, 163 edges -> coffee_graph.png
        0
    """
    # PyTorch Geometric scripts a few helpers at import; torch 2.14 warns about torch.jit.script on each
    # command. The warning concerns PyG's code, not the user's, so the command does not show it.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = _explicit(argv)
    from engine import memory

    memory.keep_freed_memory()  # large CPU tensors reuse freed memory (unless PIXGRAPH_KEEP_FREED_MEMORY=0)
    try:
        return _COMMANDS[args.command](args, explicit)
    except CLIError as err:
        print(f"pixgraph: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixgraph: interrupted; rerun with --resume <run folder> to continue", file=sys.stderr)
        return 130
    except Exception as err:
        from engine.files import DatasetNotAvailableError

        if os.environ.get("PIXGRAPH_DEBUG"):
            raise
        if isinstance(err, DatasetNotAvailableError):
            print(f"pixgraph: error: {err}", file=sys.stderr)  # the whole message: what to fetch, where
            return 2
        if not isinstance(err, (ValueError, TypeError, RuntimeError, OSError, ImportError)):
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"pixgraph: error: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
