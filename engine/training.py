"""The one training engine of pixgraph: ``fit``, ``evaluate`` and ``predict`` on Lightning.

It knows neither images nor graphs. A model family describes its batches once in a :class:`BatchFormat`
(how a batch splits into model inputs and labels, and how to check a loader before a long run) and binds
the three functions to it with :func:`bind_format`; ``cnn.fit`` and ``gnn.fit`` are made that way, so both
families share one signature, one :class:`~engine.history.History`, one checkpoint layout:

- ``checkpoint_dir/last.ckpt``: Lightning's ``ModelCheckpoint(save_last=True)``, every epoch, for resume
  through ``Trainer.fit(ckpt_path=...)``;
- ``checkpoint_dir/best.ckpt`` and ``best.pth``: the weights with the lowest ``val_loss`` (``train_loss``
  without validation); ``best.pth`` is :func:`engine.checkpoints.save_checkpoint`'s format, as the lecture
  notes save a model;
- ``checkpoint_dir/logs/version_N/metrics.csv``: Lightning's ``CSVLogger`` (and TensorBoard events when
  ``tensorboard`` is installed); History is read from the same logged metrics.

:func:`evaluate` counts accuracy as the lecture notes do (``_, preds = torch.max(outputs, 1)``;
``correct += preds.eq(labels).sum().item()``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import Tensor, nn

from engine.checkpoints import META_KEY, config_differences, save_checkpoint
from engine.files import load_torch_file
from engine.history import METRICS, History
from engine.metrics import correct_count, macro_f1
from engine.modes import eval_mode
from engine.norms import hold_frozen_norms

__all__ = ["BatchFormat", "bind_format", "evaluate", "fit", "num_classes_of", "predict"]

_OPTIMIZERS = ("adam", "sgd")
_SCHEDULERS = ("cosine", "plateau", None)


def _identity(loader: Any, name: str) -> Any:
    return loader


def _no_check(model: nn.Module, loader: Any, name: str, num_classes: int | None) -> int | None:
    return num_classes


@dataclass(frozen=True)
class BatchFormat:
    """How one model family's batches look; the engine needs nothing else about the data.

    Attributes:
        name: what the items are, for messages (``"images"``, ``"graphs"``).
        split: ``batch -> (inputs, labels)``; ``model(inputs)`` gives ``(B, C)`` logits, labels are
            ``(B,)`` int64. Raises TypeError with the fix when a batch has another form.
        inputs: ``batch -> inputs`` for :func:`predict` (labels may be missing).
        check: ``(model, loader, name, num_classes) -> num_classes``: scans a loader before training and
            raises ValueError/TypeError naming the bad item; ``num_classes`` is ``None`` for the training
            loader (the check then finds it) and the found value for the validation loader.
        as_loader: ``(loader, name) -> loader`` turns what users pass (e.g. a list of batches) into
            something Lightning iterates.
        shapes: the Shapes section of the bound functions' docstrings.

    Example:
        >>> pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
        >>> pairs.split((torch.zeros(2, 3), torch.tensor([0, 1])))[1]
        tensor([0, 1])
    """

    name: str
    split: Callable[[Any], tuple[Any, Tensor]]
    inputs: Callable[[Any], Any]
    check: Callable[[nn.Module, Any, str, int | None], int | None] = _no_check
    as_loader: Callable[[Any, str], Any] = _identity
    shapes: str = ""


# ----------------------------------------------------------------------------------------------
# Small helpers


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _to_device(obj: Any, device: torch.device) -> Any:
    """Tensors, objects with ``.to`` (e.g. PyG batches), and tuples/lists of them, moved to ``device``."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(o, device) for o in obj)
    to = getattr(obj, "to", None)
    return to(device) if callable(to) else obj


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the block; every submodule's mode is restored afterwards."""
    with eval_mode(model), torch.no_grad():
        yield


def _parse_device(device: Any) -> torch.device:
    """``torch.device(device)``, with an error that names the argument and the valid forms."""
    if isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a device; use 'cpu', 'cuda', 'cuda:N' (GPU N) or 'mps', "
            "or a torch.device"
        ) from None


