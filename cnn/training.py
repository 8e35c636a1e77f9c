"""Training of image classifiers: ``fit``, ``evaluate``, ``predict`` on pixgraph's one engine.

The engine (:mod:`engine.training`, Lightning) is shared with the graph models; this module only says
what an image batch is (``(images, labels)`` pairs) and checks image loaders before a long run. So
``cnn.fit`` has the signature, History, checkpoints (``last.ckpt``, ``best.ckpt``, ``best.pth``), logs
and resume of ``gnn.fit``. Only parameters with ``requires_grad`` are optimised, so
:func:`cnn.freezing.freeze` decides what trains.

``evaluate`` counts accuracy as in the lecture notes (``_, preds = torch.max(outputs, 1)``;
``correct += preds.eq(labels).sum().item()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Subset, TensorDataset

from engine import training as _engine
from engine.history import History
from engine.training import BatchFormat, bind_format, num_classes_of

__all__ = ["IMAGES", "History", "evaluate", "fit", "predict"]


def _split_batch(batch: Any, where: str) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"{where} must yield (images, labels) pairs; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + ". Use a DataLoader over a dataset that returns (image, label)"
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            f"{where} must yield tensors; got ({type(x).__name__}, {type(y).__name__}). "
            "Give the dataset a transform that ends with ToTensor (e.g. cnn.build_transforms)"
        )
    return x, y


def _dataset_targets(loader: Any) -> Tensor | None:
    """All labels of the loader's dataset when they can be read without loading images, else None."""
    dataset = getattr(loader, "dataset", None)
    indices = None
    while isinstance(dataset, Subset):
        idx = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        indices = idx if indices is None else idx[indices]
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        targets = dataset.tensors[1]
    elif dataset is not None and getattr(dataset, "targets", None) is not None:
        try:
            targets = torch.as_tensor(np.array(dataset.targets))  # a copy: targets may be read-only
        except (TypeError, ValueError, RuntimeError):
            return None
    else:
        return None
    targets = targets.reshape(-1) if targets.dim() <= 1 else targets
    return targets if indices is None else targets[indices]


def _check_loader(loader: Any, name: str) -> tuple[Tensor, Tensor]:
    """Check the loader has batches of (images, labels); return its first batch."""
    if loader is None:
        raise ValueError(f"{name} is None; give a DataLoader of (images, labels)")
    if isinstance(loader, (Tensor, TensorDataset, list, tuple)):
        raise TypeError(
            f"{name} must be a DataLoader (or an iterable of (images, labels) batches); got a "
            f"{type(loader).__name__}. Wrap it: DataLoader(dataset, batch_size=32, shuffle=True)"
        )
    try:
        n = len(loader)
    except TypeError:
        n = None
    if n == 0:
        raise ValueError(f"{name} is empty (0 batches); give it at least one labelled image")
    try:
        first = next(iter(loader))
    except StopIteration:
        raise ValueError(f"{name} is empty (0 batches); give it at least one labelled image") from None
    x, y = _split_batch(first, name)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} yields images of dtype {x.dtype}; the model needs float tensors (ToTensor + Normalize)"
        )
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(
            f"{name} yields labels of dtype {y.dtype} and shape {tuple(y.shape)}; cross-entropy needs "
            "class indices: a 1-D int64 tensor per batch"
        )
    return x, y


def _check_labels(loader: Any, first_labels: Tensor, name: str, num_classes: int) -> None:
    targets = _dataset_targets(loader)
    labels = first_labels if targets is None or targets.dim() != 1 else targets
    if labels.numel() == 0:
        raise ValueError(f"{name} is empty (0 images); give it at least one labelled image")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} has label {bad} outside the class range [0, {num_classes}) of the model "
            f"({num_classes} outputs); build the model with num_classes={max(hi + 1, num_classes)} "
            "(or model.reset_classifier(n)) or relabel the data to 0..num_classes-1"
        )


def _check_image_loader(model: nn.Module, loader: Any, name: str, num_classes: int | None) -> int:
    """Check a loader of ``(images, labels)`` before training; return the model's number of classes."""
    x, y = _check_loader(loader, name)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name}: the first batch of images holds NaN or inf values; fix the dataset or its transform "
            "(images must be finite floats, e.g. ToTensor + Normalize)"
        )
    n = num_classes if num_classes is not None else num_classes_of(model, x[:2])
    _check_labels(loader, y, name, n)
    return n


def _images(batch: Any) -> Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor):
        raise TypeError(f"the loader must yield image tensors (or (images, labels)); got {type(x).__name__}")
    return x


def _as_image_loader(loader: Any, name: str) -> Any:
    if loader is None:
        raise ValueError(f"{name} is None; give a DataLoader of (images, labels)")
    return loader


def _split_images(batch: Any) -> tuple[Tensor, Tensor]:
    return _split_batch(batch, "the loader")


#: Image batches: ``(images, labels)`` pairs from a ``torch.utils.data.DataLoader``. Module-level
#: functions only, so the format pickles (Lightning's ``ddp_spawn`` sends the module to new processes).
IMAGES = BatchFormat(
    name="images",
    split=_split_images,
    inputs=_images,
    check=_check_image_loader,
    as_loader=_as_image_loader,
    shapes=(
        "    - images: ``(B, 3, H, W)`` float, normalised with ``model.cfg.mean`` / ``std``.\n"
        "    - labels: ``(B,)`` int64 in ``[0, num_classes)``; logits ``(B, num_classes)``."
    ),
)

fit = bind_format(
    _engine.fit,
    IMAGES,
    module=__name__,
    example=(
        '    >>> model = freeze(create_backbone("efficientnet_lite0", num_classes=2), "feature_extraction")\n'
        '    >>> hist = fit(model, train_loader, val_loader, epochs=5, checkpoint_dir="runs/lite0")\n'
        "    >>> hist.val_acc[hist.best_epoch]\n"
        "    0.93"
    ),
)
evaluate = bind_format(
    _engine.evaluate,
    IMAGES,
    module=__name__,
    example=(
        "    >>> evaluate(model, test_loader)\n"
        "    {'accuracy': 0.925, 'loss': 0.21, 'correct': 185, 'n': 200, 'macro_f1': 0.92}"
    ),
)
predict = bind_format(
    _engine.predict,
    IMAGES,
    module=__name__,
    example="    >>> preds, probs = predict(model, DataLoader(TensorDataset(images), batch_size=64))",
)
