"""Graph classifiers: one model with a registry of message-passing layers (GCN, GAT, GraphSAGE, GIN).

A :class:`GraphClassifier` embeds node features, runs ``layers`` message-passing blocks
(conv -> norm -> ReLU -> residual -> dropout, as in Benchmarking-GNNs), pools nodes per graph and
classifies the pooled vector with a small MLP. The convolution comes from a registry
(:func:`list_convs`, :func:`register_conv`); an unknown name raises an error listing the known ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data.data import BaseData
from torch_geometric.nn import (
    BatchNorm,
    GATConv,
    GCNConv,
    GINConv,
    GINEConv,
    GraphNorm,
    SAGEConv,
    global_add_pool,
    global_max_pool,
    global_mean_pool,
)

__all__ = [
    "ConvSpec",
    "GraphClassifier",
    "check_dtype",
    "check_edge_index",
    "dropout",
    "feature_knn",
    "gcn_adjacency",
    "list_convs",
    "list_presets",
    "register_conv",
    "sum_adjacency",
]


def feature_knn(h: Tensor, batch: Tensor, k: int, num_graphs: int | None = None) -> Tensor:
    """Edges ``j -> i`` from the ``k`` nearest nodes of the same graph in feature space (ViG style).

    One padded ``torch.cdist`` per batch (no loop over graphs); a graph with ``n <= k`` nodes links
    each node to its ``n - 1`` others. Differentiable inputs are fine: the edges carry no gradient.

    Args:
        h: node features.
        batch: graph index of each node, sorted (PyG's layout).
        k: neighbours per node.
        num_graphs: graphs in the batch (default ``batch.max() + 1``).

    Returns:
        ``(2, E)`` long edge index (source row 0, target row 1), no self loops.

    Shapes:
        - h: ``(N, F)``; batch: ``(N,)``; output: ``(2, E)``, ``E <= N * k``.

    Example:
        >>> h = torch.tensor([[0.0], [1.0], [5.0], [0.0], [9.0]])
        >>> feature_knn(h, torch.tensor([0, 0, 0, 1, 1]), 1).tolist()
        [[1, 0, 1, 4, 3], [0, 1, 2, 3, 4]]
    """
    from torch_geometric.utils import to_dense_batch

    _check_int("k", k, 1)
    dense, mask = to_dense_batch(h.detach(), batch, batch_size=num_graphs)  # (G, M, F), (G, M)
    g, m = mask.shape
    dist = torch.cdist(dense, dense)  # (G, M, M)
    invalid = ~(mask.unsqueeze(1) & mask.unsqueeze(2)) | torch.eye(m, dtype=torch.bool, device=h.device)
    dist = dist.masked_fill(invalid, float("inf"))
    kk = min(k, max(m - 1, 1))
    d, idx = dist.topk(kk, dim=2, largest=False)  # (G, M, kk) nearest sources of each target
    start = torch.cumsum(mask.sum(1), 0) - mask.sum(1)  # first node of each graph
    tgt = (start.view(g, 1, 1) + torch.arange(m, device=h.device).view(1, m, 1)).expand(g, m, kk)
    src = start.view(g, 1, 1) + idx
    keep = torch.isfinite(d)
    return torch.stack([src[keep], tgt[keep]])


def check_edge_index(edge_index: Tensor, num_nodes: int, *, name: str = "data.edge_index") -> None:
    """Refuse node indices outside ``0 .. num_nodes - 1`` (one min / max over all edges).

    Without this check, a negative index silently wraps around to the last nodes and a too large one
    raises a bare ``IndexError`` deep inside a convolution or an indexing operation.

    Args:
        edge_index: integer node indices.
        num_nodes: the number of nodes ``N``.
        name: how the message names ``edge_index``.

    Raises:
        ValueError: an index ``< 0`` or ``>= N``; the message names it, its edge and ``N``.

    Shapes:
        - edge_index: ``(2, E)``

    Example:
        >>> check_edge_index(torch.tensor([[0, 1], [1, 2]]), 3)
        >>> check_edge_index(torch.tensor([[0, -1], [1, 2]]), 3)
        Traceback (most recent call last):
        ...
        ValueError: data.edge_index holds node index -1 (edge 1) but the graph has 3 nodes; ...
    """
    if edge_index.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(edge_index))
    if lo >= 0 and hi < num_nodes:
        return
    bad = lo if lo < 0 else hi
    edge = int((edge_index == bad).any(dim=0).nonzero()[0, 0])
    raise ValueError(
        f"{name} holds node index {bad} (edge {edge}) but the graph has {num_nodes} nodes; expected "
        f"indices 0..{num_nodes - 1} (negative indices do not count from the end): fix the edges, or give "
        "the graph as many nodes as its edges use"
    )


@dataclass(frozen=True)
class ConvSpec:
    """How to build one kind of message-passing layer and which edge input it takes.

    Attributes:
        name: Registry name (``"gcn"``, ``"gat"``, ...).
        build: ``build(in_channels, out_channels, *, edge_dim, heads) -> nn.Module``.
        edge_input: ``"weight"`` if the layer takes a scalar weight per edge (``edge_weight`` (E,)),
            ``"attr"`` if it takes edge feature vectors (``edge_attr`` (E, edge_dim)) when built with
            ``edge_dim``, ``"none"`` if it ignores edges' values.
        description: One line shown by :func:`list_convs` users and in errors.
        prepare: ``prepare(edge_index, edge_weight, num_nodes, dtype=..., sparse=...) -> args``, or None:
            the graph input (in the model's float ``dtype``; a torch sparse matrix only where ``sparse``,
            which is False under autocast and for half precision; ``edge_weight`` is None unless
            ``edge_input == "weight"``: edge feature vectors do not reach it) that
            every block's layer takes after ``h`` (``conv(h, *args)``), computed once per forward
            instead of once per layer (for ``"gcn"``: the normalised adjacency of
            :func:`gcn_adjacency`; for ``"gin"`` without ``edge_dim``: :func:`sum_adjacency`). Layers
            built to take edge feature vectors (``edge_dim`` with ``edge_input="attr"``) skip it.
            None: ``conv(h, edge_index[, edge values])``.
    """

    name: str
    build: Callable[..., nn.Module]
    edge_input: str
    description: str
    prepare: Callable[..., tuple[Any, ...]] | None = None


_CONVS: dict[str, ConvSpec] = {}


def register_conv(
    name: str,
    *,
    edge_input: str,
    description: str = "",
    prepare: Callable[..., tuple[Any, ...]] | None = None,
) -> Callable:
    """Decorator that adds a layer builder to the registry used by :class:`GraphClassifier`.

    Args:
        name: Name passed as ``GraphClassifier(conv=name)``.
        edge_input: ``"weight"``, ``"attr"`` or ``"none"`` (see :class:`ConvSpec`).
        description: One line describing the layer.
        prepare: optional ``prepare(edge_index, edge_weight, num_nodes, dtype=..., sparse=...) -> args``:
            the layers' graph input, computed once per forward and passed as ``conv(h, *args)`` (see
            :class:`ConvSpec`).

    Returns:
        The decorator; it returns the builder unchanged.

    Example:
        >>> @register_conv("gcn2", edge_input="weight", description="GCN without bias")
        ... def _gcn2(in_channels, out_channels, *, edge_dim, heads):
        ...     return GCNConv(in_channels, out_channels, bias=False)
    """
    if edge_input not in ("weight", "attr", "none"):
        raise ValueError(f"edge_input must be 'weight', 'attr' or 'none'; got {edge_input!r}")

    def decorator(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _CONVS[name] = ConvSpec(
            name=name, build=build, edge_input=edge_input, description=description, prepare=prepare
        )
        return build

    return decorator


def list_convs() -> list[str]:
    """Names of the registered message-passing layers, sorted.

    Example:
        >>> list_convs()
        ['gat', 'gcn', 'gin', 'sage']
    """
    return sorted(_CONVS)


def _get_conv(name: str) -> ConvSpec:
    if name not in _CONVS:
        raise ValueError(f"conv must be one of {list_convs()}; got {name!r}")
    return _CONVS[name]


def gcn_adjacency(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    *,
    dtype: torch.dtype | None = None,
    sparse: bool = True,
) -> tuple[Tensor, ...]:
    """GCN's normalised adjacency ``D^-1/2 (A + I) D^-1/2`` (PyG's ``gcn_norm``: self loops added where
    missing, degrees of the targets), built once for all the layers of a forward pass.

    Returned as a sparse CSR matrix whose row ``i`` holds the edges into node ``i`` (PyG's ``adj_t``;
    duplicate edges summed), which ``GCNConv(normalize=False)`` multiplies in one sparse product per
    layer instead of gathering and scattering a row per edge (``benchmarks/bench_gcn_adjacency.py``). When
    ``edge_weight`` requires a gradient, the normalised edge list ``(edge_index, weight)`` instead, which
    autograd follows back to the weights; also with ``sparse=False`` (half precision and autocast:
    torch's sparse CSR product has no half-precision kernel on the CPU and takes one dtype).

    Args:
        edge_index: ``(2, E)`` edges ``source -> target``.
        edge_weight: ``(E,)`` non-negative weights, or None (all 1).
        num_nodes: ``N``.
        dtype: the weights' float dtype when ``edge_weight`` is None (default: torch's default dtype).
        sparse: False for the normalised edge list in every case.

    Returns:
        ``(adj_t,)``: ``(N, N)`` sparse CSR, ``adj_t[i, j]`` the weight of edge ``j -> i``; or
        ``(edge_index, weight)`` with ``(2, E')`` and ``(E',)``, ``E' = E - L + N`` for ``L`` given self
        loops (a given self loop keeps its weight; a unit one is added where none is given).

    Example:
        >>> (adj,) = gcn_adjacency(torch.tensor([[0, 1], [1, 0]]), None, 3)
        >>> adj.to_dense().mul(1000).round().tolist()  # 1/sqrt(2) squared: 0.49999997 in float32
        [[500.0, 500.0, 0.0], [500.0, 500.0, 0.0], [0.0, 0.0, 1000.0]]
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    if edge_weight is not None:
        dtype = edge_weight.dtype
    elif dtype is None:
        dtype = torch.get_default_dtype()
    ei, w = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=True, dtype=dtype)
    if w is None:  # not reached: gcn_norm always weighs the edges it returns
        raise RuntimeError("gcn_norm returned no edge weights")
    if w.requires_grad or not sparse:
        return ei, w
    return (_adjacency_csr(ei, w, num_nodes),)


