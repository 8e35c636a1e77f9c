"""Explanations of CNNs and GNNs on the same pixels, and how faithful each one is.

A CNN explains itself with a class activation map over the image (:func:`cnn.explain.grad_cam`); a GNN
with one importance per node (:func:`gnn.importance.node_importance`). :func:`graph_pixel_maps` paints
every node's importance onto the pixels of its superpixel, so both become ``(H, W)`` maps of the same
image, and :func:`cnn.perturbation.faithfulness` scores them alike (deletion and insertion curves).

For a GNN the perturbed images are turned into graphs over the superpixels of the intact image
(``ImageToGraph.batch(..., segments=...)``): the node features are recomputed from the perturbed pixels
(colour, CNN stage maps pooled per node), the nodes stay, and so do the edges of region adjacency and
of k-NN by position. Removing a superpixel's pixels thus changes exactly that node's features, as
removing pixels changes what a CNN sees. With ``edges="knn_feature"`` the edges follow the features, so
a perturbed copy is also rewired and its curves measure that too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["cnn_scorer", "graph_pixel_maps", "graph_scorer"]


def graph_pixel_maps(model: nn.Module, graphs: Sequence[Any], *, method: str = "saliency") -> torch.Tensor:
    """Node importance of a graph classifier painted onto each graph's superpixels.

    Args:
        model: graph classifier, ``model(batch) -> logits``.
        graphs: graphs made by ``ImageToGraph`` with ``keep_segments=True`` (``data.segments``), all of
            the same image size, with the node features the model expects.
        method: a method of :func:`gnn.importance.node_importance`.

    Returns:
        ``(B, H, W)`` float maps in ``[0, 1]``: every pixel carries the importance of its node.

    Shapes:
        - output: ``(len(graphs), H, W)``.

    Example:
        >>> from bridge.convert import ImageToGraph
        >>> from gnn.models import GraphClassifier
        >>> g = ImageToGraph(n_segments=4, features=("color_mean",))(np.zeros((8, 8, 3), np.uint8))
        >>> graph_pixel_maps(GraphClassifier(3, 2, hidden=8), [g]).shape
        torch.Size([1, 8, 8])
    """
    from torch_geometric.data import Batch

    from gnn.importance import node_importance

    if len(graphs) == 0:
        raise ValueError("graphs is empty; give at least one graph")
    if any(getattr(g, "segments", None) is None for g in graphs):
        raise ValueError(
            "every graph needs its segment map: build them with ImageToGraph(keep_segments=True)"
        )
    shapes = {tuple(g.segments.shape[-2:]) for g in graphs}
    if len(shapes) != 1:
        raise ValueError(f"the graphs come from images of different sizes {sorted(shapes)}; give one size")
    batch = Batch.from_data_list(list(graphs)).to(module_device(model))
    importance = node_importance(model, batch, method=method)  # (total nodes,), per graph in [0, 1]
    shape = shapes.pop()
    segments = torch.cat([g.segments.reshape(1, *shape) for g in graphs]).to(importance.device)
    offsets = batch.ptr[:-1].to(importance.device).view(-1, 1, 1)
    return importance[segments + offsets].float().cpu()


def module_device(model: Any) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a plain function).

    Example:
        >>> module_device(nn.Linear(2, 2))
        device(type='cpu')
    """
    if isinstance(model, nn.Module):
        for t in itertools.chain(model.parameters(), model.buffers()):
            return t.device
    return torch.device("cpu")


def cnn_scorer(
    model: Callable[[torch.Tensor], torch.Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 64,
) -> Callable[[np.ndarray], torch.Tensor]:
    """``score(images) -> probabilities`` of a CNN on ``(N, H, W, 3)`` uint8 views, in batches.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> cnn_scorer(net, (0.5,) * 3, (0.5,) * 3)(np.zeros((5, 4, 4, 3), np.uint8)).shape
        torch.Size([5, 2])
    """
    from cnn.transforms import normalize_images

    dev = module_device(model)

    def score(images: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = normalize_images(images[start : start + batch_size], mean, std).to(dev)
                out.append(torch.softmax(model(x).float(), dim=1).cpu())
        return torch.cat(out)

    return score


def graph_scorer(
    model: nn.Module,
    converter: Any,
    segments: np.ndarray,
    *,
    standardize: tuple[torch.Tensor, torch.Tensor] | None = None,
    global_features: Callable[[np.ndarray], torch.Tensor] | None = None,
) -> Callable[[np.ndarray], torch.Tensor]:
    """``score(images) -> probabilities`` of a GNN on perturbed copies of ONE image, over its superpixels.

    Args:
        model: graph classifier.
        converter: the ``ImageToGraph`` that made the model's graphs.
        segments: ``(H, W)`` label map of the intact image (``data.segments[0]``): every perturbed image
            is turned into a graph over these same superpixels.
        standardize: ``(mean, std)`` of the node features applied before the model, as in training.
        global_features: ``images -> (B, G)`` graph-level inputs ``data.u`` of a model built with
            ``global_channels`` (computed from each perturbed image, called right after ``converter``
            converted it).

    Example:
        >>> from bridge.convert import ImageToGraph
        >>> from gnn.models import GraphClassifier
        >>> conv = ImageToGraph(n_segments=4, features=("color_mean",))
        >>> img = np.zeros((8, 8, 3), np.uint8)
        >>> score = graph_scorer(GraphClassifier(3, 2, hidden=8), conv, conv(img).segments[0].numpy())
        >>> score(np.stack([img, img])).shape
        torch.Size([2, 2])
    """
    from torch_geometric.data import Batch

    seg = np.asarray(segments)

    def score(images: np.ndarray) -> torch.Tensor:
        graphs = converter.batch(list(images), segments=[seg] * len(images))
        batch = Batch.from_data_list(graphs)
        if standardize is not None:
            batch.x = (batch.x - standardize[0]) / standardize[1]
        if global_features is not None:
            batch.u = global_features(images)
        with torch.no_grad():
            return torch.softmax(model(batch.to(module_device(model))).float(), dim=1).cpu()

    return score
