"""The report of a comparison: per-arm summary over seeds, the Markdown table, ``report.md``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bridge.compare.config import CompareConfig
from bridge.compare.data import DataView
from bridge.compare.faithful import summarise_faithfulness
from bridge.compare.registry import arm_titles
from bridge.compare.rundir import RunFolder, atomic_write

__all__ = [
    "faithfulness_table",
    "paired_differences",
    "paired_lines",
    "speed_line",
    "summarise",
    "summary_table",
    "validation_accuracy",
    "write_report",
]

#: Arms whose model is a CNN head, and arms on graphs; the paired differences compare across the two.
CNN_ARMS = ("linear_probe", "finetune")
GRAPH_ARMS = ("gnn_cnn", "gnn_color", "e2e")


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
        title = titles[arm]
        if cfg.graph == "patches" and arm in ("gnn_cnn", "e2e"):
            title = title.replace("superpixels", "patches").replace("regions", "patches")
        entry: dict[str, Any] = {
            "title": title,
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
            # each seed's median ratio to the backbone timed in its rounds (cells of runs before
            # 2026-12-07 have none: no ratio)
            if all("vs_backbone" in c for c in ok):
                entry["summary"]["vs_backbone"] = float(np.mean([c["vs_backbone"] for c in ok]))
            faithful = summarise_faithfulness([c.get("faithfulness") for c in ok])
            if faithful is not None:
                entry["faithfulness"] = faithful
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


def faithfulness_table(arms: dict[str, Any]) -> list[str]:
    """The "explanation faithfulness" table and a sentence naming the most faithful arm, or ``[]``.

    Deletion AUC: lower = more faithful; insertion AUC: higher = more faithful; each beside the same
    area for a random pixel order. Mean ± std over the explained test images and seeds.

    Example:
        >>> faithfulness_table({})
        []
    """
    rows = {a: e["faithfulness"] for a, e in arms.items() if e.get("faithfulness")}
    if not rows:
        return []

    def ms(f: dict[str, Any], key: str) -> str:
        return f"{f[key + '_mean']:.3f} ± {f[key + '_std']:.3f}"

    lines = [
        "| arm | explanation | deletion AUC (lower = better) | random order "
        "| insertion AUC (higher = better) | random order | images x seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, f in rows.items():
        lines.append(
            f"| {arms[arm]['title']} | {f['method']} | {ms(f, 'deletion_auc')} "
            f"| {ms(f, 'random_deletion_auc')} | {ms(f, 'insertion_auc')} | {ms(f, 'random_insertion_auc')} "
            f"| {f['n']} |"
        )
    by_del = sorted(rows, key=lambda a: -rows[a]["deletion_gap_mean"])
    by_ins = sorted(rows, key=lambda a: -rows[a]["insertion_gap_mean"])

    def ranking(order: list[str], key: str) -> str:
        return ", ".join(f"{a} {rows[a][key]:+.3f}" for a in order)

    lines += [
        "",
        "Gain over a random pixel order (AUC units, higher = more faithful): by deletion (random - map) "
        f"{ranking(by_del, 'deletion_gap_mean')}; by insertion (map - random) "
        f"{ranking(by_ins, 'insertion_gap_mean')}.",
        "",
        f"Most faithful explanations by deletion: **{arms[by_del[0]]['title']}**; by insertion: "
        f"**{arms[by_ins[0]]['title']}**."
        + (
            ""
            if by_del[0] == by_ins[0]
            else " The two curves disagree: when the filled (blurred) image is itself predicted with "
            "confidence, deleting the evidence of one class can leave the other class's probability high, "
            "so read both columns."
        ),
    ]
    return lines


def speed_line(arms: dict[str, Any]) -> str | None:
    """Every arm's inference speed over the frozen backbone's, timed in the same rounds, and C / B
    (arm C's ratio over arm B's); ``None`` when no arm has one (runs before 2026-12-07).

    Each arm is timed minutes after the others; the ratio to the backbone timed beside it does not
    depend on how fast the machine was in those minutes.

    Example:
        >>> speed_line(results["arms"])  # doctest: +SKIP
        'Inference over the frozen backbone timed in the same rounds: A 0.98x, B 0.97x, C 0.62x; C / B 0.64x'
    """
    ratios = {
        a: e["summary"]["vs_backbone"] for a, e in arms.items() if "vs_backbone" in e.get("summary", {})
    }
    if not ratios:
        return None
    parts = ", ".join(f"{_letter(arms, a)} {r:.2f}x" for a, r in ratios.items())
    line = f"Inference over the frozen backbone timed in the same rounds: {parts}"
    if "gnn_cnn" in ratios and "finetune" in ratios:
        c, b = _letter(arms, "gnn_cnn"), _letter(arms, "finetune")
        line += f"; {c} / {b} {ratios['gnn_cnn'] / ratios['finetune']:.2f}x"
    return line


def _letter(arms: dict[str, Any], arm: str) -> str:
    head = arms[arm]["title"].split(".")[0]
    return head if len(head) == 1 else arm


def validation_accuracy(cells: dict[tuple[str, int], dict[str, Any]], arm: str, seeds: Any) -> float | None:
    """Mean over ``seeds`` of the validation accuracy of the model each cell kept, or ``None``.

    Every arm ends with the weights of its epoch of lowest validation loss (``fit(restore_best=True)``),
    so a cell's figure is ``history["val_acc"]`` at the first minimum of ``history["val_loss"]``. ``None``
    when a cell has no such history (an arm that does not validate, or a cell without it).

    Example:
        >>> h = {"val_loss": [0.9, 0.5, 0.7], "val_acc": [0.5, 0.75, 0.8]}
        >>> validation_accuracy({("a", 0): {"history": h}}, "a", [0])
        0.75
    """
    values = []
    for seed in seeds:
        history = cells.get((arm, seed), {}).get("history") or {}
        loss, acc = history.get("val_loss"), history.get("val_acc")
        if not loss or not acc or len(loss) != len(acc):
            return None
        losses = np.array([np.nan if v is None else v for v in loss], dtype=float)  # NaN is stored as null
        if np.isnan(losses).all():
            return None
        best = acc[int(np.nanargmin(losses))]
        if best is None:
            return None
        values.append(float(best))
    return float(np.mean(values)) if values else None


def paired_differences(
    cfg: CompareConfig, cells: dict[tuple[str, int], dict[str, Any]], labels: Any, arms: dict[str, Any]
) -> list[dict[str, Any]]:
    """Paired statistics (:func:`engine.stats.compare_pair`) for the pairs a reader compares.

    C - A (the graph head on the probe's features against the probe itself), E - B (the end-to-end
    graph head against the fine-tuned CNN it contains), and the best graph arm against the best CNN arm,
    picked by mean validation accuracy (:func:`validation_accuracy`; the test split, which the pair is
    then tested on, plays no part; ties go to the arm listed first). Only arms that finished every seed;
    the best-vs-best pair only among arms with validation figures. Each entry:
    ``{"name", "a", "b", "diff", "low", "high", "mcnemar", "seeds", "n"}``; the best-vs-best pair (also
    when it is C - A or E - B) has ``"val_accuracy": {a: ..., b: ...}`` as well.

    Example:
        >>> paired_differences(cfg, cells, labels, arms)[0]["name"]
        'C - A'
    """
    from engine.stats import compare_pair

    done = [a for a in cfg.arms if arms.get(a, {}).get("status") == "ok"]
    pairs: list[tuple[str, str]] = []
    if "gnn_cnn" in done and "linear_probe" in done:
        pairs.append(("gnn_cnn", "linear_probe"))
    if "e2e" in done and "finetune" in done:
        pairs.append(("e2e", "finetune"))
    val: dict[str, float] = {}
    for a in done:
        v = validation_accuracy(cells, a, cfg.seeds) if a in GRAPH_ARMS + CNN_ARMS else None
        if v is not None:
            val[a] = v
    graph = [a for a in done if a in GRAPH_ARMS and a in val]
    cnn = [a for a in done if a in CNN_ARMS and a in val]
    best: tuple[str, str] | None = None
    if graph and cnn:
        best = (max(graph, key=val.__getitem__), max(cnn, key=val.__getitem__))
        if best not in pairs:
            pairs.append(best)
    out = []
    for a, b in pairs:
        pa = [cells[(a, s)]["test_preds"] for s in cfg.seeds]
        pb = [cells[(b, s)]["test_preds"] for s in cfg.seeds]
        stats = compare_pair(pa, pb, labels)
        entry = {"name": f"{_letter(arms, a)} - {_letter(arms, b)}", "a": a, "b": b, **stats}
        if (a, b) == best:
            entry["val_accuracy"] = {a: val[a], b: val[b]}
        out.append(entry)
    return out


def _selection_lines(arms: dict[str, Any]) -> list[str]:
    """One line per arm that chose among candidates: the candidates' validation losses and the choice."""
    out = []
    for arm, entry in arms.items():
        cells = [c for c in entry.get("seeds", {}).values() if c.get("selection")]
        if not cells or len(cells[0]["selection"]["tried"]) < 2:
            continue
        parts = []
        for seed, c in entry["seeds"].items():
            if not c.get("selection"):
                continue
            tried = ", ".join(
                "/".join(f"{k} {v:g}" for k, v in t.items() if k not in ("val_loss", "val_acc", "best_epoch"))
                + f": {t['val_loss']:.3f}"
                for t in c["selection"]["tried"]
            )
            chosen = "/".join(f"{k} {v:g}" for k, v in c["selection"]["chosen"].items())
            parts.append(f"seed {seed}: {chosen} (val loss {tried})")
        out.append(f"- {_letter(arms, arm)} ({arm}): " + "; ".join(parts))
    return out


