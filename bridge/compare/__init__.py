"""CNN heads vs GNNs on superpixel graphs: same data, same split, same seeds, same metrics.

The arms live in a registry (:mod:`bridge.compare.registry`): one function per arm takes the shared,
lazily computed :class:`~bridge.compare.workbench.Workbench` (data view and split, frozen backbone,
embeddings, graphs) and a seed, and returns one result cell. The built-in four
(:mod:`bridge.compare.arms`), trained on one stratified split for several seeds:

* ``linear_probe`` (A): frozen pretrained backbone, new linear head (feature extraction);
* ``finetune`` (B): the last blocks plus a new head trained (the strategy of ``cnn.choose_strategy``);
* ``gnn_cnn`` (C): a GNN on superpixel graphs whose nodes carry the frozen backbone's pooled stage
  features plus colour and position;
* ``gnn_color`` (D): the same GNN on graphs with colour and position only.

Every arm sees the same pixels: each image is resized (shorter side to the backbone's resize size) and
centre-cropped to its input size once, and both the CNNs and the graph builder read that view.

A run folder (:mod:`bridge.compare.rundir`) holds ``config.json``, one JSON file per finished
(arm, seed) cell under ``cells/`` (written atomically as it finishes, so an interrupted run resumes where
it stopped), ``report.md``, ``results.json`` and the pictures under ``figures/``.

Modules: ``config`` (CompareConfig), ``registry`` (register_arm, list_arms), ``arms`` (the built-in
arms), ``workbench`` (shared inputs), ``data`` (view, split, loaders), ``cell`` (one cell), ``rundir``
(folder, lock, files), ``report`` (table, report.md), ``figures`` (pictures), ``run`` (:func:`compare`),
``explainers`` and ``faithful`` (every arm's explanations and how faithful they are).
Names are loaded on first use, so ``import bridge.compare`` is cheap.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from engine.lazy import lazy_exports

__all__ = [
    "ARMS",
    "ARM_TITLES",
    "ArmSpec",
    "CompareConfig",
    "Workbench",
    "compare",
    "default_out_dir",
    "get_arm",
    "list_arms",
    "quick_config",
    "register_arm",
    "result_cell",
    "save_model",
    "summary_table",
]

_EXPORTS = {
    "ArmSpec": "bridge.compare.registry",
    "get_arm": "bridge.compare.registry",
    "list_arms": "bridge.compare.registry",
    "register_arm": "bridge.compare.registry",
    "CompareConfig": "bridge.compare.config",
    "quick_config": "bridge.compare.config",
    "Workbench": "bridge.compare.workbench",
    "result_cell": "bridge.compare.cell",
    "save_model": "bridge.compare.cell",
    "default_out_dir": "bridge.compare.rundir",
    "summary_table": "bridge.compare.report",
    "compare": "bridge.compare.run",
}
_lazy_getattr, _lazy_dir = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    # ARMS and ARM_TITLES are read from the registry at each access: a newly registered arm shows up
    if name == "ARMS":
        return importlib.import_module("bridge.compare.registry").list_arms()
    if name == "ARM_TITLES":
        return importlib.import_module("bridge.compare.registry").arm_titles()
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return sorted({*_lazy_dir(), "ARMS", "ARM_TITLES"})


class _CallablePackage(types.ModuleType):
    """``bridge.compare`` names both this package and the function :func:`compare` (``bridge`` exports
    it). Importing any module of the package binds the package as ``bridge.compare``, which would
    otherwise shadow the function; calling the package therefore runs the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