@contextlib.contextmanager
def _on_device(model: nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """Run on ``device`` (default: where the model is); the model goes back where it was afterwards."""
    home = _model_device(model)
    target = home if device is None else _parse_device(device)
    if target != home:
        model.to(target)
    try:
        yield target
    finally:
        if target != home:
            model.to(home)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _number(value: Any, name: str, *, positive: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(
            f"{name} must be a {'positive number' if positive else 'number >= 0'}, got {value!r}"
        )
    return float(value)


def num_classes_of(model: nn.Module, inputs: Any) -> int:
    """The model's number of classes: its ``num_classes`` attribute, else from one forward pass.

    ``inputs`` may be a function returning the inputs: it is called only when the forward pass is
    needed, so that, e.g., a shuffled loader is not advanced (which would change the training order).

    Example:
        >>> num_classes_of(nn.Linear(3, 4), torch.zeros(1, 3))
        4
    """
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    if inspect.isfunction(inputs) or inspect.ismethod(inputs):  # not any callable: PyG batches are callable
        inputs = inputs()
    with _eval_mode(model):
        out = model(_to_device(inputs, _model_device(model)))
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model returns {shape}; a classifier returns logits of shape (B, num_classes)")
    return int(out.shape[1])


# ----------------------------------------------------------------------------------------------
# The LightningModule


class _Task(L.LightningModule):
    """Cross-entropy classification with epoch-level metrics logged through Lightning.

    The History is read back from ``trainer.callback_metrics`` at the end of every epoch. It is the
    module's extra state, so it travels in the checkpoint's ``state_dict`` (restored on resume) and back
    from ``ddp_spawn`` workers to the calling process.
    """

    def __init__(
        self,
        model: nn.Module,
        fmt: BatchFormat,
        *,
        optimizer: str,
        lr: float,
        weight_decay: float,
        momentum: float,
        scheduler: str | None,
        epochs: int,
        classes: list[str] | None,
    ) -> None:
        super().__init__()
        self.model = model
        self.fmt = fmt
        self.optimizer_name = optimizer
        self.lr, self.weight_decay, self.momentum = lr, weight_decay, momentum
        self.scheduler, self.epochs, self.classes = scheduler, epochs, classes
        self.history = History()
        self._sums: dict[str, Tensor] = {}
        self._epoch_start = 0.0

    def forward(self, inputs: Any) -> Tensor:
        return self.model(inputs)

    def _trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt: torch.optim.Optimizer
        # foreach on the CPU too (torch picks it by default only on CUDA): one call per operation over all
        # tensors instead of a Python loop over them, the same arithmetic to the bit (a test compares)
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, foreach=True
            )
        else:
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        if self.scheduler == "cosine":
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
        if self.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
        return opt

    def _step(self, batch: Any, stage: str) -> Tensor:
        inputs, labels = self.fmt.split(batch)
        outputs = self.model(inputs)
        loss = F.cross_entropy(outputs, labels)
        n = labels.numel()
        # Sums stay on the device (no host sync per step): loss * n, correct, n.
        sums = torch.stack([loss.detach().float() * n, correct_count(outputs.detach(), labels).float()])
        sums = torch.cat([sums, sums.new_full((1,), float(n))])
        self._sums[stage] = self._sums[stage] + sums if stage in self._sums else sums
        return loss

    def _reduce(self, stage: str) -> tuple[float, float]:
        sums = self._sums.pop(stage, torch.zeros(3, device=self.device))
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")  # totals over all processes
        loss_sum, correct, n = sums.tolist()
        return loss_sum / max(n, 1.0), correct / max(n, 1.0)

    def on_train_start(self) -> None:
        # A run resumed with more (or fewer) epochs: the restored cosine schedule still ends at the first
        # run's total. Continue on the cosine of the new total from the epoch reached (closed form).
        if self.scheduler != "cosine":
            return
        sched = self.lr_schedulers()
        if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.T_max == self.epochs:
            return
        sched.T_max = self.epochs
        scale = (1.0 + math.cos(math.pi * min(sched.last_epoch, self.epochs) / self.epochs)) / 2.0
        for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * scale
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._sums.clear()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val_loss, val_acc = self._reduce("val")
        self.log("val_loss", val_loss, prog_bar=True)
        self.log("val_acc", val_acc, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        train_loss, train_acc = self._reduce("train")
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"the training loss became {train_loss} in epoch {self.current_epoch + 1}; the data hold NaN "
                "or inf, or the learning rate is too high. Check the inputs (torch.isfinite) or lower lr; "
                "the checkpoints of the epochs before are kept"
            )
        self.log("train_loss", train_loss, prog_bar=True)
        self.log("train_acc", train_acc, prog_bar=True)
        self.log("epoch_time", time.perf_counter() - self._epoch_start)
        metrics = self.trainer.callback_metrics
        self.history.append({k: float(metrics[k]) for k in METRICS if k in metrics})

    def get_extra_state(self) -> Any:
        return self.history.to_dict()

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, dict):
            self.history = History.from_dict(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name, config = getattr(self.model, "name", None), getattr(self.model, "config", None)
        checkpoint[META_KEY] = {
            "arch": name if isinstance(name, str) else None,
            "num_classes": getattr(self.model, "num_classes", None),
            "classes": self.classes,
            "model_class": type(self.model).__name__,
            "model_config": dict(config) if isinstance(config, dict) else None,
            "optimizer": self.optimizer_name,
            "hparams": self._resume_settings(),
            "trainable": self._trainable_names(),
            "history": self.history.to_dict(),
        }

    def _resume_settings(self) -> dict[str, float]:
        """The optimizer's settings a resumed run must share with the first (the checkpoint's would win)."""
        out = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer_name == "sgd":
            out["momentum"] = self.momentum
        return out

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model, configuration, optimizer, optimizer settings or freezing
        before Lightning's own errors (or before Lightning silently keeps the checkpoint's settings)."""
        meta = checkpoint.get(META_KEY)
        if not isinstance(meta, dict):
            return
        arch = getattr(self.model, "name", None)
        if meta.get("arch") and isinstance(arch, str) and meta["arch"] != arch:
            raise ValueError(
                f"the checkpoint to resume was trained from {meta['arch']!r}, the model is {arch!r}; "
                "use another checkpoint_dir or resume=False to start over"
            )
        cls = type(self.model).__name__
        if meta.get("model_class") and meta["model_class"] != cls:
            raise ValueError(
                f"the checkpoint to resume was trained with a {meta['model_class']}, the model is a {cls}; "
                "use another checkpoint_dir or resume=False to start over"
            )
        config = getattr(self.model, "config", None)
        if isinstance(meta.get("model_config"), dict) and isinstance(config, dict):
            differ = config_differences(meta["model_config"], dict(config))
            if differ:
                raise ValueError(
                    f"the checkpoint to resume was trained with another {cls} configuration ({differ}); "
                    "build the model as in the first run, or use another checkpoint_dir or resume=False"
                )
        if meta.get("optimizer", self.optimizer_name) != self.optimizer_name:
            raise ValueError(
                f"the checkpoint to resume was trained with optimizer={meta.get('optimizer')!r}, this call "
                f"uses optimizer={self.optimizer_name!r}; use the same optimizer or resume=False"
            )
        saved, now = list(meta.get("trainable", [])), self._trainable_names()
        if saved and saved != now:
            raise ValueError(
                f"the checkpoint to resume trained {len(saved)} parameter tensors, the model now has "
                f"{len(now)} trainable; freeze the model as in the first run (same strategy and "
                "trainable_blocks) or resume=False to start over"
            )
        if isinstance(meta.get("hparams"), dict):
            differ = config_differences(meta["hparams"], self._resume_settings())
            if differ:
                raise ValueError(
                    f"the checkpoint to resume was trained with other optimizer settings ({differ}); the "
                    "checkpoint's would be kept: pass the same values, or resume=False to start over"
                )


class _Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (``best.ckpt`` by the monitored loss, ``last.ckpt`` every epoch)
    that also exports the best weights as ``best.pth`` (:func:`engine.checkpoints.save_checkpoint`)."""

    def __init__(self, dirpath: Path, *, monitor: str, classes: list[str] | None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="best",
            monitor=monitor,
            mode="min",
            save_top_k=1,
            save_last=True,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
            auto_insert_metric_name=False,
        )
        self.classes = classes

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        before = self.best_model_score
        super().on_train_epoch_end(trainer, pl_module)
        # Lightning >= 2.5 writes last.ckpt only in an epoch that also wrote best.ckpt; a resume after an
        # epoch without improvement would then go back to the best epoch and train the later ones again
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        after = self.best_model_score
        improved = after is not None and (before is None or float(after) < float(before))
        if after is not None and improved and trainer.is_global_zero and isinstance(pl_module, _Task):
            history = pl_module.history
            save_checkpoint(
                pl_module.model,
                Path(str(self.dirpath)) / "best.pth",
                classes=self.classes,
                extra={
                    "epoch": len(history) - 1,
                    str(self.monitor): float(after),
                    "history": history.to_dict(),
                },
            )