def sum_adjacency(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    *,
    dtype: torch.dtype | None = None,
    sparse: bool = True,
) -> tuple[Tensor, ...]:
    """The plain adjacency (no self loops, no normalisation) for layers that sum their neighbours
    (GIN), built once for all the layers of a forward pass: a sparse CSR ``adj_t`` whose entry ``[i, j]``
    counts the edges ``j -> i`` (a repeated edge counts twice, as a scatter-sum does), multiplied in one
    ``torch.sparse.mm`` per layer; with ``sparse=False`` (autocast, half precision) the edge list.

    Args:
        edge_index: ``(2, E)`` edges ``source -> target``.
        edge_weight: unused (the layers that take this adjacency weigh no edges); None.
        num_nodes: ``N``.
        dtype: the entries' float dtype (default: torch's default dtype).
        sparse: False for ``(edge_index,)``.

    Returns:
        ``(adj_t,)`` ``(N, N)`` sparse CSR, or ``(edge_index,)``.

    Example:
        >>> (adj,) = sum_adjacency(torch.tensor([[0, 1, 1], [1, 0, 0]]), None, 3)
        >>> adj.to_dense().tolist()
        [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if not sparse:
        return (edge_index,)
    w = torch.ones(edge_index.shape[1], dtype=dtype or torch.get_default_dtype(), device=edge_index.device)
    return (_adjacency_csr(edge_index, w, num_nodes),)


def _adjacency_csr(edge_index: Tensor, w: Tensor, num_nodes: int) -> Tensor:
    """``adj_t`` as a sparse CSR matrix: entry ``[i, j]`` the summed weights ``w`` of the edges ``j -> i``
    (rows = targets, one entry per (target, source), columns sorted)."""
    key = edge_index[1] * num_nodes + edge_index[0]  # target-major: the rows of adj_t
    key, order = torch.sort(key)
    w = w.index_select(0, order)
    key, inverse = torch.unique_consecutive(key, return_inverse=True)
    if key.numel() != w.numel():  # repeated edges: one entry each, their weights summed (as a scatter)
        w = w.new_zeros(key.numel()).index_add_(0, inverse, w)
    rows = torch.div(key, num_nodes, rounding_mode="floor")
    crow = torch.zeros(num_nodes + 1, dtype=torch.int64, device=key.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)
    col = key - rows * num_nodes
    if _CSR_NOTED:
        adj = torch.sparse_csr_tensor(crow, col, w, (num_nodes, num_nodes), check_invariants=False)
    else:
        # torch warns once per process that CSR support is in beta: silenced here, on the first call
        # only (catch_warnings resets the registry of warnings already shown, so not on every forward)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support", category=UserWarning)
            adj = torch.sparse_csr_tensor(crow, col, w, (num_nodes, num_nodes), check_invariants=False)
        _CSR_NOTED.append(True)
    return adj


_CSR_NOTED: list[bool] = []  # non-empty once _adjacency_csr has made a CSR matrix in this process


def _transposed(adj_t: Tensor) -> Tensor:
    """The transpose of a square sparse CSR matrix, as CSR: built on the first call and kept with the
    matrix, so that every layer that multiplies the same matrix shares it."""
    t = getattr(adj_t, "_pixgraph_transposed", None)
    if t is None:
        n = adj_t.shape[0]
        crow, col = adj_t.crow_indices(), adj_t.col_indices()
        rows = torch.repeat_interleave(
            torch.arange(n, device=col.device), crow.diff(), output_size=col.numel()
        )
        # entry [i, j] of adj_t is edge j -> i; of the transpose, edge i -> j
        t = _adjacency_csr(torch.stack([rows, col]), adj_t.values(), n)
        adj_t._pixgraph_transposed = t  # type: ignore[attr-defined]
    return t


class _CSRProduct(torch.autograd.Function):
    """``adj_t @ x`` for a sparse CSR ``adj_t`` whose values need no gradient. Its backward multiplies
    the gradient by the transpose built once per matrix (:func:`_transposed`); torch's own backward
    of ``torch.sparse.mm`` converts the transpose to CSR again in every layer (a sort each)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, adj_t: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj_t, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return torch.sparse.mm(_transposed(ctx.adj_t), grad), None


