"""Per-node attribution for graph classifiers (which nodes drove a prediction).

``node_importance`` returns one non-negative score per node, scaled to [0, 1] per graph, aligned
with the rows of ``data.x`` so that it can be painted onto the superpixels the nodes came from.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.data.data import BaseData
from torch_geometric.utils import scatter

from engine.modes import eval_mode

__all__ = ["node_importance"]

_METHODS = ("saliency", "grad_x_input", "integrated_gradients")


def node_importance(
    model: nn.Module,
    data: BaseData,
    *,
    method: str = "saliency",
    target: int | Tensor | None = None,
    steps: int = 32,
    baseline: Tensor | None = None,
) -> Tensor:
    """Per-node importance of a graph classifier's prediction, in [0, 1] per graph.

    Methods (gradients of the target class logit with respect to the node features x):

    * ``"saliency"``: ``sum_f |d logit / d x[n, f]|``.
    * ``"grad_x_input"``: ``|sum_f x[n, f] * d logit / d x[n, f]|``.
    * ``"integrated_gradients"``: ``|sum_f (x - x0)[n, f] * mean_k d logit(x0 + a_k (x - x0)) / d x[n, f]|``
      over ``steps`` midpoints ``a_k`` between the baseline ``x0`` and ``x``; all steps run as one
      batched forward and backward pass.

    Each graph's scores are divided by their maximum (all zeros stay zeros). The model runs in
    eval mode and is put back in the mode it had; parameters' ``.grad`` are left untouched.

    Args:
        model: Graph model taking a ``Data``/``Batch`` and returning logits (num_graphs, C).
        data: One graph or a ``Batch`` of graphs.
        method: ``"saliency"``, ``"grad_x_input"`` or ``"integrated_gradients"``.
        target: Class to explain: None (the predicted class of each graph), an int (all graphs),
            or a (num_graphs,) tensor.
        steps: Interpolation steps for integrated gradients.
        baseline: Integrated-gradients baseline features x0, same shape as ``data.x`` (default 0).

    Returns:
        Importance per node, on the device of ``data.x``.

    Shapes:
        - data.x: (N, F).
        - output: (N,) float in [0, 1].

    Example:
        >>> scores = node_importance(model, graph, method="integrated_gradients")  # doctest: +SKIP
        >>> scores.shape  # doctest: +SKIP
        torch.Size([75])
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}; got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if not isinstance(data, BaseData):
        raise TypeError(f"data must be a torch_geometric Data or Batch; got {type(data).__name__}")
    x = data.x
    if x is None or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(
            f"data.x must be a float tensor (N, F); got {None if x is None else (tuple(x.shape), x.dtype)}"
        )
    if baseline is not None and baseline.shape != x.shape:
        raise ValueError(
            f"baseline must have the shape of data.x {tuple(x.shape)}; got {tuple(baseline.shape)}"
        )

    is_batch = data.batch is not None
    num_graphs = int(data.num_graphs) if is_batch else 1
    batch = data.batch if is_batch else torch.zeros(x.size(0), dtype=torch.long, device=x.device)

    with eval_mode(model), torch.enable_grad():
        if method == "integrated_gradients":
            x0 = torch.zeros_like(x) if baseline is None else baseline.to(x)
            grads = _integrated_gradients(model, data, x0, target, steps, num_graphs)
            scores = ((x - x0) * grads).sum(dim=1).abs()
        else:
            inputs = x.detach().clone().requires_grad_(True)
            logits = _forward(model, data, inputs)
            tgt = _targets(target, logits, num_graphs)
            (grads,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), inputs)
            if method == "saliency":
                scores = grads.abs().sum(dim=1)
            else:
                scores = (inputs.detach() * grads).sum(dim=1).abs()

    scores = scores.detach()
    peak = scatter(scores, batch, dim=0, dim_size=num_graphs, reduce="max")[batch]
    safe = peak.clamp(min=torch.finfo(scores.dtype).tiny)
    return torch.where(peak > 0, scores / safe, torch.zeros_like(scores))


def _forward(model: nn.Module, data: BaseData, x: Tensor) -> Tensor:
    """The model on a shallow copy of ``data`` whose features are ``x`` (the input is not changed)."""
    view = copy.copy(data)
    view.x = x
    return model(view)


def _targets(target: int | Tensor | None, logits: Tensor, num_graphs: int) -> Tensor:
    num_classes = logits.size(1)
    if target is None:
        return logits.detach().argmax(dim=1)
    tgt = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if tgt.numel() == 1:
        tgt = tgt.expand(num_graphs)
    if tgt.numel() != num_graphs:
        raise ValueError(
            f"target must be an int or hold one class per graph ({num_graphs}); got {tgt.numel()}"
        )
    if int(tgt.min()) < 0 or int(tgt.max()) >= num_classes:
        raise ValueError(f"target must be a class in [0, {num_classes}); got {tgt.tolist()}")
    return tgt


def _integrated_gradients(
    model: nn.Module, data: BaseData, x0: Tensor, target: int | Tensor | None, steps: int, num_graphs: int
) -> Tensor:
    """Mean gradient over ``steps`` interpolations, computed as one Batch of ``steps`` copies."""
    x = data.x.detach()
    if target is None:
        with torch.no_grad():
            target = _forward(model, data, x).argmax(dim=1)
    graphs = data.to_data_list() if data.batch is not None else [data]
    # Step-major order: copy k of graph g is graph k * num_graphs + g, its nodes follow the same order.
    big = Batch.from_data_list(graphs * steps)
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    path = x0.unsqueeze(0) + alphas.view(-1, 1, 1) * (x - x0).unsqueeze(0)  # (steps, N, F)
    inputs = path.reshape(-1, x.size(1)).requires_grad_(True)
    big.x = inputs
    logits = model(big)
    tgt = _targets(target, logits[:num_graphs], num_graphs).repeat(steps)
    (grads,) = torch.autograd.grad(logits.gather(1, tgt.view(-1, 1)).sum(), inputs)
    return grads.view(steps, x.size(0), x.size(1)).mean(dim=0)
