"""The built-in arms, one function each, registered in the order of the report.

* ``linear_probe`` (A): frozen pretrained backbone, new linear head (feature extraction);
* ``finetune`` (B): the last blocks plus a new head trained (the strategy of ``cnn.choose_strategy``);
* ``gnn_cnn`` (C): a GNN on superpixel graphs whose nodes carry the frozen backbone's pooled stage
  features plus colour and position;
* ``gnn_color`` (D): the same GNN on graphs with colour and position only;
* ``e2e`` (E): arm B's backbone and trainable blocks with a GNN head over superpixels (or patches),
  the stage maps pooled into the regions inside the forward pass, trained end to end.

Arm C's GNN also reads arm A's input (the standardised global embedding) and adds its linear classifier
to the logits, so it contains the probe; arm E keeps arm B's head beside the graph head, so it contains
arm B. Every arm ends with the weights of its best validation epoch; arms A, C and D choose their
regularisation among the configuration's candidates by validation loss (:func:`select_on_val`).

Each takes the shared :class:`~bridge.compare.workbench.Workbench` and a seed and returns a result cell
(:func:`~bridge.compare.cell.result_cell`). Their names and titles are in the registry's table of built-in
arms (:data:`bridge.compare.registry.BUILTIN_ARMS`), so this module imports nothing of the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bridge.compare.cell import result_cell, save_model
from bridge.compare.data import ImageTensors, make_loader
from bridge.compare.explainers import ProbeNet, cnn_explainer, deepest_stage, graph_explainer
from bridge.compare.faithful import arm_faithfulness
from bridge.compare.workbench import Speeds, Workbench

if TYPE_CHECKING:
    from cnn.backbones import Backbone

__all__ = [
    "FrozenPlusTrainable",
    "e2e",
    "fine_tuning_plan",
    "finetune",
    "gnn_cnn",
    "gnn_color",
    "linear_probe",
    "select_on_val",
]

_SIMILAR_TO_IMAGENET = {"elpv": "low", "mnist5k": "low", "digits": "low"}


class FrozenPlusTrainable(nn.Module):
    """Frozen backbone body + trainable part, only to count parameters honestly.

    The total includes the frozen body the arm runs at inference (not the unused ImageNet head); only the
    trainable part's parameters count as trainable.
    """

    def __init__(self, frozen: Backbone, trainable: nn.Module) -> None:
        super().__init__()
        self.body = nn.ModuleList(list(frozen.blocks()))
        self.trainable = trainable
        for p in self.body.parameters():
            p.requires_grad_(False)


def linear_probe(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm A: a linear head on the standardised embeddings of the frozen backbone."""
    from cnn.training import fit, predict

    d, cfg, emb = bench.data, bench.cfg, bench.embeddings
    y = torch.from_numpy(d.targets)

    def loader(idx: np.ndarray, batch_size: int, shuffle: bool) -> Any:
        ds = torch.utils.data.TensorDataset(emb.values[idx], y[idx])
        return make_loader(ds, batch_size, shuffle=shuffle, seed=seed)

    def train(weight_decay: float) -> tuple[nn.Module, Any]:
        torch.manual_seed(seed)
        model = nn.Linear(emb.values.shape[1], len(d.classes))
        history = fit(
            model,
            loader(d.train, cfg.batch_size, True),
            loader(d.val, 256, False),
            epochs=cfg.epochs_probe,
            lr=cfg.lr_probe,
            weight_decay=weight_decay,
            **bench.fit_kwargs(seed),
        )
        return model, history

    t0 = time.perf_counter()
    (head, history), selection = select_on_val(
        [{"weight_decay": wd} for wd in cfg.probe_weight_decays], lambda c: train(c["weight_decay"])
    )
    train_time = time.perf_counter() - t0
    preds, _ = predict(head, loader(d.test, 256, False))
    frozen = bench.frozen
    probe = ProbeNet(frozen, head, emb.mean, emb.std).to(bench.device)  # arm A as one model: image -> logits
    speed = bench.speed_and_backbone(lambda imgs: probe(bench.normalize(imgs)))
    save_model(bench, "linear_probe", seed, head, extra={"shift": emb.mean, "scale": emb.std})
    model = FrozenPlusTrainable(frozen, head)
    cell = result_cell(bench, model, history, preds, train_time=train_time, speed=speed)
    cell["shared_prep_time_s"] = emb.seconds
    cell["selection"] = selection
    explainer = cnn_explainer("linear_probe", probe, deepest_stage(frozen), frozen.cfg.mean, frozen.cfg.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def fine_tuning_plan(bench: Workbench) -> tuple[str, int | None, str]:
    """``(strategy, trainable_blocks, reason)`` of arms B and E (the same for both).

    ``trainable_blocks`` is ``None`` for ``"full"``: every layer trains, whatever ``cfg.trainable_blocks``
    or ``choose_strategy`` say about blocks.
    """
    from cnn.freezing import choose_strategy

    cfg = bench.cfg
    if cfg.strategy is not None:
        blocks = None if cfg.strategy == "full" else cfg.trainable_blocks or 2
        return cfg.strategy, blocks, "chosen by the user"
    similarity = cfg.similarity or _SIMILAR_TO_IMAGENET.get(cfg.data, "high")
    strat = choose_strategy(len(bench.data.train), similarity)
    reason = f"cnn.choose_strategy: {strat.reason}"
    if strat.name == "full":
        return "full", None, reason
    blocks = strat.trainable_blocks or 1
    if strat.name == "feature_extraction":  # that is arm A; arm B still fine-tunes, as little as it can
        reason = (
            f"cnn.choose_strategy advised feature extraction ({strat.reason}); that is arm A, so arm B "
            f"fine-tunes the smallest part: the last {blocks} block and the head"
        )
        return "fine_tuning", blocks, reason
    return strat.name, blocks, reason


def select_on_val(
    candidates: list[dict[str, Any]], train: Callable[[dict[str, Any]], tuple[nn.Module, Any]]
) -> tuple[tuple[nn.Module, Any], dict[str, Any]]:
    """Train one model per candidate setting; keep the one with the lowest validation loss.

    Each model ends with its best-validation-epoch weights (``fit(restore_best=True)``), so a candidate is
    scored by the lowest validation loss it reached. The test split plays no part.

    Returns:
        ``((model, history), selection)``: the kept model and its History, and ``{"chosen": candidate,
        "tried": [{**candidate, "val_loss", "val_acc", "best_epoch"}, ...]}`` for the report.
    """
    if not candidates:
        raise ValueError("candidates is empty; give at least one setting to train, e.g. [{}]")
    best: tuple[float, int] | None = None
    kept: tuple[nn.Module, Any] | None = None
    tried = []
    for i, cand in enumerate(candidates):
        model, history = train(cand)
        losses = list(history.val_loss)
        epoch = int(np.argmin(losses))
        tried.append(
            {
                **cand,
                "val_loss": float(losses[epoch]),
                "val_acc": float(history.val_acc[epoch]),
                "best_epoch": epoch + 1,
            }
        )
        if best is None or losses[epoch] < best[0]:
            best, kept = (float(losses[epoch]), i), (model, history)
    return kept, {"chosen": candidates[best[1]], "tried": tried}  # type: ignore[index,return-value]


def _fine_tune(
    bench: Workbench,
    seed: int,
    model: nn.Module,
    pcfg: Any,
    loader: Callable[..., Any],
    fit: Any,
    predict: Any,
) -> tuple[Any, torch.Tensor, float, Speeds]:
    """What arms B and E share: train with B's epochs and learning rate, predict the test split, time
    inference from raw images on the device. Returns ``(history, test predictions, train s, Speeds)``."""
    from cnn.transforms import normalize_images

    d, cfg = bench.data, bench.cfg
    t0 = time.perf_counter()
    history = fit(
        model,
        loader(d.train, cfg.batch_size, True),
        loader(d.val, 64, False),
        epochs=cfg.epochs_finetune,
        lr=cfg.lr_finetune,
        **bench.fit_kwargs(seed),
    )
    train_time = time.perf_counter() - t0
    preds, _ = predict(model, loader(d.test, 64, False))
    model.eval().to(bench.device)
    speed = bench.speed_and_backbone(
        lambda imgs: model(normalize_images(imgs, pcfg.mean, pcfg.std).to(bench.device))
    )
    return history, preds, train_time, speed


def finetune(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm B: the backbone with a new head, its last blocks trained (or all with ``strategy="full"``)."""
    from cnn.freezing import freeze
    from cnn.training import fit, predict

    d = bench.data
    name, blocks, reason = fine_tuning_plan(bench)
    torch.manual_seed(seed)
    model = bench.backbone(num_classes=len(d.classes))
    freeze(model, name, trainable_blocks=blocks if name == "fine_tuning" else None)
    pcfg = model.cfg

    def loader(idx: np.ndarray, batch_size: int, train: bool) -> Any:
        ds = ImageTensors(d.images[idx], d.targets[idx], pcfg, train=train)
        return make_loader(ds, batch_size, shuffle=train, seed=seed)

    history, preds, train_time, speed = _fine_tune(bench, seed, model, pcfg, loader, fit, predict)
    save_model(bench, "finetune", seed, model)
    cell = result_cell(bench, model, history, preds, train_time=train_time, speed=speed)
    cell["strategy"] = {"name": name, "trainable_blocks": blocks, "reason": reason}
    explainer = cnn_explainer("finetune", model, deepest_stage(model), pcfg.mean, pcfg.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def _gnn(bench: Workbench, seed: int, *, with_cnn: bool) -> dict[str, Any]:
    from gnn.loader import graph_loader
    from gnn.training import fit, predict

    d, cfg = bench.data, bench.cfg
    gs = bench.graphs(with_cnn)

    def loader(idx: np.ndarray, shuffle: bool) -> Any:
        """PyG's DataLoader, its batches gathered from the graphs' tensors concatenated once."""
        g = torch.Generator().manual_seed(seed)
        return graph_loader(
            [gs.graphs[i] for i in idx], batch_size=cfg.batch_size, shuffle=shuffle, generator=g
        )

    def train(c: dict[str, Any]) -> tuple[nn.Module, Any]:
        torch.manual_seed(seed)
        model = bench.gnn_model(gs.graphs[0].x.shape[1], with_cnn=with_cnn, dropout=c["dropout"])
        history = fit(
            model,
            loader(d.train, True),
            loader(d.val, False),
            epochs=cfg.epochs_gnn,
            lr=cfg.lr_gnn,
            weight_decay=c["weight_decay"],
            **bench.fit_kwargs(seed),
        )
        return model, history

    t0 = time.perf_counter()
    candidates = [{"dropout": p, "weight_decay": wd} for p, wd in cfg.gnn_regularisation]
    (model, history), selection = select_on_val(candidates, train)
    train_time = time.perf_counter() - t0
    preds, _ = predict(model, loader(d.test, False))
    model.eval()
    conv = bench.converter(with_cnn)
    dev = bench.device
    x_mean, x_std = gs.mean.to(dev), gs.std.to(dev)
    u_mean, u_std = bench.embeddings.mean.to(dev), bench.embeddings.std.to(dev)

    def run(imgs: np.ndarray) -> torch.Tensor:
        """Image -> graph -> logits as at inference, on the device: segmentation, graph and features in
        torch (:meth:`ImageToGraph.batch_tensor`); arm C's ``u`` comes from the same backbone pass."""
        if with_cnn:
            bench.frozen_view.take()  # forget embeddings of earlier conversions (explainers, caches)
        batch = conv.batch_tensor(torch.from_numpy(imgs).to(dev), collate=True)
        batch.x = (batch.x - x_mean) / x_std
        if with_cnn:
            batch.u = (bench.frozen_view.take().float() - u_mean) / u_std
        return model(batch)

    model.to(dev)
    speed = bench.speed_and_backbone(run)
    arm = "gnn_cnn" if with_cnn else "gnn_color"
    width = int(gs.graphs[0].x.shape[1])
    extra = {
        "x_mean": gs.mean,
        "x_std": gs.std,
        "in_channels": width,
        "dropout": selection["chosen"]["dropout"],
    }
    if with_cnn:
        extra.update(u_mean=bench.embeddings.mean, u_std=bench.embeddings.std)
    save_model(bench, arm, seed, model, extra=extra)
    counted = FrozenPlusTrainable(bench.frozen, model) if with_cnn else model
    cell = result_cell(bench, counted, history, preds, train_time=train_time, speed=speed)
    cell["graph_build_time_s"] = gs.seconds
    cell["node_features"] = int(gs.graphs[0].x.shape[1])
    cell["mean_nodes"] = float(np.mean([g.num_nodes for g in gs.graphs]))
    cell["selection"] = selection
    cell["graph"] = cfg.graph if with_cnn else "superpixels"
    explainer = graph_explainer(
        arm,
        model,
        bench.converter(with_cnn, keep_segments=True),
        gs.mean,
        gs.std,
        global_features=bench.conversion_embeddings if with_cnn else None,
    )
    bench.frozen_view.take()  # the explainer's conversions start with no embeddings kept
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def gnn_cnn(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm C: a GNN on superpixel graphs with the frozen backbone's pooled stage maps, colour, position."""
    return _gnn(bench, seed, with_cnn=True)


def gnn_color(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm D: the same GNN on graphs with colour and position only."""
    return _gnn(bench, seed, with_cnn=False)


def e2e(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm E: arm B's backbone and trainable blocks with a graph head over regions, trained end to end.

    The stage maps are pooled into each image's superpixels inside the forward pass (the segment maps
    are computed once, :attr:`Workbench.segment_maps`, and cropped and flipped with their images), or
    into the deepest stage's cells with ``cfg.graph == "patches"``. Same strategy, epochs and learning
    rate as arm B; the backbone's own head stays, so arm E contains arm B (:mod:`bridge.cnngraph`).
    """
    from bridge.cnngraph import SegmentedImages
    from bridge.cnngraph import fit as fit_segmented
    from bridge.cnngraph import predict as predict_segmented
    from cnn.freezing import freeze
    from cnn.training import fit as fit_images
    from cnn.training import predict as predict_images

    d, cfg = bench.data, bench.cfg
    name, blocks, reason = fine_tuning_plan(bench)
    torch.manual_seed(seed)
    model: Any = bench.e2e_model()
    freeze(model.backbone, name, trainable_blocks=blocks if name == "fine_tuning" else None)
    pcfg = model.backbone.cfg
    patches = cfg.graph == "patches"
    segments = None if patches else bench.segment_maps

    def loader(idx: np.ndarray, batch_size: int, train: bool) -> Any:
        if segments is None:
            ds: Any = ImageTensors(d.images[idx], d.targets[idx], pcfg, train=train)
        else:
            ds = SegmentedImages(d.images[idx], segments[idx], d.targets[idx], pcfg, train=train)
        return make_loader(ds, batch_size, shuffle=train, seed=seed)

    fit, predict = (fit_images, predict_images) if patches else (fit_segmented, predict_segmented)
    # trained and tested on the cached segment maps; timed on images alone, which its segmenter segments
    history, preds, train_time, speed = _fine_tune(bench, seed, model, pcfg, loader, fit, predict)
    save_model(bench, "e2e", seed, model, extra={"graph": cfg.graph})
    cell = result_cell(bench, model, history, preds, train_time=train_time, speed=speed)
    cell["strategy"] = {"name": name, "trainable_blocks": blocks, "reason": reason}
    cell["graph"] = cfg.graph
    explainer = cnn_explainer("e2e", model, deepest_stage(model.backbone), pcfg.mean, pcfg.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell
