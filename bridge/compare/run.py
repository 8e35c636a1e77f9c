"""The entry point :func:`compare`: check, lock the run folder, run every (arm, seed) cell, report."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.compare.config import CompareConfig
from bridge.compare.rundir import RunFolder, RunLock, default_out_dir, versions

__all__ = ["compare"]

_PACKAGED = ("elpv", "mnist5k", "digits")


def compare(
    config: CompareConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) a comparison and write its report.

    Args:
        config: the comparison; keyword ``overrides`` replace fields of it (or of the defaults).
        out: run folder. ``None`` makes a new ``runs/compare-<data>-<time>``. An existing folder with the
            same configuration is resumed: finished (arm, seed) cells are reused; a folder holding another
            configuration is refused.
        progress: progress bars.
        log: where progress lines go (default: print to stderr).

    Returns:
        The ``results.json`` content: ``{"config", "versions", "data", "arms", "figures", "out"}``; each
        arm has ``status``, per-seed metrics and a ``summary`` (accuracy / macro-F1 mean and std,
        parameters, training time, images/s).

    Raises:
        ValueError: unknown data, backbone or arm, or ``out`` holds another configuration (all checked
            before any training).
        RuntimeError: another live run holds ``out``.

    Example:
        >>> res = compare(quick_config(data="digits"), out="runs/digits-quick")
        >>> sorted(res["arms"])
        ['finetune', 'gnn_cnn', 'gnn_color', 'linear_probe']
    """
    from bridge.compare.cell import run_cell
    from bridge.compare.figures import write_figures
    from bridge.compare.report import summarise, summary_table, write_report
    from bridge.compare.workbench import Workbench
    from cnn.backbones import check_backbone_name

    cfg = dataclasses.replace(config, **overrides) if config else CompareConfig(**overrides)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not (cfg.data in _PACKAGED or os.path.isdir(cfg.data)):
        raise ValueError(
            f"data={cfg.data!r} is neither a packaged dataset ('elpv', 'mnist5k', 'digits') nor a folder"
        )
    check_backbone_name(cfg.backbone)
    folder = RunFolder(Path(out) if out is not None else default_out_dir(cfg.data))
    with RunLock(folder.root):
        if folder.check_config(cfg):
            log(f"resuming {folder.root}")
        bench = Workbench(cfg, folder, log=log, progress=progress)
        data = bench.data  # bad data fails here, before any training
        cells = {(arm, seed): run_cell(bench, arm, seed) for arm in cfg.arms for seed in cfg.seeds}
        arms = summarise(cfg, cells)
        figures = write_figures(bench, cells)
        env = versions()
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
            "figures": figures,
            "out": str(folder.root),
        }
        folder.write_json("results.json", results)
        write_report(folder, cfg, data, arms, figures, env)
        log("\n" + summary_table(arms) + f"\n\nreport: {folder.root / 'report.md'}")
        return results