def _shared_product(adj_t: Any, x: Tensor) -> Tensor | None:
    """``adj_t @ x`` through :class:`_CSRProduct` where it applies (a CSR matrix without gradient, an ``x``
    that takes one); None elsewhere (the layer's own product)."""
    if (
        isinstance(adj_t, Tensor)
        and adj_t.layout == torch.sparse_csr
        and not adj_t.requires_grad
        and x.requires_grad
        and torch.is_grad_enabled()
    ):
        return _CSRProduct.apply(x, adj_t)
    return None


class _SharedGCNConv(GCNConv):
    """PyG's ``GCNConv`` whose product with a shared CSR adjacency (:func:`gcn_adjacency`) has a backward
    that transposes the matrix once for all layers (:class:`_CSRProduct`); the same parameters, values
    and state_dict keys."""

    def message_and_aggregate(self, adj_t: Any, x: Tensor) -> Tensor:
        out = _shared_product(adj_t, x)
        return super().message_and_aggregate(adj_t, x) if out is None else out


class _SharedGINConv(GINConv):
    """PyG's ``GINConv`` with the backward of :class:`_SharedGCNConv` for :func:`sum_adjacency`."""

    def message_and_aggregate(self, adj_t: Any, x: Any) -> Tensor:
        out = _shared_product(adj_t, x[0])
        return super().message_and_aggregate(adj_t, x) if out is None else out


