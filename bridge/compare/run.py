"""The entry point :func:`compare`: check, lock the run folder, run every (arm, seed) cell, report."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.compare.config import CompareConfig
from bridge.compare.registry import get_arm
from bridge.compare.rundir import RunFolder, RunLock, check_output_dir, default_out_dir, versions
from bridge.compare.workbench import Workbench

__all__ = ["check_runnable", "compare", "run_cell"]


def check_runnable(cfg: CompareConfig, *, out: str | os.PathLike | None = None) -> None:
    """Everything about ``cfg`` that can fail later, checked now: data, backbone, weights file, graph
    convolution, device availability, a patch graph of at least two patches at the working size (with
    ``graph="patches"``), and (when given) that ``out`` is a writable folder.

    Arms, seeds, epochs, image size vs superpixels and the device's spelling are checked by
    :class:`CompareConfig` itself.

    Raises:
        ValueError: the first problem found, naming the option, the value and the fix.

    Example:
        >>> check_runnable(quick_config(data="digits"), out="runs/x")  # doctest: +SKIP
    """
    from bridge.compare.config import check_device
    from cnn.backbones import check_backbone_name
    from cnn.datasets import DATASETS, DOWNLOADABLE
    from gnn.models import list_convs

    name = cfg.data.lower()
    if name in DATASETS:
        if name not in DOWNLOADABLE and (cfg.data_split is not None or cfg.data_root is not None):
            raise ValueError(
                f"data_split and data_root (--split, --data-root) only apply to downloaded datasets "
                f"({', '.join(DOWNLOADABLE)}), not to {cfg.data!r}; leave them out"
            )
    elif (cfg.data.lower().endswith(".csv") and os.path.isfile(cfg.data)) or os.path.isdir(cfg.data):
        if cfg.data_split is not None or cfg.data_root is not None:
            raise ValueError(
                f"data_split and data_root (--split, --data-root) only apply to downloaded datasets, not to "
                f"the folder or manifest {cfg.data!r}; leave them out"
            )
    else:
        raise ValueError(
            f"data={cfg.data!r} (--data) is neither a dataset name ({', '.join(DATASETS)}) nor an existing "
            "folder of class sub-folders or .csv manifest of 'path,label' lines"
        )
    check_backbone_name(cfg.backbone)
    if cfg.weights not in (None, "imagenet") and not os.path.isfile(cfg.weights):
        raise ValueError(
            f"weights={cfg.weights!r} (--weights): no such file; give the path of a .pth state dict, "
            "'imagenet' or none"
        )
    convs = list_convs()
    if cfg.gnn not in convs:
        raise ValueError(
            f"gnn={cfg.gnn!r} (--gnn) is not a known graph convolution; use one of {', '.join(convs)}"
        )
    check_device(cfg.device, available=True)
    _check_patch_grid(cfg)
    if out is not None:
        check_output_dir(out, name="out")


def _check_patch_grid(cfg: CompareConfig) -> None:
    """With ``cfg.graph == "patches"`` and arm C or E: the patch grid at the working size has at least two
    cells (a 1 x 1 grid leaves a k-NN graph with k = 0, and those arms would fail after the others trained).

    The grid depends on the backbone's stride, so an untrained copy of the backbone (no weights loaded)
    runs once on a blank image of the working size.
    """
    if cfg.graph != "patches" or not {"gnn_cnn", "e2e"} & set(cfg.arms):
        return
    import torch

    from bridge.cnngraph import PATCH_STAGE
    from cnn.backbones import create_backbone

    backbone = create_backbone(cfg.backbone, weights=None).eval()

    def cells(size: int) -> int:
        with torch.inference_mode():
            grid = backbone.features(torch.zeros(1, 3, size, size))[PATCH_STAGE]
        return int(grid.shape[2]) * int(grid.shape[3])

    size = cfg.image_size or backbone.cfg.input_size
    try:
        n = cells(size)
    except RuntimeError as err:
        raise ValueError(
            f"graph='patches' (--graph): backbone {cfg.backbone!r} cannot run on a {size}x{size} view "
            f"(image_size, --image-size): {err}; give a larger --image-size, or --graph superpixels"
        ) from err
    if n >= 2:
        return
    smallest = None
    for bigger in range(size + 1, 4 * size + 1):
        try:
            if cells(bigger) >= 2:
                smallest = bigger
                break
        except RuntimeError:
            continue
    hint = f"--image-size {smallest} or more" if smallest else "a larger --image-size"
    raise ValueError(
        f"graph='patches' (--graph) with image_size={size} (--image-size): backbone {cfg.backbone!r} "
        f"gives {n} patch at that size, too few for a k-nearest-neighbour graph (arms "
        f"{', '.join(a for a in cfg.arms if a in ('gnn_cnn', 'e2e'))}); use {hint}, or --graph superpixels"
    )


def compare(
    config: CompareConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    download: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) a comparison and write its report.

    Args:
        config: the comparison; keyword ``overrides`` replace fields of it (or of the defaults).
        out: run folder. ``None`` makes a new ``runs/compare-<data>-<time>``. An existing folder with the
            same configuration and the same data is resumed: finished (arm, seed) cells are reused; a
            folder holding another configuration, or whose data changed since, is refused.
        progress: progress bars.
        log: where progress lines go (default: print to stderr).
        download: ``False`` never downloads a named dataset.

    Returns:
        The ``results.json`` content: ``{"config", "versions", "data", "arms", "figures", "out"}``; each
        arm has ``status`` (``ok`` / ``partial`` / ``failed``), per-seed metrics and a ``summary``
        (accuracy / macro-F1 mean and std, parameters, training time, images/s).

    Raises:
        ValueError: unknown data, backbone, arm or convolution, a missing weights file, an unavailable
            device, an unwritable ``out``, ``out`` holding another configuration or other data, or a
            corrupt ``config.json`` / cell file (all checked before any training).
        RuntimeError: another live run holds ``out``.
        DatasetNotAvailableError: a named dataset is missing and cannot be downloaded.

    Example:
        >>> res = compare(quick_config(data="digits"), out="runs/digits-quick")
        >>> sorted(res["arms"])
        ['e2e', 'finetune', 'gnn_cnn', 'gnn_color', 'linear_probe']
    """
    from bridge.compare.figures import write_figures
    from bridge.compare.report import (
        paired_differences,
        paired_lines,
        speed_line,
        summarise,
        summary_table,
        write_report,
    )
    from bridge.compare.workbench import Workbench
    from bridge.segmentation import get_segmentation

    cfg = dataclasses.replace(config, **overrides) if config else CompareConfig(**overrides)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = RunFolder(Path(out) if out is not None else default_out_dir(cfg.data))
    check_runnable(cfg, out=folder.root)
    with RunLock(folder.root):
        resumed = folder.check_config(cfg)
        if resumed:
            log(f"resuming {folder.root}")
        folder.check_cells(cfg.arms, cfg.seeds)  # a corrupt cell file fails now, not after hours
        bench = Workbench(cfg, folder, log=log, progress=progress, download=download)
        try:
            data = bench.data  # bad data fails here, before any training
        except BaseException:
            if not resumed:  # a new run that never started leaves no config.json to trip over
                folder.config_path.unlink(missing_ok=True)
            raise
        note = folder.check_data(data.fingerprint())
        if note:
            log(note)
        cells = {(arm, seed): run_cell(bench, arm, seed) for arm in cfg.arms for seed in cfg.seeds}
        arms = summarise(cfg, cells)
        pairs = paired_differences(cfg, cells, data.targets[data.test], arms)
        figures = write_figures(bench, cells)
        env = versions()
        # the back-end's own version: graphs change with it (part of the graph cache key as well)
        seg_version = get_segmentation(cfg.segmentation).version
        env["segmentation"] = cfg.segmentation + ("" if seg_version is None else f" version {seg_version}")
        results: dict[str, Any] = {
            "config": cfg.to_dict(),
            "versions": env,
            "data": {
                "name": cfg.data,
                "classes": data.classes,
                "n_images": int(len(data.targets)),
                "split": {
                    "train": int(len(data.train)),
                    "val": int(len(data.val)),
                    "test": int(len(data.test)),
                },
                "image_size": int(data.images.shape[1]),
            },
            "arms": arms,
            "paired": pairs,
            "figures": figures,
            "out": str(folder.root),
        }
        folder.write_json("results.json", results)
        write_report(folder, cfg, data, arms, figures, env, pairs)
        speeds = speed_line(arms)
        lines = [summary_table(arms), *([speeds] if speeds else []), *paired_lines(pairs)]
        log("\n" + "\n".join(lines) + f"\n\nreport: {folder.root / 'report.md'}")
        return results


def run_cell(bench: Workbench, arm: str, seed: int) -> dict[str, Any]:
    """The cell of (arm, seed): reused from the run folder when finished, else computed and written.

    A failing arm gives a ``"failed"`` cell (error and traceback kept) instead of stopping the run.
    """
    folder, log = bench.folder, bench.log
    cell = folder.finished_cell(arm, seed)
    if cell is not None:
        log(f"[{arm} seed {seed}] already finished: reused")
        return cell
    spec = get_arm(arm)
    log(f"[{arm} seed {seed}] training ...")
    t0 = time.perf_counter()
    try:
        cell = spec.run(bench, seed)
        cell["status"] = "ok"
    except Exception as err:  # a failing arm is reported; the others still run
        cell = {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(limit=6),
        }
        log(f"[{arm} seed {seed}] FAILED: {cell['error']}")
    cell.update(arm=arm, seed=seed, wall_time_s=time.perf_counter() - t0)
    folder.write_cell(cell)
    if cell["status"] == "ok":
        log(
            f"[{arm} seed {seed}] test accuracy {cell['test']['accuracy']:.4f}, "
            f"macro-F1 {cell['test']['macro_f1']:.4f}, {cell['train_time_s']:.1f} s"
        )
    return cell
