"""Training of graph models on the Lightning engine: ``fit``, ``evaluate``, ``predict``.

``fit`` wraps any graph model (``model(batch) -> logits (num_graphs, C)``) in a LightningModule and
runs ``lightning.Trainer``: per-epoch :class:`History`, optional progress bar, early stopping on
``val_loss``, checkpoints written atomically to ``checkpoint_dir`` (``last.ckpt`` each epoch,
``best.ckpt`` when ``val_loss`` improves) and resume from them. The data are checked once before
training starts (feature width, label range, edge indices), so a run never dies late on bad input.

``evaluate`` and ``predict`` are plain loops, written out as in the lecture notes
(``_, preds = torch.max(logits, 1)``, ``preds.eq(labels).sum()``).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from torch import Tensor, nn
from torch_geometric.data.data import BaseData

__all__ = ["History", "evaluate", "fit", "load_checkpoint", "macro_f1", "predict"]

_STATE_KEY = "pixgraph"
_SCHEDULERS = ("cosine", "plateau", None)


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run (one entry per finished epoch).

    ``val_loss``/``val_acc`` stay empty when ``fit`` had no validation loader. ``epoch_time`` is
    the wall time of each epoch in seconds (training plus validation).

    Example:
        >>> h = History(train_loss=[0.9, 0.5], train_acc=[0.6, 0.8])
        >>> len(h), h.to_dict()["train_acc"]
        (2, [0.6, 0.8])
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain dict of lists (JSON-ready)."""
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> History:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = cls.__dataclass_fields__
        return cls(**{k: [float(x) for x in v] for k, v in d.items() if k in names})


class _Batches:
    """A re-iterable list of ready batches (Lightning would read a bare list as several loaders)."""

    def __init__(self, items: Sequence[BaseData]) -> None:
        self.items = list(items)

    def __iter__(self) -> Iterator[BaseData]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _as_loader(loader: Any, name: str) -> Any:
    if isinstance(loader, BaseData):
        raise TypeError(
            f"{name} must be an iterable of graphs or batches (a DataLoader or a list); got a single"
            f" {type(loader).__name__}. Wrap it in a list: [{name.split('_')[0]}_data]"
        )
    if isinstance(loader, (list, tuple)):
        if not loader:
            raise ValueError(f"{name} is empty; give at least one batch")
        return _Batches(loader)
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be a DataLoader or a list of Data/Batch; got {type(loader).__name__}")
    return loader


def _graph_items(loader: Any) -> Iterable[Any]:
    """The graphs of a PyG DataLoader's dataset (no collation), else the loader's batches."""
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        if len(dataset) and isinstance(dataset[0], BaseData):
            return (dataset[i] for i in range(len(dataset)))
    return loader


