"""The pictures of a comparison (first seed): accuracy curves, confusion matrices, faithfulness curves of
every arm's explanations, prediction grids and an explanation panel (image, its graph, and the map of
every arm side by side: Grad-CAM for the CNN arms, node saliency on the superpixels for the GNN arms).

Matplotlib is imported here only, when a run has finished; a picture that fails never sinks a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bridge.compare.workbench import Workbench

__all__ = ["write_figures"]


def write_figures(bench: Workbench, cells: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """Write the pictures under ``figures/``; returns their file names, in report order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn.plots import plot_confusion_matrix, plot_predictions

    cfg, d, fig_dir = bench.cfg, bench.data, bench.folder.fig_dir
    seed = cfg.seeds[0]
    done = [a for a in cfg.arms if cells.get((a, seed), {}).get("status") == "ok"]
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = []
    if done:
        fig, axes = plt.subplots(1, len(done), figsize=(4 * len(done), 3.2), squeeze=False)
        for ax, arm in zip(axes[0], done):
            h = cells[(arm, seed)]["history"]
            ax.plot(np.arange(1, len(h.get("train_acc", [])) + 1), h.get("train_acc", []), label="train")
            if h.get("val_acc"):
                ax.plot(np.arange(1, len(h["val_acc"]) + 1), h["val_acc"], label="val")
            ax.set(title=arm, xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
            ax.legend()
        fig.tight_layout()
        fig.savefig(fig_dir / "accuracy_curves.png", dpi=90)
        plt.close(fig)
        names.append("accuracy_curves.png")
        fig, axes = plt.subplots(1, len(done), figsize=(3.6 * len(done), 3.4), squeeze=False)
        y_true = d.targets[d.test]
        for ax, arm in zip(axes[0], done):
            plot_confusion_matrix(y_true, np.asarray(cells[(arm, seed)]["test_preds"]), d.classes, ax=ax)
            ax.set_title(arm)
        fig.tight_layout()
        fig.savefig(fig_dir / "confusion_matrices.png", dpi=90)
        plt.close(fig)
        names.append("confusion_matrices.png")
    faithful = {a: cells[(a, seed)]["faithfulness"] for a in done if cells[(a, seed)].get("faithfulness")}
    if faithful:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, (arm, f) in enumerate(faithful.items()):
            x = np.linspace(0, 1, len(f["curves"]["deletion"]))
            c = colours[k % len(colours)]
            for ax, kind in zip(axes[0], ("deletion", "insertion")):
                ax.plot(x, f["curves"][kind], color=c, label=arm)
                ax.plot(x, f["curves"][f"random_{kind}"], color=c, linestyle=":", alpha=0.7)
        for ax, kind in zip(axes[0], ("deletion", "insertion")):
            better = "lower" if kind == "deletion" else "higher"
            ax.set_title(f"{kind}: {better} area = more faithful (dotted: random order)", fontsize=9)
            ax.set(
                xlabel="fraction of pixels " + ("removed" if kind == "deletion" else "restored"),
                ylabel="probability of the predicted class",
                ylim=(0, 1.02),
            )
        axes[0][0].legend()
        fig.tight_layout()
        fig.savefig(fig_dir / "faithfulness.png", dpi=90)
        plt.close(fig)
        names.append("faithfulness.png")
    n_grid = min(20, len(d.test))
    for arm in ("finetune", "gnn_cnn"):
        if arm in done:
            preds = np.asarray(cells[(arm, seed)]["test_preds"])[:n_grid]
            fig = plot_predictions(
                list(d.images[d.test[:n_grid]]),
                d.targets[d.test[:n_grid]],
                preds,
                d.classes,
                cols=min(10, n_grid),
                rows=2 if n_grid > 10 else 1,
            )
            fig.savefig(fig_dir / f"predictions_{arm}.png", dpi=80)
            plt.close(fig)
            names.append(f"predictions_{arm}.png")
    try:
        names.append(_explain_panel(bench, done))
    except Exception as err:  # pictures never sink a finished comparison
        bench.log(f"explanation panel failed: {type(err).__name__}: {err}")
    return names


def _explain_panel(bench: Workbench, done: list[str]) -> str:
    """The explained test images with their graph and every arm's map side by side, titled with its
    prediction (green: right, red: wrong)."""
    import matplotlib.pyplot as plt

    from bridge.compare.explainers import load_explainer
    from bridge.nxgraph import draw_graph

    cfg, d, models = bench.cfg, bench.data, bench.folder.models_dir
    idx = d.test[: cfg.n_explain]
    imgs = d.images[idx]
    graphs = bench.converter(False, keep_segments=True).batch(list(imgs))
    explained = []
    for arm in done:
        path = models / f"{arm}.pth"
        if path.exists():
            try:
                ex, _ = load_explainer(bench, path)
            except ValueError as err:  # e.g. a model file of pixgraph 0.1
                bench.log(f"explanation panel: {arm} left out: {err}")
                continue
            explained.append((ex, ex.maps(imgs).numpy(), ex.probs(imgs).argmax(1).numpy()))
    cols = 2 + len(explained)
    fig, axes = plt.subplots(len(idx), cols, figsize=(2.8 * cols, 2.8 * len(idx)), squeeze=False)
    for r, (i, g) in enumerate(zip(idx, graphs)):
        axes[r][0].imshow(imgs[r])
        axes[r][0].set_title(f"true: {d.classes[d.targets[i]]}", fontsize=9)
        draw_graph(imgs[r], g, ax=axes[r][1])
        axes[r][1].set_title("superpixel graph", fontsize=9)
        for c, (ex, maps, preds) in enumerate(explained, start=2):
            axes[r][c].imshow(imgs[r])
            axes[r][c].imshow(maps[r], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            right = preds[r] == d.targets[i]
            axes[r][c].set_title(
                f"{ex.arm}: {d.classes[preds[r]]}", fontsize=9, color="green" if right else "red"
            )
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(bench.folder.fig_dir / "explanations.png", dpi=80)
    plt.close(fig)
    return "explanations.png"