def paired_lines(pairs: list[dict[str, Any]]) -> list[str]:
    """One line per pair, e.g. ``C - A: +1.1 pts [-1.3, +3.6], McNemar p = 0.69, 1, 0.54 (per seed)``; the
    best-vs-best pair says so, with the validation accuracies it was picked by."""
    from engine.stats import format_pair

    lines = []
    for p in pairs:
        line = format_pair(p["name"], p)
        if p.get("val_accuracy"):
            accs = ", ".join(f"{arm} {v:.3f}" for arm, v in p["val_accuracy"].items())
            line += f" (best graph arm vs best CNN arm by mean validation accuracy: {accs})"
        lines.append(line)
    return lines


def _speed_device(cfg: CompareConfig, arms: dict[str, Any]) -> str:
    """Where the inference speeds were measured, as the finished cells recorded it (``device`` and, on
    CUDA, ``device_name``); cells written before that was recorded fall back to ``cfg.device``, said so."""
    where: dict[str, list[str]] = {}
    for arm, entry in arms.items():
        for cell in entry.get("seeds", {}).values():
            if cell.get("status", "ok") != "ok":
                continue
            label = cell.get("device")
            if label is None:
                label = f"{cfg.device} as configured (the device used was not recorded)"
            elif cell.get("device_name"):
                label = f"{label} ({cell['device_name']})"
            if arm not in where.setdefault(label, []):
                where[label].append(arm)
    if not where:
        return f"device {cfg.device} as configured"
    if len(where) == 1:
        return f"device {next(iter(where))}"
    return "devices " + "; ".join(f"{label} for {', '.join(names)}" for label, names in where.items())


