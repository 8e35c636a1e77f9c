"""The configuration of a comparison: :class:`CompareConfig` (stored as ``config.json``) and
:func:`quick_config`."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any

from bridge.compare.registry import list_arms

__all__ = ["CompareConfig", "DEVICES", "MIN_IMAGE_SIZE", "check_config", "check_device", "quick_config"]

#: Values of ``device`` (``cuda:N`` picks GPU N).
DEVICES: tuple[str, ...] = ("cpu", "cuda", "cuda:N", "auto")

#: The smallest working view (pixels per side); every superpixel needs at least 4 pixels on average.
MIN_IMAGE_SIZE = 16

_DEVICE = re.compile(r"^(cpu|cuda|auto|cuda:\d+)$")


def check_device(device: object, *, available: bool = False) -> str:
    """Check a ``device`` value; with ``available``, also that the machine has it.

    Raises:
        ValueError: not one of :data:`DEVICES`, or (``available``) CUDA asked for where
            ``torch.cuda.is_available()`` is false or GPU N does not exist.

    Example:
        >>> check_device("cuda:0")
        'cuda:0'
    """
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(
            f"device={device!r} (--device) is not understood; use one of {', '.join(DEVICES)} (e.g. cuda:0)"
        )
    if available and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} (--device): no CUDA GPU here (torch.cuda.is_available() is False); "
                "use --device cpu (or auto)"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} (--device): this machine has {torch.cuda.device_count()} GPU(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    return device


#: The ``pixgraph compare`` / ``finetune`` flag of a field, for error messages.
_FLAGS = {
    "epochs_probe": "--epochs-probe",
    "epochs_finetune": "--epochs-finetune",
    "epochs_gnn": "--epochs-gnn",
    "batch_size": "--batch-size",
    "n_segments": "--n-segments",
}


def _is_int(value: object) -> bool:
    """A Python int, not a bool (the value goes to ``config.json`` as it is)."""
    return not isinstance(value, bool) and isinstance(value, int)


def _is_number(value: object) -> bool:
    """A finite real number, not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