@register_conv(
    "gcn",
    edge_input="weight",
    description="Kipf & Welling GCN, symmetric normalisation",
    prepare=gcn_adjacency,
)
def _build_gcn(in_channels: int, out_channels: int, *, edge_dim: int | None, heads: int) -> nn.Module:
    # normalised once per forward by gcn_adjacency (the registry's prepare), not in every layer
    return _SharedGCNConv(in_channels, out_channels, normalize=False)


@register_conv("gat", edge_input="attr", description="graph attention (Velickovic et al.), multi-head")
def _build_gat(in_channels: int, out_channels: int, *, edge_dim: int | None, heads: int) -> nn.Module:
    return GATConv(in_channels, out_channels // heads, heads=heads, edge_dim=edge_dim)


@register_conv("sage", edge_input="none", description="GraphSAGE, mean aggregation")
def _build_sage(in_channels: int, out_channels: int, *, edge_dim: int | None, heads: int) -> nn.Module:
    return SAGEConv(in_channels, out_channels)


@register_conv(
    "gin",
    edge_input="attr",
    description="GIN (GINE when edge_dim is set), sum aggregation",
    prepare=sum_adjacency,
)
def _build_gin(in_channels: int, out_channels: int, *, edge_dim: int | None, heads: int) -> nn.Module:
    mlp = nn.Sequential(
        nn.Linear(in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
    )
    if edge_dim is not None:
        return GINEConv(mlp, train_eps=True, edge_dim=edge_dim)
    return _SharedGINConv(mlp, train_eps=True)


_POOLS: dict[str, Callable[..., Tensor]] = {
    "mean": global_mean_pool,
    "max": global_max_pool,
    "add": global_add_pool,
}
_NORMS = ("batch", "layer", "graph", None)

# Benchmarking-GNNs (Dwivedi et al.) MNIST/CIFAR10 setting: about 100k parameters, 4 layers,
# mean readout, residual connections, batch norm, no dropout, 8 attention heads for GAT.
_PRESETS: dict[str, dict[str, Any]] = {
    "benchmark": {
        "target_params": 100_000,
        "layers": 4,
        "pool": "mean",
        "dropout": 0.0,
        "residual": True,
        "norm": "batch",
        "heads": 8,
    },
}


def list_presets() -> list[str]:
    """Names accepted by :meth:`GraphClassifier.preset`.

    Example:
        >>> list_presets()
        ['benchmark']
    """
    return sorted(_PRESETS)


_CASTS = {
    torch.float32: "float()",
    torch.float64: "double()",
    torch.float16: "half()",
    torch.bfloat16: "bfloat16()",
}


def check_dtype(name: str, t: Tensor, dtype: torch.dtype) -> None:
    """Refuse a tensor whose dtype is not the model's float ``dtype``; the message names ``data.<name>``
    and the conversion that fixes it.

    Raises:
        TypeError: ``t`` is not of ``dtype``.

    Example:
        >>> check_dtype("x", torch.zeros(2, 3), torch.float32)  # fine: returns None
        >>> check_dtype("x", torch.zeros(2, 3, dtype=torch.float64), torch.float32)
        Traceback (most recent call last):
        ...
        TypeError: x has dtype torch.float64 but the model's weights are torch.float32; convert it with ...
    """
    if t.dtype == dtype:
        return
    fix = f"data.{name} = data.{name}.{_CASTS.get(dtype, f'to({dtype})')}"
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a float tensor; got dtype {t.dtype} (convert with {fix})")
    raise TypeError(
        f"{name} has dtype {t.dtype} but the model's weights are {dtype}; convert it with {fix}"
        f" (or the model with model.to({t.dtype}))"
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout, as ``F.dropout``: in training every entry is zeroed with probability ``p`` and
    the others are scaled by ``1 / (1 - p)``; out of training (or with ``p == 0``) ``x`` itself.

    The mask is drawn with ``torch.rand_like`` (kept where the draw is ``>= p``) instead of the Bernoulli
    sampler behind ``F.dropout``, which torch runs one element at a time on the CPU: 10 ns per element
    against about 2 (``benchmarks/bench_dropout.py``; it was a quarter of a GNN training step with
    ``dropout=0.5`` on 2 cores). The same operations run on every device (on a GPU they are three
    kernels where ``F.dropout`` is one fused kernel; not measured there); the masks differ from
    ``F.dropout``'s for the same seed, not their distribution (half-precision inputs draw in float32).

    Shapes:
        - x: any; output: the same

    Example:
        >>> _ = torch.manual_seed(0)
        >>> y = dropout(torch.ones(10000), 0.25)
        >>> abs(float((y == 0).float().mean()) - 0.25) < 0.02, sorted({float(v) for v in y.unique()})
        (True, [0.0, 1.3333333730697632])
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    # half-precision draws would round p (0.3 -> 0.30078 in bfloat16): draw and compare in float32 there
    low = x.dtype in (torch.float16, torch.bfloat16)
    draw = torch.rand_like(x, dtype=torch.float32) if low else torch.rand_like(x)
    keep = (draw >= p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep


class GraphClassifier(nn.Module):
    """Graph-level classifier over a registry of message-passing layers.

    Architecture (Benchmarking-GNNs style): ``Linear(in_channels, hidden)`` node embedding, then
    ``layers`` blocks of ``conv -> norm -> ReLU (-> + input if residual) -> dropout``, then a
    ``pool`` readout per graph and an MLP ``hidden -> hidden // 2 -> num_classes``.

    Edge values are used where the layer takes them:

    * ``conv="gcn"`` takes a scalar weight per edge: ``data.edge_weight`` (E,), or else a 1-D
      ``data.edge_attr`` (E,), or an ``edge_attr`` (E, 1) when built with ``edge_dim=1``.
      Weights must be non-negative (:func:`gnn.training.fit` checks them, and that they are finite,
      before training). Built with ``edge_dim=1`` the weights are required (a graph without them is
      a ValueError); without ``edge_dim`` a graph without them runs unweighted. GCN adds self loops,
      so isolated nodes keep their features.
    * ``conv="gat"`` and ``conv="gin"`` (as GINE) take edge feature vectors ``data.edge_attr``
      (E, edge_dim) when built with ``edge_dim``; without it they ignore edge values.
    * ``conv="sage"`` takes no edge values; ``edge_dim`` raises a ValueError.

    Args:
        in_channels: Node feature width F.
        num_classes: Number of classes C.
        conv: Registered layer name, one of :func:`list_convs`.
        hidden: Width of the node embeddings (a multiple of ``heads`` for GAT).
        layers: Number of message-passing blocks.
        pool: Graph readout, ``"mean"``, ``"max"`` or ``"add"``.
        dropout: Dropout probability after each block.
        residual: Add each block's input to its output.
        norm: ``"batch"`` (BatchNorm over nodes; works on single-node batches), ``"layer"``
            (LayerNorm per node), ``"graph"`` (GraphNorm per graph) or ``None``.
        heads: Attention heads (GAT only).
        edge_dim: Width D of ``edge_attr`` for layers that take edge features (see above).
        global_channels: Width G of a graph-level input ``data.u`` (e.g. a CNN's pooled image
            embedding); its linear classifier is added to the logits, so the model contains the linear
            probe on ``u`` (a graph readout of zeros leaves exactly the probe).
        global_dropout: Dropout on ``u`` before its linear classifier.
        dynamic_k: Recompute the edges before every block as the ``dynamic_k`` nearest nodes of the
            same graph in the current feature space (Vision GNN style, :func:`feature_knn`); the given
            edges are then used by no layer (edge values are ignored).

    Float inputs (``x``, the edge values the layers read, ``u``) must have the dtype of the model's
    weights (float32 unless the model was converted); another dtype is a TypeError naming the field.

    Shapes:
        - x: (N, in_channels) float node features, N = nodes of all graphs in the batch.
        - edge_index: (2, E) long, source row 0, target row 1.
        - batch: (N,) long graph index of each node (None for a single graph).
        - u: (num_graphs, global_channels) float graph-level features (``global_channels`` only).
        - output: (num_graphs, num_classes) logits.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Batch, Data
        >>> g = Data(x=torch.rand(4, 5), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
        >>> model = GraphClassifier(5, 3, conv="gcn", hidden=16, layers=2)
        >>> model(Batch.from_data_list([g, g])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        conv: str = "gcn",
        hidden: int = 64,
        layers: int = 3,
        pool: str = "mean",
        dropout: float = 0.0,
        residual: bool = True,
        norm: str | None = "batch",
        heads: int = 4,
        edge_dim: int | None = None,
        global_channels: int | None = None,
        global_dropout: float = 0.0,
        dynamic_k: int | None = None,
    ) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 2)
        spec = _get_conv(conv)
        _check_int("hidden", hidden, 2)
        _check_int("layers", layers, 1)
        _check_int("heads", heads, 1)
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {sorted(_POOLS)}; got {pool!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {list(_NORMS)}; got {norm!r}")
        if global_channels is not None:
            _check_int("global_channels", global_channels, 1)
        if dynamic_k is not None:
            _check_int("dynamic_k", dynamic_k, 1)
            if edge_dim is not None:
                raise ValueError(
                    f"dynamic_k={dynamic_k} builds new edges in every block, which carry no values; "
                    f"use edge_dim=None (got {edge_dim})"
                )
        for name, p in (("dropout", dropout), ("global_dropout", global_dropout)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be a float in [0, 1); got {p!r}")
        if conv == "gat" and hidden % heads:
            raise ValueError(
                f"hidden must be a multiple of heads for conv='gat'; got hidden={hidden}, heads={heads}"
                f" (use hidden={hidden // heads * heads or heads})"
            )
        if edge_dim is not None:
            _check_int("edge_dim", edge_dim, 1)
            if spec.edge_input == "none":
                raise ValueError(
                    f"conv={conv!r} takes no edge values; got edge_dim={edge_dim}. Use edge_dim=None or"
                    " a conv that takes them ('gcn' for a weight, 'gat'/'gin' for edge features)"
                )
            if spec.edge_input == "weight" and edge_dim != 1:
                raise ValueError(
                    f"conv={conv!r} takes one scalar weight per edge; got edge_dim={edge_dim}. Use"
                    " edge_dim=1 (or None), or conv='gat'/'gin' for edge feature vectors"
                )

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv = conv
        self.hidden = hidden
        self.layers = layers
        self.pool = pool
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.norm = norm
        self.heads = heads
        self.edge_dim = edge_dim
        self.global_channels = global_channels
        self.global_dropout = float(global_dropout)
        self.dynamic_k = dynamic_k
        self._edge_input = spec.edge_input if (spec.edge_input == "weight" or edge_dim) else "none"
        if dynamic_k is not None:
            self._edge_input = "none"
        # the layers' graph input, built once per forward; not for layers that take edge feature
        # vectors (GINE: gin with edge_dim), which read them edge by edge
        self._prepare = spec.prepare if self._edge_input != "attr" else None

        self.embed = nn.Linear(in_channels, hidden)
        self.convs = nn.ModuleList(
            spec.build(hidden, hidden, edge_dim=edge_dim if self._edge_input == "attr" else None, heads=heads)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(self._make_norm() for _ in range(layers))
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, num_classes)
        )
        self.global_head = nn.Linear(global_channels, num_classes) if global_channels else None

    def _make_norm(self) -> nn.Module:
        if self.norm == "batch":
            return BatchNorm(self.hidden, allow_single_element=True)
        if self.norm == "layer":
            return nn.LayerNorm(self.hidden)
        if self.norm == "graph":
            return GraphNorm(self.hidden)
        return nn.Identity()

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``GraphClassifier(**model.config)`` builds the same architecture."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "conv": self.conv,
            "hidden": self.hidden,
            "layers": self.layers,
            "pool": self.pool,
            "dropout": self.dropout,
            "residual": self.residual,
            "norm": self.norm,
            "heads": self.heads,
            "edge_dim": self.edge_dim,
            "global_channels": self.global_channels,
            "global_dropout": self.global_dropout,
            "dynamic_k": self.dynamic_k,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        n_params = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}({args}, params={n_params})"

    @classmethod
    def preset(
        cls, name: str, in_channels: int, num_classes: int, *, conv: str = "gcn", **overrides: Any
    ) -> GraphClassifier:
        """Build a model from a named configuration.

        ``"benchmark"`` follows Benchmarking-GNNs (Dwivedi et al., 2020) for MNIST/CIFAR10
        superpixels: 4 layers, mean readout, residual, batch norm, no dropout, 8 heads for GAT,
        and the widest ``hidden`` that keeps the model at about 100k parameters.

        Args:
            name: One of :func:`list_presets`.
            in_channels: Node feature width F.
            num_classes: Number of classes C.
            conv: Registered layer name.
            **overrides: Any other constructor argument; ``hidden`` given here disables the
                parameter-budget search.

        Returns:
            The model.

        Example:
            >>> m = GraphClassifier.preset("benchmark", 5, 10, conv="gcn")
            >>> 90_000 < sum(p.numel() for p in m.parameters()) < 110_000
            True
        """
        if name not in _PRESETS:
            raise ValueError(f"preset name must be one of {list_presets()}; got {name!r}")
        kwargs = dict(_PRESETS[name])
        target = kwargs.pop("target_params")
        if conv != "gat":
            kwargs.pop("heads")
        kwargs.update(overrides)
        if "hidden" in kwargs:
            return cls(in_channels, num_classes, conv=conv, **kwargs)
        step = kwargs.get("heads", 4) if conv == "gat" else 2

        def build(width_steps: int) -> GraphClassifier:
            return cls(in_channels, num_classes, conv=conv, hidden=width_steps * step, **kwargs)

        def n_params(width_steps: int) -> int:
            return sum(p.numel() for p in build(width_steps).parameters())

        # Parameter count grows with hidden: binary search the largest width within the budget.
        lo, hi = 1, max(2, 2048 // step)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if n_params(mid) <= target:
                lo = mid
            else:
                hi = mid - 1
        return build(lo)

    def forward(
        self,
        data: BaseData | Tensor,
        edge_index: Tensor | None = None,
        batch: Tensor | None = None,
        edge_weight: Tensor | None = None,
        *,
        edge_attr: Tensor | None = None,
        num_graphs: int | None = None,
        u: Tensor | None = None,
    ) -> Tensor:
        """Logits for every graph in ``data``.

        Args:
            data: A PyG ``Data``/``Batch`` (uses ``x``, ``edge_index``, ``batch``, ``edge_weight``,
                ``edge_attr``), or the node feature tensor ``x`` with the other arguments given.
            edge_index: (2, E) edges when ``data`` is a tensor.
            batch: (N,) graph index per node when ``data`` is a tensor (None: one graph).
            edge_weight: (E,) non-negative edge weights when ``data`` is a tensor.
            edge_attr: (E,) or (E, D) edge values when ``data`` is a tensor.
            num_graphs: Number of graphs when ``data`` is a tensor (default ``batch.max() + 1``).
            u: (num_graphs, global_channels) graph-level features when ``data`` is a tensor (a
                ``Data``/``Batch`` carries them as ``data.u``); needed iff built with ``global_channels``.

        Returns:
            Logits (num_graphs, num_classes).

        Raises:
            ValueError: missing or misshaped inputs, or an edge index outside ``0 .. N-1`` (the message
                names the index and ``N``).
            TypeError: a non-long ``edge_index``, or an ``x``, edge values or ``u`` that are not float
                tensors of the model's dtype (the message names the field and the conversion).

        Shapes:
            - x: (N, in_channels); edge_index: (2, E); batch: (N,).
            - output: (num_graphs, num_classes).

        Example:
            >>> x, ei = torch.rand(3, 5), torch.tensor([[0, 1], [1, 2]])
            >>> GraphClassifier(5, 2, hidden=8, layers=1)(x, ei).shape
            torch.Size([1, 2])
        """
        if isinstance(data, BaseData):
            extra = (edge_index, batch, edge_weight, edge_attr, u)
            if any(t is not None for t in extra):
                raise TypeError(
                    "pass either a Data/Batch alone or tensors (x, edge_index, batch, edge_weight); got a"
                    " Data object together with tensors"
                )
            x = data.x
            edge_index = data.edge_index
            batch = data.batch
            edge_weight = data["edge_weight"] if "edge_weight" in data else None
            edge_attr = data.edge_attr
            u = data["u"] if "u" in data else None
            if num_graphs is None and batch is not None:
                num_graphs = int(data.num_graphs)
        else:
            x = data
        x = self._check_x(x)
        edge_index = self._check_edge_index(edge_index, x.size(0))
        ew, ea, _ = self._edge_values(edge_index, edge_weight, edge_attr)
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
            num_graphs = 1
        elif batch.shape != (x.size(0),):
            raise ValueError(
                f"batch must have shape ({x.size(0)},), one graph index per node of x; "
                f"got {tuple(batch.shape)}"
            )

        if num_graphs is None:
            num_graphs = int(batch.max()) + 1
        u = self._check_u(u, num_graphs)

        h = self.embed(x)
        prepare = self._prepare
        # torch sparse products take one dtype and have no half-precision CPU kernel: not under autocast
        sparse = h.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(h.device.type)
        graph: tuple[Any, ...] = ()
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if self.dynamic_k is not None:
                edge_index = feature_knn(h, batch, self.dynamic_k, num_graphs)
            if prepare is not None:  # the layers' graph input, once (every block with new edges)
                if i == 0 or self.dynamic_k is not None:
                    graph = prepare(edge_index, ew, x.size(0), dtype=h.dtype, sparse=sparse)
                out = conv(h, *graph)
            elif self._edge_input == "weight":
                out = conv(h, edge_index, ew)
            elif self._edge_input == "attr":
                out = conv(h, edge_index, ea)
            else:
                out = conv(h, edge_index)
            out = norm(out, batch, num_graphs) if isinstance(norm, GraphNorm) else norm(out)
            out = F.relu(out)
            if self.residual:
                out = out + h
            h = dropout(out, self.dropout, self.training)
        pooled = _POOLS[self.pool](h, batch, num_graphs)
        logits = self.head(pooled)
        if self.global_head is not None and u is not None:
            u = dropout(u, self.global_dropout, self.training)
            logits = logits + self.global_head(u)
        return logits

    def _check_u(self, u: Tensor | None, num_graphs: int) -> Tensor | None:
        if self.global_channels is None:
            if u is not None and not isinstance(u, Tensor):
                raise TypeError(f"u must be a tensor or None, got {type(u).__name__}")
            return None  # a graph-level input the model was not built for is ignored
        want = (num_graphs, self.global_channels)
        if u is None:
            raise ValueError(
                f"the model was built with global_channels={self.global_channels} and needs data.u of "
                f"shape {want} (one row per graph); give each graph u of shape (1, {self.global_channels})"
            )
        if not isinstance(u, Tensor) or tuple(u.shape) != want:
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"u must have shape {want} (one row of graph features per graph); got {shape}")
        check_dtype("u", u, self.embed.weight.dtype)
        return u

    def _check_x(self, x: Tensor | None) -> Tensor:
        if x is None:
            raise ValueError(
                f"data.x is missing; GraphClassifier needs node features x of shape (N, {self.in_channels})"
            )
        if not isinstance(x, Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a 2-D tensor (N, {self.in_channels}); got {shape}")
        if x.size(1) != self.in_channels:
            raise ValueError(
                f"x has {x.size(1)} features per node but the model was built with in_channels="
                f"{self.in_channels}; build GraphClassifier({x.size(1)}, ...) or fix the node features"
            )
        if x.size(0) == 0:
            raise ValueError("x has 0 nodes; every graph needs at least one node")
        check_dtype("x", x, self.embed.weight.dtype)
        return x

    def _check_graph(self, data: BaseData) -> str | None:
        """Run the forward's input checks on one graph or batch without its layers (``fit`` does, before
        training); return the field the layers read as edge weights (``"edge_weight"`` /
        ``"edge_attr"``), or None."""
        x = self._check_x(data.x)
        edge_index = self._check_edge_index(data.edge_index, x.size(0))
        edge_weight = data["edge_weight"] if "edge_weight" in data else None
        _, _, source = self._edge_values(edge_index, edge_weight, data.edge_attr)
        num_graphs = int(data.num_graphs) if data.batch is not None else 1
        self._check_u(data["u"] if "u" in data else None, num_graphs)
        return source if self._edge_input == "weight" else None

    @staticmethod
    def _check_edge_index(edge_index: Tensor | None, num_nodes: int) -> Tensor:
        if edge_index is None:
            raise ValueError("edge_index is missing; give a (2, E) long tensor (E may be 0)")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape (2, E); got {tuple(edge_index.shape)}")
        if edge_index.dtype != torch.long:
            raise TypeError(f"edge_index must be torch.long; got {edge_index.dtype}")
        check_edge_index(edge_index, num_nodes, name="edge_index")
        return edge_index

    def _edge_values(
        self, edge_index: Tensor, edge_weight: Tensor | None, edge_attr: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, str | None]:
        """The edge weights and edge features the layers read, and the name of the field they come from."""
        num_edges = edge_index.size(1)
        dtype = self.embed.weight.dtype
        if self._edge_input == "weight":
            w, name = edge_weight, "edge_weight"
            if w is None and edge_attr is not None:
                if edge_attr.dim() == 1 or (self.edge_dim == 1 and edge_attr.dim() == 2):
                    w, name = edge_attr, "edge_attr"
                elif self.edge_dim is not None:
                    raise ValueError(
                        f"the model was built with edge_dim={self.edge_dim} and reads one weight per edge;"
                        f" edge_attr must have shape ({num_edges},) or ({num_edges}, 1), got"
                        f" {tuple(edge_attr.shape)}"
                    )
            if w is None:
                if self.edge_dim is not None:
                    raise ValueError(
                        f"the model was built with edge_dim={self.edge_dim} and needs one weight per edge,"
                        f" data.edge_weight ({num_edges},) or data.edge_attr ({num_edges},) /"
                        f" ({num_edges}, 1); got none. Add them or build with edge_dim=None"
                    )
                return None, None, None
            if w.dim() == 2 and w.size(1) == 1:
                w = w.view(-1)
            if w.dim() != 1 or w.size(0) != num_edges:
                raise ValueError(
                    f"edge weights must have shape ({num_edges},) to match edge_index; got {tuple(w.shape)}"
                )
            check_dtype(name, w, dtype)
            return w, None, name
        if self._edge_input == "attr":
            a, name = edge_attr, "edge_attr"
            if a is None and edge_weight is not None and self.edge_dim == 1:
                a, name = edge_weight, "edge_weight"
            if a is None:
                raise ValueError(
                    f"the model was built with edge_dim={self.edge_dim} and needs data.edge_attr of shape"
                    f" (E, {self.edge_dim}); got none. Add edge_attr or build with edge_dim=None"
                )
            if a.dim() == 1:
                a = a.view(-1, 1)
            if a.size(0) != num_edges or a.size(1) != self.edge_dim:
                raise ValueError(
                    f"edge_attr must have shape ({num_edges}, {self.edge_dim}); got {tuple(a.shape)}"
                )
            check_dtype(name, a, dtype)
            return None, a, name
        return None, None, None
