"""A trained arm as an explainer: its predictions, its pixel maps and its scoring functions, one interface.

CNN arms (A, B) explain with Grad-CAM at the backbone's deepest stage; GNN arms (C, D) with node saliency
painted onto the superpixels. Both give ``(B, S, S)`` maps of the same working images, so the comparison
scores them alike (:mod:`bridge.compare.faithful`), draws them side by side, and ``pixgraph explain IMAGE
--model RUN/models/<arm>.pth`` explains a new image with a model of a finished run
(:func:`load_explainer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from bridge.compare.workbench import Workbench
    from cnn.backbones import Backbone

__all__ = [
    "ArmExplainer",
    "ProbeNet",
    "cnn_explainer",
    "deepest_stage",
    "graph_explainer",
    "load_explainer",
]

_GRAPH_ARMS = {"gnn_cnn": True, "gnn_color": False}


class ProbeNet(nn.Module):
    """Arm A as one classifier, image -> logits: frozen embedding, standardised, then the linear head."""

    def __init__(self, frozen: Backbone, head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.frozen, self.head = frozen, head
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", mean.detach().clone())
        self.register_buffer("scale", std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.frozen.embed(x) - self.shift) / self.scale)


def deepest_stage(backbone: Backbone) -> nn.Module:
    """The module of the backbone's deepest feature stage (where Grad-CAM looks)."""
    return backbone.model.get_submodule(backbone.stage_names[-1])


@dataclass(frozen=True)
class ArmExplainer:
    """What explaining one arm takes.

    Attributes:
        arm: the arm's registry name.
        method: the explanation, in words (``"Grad-CAM, deepest stage"``).
        probs: ``(B, S, S, 3)`` uint8 images -> ``(B, C)`` class probabilities.
        maps: the same images -> ``(B, S, S)`` importance maps in ``[0, 1]``.
        scorers: the same images -> a scoring function for :func:`cnn.perturbation.faithfulness` (one for
            all images, or one per image for a GNN, which keeps each image's superpixels).
    """

    arm: str
    method: str
    probs: Callable[[np.ndarray], torch.Tensor]
    maps: Callable[[np.ndarray], torch.Tensor]
    scorers: Callable[[np.ndarray], Any]


def cnn_explainer(arm: str, model: nn.Module, layer: nn.Module, mean: Any, std: Any) -> ArmExplainer:
    """Grad-CAM explainer of a CNN arm (``model``: normalised images -> logits)."""
    from bridge.explain import cnn_scorer, module_device
    from cnn.explain import grad_cam
    from cnn.transforms import normalize_images

    model.eval()
    score = cnn_scorer(model, mean, std, batch_size=32)

    dev = module_device(model)

    def maps(images: np.ndarray) -> torch.Tensor:
        chunks = [normalize_images(images[i : i + 16], mean, std) for i in range(0, len(images), 16)]
        return torch.cat([grad_cam(model, x.to(dev), layer=layer).cpu() for x in chunks])

    return ArmExplainer(arm, "Grad-CAM, deepest stage", score, maps, lambda images: score)