class _KeepBest(Callback):
    """Keep (in memory) the weights of the epoch with the lowest ``val_loss``; put them back at the end.

    Early stopping with the best-validation weights, without a checkpoint folder: the model that
    :func:`fit` returns is the one of its best validation epoch, not of its last. With a checkpoint
    folder (``checkpoint``, monitoring ``val_loss``) a resumed run also knows the epochs before the
    resume: when the best of them is better than every epoch since, its weights come from ``best.ckpt``.
    """

    def __init__(self, checkpoint: ModelCheckpoint | None = None) -> None:
        self.best: float | None = None
        self.state: dict[str, Tensor] | None = None
        self.checkpoint = checkpoint

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if value is None or not isinstance(pl_module, _Task):
            return
        if self.best is None or float(value) < self.best:
            self.best = float(value)
            self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, _Task):
            return
        ck = self.checkpoint
        score = ck.best_model_score if ck is not None else None
        if ck is not None and score is not None and ck.best_model_path and Path(ck.best_model_path).is_file():
            if self.best is None or float(score) < self.best:  # an epoch before the resume was the best
                saved = load_torch_file(ck.best_model_path, expected="the best checkpoint of this run")
                prefix = "model."
                weights = saved["state_dict"].items()
                self.state = {k[len(prefix) :]: v for k, v in weights if k.startswith(prefix)}
        if self.state is not None:
            pl_module.model.load_state_dict(self.state)


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


