"""Classification metrics shared by every model family: accuracy as the lecture notes count it, macro-F1.

Accuracy is counted exactly as in the lecture notes::

    _, preds = torch.max(outputs, 1)
    correct += preds.eq(labels).sum().item()

All functions take tensors or NumPy arrays and work on any device; nothing here knows images or graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["accuracy", "classification_metrics", "confusion_matrix", "correct_count", "macro_f1"]


def _as_long(values: Any, name: str) -> Tensor:
    if not isinstance(values, Tensor):
        array = np.asarray(values)
        values = array.astype(np.int64) if array.size == 0 else array  # [] is float64 in NumPy
    t = torch.as_tensor(values)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices; got dtype {t.dtype}")
    return t.reshape(-1).long()


def _pair(preds: Any, labels: Any) -> tuple[Tensor, Tensor]:
    p, y = _as_long(preds, "preds"), _as_long(labels, "labels")
    if p.numel() != y.numel():
        raise ValueError(
            f"preds and labels must have the same length, got {p.numel()} and {y.numel()}; "
            "give one prediction per labelled item"
        )
    return p, y.to(p.device)


def correct_count(outputs: Tensor, labels: Tensor) -> Tensor:
    """Number of right predictions in a batch of logits, as the lecture notes count it.

    Shapes:
        - outputs: ``(B, C)`` logits or probabilities; labels: ``(B,)`` int64 -> a 0-d tensor.

    Example:
        >>> correct_count(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(1)
    """
    _, preds = torch.max(outputs, 1)
    return preds.eq(labels).sum()


def accuracy(preds: Any, labels: Any) -> float:
    """Fraction of ``preds`` equal to ``labels``.

    Shapes:
        - preds, labels: ``(N,)`` integer class indices.

    Example:
        >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
        0.75
    """
    p, y = _pair(preds, labels)
    if y.numel() == 0:
        raise ValueError("accuracy of 0 items is undefined; give at least one labelled item")
    return float(p.eq(y).sum()) / y.numel()


def confusion_matrix(preds: Any, labels: Any, num_classes: int) -> Tensor:
    """Counts ``[true class, predicted class]``, one ``bincount``.

    Shapes:
        - preds, labels: ``(N,)`` in ``[0, num_classes)`` -> ``(num_classes, num_classes)`` int64.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
        [[1, 1], [0, 1]]
    """
    p, y = _pair(preds, labels)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if p.numel() and (
        int(torch.minimum(p.min(), y.min())) < 0 or int(torch.maximum(p.max(), y.max())) >= num_classes
    ):
        raise ValueError(
            f"class indices must be in [0, {num_classes}); got preds in [{int(p.min())}, {int(p.max())}] "
            f"and labels in [{int(y.min())}, {int(y.max())}]"
        )
    counts = torch.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def macro_f1(preds: Any, labels: Any, num_classes: int) -> float:
    """Macro-averaged F1 over the classes that occur in ``labels`` or ``preds`` (as scikit-learn).

    Shapes:
        - preds, labels: ``(N,)`` in ``[0, num_classes)``.

    Example:
        >>> round(macro_f1([0, 1, 1], [0, 1, 0], 2), 4)
        0.6667
    """
    confusion = confusion_matrix(preds, labels, num_classes).double()
    tp = confusion.diag()
    denom = confusion.sum(0) + confusion.sum(1)  # predicted + true per class
    present = denom > 0
    if not bool(present.any()):
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def classification_metrics(preds: Any, labels: Any, num_classes: int) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` of one set of predictions.

    Example:
        >>> classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)["accuracy"]
        0.75
    """
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, num_classes)}
