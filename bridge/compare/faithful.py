"""Which arm's explanations can you trust? Faithfulness of every arm's maps, on the same pixels.

For the first ``cfg.faithfulness_images`` test images every arm explains its own prediction (models of
the first ``cfg.faithfulness_seeds`` seeds):

* CNN arms (A, B): Grad-CAM at the deepest stage of the backbone (for A, through the standardised
  embedding and the linear head);
* GNN arms (C, D): node saliency (:func:`gnn.importance.node_importance`) painted onto the superpixels.

Each map is scored with :func:`cnn.perturbation.faithfulness` (deletion and insertion curves, pixels
replaced by a blurred copy, against a random pixel order). For a GNN the perturbed images become graphs
over the superpixels of the intact image: the node features are recomputed from the perturbed pixels,
nodes and edges stay (see :mod:`bridge.explain`). A cell stores the areas per image and the mean curves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bridge.compare.explainers import ArmExplainer
    from bridge.compare.workbench import Workbench
    from cnn.perturbation import Faithfulness

__all__ = ["arm_faithfulness", "summarise_faithfulness"]

_FILL = "blur"


def _cell(f: Faithfulness, method: str, seconds: float, steps: int) -> dict[str, Any]:
    curves = {k: np.asarray(f.curves[k]).mean(axis=0).round(5).tolist() for k in _CURVES}
    return {
        "method": method,
        "fill": _FILL,
        "steps": steps,
        "images": int(f.deletion_auc.size),
        "seconds": round(seconds, 2),
        "deletion_auc": f.deletion_auc.round(5).tolist(),
        "insertion_auc": f.insertion_auc.round(5).tolist(),
        "random_deletion_auc": f.random_deletion_auc.round(5).tolist(),
        "random_insertion_auc": f.random_insertion_auc.round(5).tolist(),
        "curves": curves,
    }


_CURVES = ("deletion", "insertion", "random_deletion", "random_insertion")


def _images(bench: Workbench) -> np.ndarray:
    d = bench.data
    return d.images[d.test[: bench.cfg.faithfulness_images]]


def arm_faithfulness(bench: Workbench, explainer: ArmExplainer, seed: int) -> dict[str, Any] | None:
    """The arm's maps of the explained test images, scored by deletion / insertion against a random order.

    Returns:
        The faithfulness cell, or ``None`` when ``cfg.faithfulness_images`` is 0 or ``seed`` is not among
        the first ``cfg.faithfulness_seeds`` seeds.
    """
    from cnn.perturbation import faithfulness

    cfg = bench.cfg
    if cfg.faithfulness_images <= 0 or seed not in cfg.seeds[: cfg.faithfulness_seeds]:
        return None
    t0 = time.perf_counter()
    imgs = _images(bench)
    maps = explainer.maps(imgs)
    steps = bench.cfg.faithfulness_steps
    f = faithfulness(explainer.scorers(imgs), imgs, maps, steps=steps, fill=_FILL, seed=0)
    return _cell(f, explainer.method, time.perf_counter() - t0, steps)


def summarise_faithfulness(cells: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Mean and std over explained images and seeds of every area, and the gaps to the random order.

    ``deletion_gap`` = random deletion AUC - deletion AUC and ``insertion_gap`` = insertion AUC - random
    insertion AUC: how much better than a random order the maps are (higher = more faithful).

    Example:
        >>> c = {"deletion_auc": [0.2, 0.4], "insertion_auc": [0.8, 0.6], "random_deletion_auc": [0.5, 0.5],
        ...      "random_insertion_auc": [0.5, 0.5], "method": "m", "seconds": 1.0}
        >>> round(summarise_faithfulness([c])["deletion_gap_mean"], 3)
        0.2
    """
    found = [c for c in cells if c]
    if not found:
        return None
    out: dict[str, Any] = {"method": found[0]["method"], "n": 0}
    cols = {
        k: np.concatenate([np.asarray(c[k], float) for c in found]) for k in (f"{n}_auc" for n in _CURVES)
    }
    cols["deletion_gap"] = cols["random_deletion_auc"] - cols["deletion_auc"]
    cols["insertion_gap"] = cols["insertion_auc"] - cols["random_insertion_auc"]
    for k, v in cols.items():
        out[f"{k}_mean"], out[f"{k}_std"] = float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
    out["n"] = int(cols["deletion_auc"].size)
    out["seconds"] = float(sum(c.get("seconds", 0.0) for c in found))
    return out