#: The arms of a configuration written before the registry existed (``config.json`` without ``arms``).
_DEFAULT_ARMS: tuple[str, ...] = ("linear_probe", "finetune", "gnn_cnn", "gnn_color")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison; stored in ``config.json`` and in every report.

    Attributes:
        data: a dataset name of ``cnn.datasets.DATASETS`` (``"elpv"``, ``"mnist5k"``, ``"digits"``, ...;
            any case, stored in lower case) or a folder with one sub-folder per class.
        backbone: a ``cnn.list_backbones()`` name; its weights feed arms A, B and C.
        weights: ``"imagenet"``, ``None`` (random init: the control) or a ``.pth`` path.
        seeds: one training run per seed and arm.
        arms: which registered arms to run (:func:`~bridge.compare.registry.list_arms`; default: all).
        val, test: split fractions (stratified, ``split_seed``).
        max_per_class: keep at most this many images per class (seeded), ``None`` for all.
        similarity: how close the data is to ImageNet (``"high"``/``"low"``) for ``choose_strategy``;
            ``None`` picks ``"low"`` for the packaged datasets and ``"high"`` for a folder.
        strategy, trainable_blocks: arm B's freezing (``"fine_tuning"`` or ``"full"``); ``None`` lets
            ``choose_strategy`` decide (feature extraction advice becomes fine-tuning of 1 block, since
            arm A already is feature extraction).
        data_split: downloaded datasets only: the publisher's split to use (``None``: its default;
            ``"all"`` joins them), before the comparison's own stratified split.
        data_root: downloaded datasets only: their cache folder (``None``: ``$PIXGRAPH_DATA`` or
            ``~/.cache/pixgraph/data``).
        n_segments: superpixels per image for arms C, D and E.
        segmentation: the segmentation back-end of the graphs (``bridge.list_segmentations()``;
            ``"slic_torch"``, the torch SLIC, by default; ``"slic"`` is scikit-image's).
        graph: the nodes of arms C and E: ``"superpixels"`` (region-adjacency edges) or ``"patches"``
            (the cells of the backbone's deepest stage map, Vision GNN style, with ``k`` nearest
            neighbours in feature space, recomputed in every block when ``dynamic_knn``).
        knn: neighbours of a patch graph.
        dynamic_knn: recompute a patch graph's k-NN edges in every GNN block.
        gnn: graph convolution of arms C, D and E (``"gcn"``, ``"gat"``, ``"sage"``, ``"gin"``).
        gnn_regularisation: ``(dropout, weight_decay)`` candidates of arms C and D; each seed trains one
            model per candidate and keeps the one with the lowest validation loss (never the test split).
        probe_weight_decays: weight-decay candidates of arm A, chosen the same way.
        devices, num_nodes, lightning_strategy: data-parallel training (Lightning's ``devices``,
            ``num_nodes``, ``strategy``); ``devices > 1`` with ``"auto"`` uses ``"ddp_spawn"``.
            ``device="cuda:N"`` is one GPU, so it takes ``devices=1`` (several GPUs: ``device="cuda"``).
        faithfulness_images: test images whose explanations every arm scores (deletion / insertion
            curves, :mod:`bridge.compare.faithful`); 0 turns the scoring off.
        faithfulness_steps: points of each curve after the first (10: 10 % of the pixels per step).
        faithfulness_seeds: score the models of the first this many seeds (1: the first seed's models,
            as the pictures; scoring every seed multiplies its cost).

    Example:
        >>> CompareConfig(data="digits", seeds=(0,)).to_dict()["seeds"]
        [0]
    """

    data: str = "elpv"
    data_split: str | None = None
    data_root: str | None = None
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = dataclasses.field(default_factory=list_arms)
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
    segmentation: str = "slic_torch"
    graph: str = "superpixels"
    knn: int = 8
    dynamic_knn: bool = True
    gnn: str = "gcn"
    gnn_regularisation: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.5, 0.0), (0.5, 1e-3))
    probe_weight_decays: tuple[float, ...] = (0.0, 1e-3)
    hidden: int = 64
    layers: int = 4
    device: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    lightning_strategy: str = "auto"
    n_explain: int = 4
    faithfulness_images: int = 32
    faithfulness_steps: int = 10
    faithfulness_seeds: int = 1

    def __post_init__(self) -> None:
        from cnn.datasets import DATASETS

        # dataset names are accepted in any case (as load_dataset does); stored in lower case, so that
        # everything that looks the name up (arm B's similarity to ImageNet, elpv's licence) finds it
        if isinstance(self.data, str) and self.data.lower() in DATASETS and self.data != self.data.lower():
            object.__setattr__(self, "data", self.data.lower())
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``config.json`` (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["seeds"], d["arms"] = list(self.seeds), list(self.arms)
        d["gnn_regularisation"] = [list(c) for c in self.gnn_regularisation]
        d["probe_weight_decays"] = list(self.probe_weight_decays)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareConfig:
        """Read :meth:`to_dict`'s form back (unknown keys are ignored, so older files load)."""
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["seeds"], kw["arms"] = tuple(kw.get("seeds", (0,))), tuple(kw.get("arms", _DEFAULT_ARMS))
        if "gnn_regularisation" in kw:
            kw["gnn_regularisation"] = tuple(tuple(c) for c in kw["gnn_regularisation"])
        else:  # written before the candidates existed: what those runs did (no dropout, no decay)
            kw["gnn_regularisation"] = ((0.0, 0.0),)
        kw["probe_weight_decays"] = tuple(kw.get("probe_weight_decays", (0.0,)))
        kw.setdefault("segmentation", "slic")  # the default of those runs
        kw.setdefault("device", "cpu")
        if kw.get("strategy") != "fine_tuning":  # written when such a count was accepted and ignored
            kw["trainable_blocks"] = None
        return cls(**kw)


def check_config(cfg: CompareConfig) -> None:
    """Check every field of a configuration; ``CompareConfig`` calls it on creation.

    Raises:
        ValueError: a bad value; the message names the field (and its CLI flag) and the fix.

    Example:
        >>> check_config(CompareConfig(seeds=(0, 1)))  # returns None when the configuration is valid
    """
    known = list_arms()
    unknown = [a for a in cfg.arms if a not in known]
    if unknown or not cfg.arms:
        raise ValueError(
            f"arms={list(cfg.arms)!r}: unknown or empty; choose from {', '.join(known)} "
            "(or register a new arm with bridge.compare.register_arm)"
        )
    if len(set(cfg.arms)) != len(cfg.arms):
        raise ValueError(f"arms={list(cfg.arms)} has duplicates; name each arm once")
    if not cfg.seeds:
        raise ValueError("seeds is empty; give at least one seed, e.g. seeds=(0,)")
    bad_seeds = [s for s in cfg.seeds if not _is_int(s) or s < 0]
    if bad_seeds:
        raise ValueError(
            f"seeds={list(cfg.seeds)!r} (--seeds): {bad_seeds[0]!r} ({type(bad_seeds[0]).__name__}) "
            "is not a seed; give Python ints >= 0, e.g. seeds=(0, 1, 2) or --seeds 0,1,2"
        )
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds={list(cfg.seeds)} has duplicates")
    if not _is_int(cfg.split_seed) or cfg.split_seed < 0:
        raise ValueError(
            f"split_seed must be an int >= 0 (the seed of the data split), got {cfg.split_seed!r}"
        )
    for name in ("val", "test"):
        value = getattr(cfg, name)
        if not _is_number(value) or not 0 < value < 1:
            role = "picks the best epoch" if name == "val" else "is what every arm is scored on"
            raise ValueError(
                f"{name}={value!r} must be a fraction between 0 and 1 (exclusive), e.g. {name}=0.15; "
                f"the {name} split {role}"
            )
    if cfg.val + cfg.test >= 1:
        raise ValueError(
            f"val={cfg.val!r} + test={cfg.test!r} = {cfg.val + cfg.test:g} leaves nothing to train "
            "on; they must sum to less than 1 (e.g. val=0.15, test=0.15)"
        )
    for name in (
        "knn",
        "devices",
        "num_nodes",
        "epochs_probe",
        "epochs_finetune",
        "epochs_gnn",
        "batch_size",
        "n_segments",
        "hidden",
        "layers",
        "n_explain",
    ):
        value = getattr(cfg, name)
        if not _is_int(value) or value < 1:
            flag = f" ({_FLAGS[name]})" if name in _FLAGS else ""
            raise ValueError(f"{name} must be a positive int{flag}, got {value!r}")
    for name in ("lr_probe", "lr_finetune", "lr_gnn", "compactness"):
        value = getattr(cfg, name)
        if not _is_number(value) or value <= 0:
            example = "10.0 (the default)" if name == "compactness" else "1e-3"
            raise ValueError(f"{name} must be a positive finite number (e.g. {example}), got {value!r}")
    blocks = cfg.trainable_blocks
    if blocks is not None and (not _is_int(blocks) or blocks < 1):
        raise ValueError(
            f"trainable_blocks={blocks!r} (--blocks) must be a positive int (the last N blocks of the "
            "backbone that train), or None to let the strategy choose"
        )
    if blocks is not None and cfg.strategy != "fine_tuning":
        raise ValueError(
            f"trainable_blocks={blocks!r} (--blocks) applies only with strategy='fine_tuning' (--freeze "
            f"fine_tuning), got strategy={cfg.strategy!r}; set both, or leave both out to let "
            "cnn.choose_strategy decide"
        )
    for name in ("faithfulness_images", "faithfulness_steps", "faithfulness_seeds"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (name != "faithfulness_images"):
            raise ValueError(f"{name} must be an int >= {int(name != 'faithfulness_images')}, got {value!r}")
    if cfg.max_per_class is not None and cfg.max_per_class < 4:
        raise ValueError(f"max_per_class={cfg.max_per_class} is too small; use at least 4 (or None)")
    if cfg.strategy not in (None, "fine_tuning", "full"):
        raise ValueError(f"strategy={cfg.strategy!r}; use 'fine_tuning', 'full' or None (automatic)")
    if cfg.similarity not in (None, "high", "low"):
        raise ValueError(f"similarity={cfg.similarity!r}; use 'high', 'low' or None")
    check_device(cfg.device)
    if cfg.device.startswith("cuda:") and cfg.devices > 1:
        raise ValueError(
            f"device={cfg.device!r} (--device) names one GPU but devices={cfg.devices} (--devices) asks for "
            f"{cfg.devices}; use --device cuda --devices {cfg.devices} to train on {cfg.devices} GPUs, or "
            f"--device {cfg.device} --devices 1 for GPU {cfg.device[5:]} alone"
        )
    _check_graph_options(cfg)
    if cfg.image_size is not None:
        size = cfg.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size={size!r} (--image-size) is too small; use at least {MIN_IMAGE_SIZE} pixels "
                "(or leave it out for the backbone's own size)"
            )
        if 4 * cfg.n_segments > size * size:
            raise ValueError(
                f"n_segments={cfg.n_segments} (--n-segments) does not fit an image_size={size} view "
                f"({size * size} pixels, at least 4 per superpixel): use --n-segments <= "
                f"{size * size // 4} or a larger image size"
            )


def _check_graph_options(cfg: CompareConfig) -> None:
    """The graph fields: segmentation back-end, graph kind, regularisation candidates, parallelism."""
    from bridge.segmentation import list_segmentations

    methods = list_segmentations()
    if cfg.segmentation not in methods:
        raise ValueError(
            f"segmentation={cfg.segmentation!r} (--segmentation) is not a segmentation back-end; use one of "
            f"{', '.join(methods)}"
        )
    if cfg.graph not in ("superpixels", "patches"):
        raise ValueError(f"graph={cfg.graph!r} (--graph); use 'superpixels' or 'patches'")
    if not isinstance(cfg.dynamic_knn, bool):
        raise ValueError(f"dynamic_knn must be True or False, got {cfg.dynamic_knn!r}")
    grid = cfg.gnn_regularisation
    ok = bool(grid) and all(
        isinstance(c, tuple) and len(c) == 2 and all(_is_number(v) for v in c) and 0 <= c[0] < 1 and c[1] >= 0
        for c in grid
    )
    if not ok:
        raise ValueError(
            f"gnn_regularisation={grid!r}: give a non-empty tuple of (dropout, weight_decay) pairs with "
            "0 <= dropout < 1 and weight_decay >= 0, e.g. ((0.0, 0.0), (0.5, 1e-3))"
        )
    decays = cfg.probe_weight_decays
    if not decays or not all(_is_number(v) and v >= 0 for v in decays):
        raise ValueError(
            f"probe_weight_decays={decays!r}: give a non-empty tuple of weight decays >= 0, e.g. (0.0, 1e-3)"
        )
    from lightning.pytorch.strategies import StrategyRegistry

    known = ("auto", *StrategyRegistry.available_strategies())
    if cfg.lightning_strategy not in known:
        raise ValueError(
            f"lightning_strategy={cfg.lightning_strategy!r} (--strategy) is not a Lightning strategy; use "
            f"auto, ddp, ddp_spawn, fsdp, ... (all: {', '.join(known)})"
        )


def quick_config(**overrides: Any) -> CompareConfig:
    """A configuration that runs in about a minute on 2 CPU cores (for CI and first tries).

    Example:
        >>> quick_config(data="digits").seeds
        (0, 1)
    """
    base: dict[str, Any] = dict(
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
        faithfulness_images=4,
        faithfulness_steps=4,
        faithfulness_seeds=2,
        gnn_regularisation=((0.0, 0.0), (0.5, 1e-3)),
    )
    base.update(overrides)
    return CompareConfig(**base)
