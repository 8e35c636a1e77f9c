"""CNN heads vs GNNs on superpixel graphs: same data, same split, same seeds, same metrics.

Four arms are trained on one stratified split, for several seeds:

* ``linear_probe`` (A): frozen pretrained backbone, new linear head (feature extraction);
* ``finetune`` (B): the last blocks plus a new head trained (the strategy of ``cnn.choose_strategy``);
* ``gnn_cnn`` (C): a GNN on superpixel graphs whose nodes carry the frozen backbone's pooled stage
  features plus colour and position;
* ``gnn_color`` (D): the same GNN on graphs with colour and position only.

Every arm sees the same pixels: each image is resized (shorter side to the backbone's resize size) and
centre-cropped to its input size once, and both the CNNs and the graph builder read that view.

A run folder holds ``config.json``, one JSON file per finished (arm, seed) cell under ``cells/``
(written atomically as it finishes, so an interrupted run resumes where it stopped), ``report.md``,
``results.json`` and the pictures under ``figures/``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ARMS", "CompareConfig", "compare", "quick_config"]

ARMS: tuple[str, ...] = ("linear_probe", "finetune", "gnn_cnn", "gnn_color")
ARM_TITLES = {
    "linear_probe": "A. linear probe (frozen backbone + linear head)",
    "finetune": "B. fine-tuned CNN (last blocks + head)",
    "gnn_cnn": "C. GNN, superpixels with CNN + colour + position features",
    "gnn_color": "D. GNN, superpixels with colour + position features",
}
_SIMILAR_TO_IMAGENET = {"elpv": "low", "mnist5k": "low", "digits": "low"}


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison; stored in ``config.json`` and in every report.

    Attributes:
        data: ``"elpv"``, ``"mnist5k"``, ``"digits"`` or a folder with one sub-folder per class.
        backbone: a ``cnn.list_backbones()`` name; its weights feed arms A, B and C.
        weights: ``"imagenet"``, ``None`` (random init: the control) or a ``.pth`` path.
        seeds: one training run per seed and arm.
        arms: which of :data:`ARMS` to run.
        val, test: split fractions (stratified, ``split_seed``).
        max_per_class: keep at most this many images per class (seeded), ``None`` for all.
        similarity: how close the data is to ImageNet (``"high"``/``"low"``) for ``choose_strategy``;
            ``None`` picks ``"low"`` for the packaged datasets and ``"high"`` for a folder.
        strategy, trainable_blocks: arm B's freezing (``"fine_tuning"`` or ``"full"``); ``None`` lets
            ``choose_strategy`` decide (feature extraction advice becomes fine-tuning of 1 block, since
            arm A already is feature extraction).
        n_segments: superpixels per image for arms C and D.
        gnn: graph convolution of arms C and D (``"gcn"``, ``"gat"``, ``"sage"``, ``"gin"``).
    """

    data: str = "elpv"
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = ARMS
    val: float = 0.15
    test: float = 0.15
    split_seed: int = 0
    max_per_class: int | None = None
    similarity: str | None = None
    strategy: str | None = None
    trainable_blocks: int | None = None
    image_size: int | None = None
    batch_size: int = 32
    epochs_probe: int = 60
    epochs_finetune: int = 4
    epochs_gnn: int = 40
    lr_probe: float = 1e-3
    lr_finetune: float = 1e-3
    lr_gnn: float = 1e-3
    n_segments: int = 75
    compactness: float = 10.0
    gnn: str = "gcn"
    hidden: int = 64
    layers: int = 4
    device: str = "cpu"
    n_explain: int = 4

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"arms={list(self.arms)!r}: unknown or empty; choose from {', '.join(ARMS)}")
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed, e.g. seeds=(0,)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)} has duplicates")
        for name in ("epochs_probe", "epochs_finetune", "epochs_gnn", "batch_size", "n_segments"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_per_class is not None and self.max_per_class < 4:
            raise ValueError(f"max_per_class={self.max_per_class} is too small; use at least 4 (or None)")
        if self.strategy not in (None, "fine_tuning", "full"):
            raise ValueError(f"strategy={self.strategy!r}; use 'fine_tuning', 'full' or None (automatic)")
        if self.similarity not in (None, "high", "low"):
            raise ValueError(f"similarity={self.similarity!r}; use 'high', 'low' or None")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"], d["arms"] = list(self.seeds), list(self.arms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["seeds"], kw["arms"] = tuple(kw.get("seeds", (0,))), tuple(kw.get("arms", ARMS))
        return cls(**kw)


def quick_config(**overrides: Any) -> CompareConfig:
    """A configuration that runs in about a minute on 2 CPU cores (for CI and first tries).

    Example:
        >>> quick_config(data="digits").seeds
        (0, 1)
    """
    base = dict(
        seeds=(0, 1),
        max_per_class=16,
        image_size=64,
        epochs_probe=15,
        epochs_finetune=2,
        epochs_gnn=15,
        n_segments=30,
        hidden=32,
        layers=2,
        n_explain=2,
    )
    base.update(overrides)
    return CompareConfig(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Run folder: lock, atomic JSON, cells


def _atomic_write(path: Path, text: str) -> None:
    from cnn.io import atomic_open

    with atomic_open(path) as f:
        f.write(text.encode())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunLock:
    """An exclusive lock file: two runs never write into the same folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"

    def __enter__(self) -> _RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise RuntimeError(
                        f"another comparison (pid {pid}) is writing to {self.path.parent}; "
                        "wait for it or choose another --out"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale lock of a dead run
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RuntimeError(f"could not lock {self.path.parent}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def default_out_dir(data: str, root: str | os.PathLike = "runs") -> Path:
    """A new, unused run folder ``runs/compare-<data>-<time>`` (suffixed when taken)."""
    stem = Path(data).name if os.path.isdir(data) else data
    base = Path(root) / f"compare-{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def graph_cache_dir() -> Path:
    """Folder of cached graph datasets: ``$PIXGRAPH_CACHE/graphs``, else ``~/.cache/pixgraph/graphs``."""
    return Path(os.environ.get("PIXGRAPH_CACHE", Path.home() / ".cache" / "pixgraph")) / "graphs"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in (
        "pixgraph",
        "torch",
        "torchvision",
        "timm",
        "torch-geometric",
        "lightning",
        "numpy",
        "scikit-image",
        "opencv-python-headless",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ----------------------------------------------------------------------------------------------
# Data: one view of every image, one split


@dataclasses.dataclass
class _Data:
    images: np.ndarray  # (N, S, S, 3) uint8, the view every arm sees
    targets: np.ndarray  # (N,) int64
    classes: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str


def _prepare_data(cfg: CompareConfig, size: int, resize_size: int, log: Callable[[str], None]) -> _Data:
    from cnn import load_dataset, split

    ds = load_dataset(cfg.data, max_per_class=cfg.max_per_class, seed=cfg.split_seed)
    n = len(ds)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):  # one resize + crop per image (OpenCV), not per pixel
        images[i] = center_view(ds[i][0], size, resize_size)
    targets = np.array(ds.targets, dtype=np.int64)  # a writable copy
    train, val, test = split(targets, val=cfg.val, test=cfg.test, seed=cfg.split_seed)
    log(
        f"data {cfg.data!r}: {n} images, {len(ds.classes)} classes {list(ds.classes)}, "
        f"split train/val/test = {len(train)}/{len(val)}/{len(test)}, view {size}x{size}"
    )
    return _Data(images, targets, list(ds.classes), train, val, test, getattr(ds, "name", cfg.data))


def center_view(image: np.ndarray, size: int, resize_size: int) -> np.ndarray:
    """The evaluation view of an image: shorter side resized to ``resize_size``, centre crop ``size``.

    Shapes:
        - image: ``(H, W, 3)`` or ``(H, W)`` uint8 -> ``(size, size, 3)`` uint8

    Example:
        >>> center_view(np.zeros((300, 400, 3), np.uint8), 224, 256).shape
        (224, 224, 3)
    """
    from cnn import resize

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    h, w = img.shape[:2]
    scale = resize_size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = resize(img, (nh, nw), interpolation="area" if scale < 1 else "cubic")
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[top : top + size, left : left + size]


def _normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, normalised with the backbone's mean and std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


class _ImageTensors(torch.utils.data.Dataset):
    """Working images as normalised tensors; random crop + flip when ``train``."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, cfg: Any, *, train: bool) -> None:
        self.images, self.targets, self.cfg, self.train = images, targets, cfg, train
        if train:
            from torchvision.transforms import v2

            size = images.shape[1]
            interp = v2.InterpolationMode(cfg.interpolation)
            self.augment = v2.Compose(
                [
                    v2.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=interp, antialias=True),
                    v2.RandomHorizontalFlip(),
                ]
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)  # (3, S, S) uint8
        if self.train:
            x = self.augment(x)  # crop + flip on uint8: cheaper than on floats
        m = torch.tensor(self.cfg.mean).view(3, 1, 1)
        s = torch.tensor(self.cfg.std).view(3, 1, 1)
        return (x.float().div_(255.0) - m) / s, int(self.targets[i])


def _loader(dataset: Any, batch_size: int, *, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g)


@torch.inference_mode()
def _embed_all(backbone: nn.Module, images: np.ndarray, batch_size: int) -> torch.Tensor:
    backbone.eval()
    outs = [
        backbone.embed(_normalise(images[i : i + batch_size], backbone.cfg.mean, backbone.cfg.std))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outs).float()


# ----------------------------------------------------------------------------------------------
# Metrics


def _metrics(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 from predictions (vectorised confusion matrix)."""
    cm = np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = cm.sum(1) > 0
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(cm.sum()),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


# ----------------------------------------------------------------------------------------------
# The comparison


class _Comparison:
    def __init__(self, cfg: CompareConfig, out: Path, log: Callable[[str], None], progress: bool) -> None:
        self.cfg, self.out, self.log, self.progress = cfg, out, log, progress
        self.cells_dir = out / "cells"
        self.models_dir = out / "models"
        self.fig_dir = out / "figures"
        self._cache: dict[str, Any] = {}

    # -- shared, computed once ----------------------------------------------------------------
    def backbone(self, num_classes: int | None = None) -> nn.Module:
        from cnn import create_backbone

        return create_backbone(self.cfg.backbone, weights=self.cfg.weights, num_classes=num_classes)

    def frozen(self) -> nn.Module:
        if "frozen" not in self._cache:
            from cnn import set_parameter_requires_grad

            model = self.backbone()
            set_parameter_requires_grad(model, False)
            self._cache["frozen"] = model.eval()
        return self._cache["frozen"]

    def data(self) -> _Data:
        if "data" not in self._cache:
            from cnn.backbones import _resolve

            _resolve(self.cfg.backbone)  # unknown backbone: fail before loading data
            pcfg = self.frozen().cfg
            size = self.cfg.image_size or pcfg.input_size
            resize_size = int(round(size / pcfg.crop_pct))
            self._cache["data"] = _prepare_data(self.cfg, size, resize_size, self.log)
        return self._cache["data"]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled backbone features of every image, standardised with train-set mean and std."""
        if "emb" not in self._cache:
            t0 = time.perf_counter()
            emb = _embed_all(self.frozen(), self.data().images, self.cfg.batch_size)
            train = emb[self.data().train]
            mu, sd = train.mean(0), train.std(0).clamp_min(1e-6)
            self._cache["emb"] = ((emb - mu) / sd, mu, sd)
            self._cache["emb_time"] = time.perf_counter() - t0
        return self._cache["emb"]

    def converter(self, with_cnn: bool, *, keep_segments: bool = False) -> Any:
        """Graph builder of arm C (``with_cnn``) or D; label maps only when pictures need them."""
        from bridge.convert import ImageToGraph

        return ImageToGraph(
            n_segments=self.cfg.n_segments,
            compactness=self.cfg.compactness,
            features=("color_mean", "color_std", "centroid"),
            edges="region",
            backbone=self.frozen() if with_cnn else None,
            batch_size=self.cfg.batch_size,
            keep_segments=keep_segments,
        )

    def graphs(self, with_cnn: bool) -> tuple[list[Any], float]:
        key = f"graphs_{with_cnn}"
        if key not in self._cache:
            from bridge.dataset import GraphDataset

            d = self.data()
            items = [(d.images[i], int(d.targets[i])) for i in range(len(d.targets))]
            t0 = time.perf_counter()
            root = graph_cache_dir()
            ds = GraphDataset(items, self.converter(with_cnn), root=root, progress=self.progress)
            graphs = [ds[i] for i in range(len(ds))]
            # standardise node features with train-set statistics (same for every seed)
            x_train = torch.cat([graphs[i].x for i in d.train])
            mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
            for g in graphs:
                g.x = (g.x - mu) / sd
            self._cache[key] = (graphs, time.perf_counter() - t0, mu, sd)
        graphs, took, _, _ = self._cache[key]
        return graphs, took

    # -- cells ----------------------------------------------------------------------------------
    def cell_path(self, arm: str, seed: int) -> Path:
        return self.cells_dir / f"{arm}-seed{seed}.json"

    def run_cell(self, arm: str, seed: int) -> dict[str, Any]:
        path = self.cell_path(arm, seed)
        if path.exists():
            cell = json.loads(path.read_text())
            if cell.get("status") == "ok":
                self.log(f"[{arm} seed {seed}] already finished: reused")
                return cell
        self.log(f"[{arm} seed {seed}] training ...")
        t0 = time.perf_counter()
        try:
            cell = getattr(self, f"_run_{arm}")(seed)
            cell["status"] = "ok"
        except Exception as err:  # a failing arm is reported; the others still run
            cell = {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=6),
            }
            self.log(f"[{arm} seed {seed}] FAILED: {cell['error']}")
        cell.update(arm=arm, seed=seed, wall_time_s=time.perf_counter() - t0)
        _atomic_write(path, json.dumps(cell, indent=1))
        if cell["status"] == "ok":
            self.log(
                f"[{arm} seed {seed}] test accuracy {cell['test']['accuracy']:.4f}, "
                f"macro-F1 {cell['test']['macro_f1']:.4f}, {cell['train_time_s']:.1f} s"
            )
        return cell

    def _save_model(self, arm: str, seed: int, model: nn.Module) -> None:
        if seed != self.cfg.seeds[0]:
            return
        from cnn.io import atomic_open

        with atomic_open(self.models_dir / f"{arm}.pth") as f:
            torch.save(model.state_dict(), f)

    def _finish_cell(
        self, model: nn.Module, history: Any, preds: torch.Tensor, train_time: float, speed: float
    ) -> dict[str, Any]:
        from cnn import count_parameters

        d = self.data()
        preds_np = preds.cpu().numpy().astype(np.int64)
        trainable, total = count_parameters(model)
        return {
            "test": _metrics(preds_np, d.targets[d.test], len(d.classes)),
            "test_preds": preds_np.tolist(),
            "history": history.to_dict() if hasattr(history, "to_dict") else dict(history),
            "train_time_s": train_time,
            "images_per_s": speed,
            "trainable_params": int(trainable),
            "total_params": int(total),
        }

    def _fit_kw(self, seed: int) -> dict[str, Any]:
        return dict(seed=seed, progress=self.progress, accelerator=self.cfg.device)

    # A ---------------------------------------------------------------------------------------
    def _run_linear_probe(self, seed: int) -> dict[str, Any]:
        from cnn import fit, predict

        d = self.data()
        emb, mu, sd = self.embeddings()
        y = torch.from_numpy(d.targets)
        torch.manual_seed(seed)
        head = nn.Linear(emb.shape[1], len(d.classes))
        ds = torch.utils.data.TensorDataset
        train = _loader(ds(emb[d.train], y[d.train]), self.cfg.batch_size, shuffle=True, seed=seed)
        val = _loader(ds(emb[d.val], y[d.val]), 256, shuffle=False, seed=seed)
        t0 = time.perf_counter()
        history = fit(
            head, train, val, epochs=self.cfg.epochs_probe, lr=self.cfg.lr_probe, **self._fit_kw(seed)
        )
        train_time = time.perf_counter() - t0
        test = _loader(ds(emb[d.test], y[d.test]), 256, shuffle=False, seed=seed)
        preds, _ = predict(head, test)
        speed = self._speed(lambda imgs: head((self.frozen().embed(self._norm(imgs)) - mu) / sd))
        model = _Probe(self.frozen(), head)
        self._save_model("linear_probe", seed, head)
        cell = self._finish_cell(model, history, preds, train_time, speed)
        cell["shared_prep_time_s"] = self._cache.get("emb_time", 0.0)
        return cell

    def _norm(self, images: np.ndarray) -> torch.Tensor:
        cfg = self.frozen().cfg
        return _normalise(images, cfg.mean, cfg.std)

    @torch.inference_mode()
    def _speed(self, run: Callable[[np.ndarray], Any], n_max: int = 64) -> float:
        """Images per second from raw working images to logits (graph building included)."""
        d = self.data()
        imgs = d.images[d.test[:n_max]]
        run(imgs[: self.cfg.batch_size])  # warm-up: one full batch
        t0 = time.perf_counter()
        for i in range(0, len(imgs), self.cfg.batch_size):
            run(imgs[i : i + self.cfg.batch_size])
        return len(imgs) / (time.perf_counter() - t0)

    # B ---------------------------------------------------------------------------------------
    def strategy(self) -> Any:
        from cnn import choose_strategy

        d = self.data()
        sim = self.cfg.similarity or _SIMILAR_TO_IMAGENET.get(self.cfg.data, "high")
        return choose_strategy(len(d.train), sim)

    def _run_finetune(self, seed: int) -> dict[str, Any]:
        from cnn import fit, freeze, predict

        d = self.data()
        if self.cfg.strategy is not None:
            name, blocks, reason = self.cfg.strategy, self.cfg.trainable_blocks or 2, "chosen by the user"
        else:
            strat = self.strategy()
            name = strat.name if strat.name != "feature_extraction" else "fine_tuning"
            blocks, reason = strat.trainable_blocks or 1, strat.reason
        torch.manual_seed(seed)
        model = self.backbone(num_classes=len(d.classes))
        freeze(model, name, trainable_blocks=blocks if name == "fine_tuning" else None)
        pcfg = model.cfg
        train = _loader(
            _ImageTensors(d.images[d.train], d.targets[d.train], pcfg, train=True),
            self.cfg.batch_size,
            shuffle=True,
            seed=seed,
        )
        val = _loader(
            _ImageTensors(d.images[d.val], d.targets[d.val], pcfg, train=False), 64, shuffle=False, seed=seed
        )
        t0 = time.perf_counter()
        history = fit(
            model, train, val, epochs=self.cfg.epochs_finetune, lr=self.cfg.lr_finetune, **self._fit_kw(seed)
        )
        train_time = time.perf_counter() - t0
        test = _loader(
            _ImageTensors(d.images[d.test], d.targets[d.test], pcfg, train=False),
            64,
            shuffle=False,
            seed=seed,
        )
        preds, _ = predict(model, test)
        model.eval()
        speed = self._speed(lambda imgs: model(_normalise(imgs, pcfg.mean, pcfg.std)))
        self._save_model("finetune", seed, model)
        cell = self._finish_cell(model, history, preds, train_time, speed)
        cell["strategy"] = {"name": name, "trainable_blocks": blocks, "reason": reason}
        return cell

    # C, D -------------------------------------------------------------------------------------
    def gnn_model(self, in_channels: int) -> nn.Module:
        from gnn import GraphClassifier

        return GraphClassifier(
            in_channels,
            len(self.data().classes),
            conv=self.cfg.gnn,
            hidden=self.cfg.hidden,
            layers=self.cfg.layers,
        )

    def _run_gnn(self, seed: int, with_cnn: bool) -> dict[str, Any]:
        from torch_geometric.loader import DataLoader as GraphLoader

        from gnn import fit, predict

        d = self.data()
        graphs, build_time = self.graphs(with_cnn)
        torch.manual_seed(seed)
        model = self.gnn_model(graphs[0].x.shape[1])

        def loader(idx: np.ndarray, shuffle: bool) -> Any:
            g = torch.Generator().manual_seed(seed)
            return GraphLoader(
                [graphs[i] for i in idx], batch_size=self.cfg.batch_size, shuffle=shuffle, generator=g
            )

        t0 = time.perf_counter()
        history = fit(
            model,
            loader(d.train, True),
            loader(d.val, False),
            epochs=self.cfg.epochs_gnn,
            lr=self.cfg.lr_gnn,
            **self._fit_kw(seed),
        )
        train_time = time.perf_counter() - t0
        preds, _ = predict(model, loader(d.test, False))
        model.eval()
        conv = self.converter(with_cnn)
        _, _, mu, sd = self._cache[f"graphs_{with_cnn}"]

        def run(imgs: np.ndarray) -> torch.Tensor:
            from torch_geometric.data import Batch

            batch = Batch.from_data_list(conv.batch(list(imgs)))
            batch.x = (batch.x - mu) / sd
            return model(batch)

        speed = self._speed(run)
        arm = "gnn_cnn" if with_cnn else "gnn_color"
        self._save_model(arm, seed, model)
        cell = self._finish_cell(
            _Probe(self.frozen(), model) if with_cnn else model, history, preds, train_time, speed
        )
        cell["graph_build_time_s"] = build_time
        cell["node_features"] = int(graphs[0].x.shape[1])
        cell["mean_nodes"] = float(np.mean([g.num_nodes for g in graphs]))
        return cell

    def _run_gnn_cnn(self, seed: int) -> dict[str, Any]:
        return self._run_gnn(seed, True)

    def _run_gnn_color(self, seed: int) -> dict[str, Any]:
        return self._run_gnn(seed, False)


class _Probe(nn.Module):
    """Frozen backbone body + trainable part, only to count parameters honestly.

    The total includes the frozen body the arm runs at inference (not the unused ImageNet head); only the
    trainable part's parameters count as trainable.
    """

    def __init__(self, frozen: nn.Module, trainable: nn.Module) -> None:
        super().__init__()
        self.body = nn.ModuleList([b for b in frozen.blocks()])
        self.trainable = trainable
        for p in self.body.parameters():
            p.requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Report


def _summarise(cfg: CompareConfig, cells: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    for arm in cfg.arms:
        seeds = {seed: cells[(arm, seed)] for seed in cfg.seeds if (arm, seed) in cells}
        ok = [c for c in seeds.values() if c.get("status") == "ok"]
        entry: dict[str, Any] = {
            "title": ARM_TITLES[arm],
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
        arms[arm] = entry
    return arms


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def summary_table(arms: dict[str, Any]) -> str:
    """The Markdown table of a comparison (also printed at the end of a run)."""
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


def _write_report(
    out: Path, cfg: CompareConfig, data: _Data | None, arms: dict[str, Any], figures: list[str], extra: dict
) -> None:
    versions = extra["versions"]
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
        "batch size " + str(cfg.batch_size) + f", {torch.get_num_threads()} threads, device {cfg.device}.",
    ]
    strategies = [
        c["strategy"] for c in arms.get("finetune", {}).get("seeds", {}).values() if "strategy" in c
    ]
    if strategies:
        st = strategies[0]
        lines.append(
            f"\nFine-tuning strategy: {st['name']}, last {st['trainable_blocks']} blocks ({st['reason']})."
        )
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
    _atomic_write(out / "report.md", "\n".join(lines))


def _figures(run: _Comparison, cells: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """Accuracy curves, confusion matrices, prediction grids and the explanation panel (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn import plot_confusion_matrix, plot_predictions

    cfg, d = run.cfg, run.data()
    seed = cfg.seeds[0]
    done = [a for a in cfg.arms if cells.get((a, seed), {}).get("status") == "ok"]
    run.fig_dir.mkdir(parents=True, exist_ok=True)
    names = []
    if done:
        fig, axes = plt.subplots(1, len(done), figsize=(4 * len(done), 3.2), squeeze=False)
        for ax, arm in zip(axes[0], done):
            h = cells[(arm, seed)]["history"]
            ep = np.arange(1, len(h.get("train_acc", [])) + 1)
            ax.plot(ep, h.get("train_acc", []), label="train")
            if h.get("val_acc"):
                ax.plot(np.arange(1, len(h["val_acc"]) + 1), h["val_acc"], label="val")
            ax.set(title=arm, xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
            ax.legend()
        fig.tight_layout()
        fig.savefig(run.fig_dir / "accuracy_curves.png", dpi=90)
        plt.close(fig)
        names.append("accuracy_curves.png")
        fig, axes = plt.subplots(1, len(done), figsize=(3.6 * len(done), 3.4), squeeze=False)
        y_true = d.targets[d.test]
        for ax, arm in zip(axes[0], done):
            plot_confusion_matrix(y_true, np.asarray(cells[(arm, seed)]["test_preds"]), d.classes, ax=ax)
            ax.set_title(arm)
        fig.tight_layout()
        fig.savefig(run.fig_dir / "confusion_matrices.png", dpi=90)
        plt.close(fig)
        names.append("confusion_matrices.png")
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
            fig.savefig(run.fig_dir / f"predictions_{arm}.png", dpi=80)
            plt.close(fig)
            names.append(f"predictions_{arm}.png")
    try:
        name = _explain_panel(run, done)
        if name:
            names.append(name)
    except Exception as err:  # pictures never sink a finished comparison
        run.log(f"explanation panel failed: {type(err).__name__}: {err}")
    return names


def _explain_panel(run: _Comparison, done: list[str]) -> str | None:
    import matplotlib.pyplot as plt

    from bridge.nxgraph import draw_graph, plot_node_importance
    from cnn import grad_cam, plot_grad_cam
    from gnn import node_importance

    cfg, d = run.cfg, run.data()
    idx = d.test[: cfg.n_explain]
    conv = run.converter("gnn_cnn" in done, keep_segments=True)
    graphs = conv.batch(list(d.images[idx]))
    cols = ["image", "graph"]
    ft = gm = None
    if "finetune" in done and (run.models_dir / "finetune.pth").exists():
        ft = run.backbone(num_classes=len(d.classes))
        ft.load_state_dict(torch.load(run.models_dir / "finetune.pth", weights_only=True, map_location="cpu"))
        cols.append("Grad-CAM (B)")
    if "gnn_cnn" in done and (run.models_dir / "gnn_cnn.pth").exists():
        gm = run.gnn_model(graphs[0].x.shape[1])
        gm.load_state_dict(torch.load(run.models_dir / "gnn_cnn.pth", weights_only=True, map_location="cpu"))
        gm.eval()
        cols.append("node importance (C)")
    fig, axes = plt.subplots(len(idx), len(cols), figsize=(3 * len(cols), 3 * len(idx)), squeeze=False)
    if gm is not None:
        run.graphs(True)
        _, _, mu, sd = run._cache["graphs_True"]
    for r, (i, g) in enumerate(zip(idx, graphs)):
        img = d.images[i]
        axes[r][0].imshow(img)
        axes[r][0].set_title(f"true: {d.classes[d.targets[i]]}")
        draw_graph(img, g, ax=axes[r][1])
        c = 2
        if ft is not None:
            x = _normalise(img[None], ft.cfg.mean, ft.cfg.std)
            cam = grad_cam(ft, x)[0].detach().numpy()
            pred = int(ft(x).argmax(1))
            plot_grad_cam(img, cam, ax=axes[r][c])
            axes[r][c].set_title(f"B predicts {d.classes[pred]}")
            c += 1
        if gm is not None:
            g2 = g.clone()
            g2.x = (g2.x - mu) / sd
            imp = node_importance(gm, g2).detach().numpy()
            with torch.no_grad():
                pred = int(gm(g2).argmax(1))
            plot_node_importance(img, g.segments[0].numpy(), imp, ax=axes[r][c], vmin=0.0, vmax=1.0)
            axes[r][c].set_title(f"C predicts {d.classes[pred]}")
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(run.fig_dir / "explanations.png", dpi=80)
    plt.close(fig)
    return "explanations.png"


# ----------------------------------------------------------------------------------------------
# Entry point


def compare(
    config: CompareConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) a comparison and write its report.

    Args:
        config: the comparison; keyword ``overrides`` replace fields of it (or of the defaults).
        out: run folder. ``None`` makes a new ``runs/compare-<data>-<time>``. An existing folder with the
            same configuration is resumed: finished (arm, seed) cells are reused; a folder holding another
            configuration is refused.
        progress: progress bars.
        log: where progress lines go (default: print to stderr).

    Returns:
        The ``results.json`` content: ``{"config", "versions", "data", "arms", "out"}``; each arm has
        ``status``, per-seed metrics and a ``summary`` (accuracy / macro-F1 mean and std, parameters,
        training time, images/s).

    Example:
        >>> res = compare(quick_config(data="digits"), out="runs/digits-quick")
        >>> sorted(res["arms"])
        ['finetune', 'gnn_cnn', 'gnn_color', 'linear_probe']
    """
    cfg = dataclasses.replace(config, **overrides) if config else CompareConfig(**overrides)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out_dir = Path(out) if out is not None else default_out_dir(cfg.data)
    if not (cfg.data in ("elpv", "mnist5k", "digits") or os.path.isdir(cfg.data)):
        raise ValueError(
            f"data={cfg.data!r} is neither a packaged dataset ('elpv', 'mnist5k', 'digits') nor a folder"
        )
    from cnn.backbones import _resolve

    _resolve(cfg.backbone)
    cfg_path = out_dir / "config.json"
    with _RunLock(out_dir):
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if old != json.loads(json.dumps(cfg.to_dict())):
                raise ValueError(
                    f"{out_dir} holds a comparison with another configuration; resume it with "
                    f"`pixgraph compare --resume {out_dir}` or choose a new --out"
                )
            log(f"resuming {out_dir}")
        _atomic_write(cfg_path, json.dumps(cfg.to_dict(), indent=1))
        run = _Comparison(cfg, out_dir, log, progress)
        cells: dict[tuple[str, int], dict[str, Any]] = {}
        data = run.data()  # bad data fails here, before any training
        for arm in cfg.arms:
            for seed in cfg.seeds:
                cells[(arm, seed)] = run.run_cell(arm, seed)
        arms = _summarise(cfg, cells)
        figures = _figures(run, cells)
        results = {
            "config": cfg.to_dict(),
            "versions": _versions(),
            "data": {
                "name": cfg.data,
                "classes": data.classes,
                "n_images": int(len(data.targets)),
                "split": {
                    "train": int(len(data.train)),
                    "val": int(len(data.val)),
                    "test": int(len(data.test)),
                },
                "image_size": int(data.images.shape[1]),
            },
            "arms": arms,
            "figures": figures,
            "out": str(out_dir),
        }
        _atomic_write(out_dir / "results.json", json.dumps(results, indent=1, default=_json_default))
        _write_report(out_dir, cfg, data, arms, figures, {"versions": results["versions"]})
        log("\n" + summary_table(arms) + f"\n\nreport: {out_dir / 'report.md'}")
        return results


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