def _check_resumable(path: Path | None) -> None:
    """Read the checkpoint to resume once, safely, so a corrupt file gives one clear error."""
    if path is None:
        return
    from engine.files import load_torch_file

    state = load_torch_file(
        path,
        expected="a Lightning checkpoint to resume from",
        fix="delete it to start over (or resume=False), or give another checkpoint",
    )
    if not isinstance(state, dict) or "state_dict" not in state or "loops" not in state:
        from engine.files import CheckpointError

        raise CheckpointError(
            f"{str(path)!r} is not a Lightning checkpoint written by fit (no 'state_dict'/'loops'); "
            "delete it to start over (or resume=False)",
            path,
        )


def _loggers(log_dir: Path | None, logger: Any) -> Any:
    """CSV (and TensorBoard, when installed) logs under ``log_dir/logs/version_N``; or the user's."""
    if logger is not None:
        return logger
    if log_dir is None:
        return False
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    root = log_dir / "logs"
    taken = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
    version = max(taken, default=-1) + 1
    loggers: list[Any] = [CSVLogger(save_dir=log_dir, name="logs", version=version)]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(save_dir=log_dir, name="logs", version=version))
    return loggers


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
            for message in (
                ".*does not have many workers.*",
                ".*smaller than the logging interval.*",
                ".*`max_epochs=.*` reached.*",
                ".*defined a `validation_step` but have no `val_dataloader`.*",
                ".*sync_dist=True.*",  # epoch metrics are summed over processes before self.log
                r".*isinstance\(treespec, LeafSpec\).*",
                ".*Checkpoint directory .* exists and is not empty.*",
                ".*Experiment logs directory .* exists.*",
                ".*Starting from v1.9.0, `tensorboardX` has been removed.*",
            ):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        rank_zero.removeFilter(no_ads)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _run(trainer: L.Trainer, task: _Task, train_loader: Any, val_loader: Any, ckpt: Path | None) -> None:
    """``trainer.fit`` that turns Lightning's Ctrl-C exit (``sys.exit(1)``) into ``KeyboardInterrupt``."""
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.getsignal(signal.SIGINT) if main_thread else None
    sharing = torch.multiprocessing.get_sharing_strategy()
    if _spawns(trainer) and sharing == "file_descriptor":
        # a spawned process receives the loaders' tensors: one file descriptor per shared storage
        # overflows the list a child may inherit (ValueError: bad value(s) in fds_to_keep on a few
        # hundred graphs); shared-memory files by name have no such limit
        torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    except SystemExit as exc:
        if trainer.interrupted:
            raise KeyboardInterrupt(
                "training interrupted; call fit again with the same checkpoint_dir"
            ) from exc
        raise
    finally:
        torch.multiprocessing.set_sharing_strategy(sharing)
        if main_thread and old_handler is not None and signal.getsignal(signal.SIGINT) != old_handler:
            signal.signal(signal.SIGINT, old_handler)


