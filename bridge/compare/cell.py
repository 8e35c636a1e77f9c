"""One result cell: an (arm, seed) pair trained, measured and written to the run folder.

A cell is a JSON-serialisable dict; the keys every arm returns (:func:`result_cell`) are ``test``
(``accuracy``, ``macro_f1``, ``n``), ``test_preds``, ``history``, ``train_time_s``, ``images_per_s``,
``device`` (where ``images_per_s`` was measured, and ``device_name``, the GPU's, on CUDA),
``backbone_images_per_s`` and ``vs_backbone`` (the frozen backbone timed in the same rounds, the
median of the arm's speed over it; absent in cells of earlier runs), ``trainable_params``,
``total_params``; :func:`bridge.compare.run.run_cell` adds ``status``, ``arm``, ``seed`` and
``wall_time_s`` (and ``error`` / ``traceback`` when the arm failed). Arms may add keys of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from bridge.compare.workbench import Speeds, Workbench

__all__ = ["device_record", "result_cell", "save_model"]


def device_record(device: torch.device) -> dict[str, str]:
    """``{"device"}`` (``"cpu"``, ``"cuda:0"``, ...), with ``"device_name"`` (the GPU's name) on CUDA: where
    a cell's speed was measured, for the report.

    Example:
        >>> device_record(torch.device("cpu"))
        {'device': 'cpu'}
    """
    if device.type != "cuda":
        return {"device": str(device)}
    index = torch.cuda.current_device() if device.index is None else device.index
    return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index)}


def result_cell(
    bench: Workbench,
    model: nn.Module,
    history: Any,
    preds: torch.Tensor,
    *,
    train_time: float,
    speed: float | Speeds,
) -> dict[str, Any]:
    """The cell of one trained model: test metrics, predictions, history, time, speed, parameters.

    Args:
        bench: the workbench (its test split and classes).
        model: what the arm runs at inference (parameters are counted on it).
        history: the ``History`` of ``fit`` (or a dict).
        preds: test predictions.
        train_time: seconds of training.
        speed: images per second at inference (:meth:`Workbench.speed`), measured on ``bench.device``
            (recorded as ``device``, :func:`device_record`), or the :class:`Speeds` of
            :meth:`Workbench.speed_and_backbone` (also recorded: ``backbone_images_per_s`` and
            ``vs_backbone``).

    Shapes:
        - preds: ``(len(bench.data.test),)`` class indices in the order of ``bench.data.test``.

    Example:
        >>> cell = result_cell(bench, head, history, preds, train_time=1.5, speed=900.0)
        >>> sorted(cell["test"])
        ['accuracy', 'macro_f1', 'n']
    """
    from bridge.compare.workbench import Speeds
    from cnn.freezing import count_parameters
    from engine.metrics import classification_metrics

    d = bench.data
    preds_np = preds.cpu().numpy().astype(np.int64)
    y_test = d.targets[d.test]
    trainable, total = count_parameters(model)
    return {
        "test": {**classification_metrics(preds_np, y_test, len(d.classes)), "n": int(len(y_test))},
        "test_preds": preds_np.tolist(),
        "history": history.to_dict() if hasattr(history, "to_dict") else dict(history),
        "train_time_s": train_time,
        **(speed._asdict() if isinstance(speed, Speeds) else {"images_per_s": speed}),
        **device_record(bench.device),
        "trainable_params": int(trainable),
        "total_params": int(total),
    }


def save_model(
    bench: Workbench, arm: str, seed: int, model: nn.Module, *, extra: dict[str, Any] | None = None
) -> None:
    """Keep the first seed's model as ``models/<arm>.pth`` (the pictures and ``pixgraph explain --model``
    use it); other seeds: nothing.

    The file is :func:`engine.checkpoints.save_checkpoint`'s format: the weights, the class names, and in
    ``extra`` the arm, the seed and what the arm needs besides the weights (the standardisation of its
    inputs), all loadable with ``torch.load(weights_only=True)``.
    """
    if seed != bench.cfg.seeds[0]:
        return
    from engine.checkpoints import save_checkpoint

    info = {"arm": arm, "seed": seed, **(extra or {})}
    save_checkpoint(model, bench.folder.models_dir / f"{arm}.pth", classes=bench.data.classes, extra=info)
