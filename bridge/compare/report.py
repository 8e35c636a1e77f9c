"""The report of a comparison: per-arm summary over seeds, the Markdown table, ``report.md``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bridge.compare.config import CompareConfig
from bridge.compare.data import DataView
from bridge.compare.registry import arm_titles
from bridge.compare.rundir import RunFolder, atomic_write

__all__ = ["summarise", "summary_table", "write_report"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(cfg: CompareConfig, cells: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per arm: ``title``, ``status`` (``ok`` / ``partial`` / ``failed``), per-seed cells, ``errors`` and
    a ``summary`` (accuracy and macro-F1 mean and std over seeds with ddof=1, parameters, time, speed).

    Example:
        >>> summarise(cfg, {("linear_probe", 0): cell})["linear_probe"]["status"]
        'ok'
    """
    titles = arm_titles()
    arms: dict[str, Any] = {}
    for arm in cfg.arms:
        seeds = {seed: cells[(arm, seed)] for seed in cfg.seeds if (arm, seed) in cells}
        ok = [c for c in seeds.values() if c.get("status") == "ok"]
        entry: dict[str, Any] = {
            "title": titles[arm],
            "status": "ok" if len(ok) == len(cfg.seeds) else ("failed" if not ok else "partial"),
            "seeds": {
                str(s): {k: v for k, v in c.items() if k not in ("test_preds", "traceback")}
                for s, c in seeds.items()
            },
            "errors": sorted({c["error"] for c in seeds.values() if c.get("status") != "ok"}),
        }
        if ok:
            acc = _mean_std([c["test"]["accuracy"] for c in ok])
            f1 = _mean_std([c["test"]["macro_f1"] for c in ok])
            entry["summary"] = {
                "accuracy_mean": acc[0],
                "accuracy_std": acc[1],
                "macro_f1_mean": f1[0],
                "macro_f1_std": f1[1],
                "n_seeds": len(ok),
                "trainable_params": ok[0]["trainable_params"],
                "total_params": ok[0]["total_params"],
                "train_time_s_mean": float(np.mean([c["train_time_s"] for c in ok])),
                "images_per_s": float(np.mean([c["images_per_s"] for c in ok])),
            }
        arms[arm] = entry
    return arms


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def summary_table(arms: dict[str, Any]) -> str:
    """The Markdown table of a comparison (also printed at the end of a run).

    Args:
        arms: :func:`summarise`'s result (``results.json["arms"]``).

    Example:
        >>> print(summary_table(results["arms"]).splitlines()[0])
        | arm | test accuracy | macro-F1 | trainable / total params | train time / seed | inference img/s |
    """
    rows = [
        "| arm | test accuracy | macro-F1 | trainable / total params | train time / seed | inference img/s |",
        "|---|---|---|---|---|---|",
    ]
    for e in arms.values():
        s = e.get("summary")
        if s is None:
            rows.append(f"| {e['title']} | failed: {'; '.join(e['errors'])[:120]} | | | | |")
            continue
        note = f" ({e['status']}: {s['n_seeds']} seeds)" if e["status"] != "ok" else ""
        rows.append(
            f"| {e['title']}{note} | {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f} | "
            f"{s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f} | "
            f"{_fmt_params(s['trainable_params'])} / {_fmt_params(s['total_params'])} | "
            f"{s['train_time_s_mean']:.1f} s | {s['images_per_s']:.1f} |"
        )
    return "\n".join(rows)


def write_report(
    folder: RunFolder,
    cfg: CompareConfig,
    data: DataView | None,
    arms: dict[str, Any],
    figures: list[str],
    versions: dict[str, str],
) -> None:
    """Write ``report.md``: data and split, the table, notes, pictures, configuration and versions."""
    import torch

    lines = [
        "# pixgraph comparison: CNN heads vs GNNs on superpixel graphs",
        "",
        f"Data: `{cfg.data}`"
        + (
            f", {len(data.targets)} images, classes {data.classes}, "
            f"split train/val/test = {len(data.train)}/{len(data.val)}/{len(data.test)} "
            f"(stratified, split seed {cfg.split_seed}); every arm sees the same "
            f"{data.images.shape[1]}x{data.images.shape[1]} view of each image."
            if data is not None
            else ""
        ),
        f"Backbone: `{cfg.backbone}` (weights: {cfg.weights}); seeds: {list(cfg.seeds)}; "
        "mean ± std over seeds (std with ddof=1).",
        "",
        summary_table(arms),
        "",
        "Inference img/s: from the cropped image to logits, graph building included for the GNN arms, "
        "batch size " + str(cfg.batch_size) + f", {torch.get_num_threads()} threads, device {cfg.device}.",
    ]
    strategies = [
        c["strategy"] for c in arms.get("finetune", {}).get("seeds", {}).values() if "strategy" in c
    ]
    if strategies:
        st = strategies[0]
        lines.append(
            f"\nFine-tuning strategy: {st['name']}, last {st['trainable_blocks']} blocks ({st['reason']})."
        )
    if cfg.data == "elpv":
        lines += ["", "elpv data: Buerhop-Lutz et al., licensed CC-BY-NC-SA-4.0 (non-commercial use)."]
    if figures:
        lines += ["", "## Pictures", ""] + [f"![{f}](figures/{f})" for f in figures]
    lines += [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(cfg.to_dict(), indent=1),
        "```",
        "",
        "## Versions",
        "",
        "```json",
        json.dumps(versions, indent=1),
        "```",
        "",
    ]
    atomic_write(folder.root / "report.md", "\n".join(lines))