def _check_graphs(loader: Any, *, name: str, in_channels: int | None, num_classes: int | None) -> int:
    """Scan every graph once before training; return the number of graphs."""
    n_graphs, ys = 0, []
    for i, item in enumerate(_graph_items(loader)):
        where = f"{name} item {i}"
        if not isinstance(item, BaseData):
            raise TypeError(
                f"{name} must yield torch_geometric Data/Batch objects; {where} is {type(item).__name__}"
            )
        x, ei, y = item.x, item.edge_index, item.y
        if x is None or x.dim() != 2:
            shape = None if x is None else tuple(x.shape)
            raise ValueError(f"{where}: node features x must be (N, F); got {shape}")
        if in_channels is not None and x.size(1) != in_channels:
            raise ValueError(
                f"{where}: x has {x.size(1)} features per node but the model has in_channels={in_channels};"
                f" build the model with in_channels={x.size(1)} or fix the graphs' features"
            )
        if x.size(0) == 0:
            raise ValueError(f"{where}: a graph with 0 nodes; every graph needs at least one node")
        if not x.is_floating_point():
            raise TypeError(f"{where}: x must be float; got {x.dtype} (convert with data.x = data.x.float())")
        if ei is None or ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(
                f"{where}: edge_index must be (2, E); got {None if ei is None else tuple(ei.shape)}"
            )
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= x.size(0)):
            raise ValueError(
                f"{where}: edge_index refers to node {int(ei.max())} (or {int(ei.min())}) but the graph has"
                f" {x.size(0)} nodes; indices must be in [0, {x.size(0) - 1}]"
            )
        weight = item["edge_weight"] if "edge_weight" in item else None
        if weight is not None and weight.numel() and float(weight.min()) < 0:
            raise ValueError(
                f"{where}: edge_weight has negative values; GCN normalisation needs weights >= 0"
            )
        graphs = int(item.num_graphs) if item.batch is not None else 1
        if y is None:
            raise ValueError(f"{where}: labels y are missing; set data.y to a (1,) long tensor per graph")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"{where}: labels y must be integer class indices; got dtype {y.dtype}")
        if y.numel() != graphs:
            raise ValueError(
                f"{where}: expected one label per graph ({graphs}); got y of shape {tuple(y.shape)}."
                " This trainer does graph classification: set data.y = torch.tensor([label])"
            )
        ys.append(y.reshape(-1))
        n_graphs += graphs
    if n_graphs == 0:
        raise ValueError(f"{name} holds no graphs")
    labels = torch.cat(ys)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} has label {bad} outside the class range [0, {num_classes}) of the model;"
            " relabel the data to 0..num_classes-1 or build the model with more classes"
        )
    return n_graphs


def _infer_num_classes(model: nn.Module, loader: Any) -> int:
    batch = next(iter(loader)).to(_model_device(model))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            return int(model(batch).size(-1))
    finally:
        for m, mode in modes.items():
            m.training = mode


