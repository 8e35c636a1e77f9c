"""The GCN layer written from the adjacency and feature matrices, for teaching.

``DenseGCN`` computes ``relu(D^-1/2 (A + I) D^-1/2 X W + b)`` with plain matrix products. Its
parameters have the same names and shapes as PyG's ``GCNConv`` (``lin.weight``, ``bias``), so
``dense.load_state_dict(conv.state_dict())`` gives a layer that computes the same numbers as
``GCNConv`` on the same graph (with ``activation=None``, since ``GCNConv`` has no activation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DenseGCN", "normalized_adjacency"]

_ACTIVATIONS = ("relu", None)


def normalized_adjacency(adj: Tensor, *, add_self_loops: bool = True) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with ``D`` the row sums of ``A + I``.

    Rows whose degree is 0 (possible only with ``add_self_loops=False``) get 0, not inf or NaN.

    Args:
        adj: Adjacency matrix; ``adj[i, j]`` is the (non-negative) weight of the edge from node j
            into node i. Symmetric for an undirected graph.
        add_self_loops: Add the identity before normalising (the GCN renormalisation trick).

    Returns:
        The normalised adjacency, same shape as ``adj``.

    Shapes:
        - adj: (N, N) or (B, N, N).
        - output: same as adj.

    Example:
        >>> a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> normalized_adjacency(a)
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])

    Raises:
        TypeError: ``adj`` is not a float tensor.
        ValueError: ``adj`` is not square, or has NaN, infinite or negative entries.
    """
    if not isinstance(adj, Tensor):
        raise TypeError(f"adj must be a torch.Tensor; got {type(adj).__name__}")
    if not adj.is_floating_point():
        raise TypeError(f"adj must be a float tensor; got dtype {adj.dtype} (convert with adj.float())")
    if adj.dim() not in (2, 3) or adj.size(-1) != adj.size(-2):
        raise ValueError(f"adj must be a square matrix (N, N) or a batch (B, N, N); got {tuple(adj.shape)}")
    finite, non_negative = torch.stack([torch.isfinite(adj).all(), ~(adj < 0).any()]).tolist()
    _check_adj_values(adj, finite, non_negative)
    return _normalize(adj, add_self_loops=add_self_loops)


def _check_adj_values(adj: Tensor, finite: bool, non_negative: bool) -> None:
    """Raise for NaN / inf or negative entries of ``adj`` (the flags are computed by the caller)."""
    if not finite:
        raise ValueError(
            f"adj contains {int((~torch.isfinite(adj)).sum())} NaN or infinite entries; expected finite, "
            f"non-negative edge weights (fix the matrix, e.g. torch.nan_to_num(adj))"
        )
    if not non_negative:
        raise ValueError("adj has negative entries; edge weights must be >= 0 for the degree normalisation")


def _normalize(adj: Tensor, *, add_self_loops: bool) -> Tensor:
    """:func:`normalized_adjacency` without the checks (for callers that have made them)."""
    if add_self_loops:
        adj = adj + torch.eye(adj.size(-1), dtype=adj.dtype, device=adj.device)
    deg = adj.sum(dim=-1)
    d_inv_sqrt = deg.pow(-0.5)
    d_inv_sqrt = d_inv_sqrt.masked_fill(torch.isinf(d_inv_sqrt), 0.0)
    return d_inv_sqrt.unsqueeze(-1) * adj * d_inv_sqrt.unsqueeze(-2)