def graph_explainer(
    arm: str,
    model: nn.Module,
    converter: Any,
    x_mean: torch.Tensor,
    x_std: torch.Tensor,
    *,
    global_features: Callable[[np.ndarray], torch.Tensor] | None = None,
) -> ArmExplainer:
    """Node-saliency explainer of a GNN arm; ``converter`` must keep the segment maps.

    ``global_features(images) -> (B, G)`` gives the graph-level input ``u`` of a model that reads one
    (arm C: the standardised frozen embedding), for the intact and for every perturbed image; it is
    called right after ``converter`` converted those images, so it may take their embeddings from that
    conversion's backbone pass (:meth:`bridge.compare.workbench.Workbench.conversion_embeddings`).
    """
    from torch_geometric.data import Batch

    from bridge.explain import graph_pixel_maps, graph_scorer, module_device

    model.eval()
    last: dict[str, Any] = {}

    def graphs(images: np.ndarray) -> list[Any]:
        """Standardised graphs of ``images``; the last set is kept, since maps, probabilities and
        scorers of one batch of images all start from the same conversion."""
        key = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16).hexdigest()
        if last.get("key") != key:
            out = converter.batch(list(images))
            for g in out:
                g.x = (g.x - x_mean) / x_std
            if global_features is not None:
                u = global_features(images)
                for i, g in enumerate(out):
                    g.u = u[i : i + 1]
            last.update(key=key, graphs=out)
        return last["graphs"]

    def probs(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            batch = Batch.from_data_list(graphs(images)).to(module_device(model))
            return torch.softmax(model(batch).float(), dim=1).cpu()

    def scorers(images: np.ndarray) -> list[Any]:
        segs = [g.segments[0].numpy() for g in graphs(images)]
        return [
            graph_scorer(model, converter, s, standardize=(x_mean, x_std), global_features=global_features)
            for s in segs
        ]

    def maps(images: np.ndarray) -> torch.Tensor:
        return graph_pixel_maps(model, graphs(images))

    return ArmExplainer(arm, "node saliency on superpixels", probs, maps, scorers)


def load_explainer(bench: Workbench, path: str | Path) -> tuple[ArmExplainer, list[str]]:
    """The explainer of a model saved by a comparison (``RUN/models/<arm>.pth``) and its class names.

    The run's configuration (``bench.cfg``) rebuilds the backbone, converter and graph model; the file
    holds the trained weights, the class names and the standardisation of the arm's inputs. The model
    runs on ``bench.device``, as the frozen backbone and the graph builder do.

    Raises:
        ValueError: an unknown arm, or a file written by pixgraph 0.1 without the standardisation (rerun
            that arm to explain it).

    Example:
        >>> explainer, classes = load_explainer(bench, "runs/compare-elpv-1/models/finetune.pth")
        >>> explainer.maps(images).shape
        torch.Size([4, 160, 160])
    """
    from engine.checkpoints import load_checkpoint
    from gnn.models import GraphClassifier

    path = Path(path)
    arm = path.stem
    ckpt = load_checkpoint(path)
    extra, state, classes = ckpt.get("extra") or {}, ckpt["state_dict"], ckpt.get("classes")
    if not classes:
        raise ValueError(
            f"{str(path)!r} has no class names: it was written by pixgraph 0.1; rerun the comparison "
            f"(or its arm with --arms {arm}) to explain its models"
        )
    n = len(classes)
    if arm == "linear_probe":
        if "shift" not in extra:
            raise ValueError(
                f"{str(path)!r} lacks the embedding standardisation; rerun the arm to explain it"
            )
        head = nn.Linear(state["weight"].shape[1], n)
        head.load_state_dict(state)
        frozen = bench.frozen  # already on bench.device
        probe = ProbeNet(frozen, head, extra["shift"], extra["scale"]).to(bench.device)
        return cnn_explainer(arm, probe, deepest_stage(frozen), frozen.cfg.mean, frozen.cfg.std), classes
    if arm == "finetune":
        model = bench.backbone(num_classes=n)
        load_checkpoint(path, model)
        model.to(bench.device)
        return cnn_explainer(arm, model, deepest_stage(model), model.cfg.mean, model.cfg.std), classes
    if arm in _GRAPH_ARMS:
        if "x_mean" not in extra:
            raise ValueError(
                f"{str(path)!r} lacks the node-feature standardisation; rerun the arm to explain it"
            )
        cfg = bench.cfg
        width = int(extra["in_channels"])
        with_cnn = _GRAPH_ARMS[arm]
        reads_u = "global_head.weight" in state  # arm C since it contains the probe
        gnn = GraphClassifier(
            width,
            n,
            conv=cfg.gnn,
            hidden=cfg.hidden,
            layers=cfg.layers,
            global_channels=int(state["global_head.weight"].shape[1]) if reads_u else None,
            dynamic_k=bench.knn if with_cnn and cfg.graph == "patches" and cfg.dynamic_knn else None,
        )
        gnn.load_state_dict(state)
        gnn.to(bench.device)
        conv = bench.converter(with_cnn, keep_segments=True)
        if reads_u:
            dev, frozen = bench.device, bench.frozen
            u_mean, u_std = extra["u_mean"].to(dev), extra["u_std"].to(dev)

            def global_features(images: np.ndarray) -> torch.Tensor:
                """The standardised frozen embedding, on ``bench.device`` like the backbone (the graph
                batches move to the GNN's device with their ``u``)."""
                with torch.inference_mode():
                    return (frozen.embed(bench.normalize(images)).float() - u_mean) / u_std

            explainer = graph_explainer(
                arm, gnn, conv, extra["x_mean"], extra["x_std"], global_features=global_features
            )
            return explainer, classes
        return graph_explainer(arm, gnn, conv, extra["x_mean"], extra["x_std"]), classes
    if arm == "e2e":
        e2e_model: Any = bench.e2e_model(str(extra.get("graph", bench.cfg.graph)))
        e2e_model.load_state_dict(state)
        e2e_model.to(bench.device)
        pcfg = e2e_model.backbone.cfg
        return cnn_explainer(arm, e2e_model, deepest_stage(e2e_model.backbone), pcfg.mean, pcfg.std), classes
    raise ValueError(
        f"cannot explain {str(path)!r}: arm {arm!r} is not one of linear_probe, finetune, gnn_cnn, "
        "gnn_color, e2e"
    )
