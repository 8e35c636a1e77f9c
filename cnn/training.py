"""Training of image classifiers on the Lightning engine: ``fit``, ``evaluate``, ``predict``.

:func:`fit` wraps any classifier (``model(images) -> logits``) in a ``LightningModule`` and runs
``lightning.Trainer``: per-epoch :class:`History`, progress bar, early stopping on ``val_loss``,
checkpoints written atomically (``last.ckpt`` every epoch, ``best.pth`` when the monitored loss improves),
resume after a crash, mixed precision, and data-parallel training on several devices, processes or
machines through Lightning's DDP strategies. Only parameters with ``requires_grad`` are optimised, so
:func:`cnn.freezing.freeze` decides what trains.

:func:`evaluate` and :func:`predict` are plain loops written as in the lecture notes
(``_, preds = torch.max(outputs, 1)``; ``correct += preds.eq(labels).sum().item()``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from torch import Tensor, nn
from torch.utils.data import Subset, TensorDataset

from cnn.checkpoints import save_checkpoint

__all__ = ["History", "evaluate", "fit", "predict"]

_OPTIMIZERS = ("adam", "sgd")
_META_KEY = "pixgraph"


# ----------------------------------------------------------------------------------------------
# History


@dataclass
class History:
    """Per-epoch metrics of :func:`fit`, one entry per finished epoch (restored epochs included).

    ``val_loss`` / ``val_acc`` stay empty without a validation loader; ``epoch_time`` is the wall time
    of each epoch in seconds (training and validation).

    Example:
        >>> h = History(train_loss=[0.9, 0.5], train_acc=[0.6, 0.8], val_loss=[0.7, 0.8], val_acc=[0.7, 0.6])
        >>> len(h), h.best_epoch, h.to_dict()["train_acc"]
        (2, 0, [0.6, 0.8])
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def best_epoch(self) -> int | None:
        """0-based index of the epoch with the lowest ``val_loss`` (``train_loss`` without validation)."""
        losses = self.val_loss or self.train_loss
        if not losses:
            return None
        return min(range(len(losses)), key=lambda i: (losses[i], i))

    def to_dict(self) -> dict[str, list[float]]:
        """A plain dict of lists (JSON-ready)."""
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> History:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: [float(x) for x in v] for k, v in d.items() if k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------------------------
# Checking the data before training


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


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the block; every submodule's mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _num_classes(model: nn.Module, x: Tensor) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    with _eval_mode(model):  # one small forward pass tells the number of outputs
        out = model(x[:2].to(_model_device(model)))
    if out.dim() != 2:
        raise ValueError(f"the model returns shape {tuple(out.shape)}; a classifier returns (B, num_classes)")
    return int(out.shape[1])


# ----------------------------------------------------------------------------------------------
# Lightning module and checkpoint callback


class _ClassifierTask(L.LightningModule):
    """Cross-entropy classification of ``(images, labels)`` batches with epoch-level metrics.

    The History is the module's extra state: it travels in the Lightning checkpoint's ``state_dict``
    (restored on resume) and back from ``ddp_spawn`` workers to the calling process.
    """

    def __init__(self, model: nn.Module, *, optimizer: str, lr: float, weight_decay: float, momentum: float):
        super().__init__()
        self.model = model
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.history = History()
        self._train_sums: Tensor | None = None
        self._val_sums: Tensor | None = None
        self._val_metrics: tuple[float, float] | None = None
        self._epoch_start = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def _step(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = batch[0], batch[1]
        outputs = self.model(x)
        loss = F.cross_entropy(outputs, y)
        _, preds = torch.max(outputs.detach(), 1)
        n = y.numel()
        # Sums stay on the device (no host sync per step): loss * n, correct, n.
        sums = torch.stack([loss.detach().float() * n, preds.eq(y).sum().float(), loss.new_tensor(float(n))])
        return loss, sums

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_sums = torch.zeros(3, device=self.device)
        self._val_metrics = None

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, sums = self._step(batch)
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, device=self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, sums = self._step(batch)
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    def _reduce(self, sums: Tensor) -> tuple[float, float]:
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")  # totals over all processes
        loss_sum, correct, n = sums.tolist()
        return loss_sum / max(n, 1.0), correct / max(n, 1.0)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._val_sums is None:
            return
        self._val_metrics = self._reduce(self._val_sums)
        self.log("val_loss", self._val_metrics[0], prog_bar=True)
        self.log("val_acc", self._val_metrics[1], prog_bar=True)

    def on_train_epoch_end(self) -> None:
        loss, acc = self._reduce(self._train_sums if self._train_sums is not None else torch.zeros(3))
        h = self.history
        h.train_loss.append(loss)
        h.train_acc.append(acc)
        if self._val_metrics is not None:
            h.val_loss.append(self._val_metrics[0])
            h.val_acc.append(self._val_metrics[1])
        h.epoch_time.append(time.perf_counter() - self._epoch_start)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", acc, prog_bar=True)

    # History as extra state: part of state_dict(), so it is in every checkpoint and in the weights that
    # ddp_spawn sends back to the main process. Plain lists of floats: weights_only=True reads them.
    def get_extra_state(self) -> dict[str, list[float]]:
        return self.history.to_dict()

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, dict):
            self.history = History.from_dict(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name = getattr(self.model, "name", None)
        checkpoint[_META_KEY] = {
            "arch": name if isinstance(name, str) else None,
            "optimizer": self.optimizer_name,
            "trainable": self._trainable_names(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model or freezing before Lightning's own, cryptic errors."""
        meta = checkpoint.get(_META_KEY)
        if not isinstance(meta, dict):
            return
        arch = getattr(self.model, "name", None)
        if meta.get("arch") and isinstance(arch, str) and meta["arch"] != arch:
            raise ValueError(
                f"the checkpoint to resume was trained from {meta['arch']!r}, the model is {arch!r}; "
                "use another checkpoint_dir or resume=False to start over"
            )
        if meta.get("optimizer") != self.optimizer_name:
            raise ValueError(
                f"the checkpoint to resume was trained with optimizer={meta.get('optimizer')!r}, this call "
                f"uses optimizer={self.optimizer_name!r}; use the same optimizer or resume=False"
            )
        saved, now = list(meta.get("trainable", [])), self._trainable_names()
        if saved != now:
            raise ValueError(
                f"the checkpoint to resume trained {len(saved)} parameter tensors, the model now has "
                f"{len(now)} trainable; freeze the model as in the first run (same strategy and "
                "trainable_blocks) or resume=False to start over"
            )


class _AtomicCheckpoint(Checkpoint):
    """``last.ckpt`` after every epoch and ``best.pth`` when the monitored loss improves.

    Files are written under a temporary name in the same folder and renamed with ``os.replace``, so a
    crash while saving leaves the previous file intact. As a ``Checkpoint`` callback it runs after the
    LightningModule's ``on_train_epoch_end``, so the saved History holds the epoch just finished.
    """

    def __init__(self, dirpath: Path, *, monitor: str, classes: list[str] | None) -> None:
        self.dirpath = dirpath
        self.monitor = monitor
        self.classes = classes
        self.best = math.inf

    @property
    def state_key(self) -> str:
        return "pixgraph_checkpoint"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, _ClassifierTask):
            return
        history = pl_module.history
        losses = history.val_loss if self.monitor == "val_loss" else history.train_loss
        improved = len(losses) == len(history) and bool(losses) and losses[-1] < self.best
        if improved:
            self.best = losses[-1]
        tmp = self.dirpath / ".last.ckpt.tmp"
        # Full state (optimizer, loops) for resuming. Every rank calls it; rank 0 writes.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.dirpath / "last.ckpt")
            if improved:
                save_checkpoint(
                    pl_module.model,
                    self.dirpath / "best.pth",
                    classes=self.classes,
                    extra={"epoch": len(history) - 1, self.monitor: self.best, "history": history.to_dict()},
                )
        trainer.strategy.barrier("pixgraph_checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "monitor": self.monitor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("monitor") == self.monitor:
            self.best = float(state_dict.get("best", math.inf))


# ----------------------------------------------------------------------------------------------
# fit


def _resume_path(checkpoint_dir: Path | None, resume: bool | str | os.PathLike) -> Path | None:
    if isinstance(resume, bool):
        if not resume or checkpoint_dir is None:
            return None
        last = checkpoint_dir / "last.ckpt"
        return last if last.is_file() else None
    if isinstance(resume, (str, os.PathLike)):
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(
                f"resume={str(resume)!r} is not a file; give an existing last.ckpt or True"
            )
        return path
    raise TypeError(f"resume must be True, False or a checkpoint path, got {type(resume).__name__}")


@contextlib.contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's info messages when ``quiet``; drop its advertisement and benign warnings."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    if quiet:
        for lg in loggers:
            lg.setLevel(logging.WARNING)

    def no_ads(record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg) and "LitModels" not in str(record.msg)

    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addFilter(no_ads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*`max_epochs=.*` reached.*")
            warnings.filterwarnings(
                "ignore", message=".*defined a `validation_step` but have no `val_dataloader`.*"
            )
            # Epoch metrics are already summed over processes (strategy.reduce) before self.log.
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        rank_zero.removeFilter(no_ads)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any = None,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    momentum: float = 0.9,
    patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = True,
    classes: Sequence[str] | None = None,
    progress: bool = True,
    seed: int | None = 0,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str | int | None = None,
    callbacks: Sequence[Callback] | None = None,
) -> History:
    """Train a classifier with cross-entropy on the Lightning engine; ``model`` is trained in place.

    The loss is ``F.cross_entropy(logits, labels)``, which equals ``nn.NLLLoss()`` applied to
    ``nn.LogSoftmax(dim=1)(logits)``: the model returns raw logits, no softmax layer. Only parameters
    with ``requires_grad`` go to the optimizer, so freeze first (:func:`cnn.freezing.freeze`).

    Everything checkable is checked before training starts: loaders that are empty or do not yield
    ``(images, labels)``, labels outside ``[0, num_classes)``, a model with nothing to train, options.

    With ``checkpoint_dir``, ``last.ckpt`` (Lightning: weights, optimizer, loop state, History) is
    written atomically after every epoch and ``best.pth`` (:func:`cnn.checkpoints.save_checkpoint`)
    whenever ``val_loss`` (``train_loss`` without validation) improves. Calling ``fit`` again with the
    same folder continues from ``last.ckpt`` up to ``epochs`` in total: epochs are counted on, and the
    returned History holds all of them. Checkpoints are read with ``torch.load(weights_only=True)``.

    Data-parallel training: ``strategy="ddp"`` with ``devices=N`` (and ``num_nodes=M`` on a cluster)
    runs one process per device, each on its shard of the data, with gradients averaged, so all
    processes hold one model. ``strategy="ddp_spawn"`` or ``"ddp_fork"`` does the same from a notebook
    or script (the processes are started for you; the trained weights and History come back to the caller).

    Args:
        model: classifier, ``model(images) -> logits``; a :class:`cnn.backbones.Backbone` or any module.
        train_loader: a ``DataLoader`` of ``(images, labels)`` (shuffle it).
        val_loader: the same for validation; enables ``val_loss``, early stopping and ``best.pth`` by it.
        epochs: total number of epochs, counting those restored from a checkpoint.
        lr: learning rate.
        weight_decay: L2 penalty of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        momentum: momentum of SGD.
        patience: stop after this many epochs without a lower ``val_loss`` (needs ``val_loader``).
        checkpoint_dir: folder for ``last.ckpt`` and ``best.pth`` (created if missing); ``None``: none.
        resume: ``True`` continues from ``checkpoint_dir/last.ckpt`` when it exists; a path continues
            from that file; ``False`` starts over (and replaces the folder's checkpoints). The optimizer
            state, including its learning rate, continues from the checkpoint.
        classes: class names, stored in ``best.pth``.
        progress: show Lightning's progress bar and messages.
        seed: seed of Python, NumPy and torch (shuffling, dropout, augmentation); ``None`` leaves them.
        accelerator: ``"auto"`` (GPU when there is one), ``"cpu"``, ``"gpu"``, ...
        devices: number (or list) of devices per machine.
        strategy: ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ... (Lightning strategies).
        num_nodes: machines taking part in DDP.
        precision: ``None`` (32-bit), ``"16-mixed"``, ``"bf16-mixed"``, ...
        callbacks: extra Lightning callbacks.

    Returns:
        The :class:`History` of all epochs. The model is left on the CPU (Lightning's teardown) in the
        train/eval mode it had before.

    Raises:
        ValueError: bad options, empty loaders, labels out of range, nothing to train, or a checkpoint
            to resume from another model, optimizer or freezing.
        TypeError: loaders that do not yield ``(images, labels)`` tensors.

    Shapes:
        - images: ``(B, 3, H, W)`` float, normalised with ``model.cfg.mean`` / ``std``.
        - labels: ``(B,)`` int64 in ``[0, num_classes)``.

    Example:
        >>> model = freeze(create_backbone("efficientnet_lite0", num_classes=2), "feature_extraction")
        >>> hist = fit(model, train_loader, val_loader, epochs=5, checkpoint_dir="runs/lite0")
        >>> hist.val_acc[hist.best_epoch]
        0.93
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _positive_int(epochs, "epochs")
    _positive_int(num_nodes, "num_nodes")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))}, got {optimizer!r}")
    if patience is not None:
        _positive_int(patience, "patience")
        if val_loader is None:
            raise ValueError("patience needs a val_loader: early stopping watches val_loss")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "the model has no trainable parameters (all have requires_grad=False); "
            "call freeze(model, 'feature_extraction') or another strategy first"
        )
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise ValueError(f"checkpoint_dir={str(ckpt_dir)!r} is a file; give a folder")
    ckpt_path = _resume_path(ckpt_dir, resume)

    # The data: checked now so that a long run does not die late.
    x, y = _check_loader(train_loader, "train_loader")
    num_classes = _num_classes(model, x)
    _check_labels(train_loader, y, "train_loader", num_classes)
    if val_loader is not None:
        _, vy = _check_loader(val_loader, "val_loader")
        _check_labels(val_loader, vy, "val_loader", num_classes)
    if classes is not None:
        if isinstance(classes, str) or len(classes) != num_classes:
            raise ValueError(f"classes must list one name per class ({num_classes}), got {classes!r}")
        classes = [str(c) for c in classes]

    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)
    task = _ClassifierTask(
        model, optimizer=optimizer, lr=float(lr), weight_decay=float(weight_decay), momentum=float(momentum)
    )
    all_callbacks: list[Callback] = list(callbacks or [])
    if patience is not None:
        all_callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=patience))
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        monitor = "val_loss" if val_loader is not None else "train_loss"
        all_callbacks.append(_AtomicCheckpoint(ckpt_dir, monitor=monitor, classes=classes))

    was_training = model.training
    # Lightning keeps the modes it finds; backbones come in eval mode. Train mode for dropout and
    # BatchNorm (frozen BatchNorm stays in eval: see cnn.freezing).
    task.train()
    with _quiet_lightning(not progress):
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            precision=precision,  # type: ignore[arg-type]  # Lightning validates it
            callbacks=all_callbacks,
            logger=False,
            enable_checkpointing=any(isinstance(c, Checkpoint) for c in all_callbacks),
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            default_root_dir=ckpt_dir,
        )
        _run(trainer, task, train_loader, val_loader, ckpt_path)
    model.train(was_training)
    return History.from_dict(task.history.to_dict())


def _run(
    trainer: L.Trainer, task: _ClassifierTask, train_loader: Any, val_loader: Any, ckpt: Path | None
) -> None:
    """``trainer.fit`` that turns Lightning's Ctrl-C exit (``sys.exit(1)``) into ``KeyboardInterrupt``."""
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    except SystemExit as exc:
        if trainer.interrupted:
            raise KeyboardInterrupt(
                "training interrupted; call fit again with the same checkpoint_dir"
            ) from exc
        raise
    finally:
        if main_thread and old_handler is not None and signal.getsignal(signal.SIGINT) != old_handler:
            signal.signal(signal.SIGINT, old_handler)


# ----------------------------------------------------------------------------------------------
# evaluate and predict


def _macro_f1(preds: Tensor, labels: Tensor, num_classes: int) -> float:
    """Macro-averaged F1 over the classes that occur in ``labels`` or ``preds`` (as scikit-learn)."""
    confusion = torch.bincount(labels * num_classes + preds, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    tp = confusion.diag()
    denom = confusion.sum(0) + confusion.sum(1)  # predicted + true per class
    present = denom > 0
    if not bool(present.any()):
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def _images(batch: Any) -> Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor):
        raise TypeError(f"the loader must yield image tensors (or (images, labels)); got {type(x).__name__}")
    return x


@contextlib.contextmanager
def _on_device(model: nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """Run on ``device`` (default: where the model is); the model goes back where it was afterwards."""
    home = _model_device(model)
    target = home if device is None else torch.device(device)
    if target != home:
        model.to(target)
    try:
        yield target
    finally:
        if target != home:
            model.to(home)


def evaluate(model: nn.Module, loader: Any, *, device: str | torch.device | None = None) -> dict[str, float]:
    """Accuracy, mean cross-entropy and macro-F1 of a classifier on labelled images.

    Accuracy is counted as in the lecture notes::

        _, preds = torch.max(outputs, 1)
        correct += preds.eq(labels).sum().item()

    The model runs in eval mode without gradients; its modes (and device) are restored afterwards.

    Args:
        model: classifier, ``model(images) -> logits``.
        loader: ``DataLoader`` of ``(images, labels)``.
        device: where to run (``"cuda"``, ``"cpu"``, ...); default: the model's device.

    Returns:
        ``{"accuracy", "loss", "correct", "n", "macro_f1"}``; ``correct`` and ``n`` are ints.

    Shapes:
        - images: ``(B, 3, H, W)``; labels: ``(B,)`` int64 in ``[0, num_classes)``.

    Example:
        >>> evaluate(model, test_loader)
        {'accuracy': 0.925, 'loss': 0.21, 'correct': 185, 'n': 200, 'macro_f1': 0.92}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    correct: int | float = 0
    n, loss_sum = 0, 0.0
    all_preds, all_labels = [], []
    num_classes = 0
    with _on_device(model, device) as dev, _eval_mode(model):
        for i, batch in enumerate(loader):
            inputs, labels = _split_batch(batch, f"loader batch {i}")
            inputs, labels = inputs.to(dev), labels.to(dev)
            outputs = model(inputs)
            num_classes = outputs.shape[1]
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"loader batch {i} has labels in [{int(labels.min())}, {int(labels.max())}] but the "
                    f"model has {num_classes} classes; labels must be in [0, {num_classes})"
                )
            loss_sum += F.cross_entropy(outputs, labels, reduction="sum").item()
            _, preds = torch.max(outputs, 1)
            correct += preds.eq(labels).sum().item()
            n += labels.numel()
            all_preds.append(preds.cpu())
            all_labels.append(labels.cpu())
    if n == 0:
        raise ValueError("loader is empty (0 images); evaluate needs labelled images")
    return {
        "accuracy": correct / n,
        "loss": loss_sum / n,
        "correct": int(correct),
        "n": int(n),
        "macro_f1": _macro_f1(torch.cat(all_preds), torch.cat(all_labels), num_classes),
    }


def predict(
    model: nn.Module, loader: Any, *, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Predicted class and class probabilities of every image, in loader order.

    Args:
        model: classifier, ``model(images) -> logits``.
        loader: ``DataLoader`` of images or of ``(images, labels)`` (labels are ignored).
        device: where to run; default: the model's device.

    Returns:
        ``(preds, probs)`` on the CPU: ``preds`` int64, ``probs`` float32 softmax probabilities.

    Shapes:
        - preds: ``(N,)``; probs: ``(N, num_classes)``, rows sum to 1.

    Example:
        >>> preds, probs = predict(model, DataLoader(TensorDataset(images), batch_size=64))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    probs_all = []
    with _on_device(model, device) as dev, _eval_mode(model):
        for batch in loader:
            outputs = model(_images(batch).to(dev))
            probs_all.append(torch.softmax(outputs.float(), dim=1).cpu())
    if not probs_all:
        raise ValueError("loader is empty (0 images); predict needs images")
    probs = torch.cat(probs_all)
    _, preds = torch.max(probs, 1)
    return preds, probs