class DenseGCN(nn.Module):
    """One GCN layer from matrices: ``relu(D^-1/2 (A + I) D^-1/2 X W + b)``.

    ``D`` is the diagonal degree matrix of ``A + I`` (row sums). ``A[i, j]`` is the weight of the
    edge from node j into node i, so row i gathers what node i receives; for an undirected graph
    ``A`` is symmetric. This is the convention of PyG's ``DenseGCNConv``; for ``GCNConv`` the
    same graph is ``edge_index = A.T.nonzero().T`` (row 0 source, row 1 target). ``A`` is expected
    without self loops: ``A + I`` adds 1 to any diagonal entry already there, while ``GCNConv``
    keeps an existing self loop's weight.

    Args:
        in_channels: Input feature width F.
        out_channels: Output feature width F'.
        bias: Add a learnable bias ``b``.
        activation: ``"relu"`` (the lecture formula) or ``None`` (equal to ``GCNConv``).
        add_self_loops: Use ``A + I`` (True) or ``A`` alone.

    Shapes:
        - adj: (N, N) or (B, N, N), non-negative.
        - x: (N, F) or (B, N, F).
        - mask: (B, N) bool, True for real nodes of padded batches (optional).
        - output: (N, F') or (B, N, F').

    Example:
        >>> adj = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        >>> layer = DenseGCN(4, 2)
        >>> layer(adj, torch.rand(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bias: bool = True,
        activation: str | None = "relu",
        add_self_loops: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}; got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.add_self_loops = add_self_loops
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weight and zero bias, as ``GCNConv``."""
        nn.init.xavier_uniform_(self.lin.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, bias={self.bias is not None}, "
            f"activation={self.activation!r}, add_self_loops={self.add_self_loops})"
        )

    def forward(self, adj: Tensor, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """Apply the layer.

        Args:
            adj: Adjacency matrix (see the class docstring for the convention).
            x: Node feature matrix.
            mask: For padded batches, True for real nodes; padded nodes' outputs are set to 0.

        Returns:
            New node features.

        Raises:
            ValueError: ``adj`` not square (or an ``edge_index`` given instead), ``x`` not matching it,
                NaN / inf in ``adj`` or ``x``, negative weights, or a bad ``mask``.
            TypeError: non-tensor or non-float inputs.

        Shapes:
            - adj: (N, N) or (B, N, N); x: (N, F) or (B, N, F); mask: (B, N).
            - output: (N, F') or (B, N, F').
        """
        self._check(adj, x, mask)
        h = self.lin(x)  # adj in the features' dtype: float64 from nx.to_numpy_array meets float32 x
        out = _normalize(adj.to(h.dtype), add_self_loops=self.add_self_loops) @ h
        if self.bias is not None:
            out = out + self.bias
        if self.activation == "relu":
            out = torch.relu(out)
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out

    def _check(self, adj: Tensor, x: Tensor, mask: Tensor | None) -> None:
        for name, value in (("adj", adj), ("x", x)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        if adj.dim() == 2 and adj.size(0) == 2 and adj.size(1) != 2 and not adj.is_floating_point():
            raise ValueError(
                f"adj has shape {tuple(adj.shape)} and dtype {adj.dtype}: that looks like an edge_index "
                f"(2, E); DenseGCN takes the adjacency matrix (N, N): build it with bridge.to_dense(data) or "
                f"torch_geometric.utils.to_dense_adj(edge_index)[0]"
            )
        if adj.dim() not in (2, 3) or adj.size(-1) != adj.size(-2):
            raise ValueError(
                f"adj must be a square matrix (N, N) or a batch (B, N, N); got {tuple(adj.shape)}"
            )
        if x.dim() != adj.dim() or x.shape[:-1] != adj.shape[:-1]:
            want = "(N, F)" if adj.dim() == 2 else "(B, N, F)"
            raise ValueError(
                f"x must be {want} with the same N (and B) as adj {tuple(adj.shape)}; got {tuple(x.shape)}"
            )
        if x.size(-1) != self.in_channels:
            raise ValueError(
                f"x has {x.size(-1)} features per node but the layer was built with in_channels="
                f"{self.in_channels}; build DenseGCN({x.size(-1)}, ...) or fix x"
            )
        if not adj.is_floating_point():
            raise TypeError(f"adj must be a float tensor; got dtype {adj.dtype} (convert with adj.float())")
        if not x.is_floating_point():
            raise TypeError(f"x must be a float tensor; got dtype {x.dtype} (convert with x.float())")
        # one synchronisation for the three value checks
        adj_finite, adj_non_negative, x_finite = torch.stack(
            [torch.isfinite(adj).all(), ~(adj < 0).any(), torch.isfinite(x).all()]
        ).tolist()
        _check_adj_values(adj, adj_finite, adj_non_negative)
        if not x_finite:
            raise ValueError(
                f"x contains {int((~torch.isfinite(x)).sum())} NaN or infinite values; expected finite node "
                f"features (fix them, e.g. torch.nan_to_num(x))"
            )
        if mask is not None and (mask.dim() != 2 or mask.shape != adj.shape[:2] or adj.dim() != 3):
            raise ValueError(
                f"mask must be (B, N) = {tuple(adj.shape[:2])} for a batched adj (B, N, N); got"
                f" {tuple(mask.shape)}"
            )