def _spawns(trainer: L.Trainer) -> bool:
    """Whether the trainer's strategy starts its processes by spawning them (``ddp_spawn`` and kin)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return launcher is not None and getattr(launcher, "_start_method", None) in ("spawn", "forkserver")


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any = None,
    *,
    batch_format: BatchFormat,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    momentum: float = 0.9,
    scheduler: str | None = None,
    patience: int | None = None,
    restore_best: bool = False,
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
    logger: Any = None,
) -> History:
    """Train a classifier with cross-entropy on the Lightning engine; ``model`` is trained in place.

    The loss is ``F.cross_entropy(logits, labels)``, which equals ``nn.NLLLoss()`` applied to
    ``nn.LogSoftmax(dim=1)(logits)``: the model returns raw logits, no softmax layer. Only parameters
    with ``requires_grad`` go to the optimizer, so freeze first (``cnn.freeze``, or ``requires_grad =
    False`` by hand); a BatchNorm layer whose parameters are all frozen stays in eval mode during
    training, so its running statistics do not move (:mod:`engine.norms`).

    Everything checkable is checked before training starts: options, loaders that are empty or of the
    wrong form, labels outside ``[0, num_classes)``, NaN/inf inputs, a model with nothing to train, a
    checkpoint to resume that cannot be read. A NaN loss stops training with an error naming the epoch.

    With ``checkpoint_dir``: ``last.ckpt`` every epoch and ``best.ckpt`` when the monitored loss
    improves (Lightning's ``ModelCheckpoint``, atomic saves), ``best.pth`` with the same weights
    (``save_checkpoint`` format, ``torch.load(weights_only=True)``), and a CSV metrics log (TensorBoard
    too when installed) in ``logs/version_N/``. Calling ``fit`` again with the same folder continues
    from ``last.ckpt`` (``Trainer.fit(ckpt_path=...)``) up to ``epochs`` in total; the returned History
    holds all of them. A resume must use the same model (class and ``config``), optimizer, ``lr``,
    ``weight_decay`` (and ``momentum`` for SGD) and freezing as the first run; otherwise it is refused.

    Data-parallel training: ``strategy="ddp"`` with ``devices=N`` (and ``num_nodes=M`` on a cluster)
    runs one process per device, each on its shard of the data, with gradients averaged.
    ``"ddp_spawn"`` / ``"ddp_fork"`` start the processes for you and bring weights and History back.

    Args:
        model: classifier, ``model(inputs) -> logits (B, C)``.
        train_loader: the training batches (shuffle them).
        val_loader: validation batches; enables ``val_loss``, early stopping and best weights by it.
        batch_format: how the batches look (bound by ``cnn.fit`` / ``gnn.fit``).
        epochs: total number of epochs, counting those restored from a checkpoint.
        lr: learning rate.
        weight_decay: L2 penalty of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        momentum: momentum of SGD.
        scheduler: ``"cosine"`` (to 0 over ``epochs``; a run resumed with another ``epochs`` goes on
            along the cosine of the new total), ``"plateau"`` (halve after 5 epochs without a
            lower ``val_loss``; needs ``val_loader``) or ``None``.
        patience: stop after this many epochs without a lower ``val_loss`` (needs ``val_loader``).
        restore_best: end with the weights of the epoch with the lowest ``val_loss`` (needs
            ``val_loader``), not those of the last epoch; with ``patience``, early stopping with the
            best-validation weights.
        checkpoint_dir: folder for checkpoints and logs (created if missing); ``None``: none.
        resume: ``True`` continues from ``checkpoint_dir/last.ckpt`` when it exists; a path continues
            from that file; ``False`` starts over (and replaces the folder's checkpoints).
        classes: class names, stored with the checkpoints.
        progress: show Lightning's progress bar and messages.
        seed: seed of Python, NumPy and torch (shuffling, dropout, augmentation); ``None`` leaves them.
        accelerator: ``"auto"`` (GPU when there is one), ``"cpu"``, ``"gpu"``, ...
        devices: number (or list) of devices per machine.
        strategy: ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ... (Lightning strategies).
        num_nodes: machines taking part in DDP.
        precision: ``None`` (32-bit), ``"16-mixed"``, ``"bf16-mixed"``, ...
        callbacks: extra Lightning callbacks.
        logger: ``None``: CSV (+ TensorBoard) under ``checkpoint_dir``; ``False``: none; or Lightning
            logger(s) of your own.

    Returns:
        The :class:`~engine.history.History` of all epochs. The model ends on the CPU (Lightning's
        teardown) in the train/eval mode it had before.

    Raises:
        ValueError: bad options, empty loaders, labels out of range, NaN inputs, nothing to train, or a
            checkpoint to resume from another model, configuration, optimizer, optimizer settings or
            freezing.
        TypeError: loaders of the wrong form.
        FloatingPointError: the loss became NaN or inf during training.

    Shapes:
        - labels: ``(B,)`` int64 in ``[0, num_classes)``; logits: ``(B, num_classes)``.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
        >>> data = TensorDataset(torch.randn(32, 4), torch.arange(32) % 2)
        >>> h = fit(nn.Linear(4, 2), DataLoader(data, batch_size=8), batch_format=pairs, epochs=2,
        ...         progress=False, accelerator="cpu")
        >>> len(h)
        2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(batch_format, BatchFormat):
        raise TypeError(f"batch_format must be a BatchFormat, got {type(batch_format).__name__}")
    _positive_int(epochs, "epochs")
    _positive_int(num_nodes, "num_nodes")
    lr = _number(lr, "lr", positive=True)
    weight_decay = _number(weight_decay, "weight_decay", positive=False)
    momentum = _number(momentum, "momentum", positive=False)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))}, got {optimizer!r}")
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(_SCHEDULERS)}, got {scheduler!r}")
    if patience is not None:
        _positive_int(patience, "patience")
        if val_loader is None:
            raise ValueError("patience needs a val_loader: early stopping watches val_loss")
    if not isinstance(restore_best, bool):
        raise TypeError(f"restore_best must be True or False, got {restore_best!r}")
    if restore_best and val_loader is None:
        raise ValueError(
            "restore_best=True needs a val_loader: the best weights are those of the lowest val_loss"
        )
    if scheduler == "plateau" and val_loader is None:
        raise ValueError("scheduler='plateau' needs a val_loader: it watches val_loss")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "the model has no trainable parameters (all have requires_grad=False); "
            "call freeze(model, 'feature_extraction') or another strategy first"
        )
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise ValueError(f"checkpoint_dir={str(ckpt_dir)!r} is a file; give a folder")
    ckpt_path = _resume_path(ckpt_dir, resume)
    _check_resumable(ckpt_path)

    # The data: checked now so that a long run does not die late.
    fmt = batch_format
    train_loader = fmt.as_loader(train_loader, "train_loader")
    num_classes = fmt.check(model, train_loader, "train_loader", None)
    if val_loader is not None:
        val_loader = fmt.as_loader(val_loader, "val_loader")
        fmt.check(model, val_loader, "val_loader", num_classes)
    if classes is not None:
        if isinstance(classes, str) or (num_classes is not None and len(classes) != num_classes):
            raise ValueError(f"classes must list one name per class ({num_classes}), got {classes!r}")
        classes = [str(c) for c in classes]

    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)
    task = _Task(
        model,
        fmt,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        scheduler=scheduler,
        epochs=epochs,
        classes=list(classes) if classes is not None else None,
    )
    all_callbacks: list[Callback] = list(callbacks or [])
    if patience is not None:
        all_callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=patience))
    checkpoint = None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        monitor = "val_loss" if val_loader is not None else "train_loss"
        checkpoint = _Checkpoint(ckpt_dir, monitor=monitor, classes=task.classes)
    if restore_best:  # knows the checkpoint's best (val_loss, as restore_best needs validation data)
        all_callbacks.append(_KeepBest(checkpoint))
    if checkpoint is not None:
        all_callbacks.append(checkpoint)

    was_training = model.training
    # Lightning keeps the modes it finds; backbones come in eval mode. Train mode for dropout and
    # BatchNorm; a BatchNorm whose parameters are all frozen stays in eval however the model was frozen
    # (cnn.freeze, or requires_grad=False by hand as in the lecture notes): engine.norms
    held = hold_frozen_norms(model)  # taken off again at the end: the caller's model as it came
    task.train()
    with _quiet_lightning(not progress), contextlib.ExitStack() as undo:
        for handle in held:
            undo.callback(handle.remove)
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            precision=precision,  # type: ignore[arg-type]  # Lightning validates it
            callbacks=all_callbacks,
            logger=_loggers(ckpt_dir, logger),
            log_every_n_steps=1,
            enable_checkpointing=ckpt_dir is not None,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            default_root_dir=ckpt_dir,
        )
        _run(trainer, task, train_loader, val_loader, ckpt_path)
    model.train(was_training)
    return History.from_dict(task.history.to_dict())