def _faithfulness_images(cfg: CompareConfig, data: DataView | None, arms: dict[str, Any]) -> int:
    """Test images each scored model explained: as the cells recorded it, else the configured number, at
    most the test split's size."""
    counts = [
        int(cell["faithfulness"]["images"])
        for entry in arms.values()
        for cell in entry.get("seeds", {}).values()
        if isinstance(cell.get("faithfulness"), dict) and "images" in cell["faithfulness"]
    ]
    if counts:
        return max(counts)
    return min(cfg.faithfulness_images, len(data.test)) if data is not None else cfg.faithfulness_images


def write_report(
    folder: RunFolder,
    cfg: CompareConfig,
    data: DataView | None,
    arms: dict[str, Any],
    figures: list[str],
    versions: dict[str, str],
    pairs: list[dict[str, Any]] | None = None,
) -> None:
    """Write ``report.md``: data and split, the table, paired differences, explanation faithfulness, notes,
    pictures, configuration and versions."""
    import torch

    speeds = speed_line(arms)
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
        f"batch size {cfg.batch_size}, {torch.get_num_threads()} threads, {_speed_device(cfg, arms)}; "
        + (
            "the fastest of 3 passes over up to 64 test images."
            if speeds is None
            else "the fastest of 5 rounds over up to 64 test images, each round one pass of the frozen "
            "backbone (image -> embedding), then one of the arm; an arm's speed over the backbone's is the "
            "median over its rounds, which does not depend on how fast the machine was in that minute."
        ),
        *([] if speeds is None else ["", speeds + "."]),
    ]
    strategies = [
        c["strategy"] for c in arms.get("finetune", {}).get("seeds", {}).values() if "strategy" in c
    ]
    if strategies:
        st = strategies[0]
        if st["name"] == "full" or st.get("trainable_blocks") is None:  # older cells stored 2 for "full"
            part = "every layer of the backbone and the head"
        else:
            part = f"the last {st['trainable_blocks']} block(s) and the head"
        lines.append(f"\nArm B trained {part} ({st['name']}): {st['reason']}.")
    selections = _selection_lines(arms)
    if selections:
        lines += [
            "",
            "## Regularisation chosen on validation",
            "",
            "Every arm keeps the weights of its best validation epoch. Arms with several candidate settings "
            "train one model per candidate and keep the one with the lowest validation loss (the test split "
            "plays no part); chosen per seed:",
            "",
            *selections,
        ]
    if pairs:
        lines += [
            "",
            "## Paired differences",
            "",
            "Every arm is tested on the same test images for every seed, so differences are paired: mean "
            "accuracy difference over seeds in points, a 95% interval from a paired bootstrap over the test "
            "images (2,000 resamples, the same draw for every seed), and the exact McNemar test of each "
            "seed's predictions. C - A and E - B are fixed pairs; the best graph arm against the best CNN "
            "arm is picked by mean validation accuracy over seeds (of the model each arm kept, its epoch of "
            "lowest validation loss), never by test accuracy, so that picking it does not bias its test.",
            "",
            *[f"- {line}" for line in paired_lines(pairs)],
        ]
    faithful = faithfulness_table(arms)
    if faithful:
        scored = [e["faithfulness"] for e in arms.values() if e.get("faithfulness")]
        seconds = sum(f["seconds"] for f in scored)
        n_images = _faithfulness_images(cfg, data, arms)
        lines += [
            "",
            "## Explanation faithfulness",
            "",
            f"Every arm explains its own prediction on the first {n_images} test images "
            f"(models of the first {min(cfg.faithfulness_seeds, len(cfg.seeds))} seed(s)): "
            "Grad-CAM for the CNN arms, node saliency painted on the superpixels for the GNN arms. "
            f"Pixels are removed (deletion) or restored (insertion) in {cfg.faithfulness_steps} steps "
            f"in the map's order, replaced by a blurred copy; the curve follows the probability of the "
            "class predicted for the intact image. For a GNN the perturbed image is turned into a graph over "
            "the intact image's superpixels (node features recomputed from the perturbed pixels). "
            f"Scoring took {seconds:.0f} s in all ({scored[0]['n']} image x seed pairs per arm).",
            "",
            *faithful,
        ]
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
