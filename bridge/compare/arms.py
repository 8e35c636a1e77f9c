"""The built-in arms, one function each, registered in the order of the report.

* ``linear_probe`` (A): frozen pretrained backbone, new linear head (feature extraction);
* ``finetune`` (B): the last blocks plus a new head trained (the strategy of ``cnn.choose_strategy``);
* ``gnn_cnn`` (C): a GNN on superpixel graphs whose nodes carry the frozen backbone's pooled stage
  features plus colour and position;
* ``gnn_color`` (D): the same GNN on graphs with colour and position only.

Each takes the shared :class:`~bridge.compare.workbench.Workbench` and a seed and returns a result cell
(:func:`~bridge.compare.cell.result_cell`). Their names and titles are in the registry's table of built-in
arms (:data:`bridge.compare.registry.BUILTIN_ARMS`), so this module imports nothing of the registry.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bridge.compare.cell import result_cell, save_model
from bridge.compare.data import ImageTensors, make_loader
from bridge.compare.explainers import ProbeNet, cnn_explainer, deepest_stage, graph_explainer
from bridge.compare.faithful import arm_faithfulness
from bridge.compare.workbench import Workbench

if TYPE_CHECKING:
    from cnn.backbones import Backbone

__all__ = [
    "FrozenPlusTrainable",
    "finetune",
    "gnn_cnn",
    "gnn_color",
    "linear_probe",
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
    torch.manual_seed(seed)
    head = nn.Linear(emb.values.shape[1], len(d.classes))

    def loader(idx: np.ndarray, batch_size: int, shuffle: bool) -> Any:
        ds = torch.utils.data.TensorDataset(emb.values[idx], y[idx])
        return make_loader(ds, batch_size, shuffle=shuffle, seed=seed)

    t0 = time.perf_counter()
    history = fit(
        head,
        loader(d.train, cfg.batch_size, True),
        loader(d.val, 256, False),
        epochs=cfg.epochs_probe,
        lr=cfg.lr_probe,
        **bench.fit_kwargs(seed),
    )
    train_time = time.perf_counter() - t0
    preds, _ = predict(head, loader(d.test, 256, False))
    frozen = bench.frozen
    probe = ProbeNet(frozen, head, emb.mean, emb.std)  # arm A as one model: image -> logits
    speed = bench.speed(lambda imgs: probe(bench.normalize(imgs)))
    save_model(bench, "linear_probe", seed, head, extra={"shift": emb.mean, "scale": emb.std})
    model = FrozenPlusTrainable(frozen, head)
    cell = result_cell(bench, model, history, preds, train_time=train_time, speed=speed)
    cell["shared_prep_time_s"] = emb.seconds
    explainer = cnn_explainer("linear_probe", probe, deepest_stage(frozen), frozen.cfg.mean, frozen.cfg.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def finetune(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm B: the backbone with a new head, its last blocks trained (or all with ``strategy="full"``)."""
    from cnn.freezing import choose_strategy, freeze
    from cnn.training import fit, predict
    from cnn.transforms import normalize_images

    d, cfg = bench.data, bench.cfg
    if cfg.strategy is not None:
        name, blocks, reason = cfg.strategy, cfg.trainable_blocks or 2, "chosen by the user"
    else:
        similarity = cfg.similarity or _SIMILAR_TO_IMAGENET.get(cfg.data, "high")
        strat = choose_strategy(len(d.train), similarity)
        blocks, reason = strat.trainable_blocks or 1, f"cnn.choose_strategy: {strat.reason}"
        name = strat.name
        if name == "feature_extraction":  # that is arm A; arm B still fine-tunes, as little as it can
            name = "fine_tuning"
            reason = (
                f"cnn.choose_strategy advised feature extraction ({strat.reason}); that is arm A, so arm B "
                f"fine-tunes the smallest part: the last {blocks} block and the head"
            )
    torch.manual_seed(seed)
    model = bench.backbone(num_classes=len(d.classes))
    freeze(model, name, trainable_blocks=blocks if name == "fine_tuning" else None)
    pcfg = model.cfg

    def loader(idx: np.ndarray, batch_size: int, train: bool) -> Any:
        ds = ImageTensors(d.images[idx], d.targets[idx], pcfg, train=train)
        return make_loader(ds, batch_size, shuffle=train, seed=seed)

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
    model.eval()
    speed = bench.speed(lambda imgs: model(normalize_images(imgs, pcfg.mean, pcfg.std)))
    save_model(bench, "finetune", seed, model)
    cell = result_cell(bench, model, history, preds, train_time=train_time, speed=speed)
    cell["strategy"] = {"name": name, "trainable_blocks": blocks, "reason": reason}
    explainer = cnn_explainer("finetune", model, deepest_stage(model), pcfg.mean, pcfg.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def _gnn(bench: Workbench, seed: int, *, with_cnn: bool) -> dict[str, Any]:
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader as GraphLoader

    from gnn.training import fit, predict

    d, cfg = bench.data, bench.cfg
    gs = bench.graphs(with_cnn)
    torch.manual_seed(seed)
    model = bench.gnn_model(gs.graphs[0].x.shape[1])

    def loader(idx: np.ndarray, shuffle: bool) -> Any:
        g = torch.Generator().manual_seed(seed)
        return GraphLoader(
            [gs.graphs[i] for i in idx], batch_size=cfg.batch_size, shuffle=shuffle, generator=g
        )

    t0 = time.perf_counter()
    history = fit(
        model,
        loader(d.train, True),
        loader(d.val, False),
        epochs=cfg.epochs_gnn,
        lr=cfg.lr_gnn,
        **bench.fit_kwargs(seed),
    )
    train_time = time.perf_counter() - t0
    preds, _ = predict(model, loader(d.test, False))
    model.eval()
    conv = bench.converter(with_cnn)

    def run(imgs: np.ndarray) -> torch.Tensor:  # image -> graph -> logits, as at inference
        batch = Batch.from_data_list(conv.batch(list(imgs)))
        batch.x = (batch.x - gs.mean) / gs.std
        return model(batch)

    speed = bench.speed(run)
    arm = "gnn_cnn" if with_cnn else "gnn_color"
    width = int(gs.graphs[0].x.shape[1])
    save_model(bench, arm, seed, model, extra={"x_mean": gs.mean, "x_std": gs.std, "in_channels": width})
    counted = FrozenPlusTrainable(bench.frozen, model) if with_cnn else model
    cell = result_cell(bench, counted, history, preds, train_time=train_time, speed=speed)
    cell["graph_build_time_s"] = gs.seconds
    cell["node_features"] = int(gs.graphs[0].x.shape[1])
    cell["mean_nodes"] = float(np.mean([g.num_nodes for g in gs.graphs]))
    explainer = graph_explainer(arm, model, bench.converter(with_cnn, keep_segments=True), gs.mean, gs.std)
    cell["faithfulness"] = arm_faithfulness(bench, explainer, seed)
    return cell


def gnn_cnn(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm C: a GNN on superpixel graphs with the frozen backbone's pooled stage maps, colour, position."""
    return _gnn(bench, seed, with_cnn=True)


def gnn_color(bench: Workbench, seed: int) -> dict[str, Any]:
    """Arm D: the same GNN on graphs with colour and position only."""
    return _gnn(bench, seed, with_cnn=False)