# ----------------------------------------------------------------------------------------------
# evaluate and predict


def _outputs(
    model: nn.Module, loader: Any, fmt: BatchFormat, device: Any, *, labelled: bool
) -> Iterator[Any]:
    """Yield ``(outputs, labels or None)`` per batch, in eval mode on ``device``; finite outputs only."""
    loader = fmt.as_loader(loader, "loader")
    with _on_device(model, device) as dev, _eval_mode(model):
        for i, batch in enumerate(loader):
            if labelled:
                inputs, labels = fmt.split(batch)
                labels = labels.to(dev)
            else:
                inputs, labels = fmt.inputs(batch), None
            outputs = model(_to_device(inputs, dev))
            if not bool(torch.isfinite(outputs).all()):
                raise ValueError(
                    f"loader batch {i}: the model's outputs hold NaN or inf; the {fmt.name} of this batch "
                    "hold NaN/inf values (check them with torch.isfinite) or the weights are broken"
                )
            if labels is not None and labels.numel():
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi >= outputs.shape[1]:
                    raise ValueError(
                        f"loader batch {i} has labels in [{lo}, {hi}] but the model has {outputs.shape[1]} "
                        f"classes; labels must be in [0, {outputs.shape[1]})"
                    )
            yield outputs, labels


def evaluate(
    model: nn.Module, loader: Any, *, batch_format: BatchFormat, device: str | torch.device | None = None
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy and macro-F1 of a classifier on labelled batches.

    Accuracy is counted as in the lecture notes::

        _, preds = torch.max(outputs, 1)
        correct += preds.eq(labels).sum().item()

    The model runs in eval mode without gradients; its modes (and device) are restored afterwards.

    Args:
        model: classifier, ``model(inputs) -> logits``.
        loader: labelled batches.
        batch_format: how the batches look (bound by ``cnn.evaluate`` / ``gnn.evaluate``).
        device: where to run (``"cuda"``, ``"cpu"``, ...); default: the model's device.

    Returns:
        ``{"accuracy", "loss", "correct", "n", "macro_f1"}``; ``correct`` and ``n`` are ints.

    Raises:
        ValueError: an empty loader, labels out of range, NaN/inf outputs (naming the batch), or a
            ``device`` torch does not know.

    Shapes:
        - labels: ``(B,)`` int64 in ``[0, num_classes)``.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
        >>> data = TensorDataset(torch.eye(2), torch.tensor([0, 1]))
        >>> evaluate(nn.Identity(), DataLoader(data), batch_format=pairs)["accuracy"]
        1.0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    correct: int | float = 0
    n, loss_sum, num_classes = 0, 0.0, 0
    all_preds, all_labels = [], []
    for outputs, labels in _outputs(model, loader, batch_format, device, labelled=True):
        num_classes = outputs.shape[1]
        loss_sum += F.cross_entropy(outputs, labels, reduction="sum").item()
        _, preds = torch.max(outputs, 1)
        correct += preds.eq(labels).sum().item()
        n += labels.numel()
        all_preds.append(preds.cpu())
        all_labels.append(labels.cpu())
    if n == 0:
        raise ValueError("loader is empty (0 items); evaluate needs labelled items")
    return {
        "accuracy": correct / n,
        "loss": loss_sum / n,
        "correct": int(correct),
        "n": int(n),
        "macro_f1": macro_f1(torch.cat(all_preds), torch.cat(all_labels), num_classes),
    }


def predict(
    model: nn.Module, loader: Any, *, batch_format: BatchFormat, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Predicted class and class probabilities of every item, in loader order.

    Args:
        model: classifier, ``model(inputs) -> logits``.
        loader: batches (labels, when present, are ignored).
        batch_format: how the batches look (bound by ``cnn.predict`` / ``gnn.predict``).
        device: where to run; default: the model's device.

    Returns:
        ``(preds, probs)`` on the CPU: ``preds`` int64, ``probs`` float32 softmax probabilities.

    Raises:
        ValueError: an empty loader, NaN/inf outputs (naming the batch), or a ``device`` torch does
            not know.

    Shapes:
        - preds: ``(N,)``; probs: ``(N, num_classes)``, rows sum to 1.

    Example:
        >>> pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
        >>> predict(nn.Identity(), [(torch.tensor([[0.0, 2.0]]),)], batch_format=pairs)[0]
        tensor([1])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    probs_all = [
        torch.softmax(out.float(), dim=1).cpu()
        for out, _ in _outputs(model, loader, batch_format, device, labelled=False)
    ]
    if not probs_all:
        raise ValueError("loader is empty (0 items); predict needs items")
    probs = torch.cat(probs_all)
    _, preds = torch.max(probs, 1)
    return preds, probs


# ----------------------------------------------------------------------------------------------
# Binding a family's batch format


def bind_format(
    function: Callable[..., Any], fmt: BatchFormat, *, module: str, example: str
) -> Callable[..., Any]:
    """``function`` (fit, evaluate or predict) with ``batch_format=fmt`` fixed, documented for the family.

    The result is a plain function of ``module`` with the same signature less ``batch_format``; its
    docstring is the engine's with the family's Shapes and Example sections.

    Example:
        >>> pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
        >>> my_predict = bind_format(predict, pairs, module=__name__, example=">>> my_predict(model, loader)")
        >>> "batch_format" in str(inspect.signature(my_predict))
        False
    """

    @functools.wraps(function)
    def bound(*args: Any, **kwargs: Any) -> Any:
        if "batch_format" in kwargs:
            raise TypeError(f"{function.__name__}() of {module} has its batch format fixed ({fmt.name})")
        return function(*args, batch_format=fmt, **kwargs)

    sig = inspect.signature(function)
    bound.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name != "batch_format"]
    )
    doc = inspect.getdoc(function) or ""
    head = doc.split("\nShapes:")[0]
    head = "\n".join(line for line in head.splitlines() if not line.lstrip().startswith("batch_format:"))
    bound.__doc__ = f"{head.rstrip()}\n\nShapes:\n{fmt.shapes}\n\nExample:\n{example}\n"
    bound.__module__ = module
    del bound.__wrapped__  # inspect and help show the bound signature, not the engine's
    return bound