class _GraphTask(L.LightningModule):
    """LightningModule: cross-entropy graph classification with epoch-level metrics."""

    def __init__(
        self, model: nn.Module, *, lr: float, weight_decay: float, scheduler: str | None, epochs: int
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.epochs = epochs
        self.history = History()
        self._train_totals = torch.zeros(3)
        self._val_totals = torch.zeros(3)
        self._val_metrics: tuple[float, float] | None = None
        self._epoch_start = 0.0

    def forward(self, batch: BaseData) -> Tensor:
        return self.model(batch)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched: Any
        if self.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
        return opt

    def _step(self, batch: BaseData) -> tuple[Tensor, Tensor]:
        logits = self.model(batch)
        labels = batch.y.reshape(-1)
        loss = F.cross_entropy(logits, labels)
        n = labels.numel()
        correct = logits.detach().argmax(dim=1).eq(labels).sum()
        # Sums stay on the device: no host sync per step.
        stats = torch.stack([loss.detach().float() * n, correct.float(), loss.new_full((), n).float()])
        return loss, stats

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_totals = torch.zeros(3, device=self.device)
        self._val_metrics = None

    def training_step(self, batch: BaseData, batch_idx: int) -> Tensor:
        loss, stats = self._step(batch)
        self._train_totals.add_(stats)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_totals = torch.zeros(3, device=self.device)

    def validation_step(self, batch: BaseData, batch_idx: int) -> None:
        _, stats = self._step(batch)
        self._val_totals.add_(stats)

    def _reduce(self, totals: Tensor) -> tuple[float, float]:
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        loss_sum, correct, n = totals.tolist()
        return loss_sum / max(n, 1.0), correct / max(n, 1.0)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val_loss, val_acc = self._reduce(self._val_totals)
        self._val_metrics = (val_loss, val_acc)
        self.log("val_loss", val_loss, prog_bar=True)
        self.log("val_acc", val_acc, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        train_loss, train_acc = self._reduce(self._train_totals)
        h = self.history
        h.train_loss.append(train_loss)
        h.train_acc.append(train_acc)
        if self._val_metrics is not None:
            h.val_loss.append(self._val_metrics[0])
            h.val_acc.append(self._val_metrics[1])
        h.epoch_time.append(time.perf_counter() - self._epoch_start)
        self.log("train_loss", train_loss, prog_bar=True)
        self.log("train_acc", train_acc, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = getattr(self.model, "config", None)
        checkpoint[_STATE_KEY] = {
            "history": self.history.to_dict(),
            "model_class": type(self.model).__name__,
            "model_config": dict(config) if isinstance(config, dict) else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(_STATE_KEY)
        if state is not None:
            self.history = History.from_dict(state["history"])


class _AtomicCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` after every epoch and ``best.ckpt`` when ``val_loss`` improves.

    Each file is written to a temporary name in the same folder and renamed with ``os.replace``,
    so a run killed while saving leaves the previous checkpoint intact. Being a ``Checkpoint``,
    Lightning calls it after ``LightningModule.on_train_epoch_end``, so the saved History already
    holds the epoch just finished.
    """

    def __init__(self, dirpath: Path) -> None:
        self.dirpath = Path(dirpath)
        self.best_val_loss = math.inf

    @property
    def state_key(self) -> str:
        return "pixgraph_atomic_checkpoint"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        history = cast(_GraphTask, pl_module).history
        improved = bool(history.val_loss) and history.val_loss[-1] < self.best_val_loss
        if improved:
            self.best_val_loss = history.val_loss[-1]
        self._save(trainer, self.dirpath / "last.ckpt")
        if improved:
            self._save(trainer, self.dirpath / "best.ckpt")

    @staticmethod
    def _save(trainer: L.Trainer, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        # Every rank calls it, rank 0 writes; weights_only=False: a full state (optimizer, loops) to resume.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("pixgraph_atomic_checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"best_val_loss": self.best_val_loss}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val_loss = float(state_dict.get("best_val_loss", math.inf))


class _DropTip(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger; every other message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any = None,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int | None = None,
    scheduler: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = True,
    progress: bool = True,
    seed: int | None = 0,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    strategy: str = "auto",
    precision: str | int = "32-true",
    callbacks: Sequence[Callback] | None = None,
) -> History:
    """Train a graph classifier with cross-entropy and Adam on the Lightning engine.

    Before training, every graph is checked once: node feature width against
    ``model.in_channels`` (when the model has it), labels against the model's class range,
    edge indices against the node count. ``model`` is trained in place.

    With ``checkpoint_dir``, ``last.ckpt`` is written atomically after every epoch (and
    ``best.ckpt`` whenever ``val_loss`` improves); calling ``fit`` again with the same folder
    continues from ``last.ckpt`` up to ``epochs`` in total, History included. Checkpoints are
    read with ``torch.load(weights_only=True)``. Ctrl-C stops training and raises
    ``KeyboardInterrupt`` (the last finished epoch stays in ``last.ckpt``).

    Args:
        model: Graph model, ``model(batch) -> logits (num_graphs, C)``.
        train_loader: A PyG ``DataLoader`` (or any iterable of ``Batch``), or a list of batches.
        val_loader: Same for validation; enables ``val_loss``, early stopping and ``best.ckpt``.
        epochs: Total number of epochs (counting epochs restored from a checkpoint).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: Stop after this many epochs without ``val_loss`` improving (needs ``val_loader``).
        scheduler: ``"cosine"`` (to 0 over ``epochs``), ``"plateau"`` (halve on a ``val_loss``
            plateau of 5 epochs; needs ``val_loader``) or ``None``.
        checkpoint_dir: Folder for ``last.ckpt``/``best.ckpt`` (created if missing); None: none.
        resume: True continues from ``checkpoint_dir/last.ckpt`` when it exists; a path continues
            from that file; False starts over (and replaces the folder's checkpoints).
        progress: Show Lightning's progress bar.
        seed: Seed for Python, NumPy and torch (shuffling, dropout); None leaves RNGs alone.
            Seed the model's initialisation yourself before building it.
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        devices: Lightning devices.
        strategy: Lightning strategy (``"ddp"`` for several GPUs or machines).
        precision: Lightning precision (``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``).
        callbacks: Extra Lightning callbacks.

    Returns:
        The :class:`History` of all epochs, restored ones included.

    Shapes:
        - batch.x: (N, F); batch.y: (num_graphs,) long in [0, C).

    Example:
        >>> from torch_geometric.loader import DataLoader
        >>> model = GraphClassifier(5, 2, hidden=16)  # doctest: +SKIP
        >>> hist = fit(model, DataLoader(graphs, batch_size=32, shuffle=True), epochs=5)  # doctest: +SKIP
        >>> hist.train_acc[-1]  # doctest: +SKIP
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(_SCHEDULERS)}; got {scheduler!r}")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer or None; got {patience!r}")
        if val_loader is None:
            raise ValueError("patience needs a val_loader: early stopping watches val_loss")
    if scheduler == "plateau" and val_loader is None:
        raise ValueError("scheduler='plateau' needs a val_loader: it watches val_loss")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")

    train_loader = _as_loader(train_loader, "train_loader")
    if val_loader is not None:
        val_loader = _as_loader(val_loader, "val_loader")

    ckpt_path = _resume_path(checkpoint_dir, resume)

    # Validate first: a long run must not die late on something checkable now.
    in_channels = getattr(model, "in_channels", None)
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        num_classes = _infer_num_classes(model, train_loader)
    in_channels = in_channels if isinstance(in_channels, int) else None
    _check_graphs(train_loader, name="train_loader", in_channels=in_channels, num_classes=num_classes)
    if val_loader is not None:
        _check_graphs(val_loader, name="val_loader", in_channels=in_channels, num_classes=num_classes)

    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)

    task = _GraphTask(
        model, lr=float(lr), weight_decay=float(weight_decay), scheduler=scheduler, epochs=epochs
    )
    all_callbacks: list[Callback] = list(callbacks or [])
    if patience is not None:
        all_callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=patience))
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        all_callbacks.append(_AtomicCheckpoint(Path(checkpoint_dir)))

    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    tip_filter = _DropTip()
    rank_zero_log.addFilter(tip_filter)
    try:
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision=cast(Any, precision),
            callbacks=all_callbacks,
            logger=False,
            enable_checkpointing=checkpoint_dir is not None,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            default_root_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        )
    finally:
        rank_zero_log.removeFilter(tip_filter)
    _run(trainer, task, train_loader, val_loader, ckpt_path)
    return History.from_dict(task.history.to_dict())


def _resume_path(checkpoint_dir: str | os.PathLike | None, resume: bool | str | os.PathLike) -> Path | None:
    if isinstance(resume, bool):
        if not resume or checkpoint_dir is None:
            return None
        last = Path(checkpoint_dir) / "last.ckpt"
        return last if last.is_file() else None
    if isinstance(resume, (str, os.PathLike)):
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(
                f"resume={str(resume)!r} is not a checkpoint file; give an existing .ckpt"
            )
        return path
    raise TypeError(f"resume must be True, False or a checkpoint path; got {type(resume).__name__}")


def _run(trainer: L.Trainer, task: _GraphTask, train_loader: Any, val_loader: Any, ckpt: Path | None) -> None:
    """``trainer.fit`` that turns Lightning's Ctrl-C exit into ``KeyboardInterrupt``.

    On KeyboardInterrupt Lightning ignores SIGINT from then on and calls ``sys.exit(1)``; a
    library call should instead restore the handler and let the caller see the interrupt.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
            warnings.filterwarnings(
                "ignore", message=".*defined a `validation_step` but have no `val_dataloader`.*"
            )
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
            # Checkpoints read here are the ones fit wrote; weights_only=True still applies.
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


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> History:
    """Load the weights of a :func:`fit` checkpoint into ``model`` (``weights_only=True``).

    Args:
        model: A model with the same architecture as the one trained.
        path: ``last.ckpt`` or ``best.ckpt`` written by :func:`fit`.

    Returns:
        The History stored in the checkpoint.

    Example:
        >>> hist = load_checkpoint(model, "runs/gcn/best.ckpt")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a checkpoint written by gnn.fit (no 'state_dict')")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return History.from_dict(ckpt.get(_STATE_KEY, {}).get("history", {}))


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _logits_and_labels(model: nn.Module, loader: Any, *, need_labels: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Run the model over the loader in eval mode; return logits, labels, per-graph losses.

    Without ``need_labels`` the labels and losses come back empty.
    """
    loader = _as_loader(loader, "loader")
    device = _model_device(model)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    logits_all: list[Tensor] = []
    labels_all: list[Tensor] = []
    losses: list[Tensor] = []
    try:
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(device)
                logits = model(batch)
                logits_all.append(logits)
                if need_labels:
                    if batch.y is None:
                        raise ValueError("the loader's graphs have no labels y; evaluate needs them")
                    labels = batch.y.reshape(-1)
                    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.size(1)):
                        raise ValueError(
                            f"labels must be in [0, {logits.size(1)}) for a model with {logits.size(1)}"
                            f" classes; got values in [{int(labels.min())}, {int(labels.max())}]"
                        )
                    labels_all.append(labels)
                    losses.append(F.cross_entropy(logits, labels, reduction="none"))
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not logits_all:
        raise ValueError("the loader yielded no batches")
    logits = torch.cat(logits_all)
    if not need_labels:
        empty = logits.new_zeros(0)
        return logits, empty.long(), empty
    return logits, torch.cat(labels_all), torch.cat(losses)


def macro_f1(preds: Tensor, labels: Tensor, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in ``labels`` or ``preds`` (as scikit-learn).

    Shapes:
        - preds, labels: (N,) long in [0, num_classes).

    Example:
        >>> macro_f1(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 2)
        0.6666666865348816
    """
    confusion = torch.bincount(labels * num_classes + preds, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    tp = confusion.diag()
    support = confusion.sum(1)  # true count per class
    predicted = confusion.sum(0)
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    return float(f1[present].mean().float()) if bool(present.any()) else 0.0


def evaluate(model: nn.Module, loader: Any) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of ``model`` on labelled graphs.

    The model runs in eval mode on its own device; its train/eval mode is restored afterwards.

    Args:
        model: Graph model, ``model(batch) -> logits (num_graphs, C)``.
        loader: A PyG ``DataLoader`` or a list of batches, with labels ``y``.

    Returns:
        ``{"accuracy": float, "macro_f1": float, "loss": float, "n": int}``.

    Shapes:
        - batch.y: (num_graphs,) long in [0, C).

    Example:
        >>> evaluate(model, DataLoader(test_graphs, batch_size=64))  # doctest: +SKIP
        {'accuracy': 0.91, 'macro_f1': 0.90, 'loss': 0.31, 'n': 1000}
    """
    logits, labels, losses = _logits_and_labels(model, loader, need_labels=True)
    _, preds = torch.max(logits, 1)
    correct = preds.eq(labels).sum()
    n = labels.numel()
    return {
        "accuracy": float(correct) / n,
        "macro_f1": macro_f1(preds, labels, logits.size(1)),
        "loss": float(losses.sum()) / n,
        "n": n,
    }


def predict(model: nn.Module, loader: Any) -> tuple[Tensor, Tensor]:
    """Predicted classes and class probabilities for every graph, in loader order.

    Args:
        model: Graph model, ``model(batch) -> logits (num_graphs, C)``.
        loader: A PyG ``DataLoader`` or a list of batches (labels not needed).

    Returns:
        ``(preds, probs)`` on the CPU.

    Shapes:
        - preds: (num_graphs,) long; probs: (num_graphs, C), rows sum to 1.

    Example:
        >>> preds, probs = predict(model, DataLoader(graphs, batch_size=64))  # doctest: +SKIP
    """
    logits, _, _ = _logits_and_labels(model, loader, need_labels=False)
    probs = torch.softmax(logits.float(), dim=1)
    _, preds = torch.max(probs, 1)
    return preds.cpu(), probs.cpu()
