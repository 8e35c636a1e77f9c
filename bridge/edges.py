"""Edges between the nodes of an image graph: region adjacency and k nearest neighbours.

All edge sets returned here are undirected (every edge is stored in both directions), sorted by
``(source, target)``, without duplicates and without self loops, in PyG's ``edge_index`` layout.

Two implementations of the same results: NumPy for one label map (:func:`touching_pairs`,
:func:`both_directions`), and torch for a whole batch on any device (:func:`batch_touching_pairs`,
:func:`batch_both_directions`, :func:`batch_knn_edges`; the horizontal runs of equal ids of the label
maps (:func:`label_runs`) instead of pixels, one ``bincount`` or ``unique`` and a sort, no loop over
pixels, regions or edges). :func:`region_adjacency` given a tensor uses the torch one and answers on
the tensor's device.

Example:
    >>> import numpy as np
    >>> labels = np.array([[0, 0, 1], [2, 2, 1]])
    >>> region_adjacency(labels).tolist()
    [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .checks import check_labels

__all__ = [
    "LabelRuns",
    "batch_both_directions",
    "batch_knn_edges",
    "batch_touching_pairs",
    "both_directions",
    "knn_edges",
    "label_runs",
    "region_adjacency",
    "repeat_runs",
    "sum_by_index",
    "touching_pairs",
    "undirected",
]

# Up to this many possible node pairs the border counts use one np.bincount instead of np.unique.
_BINCOUNT_MAX = 1 << 22


def _pairs_to_edges(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique unordered pairs (lo < hi) with their multiplicity, as sorted arrays."""
    code = lo * n + hi
    if n * n <= _BINCOUNT_MAX:
        counts = np.bincount(code, minlength=n * n)
        uniq = np.flatnonzero(counts)
        counts = counts[uniq]
    else:
        uniq, counts = np.unique(code, return_counts=True)
    return uniq // n, uniq % n, counts


def touching_pairs(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``lo < hi`` of 4-neighbouring labels with their border length, from shifted arrays.

    The numpy core of :func:`region_adjacency`, for label maps already checked
    (:func:`bridge.checks.check_labels`).

    Args:
        labels: ``(H, W)`` int64 label map with ids ``0 .. n-1``.
        n: the number of labels.

    Returns:
        ``(lo, hi, counts)``: ``(P,)`` int64 arrays sorted by ``(lo, hi)``; ``counts`` is the number of
        4-neighbour pixel pairs across each border.

    Shapes:
        - labels: ``(H, W)``
        - lo, hi, counts: ``(P,)``

    Example:
        >>> [a.tolist() for a in touching_pairs(np.array([[0, 0, 1], [2, 2, 1]]), 3)]
        [[0, 0, 1], [1, 2, 2], [1, 2, 1]]
    """
    a, b = labels[:, :-1].ravel(), labels[:, 1:].ravel()
    c, d = labels[:-1, :].ravel(), labels[1:, :].ravel()
    horizontal = a != b
    vertical = c != d
    src = np.concatenate([a[horizontal], c[vertical]])
    dst = np.concatenate([b[horizontal], d[vertical]])
    return _pairs_to_edges(np.minimum(src, dst), np.maximum(src, dst), n)


def both_directions(src: np.ndarray, dst: np.ndarray, n: int, *attrs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Stack ``(src, dst)`` with ``(dst, src)`` and sort by ``(source, target)``; ``attrs`` follow the edges.

    Args:
        src, dst: ``(P,)`` int64 end points of undirected edges, each edge once.
        n: the number of nodes (``src, dst < n``).
        attrs: per-edge ``(P, ...)`` arrays, repeated for the reverse direction.

    Returns:
        ``(edge_index, *attrs)``: ``(2, 2P)`` int64 and the ``(2P, ...)`` attributes, sorted.

    Shapes:
        - src, dst: ``(P,)``
        - edge_index: ``(2, 2P)``

    Example:
        >>> ei, w = both_directions(np.array([0, 1]), np.array([2, 2]), 3, np.array([5.0, 7.0]))
        >>> ei.tolist(), w.tolist()
        ([[0, 1, 2, 2], [2, 2, 0, 1]], [5.0, 7.0, 5.0, 7.0])
    """
    row = np.concatenate([src, dst])
    col = np.concatenate([dst, src])
    order = np.argsort(row * n + col, kind="stable")
    out = [np.stack([row[order], col[order]])]
    out += [np.concatenate([a, a])[order] for a in attrs]
    return tuple(out)


def sum_by_index(index: torch.Tensor, weights: torch.Tensor | None, size: int) -> torch.Tensor:
    """``out[i] = weights[index == i].sum()`` for ``i < size`` (the count of ``i`` when ``weights`` is
    None): ``torch.bincount(index, weights)``, the weighted sum as one ``index_add_``, which also runs on
    a GPU under ``torch.use_deterministic_algorithms(True)`` (a weighted ``bincount`` raises there) and
    keeps the weights' dtype, integers included.

    Shapes:
        - index: ``(M,)`` int64 in ``0 .. size - 1``; weights: ``(M,)`` or None
        - output: ``(size,)`` of the weights' dtype (int64 counts without weights)

    Example:
        >>> sum_by_index(torch.tensor([0, 2, 0]), torch.tensor([1.0, 2.0, 3.0]), 4).tolist()
        [4.0, 0.0, 2.0, 0.0]
        >>> sum_by_index(torch.tensor([0, 2, 0]), None, 4).tolist()
        [2, 0, 1, 0]
    """
    if weights is None:
        return torch.bincount(index, minlength=size)
    return torch.zeros(size, dtype=weights.dtype, device=weights.device).index_add_(0, index, weights)


def _codes_to_pairs(
    code: torch.Tensor, size: int, dense: bool, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique codes (sorted) and their multiplicity, or their summed ``weights`` (int64 either way, the
    weights being whole numbers): one :func:`sum_by_index` over ``size`` counters when ``dense``, else
    ``torch.unique`` (a sort)."""
    if dense:
        counts = sum_by_index(code, weights, size)
        uniq = torch.nonzero(counts).squeeze(1)
        return uniq, counts.index_select(0, uniq).to(torch.int64)
    uniq, inverse, counts = torch.unique(code, sorted=True, return_inverse=True, return_counts=True)
    if weights is not None:
        counts = sum_by_index(inverse, weights, uniq.numel()).to(torch.int64)
    return uniq, counts


class LabelRuns(NamedTuple):
    """Horizontal runs of equal ids in a batch of label maps (:func:`label_runs`).

    Attributes:
        starts: ``(B, H, W)`` bool, True where a run starts (always in column 0).
        first: ``(R,)`` int64 flat index (into ``B * H * W``) of the first pixel of every run, ascending.
        length: ``(R,)`` int64 pixels of every run (a run never continues into the next row).
        label: ``(R,)`` int64 id of every run (the label map's own, per image).
    """

    starts: torch.Tensor
    first: torch.Tensor
    length: torch.Tensor
    label: torch.Tensor


def label_runs(labels: torch.Tensor) -> LabelRuns:
    """The horizontal runs of equal ids of a batch of label maps, in torch on their device.

    Superpixels are wide, so a label map has far fewer runs than pixels (about 20 times fewer at 224 px
    with 75 superpixels): per-node statistics (:func:`bridge.features.batch_hand_features`) and
    border counts (:func:`batch_touching_pairs`) work on the runs after one comparison of every pixel
    with its left neighbour. Computed once, the runs serve both.

    Args:
        labels: ``(B, H, W)`` integer label maps.

    Returns:
        :class:`LabelRuns` on the labels' device.

    Shapes:
        - labels: ``(B, H, W)``
        - starts: ``(B, H, W)``; first, length, label: ``(R,)``

    Example:
        >>> runs = label_runs(torch.tensor([[[0, 0, 1], [2, 2, 2]]]))
        >>> runs.first.tolist(), runs.length.tolist(), runs.label.tolist()
        ([0, 2, 3], [2, 1, 3], [0, 1, 2])
    """
    if labels.ndim != 3:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected (B, H, W) label maps")
    starts = torch.empty(labels.shape, dtype=torch.bool, device=labels.device)
    starts[:, :, :1] = True
    torch.ne(labels[:, :, 1:], labels[:, :, :-1], out=starts[:, :, 1:])
    first = torch.nonzero(starts.view(-1)).squeeze(1)
    length = torch.diff(first, append=first.new_full((1,), labels.numel()))
    label = labels.reshape(-1).index_select(0, first).to(torch.int64)
    return LabelRuns(starts, first, length, label)


def repeat_runs(runs: LabelRuns, fy: int, fx: int) -> LabelRuns:
    """The runs of a label map whose every pixel is repeated over a ``fy x fx`` block
    (:func:`bridge.slic.repeat_blocks`), from the runs of the small map: equal to
    ``label_runs(repeat_blocks(labels, fy, fx))``, without a pass over the large map's labels.

    Every run of row ``y`` becomes ``fy`` runs ``fx`` times as long, in rows ``y * fy .. y * fy + fy - 1``
    (two runs of a row never join: neighbouring runs have different ids).

    Args:
        runs: ``label_runs(labels)`` of ``(B, h, w)`` label maps.
        fy, fx: the block size (whole numbers >= 1).

    Returns:
        :class:`LabelRuns` of the ``(B, h * fy, w * fx)`` map, on the runs' device.

    Shapes:
        - runs: of ``(B, h, w)``, ``R`` runs
        - output: of ``(B, h * fy, w * fx)``, ``R * fy`` runs

    Example:
        >>> big = repeat_runs(label_runs(torch.tensor([[[0, 0, 1]]])), 2, 2)
        >>> big.first.tolist(), big.length.tolist(), big.label.tolist()
        ([0, 4, 6, 10], [4, 2, 4, 2], [0, 1, 0, 1])
    """
    if fy < 1 or fx < 1:
        raise ValueError(f"block size must be whole numbers >= 1, got fy={fy}, fx={fx}")
    if fy == 1 and fx == 1:
        return runs
    b, h, w = runs.starts.shape
    dev = runs.first.device
    starts = torch.zeros(b, h, fy, w, fx, dtype=torch.bool, device=dev)
    starts[..., 0] = runs.starts.unsqueeze(2)
    # runs per row of the small map (each row has one at column 0), and where each row's runs begin
    per_row = runs.starts.view(b * h, w).sum(1)
    row_begin = torch.cumsum(per_row, 0) - per_row
    row = torch.div(runs.first, w, rounding_mode="floor")  # global row b * h + y of every run
    col = runs.first - row * w
    begin, count = row_begin.index_select(0, row), per_row.index_select(0, row)
    k = torch.arange(runs.first.numel(), device=dev) - begin  # index of the run in its row
    copy = torch.arange(fy, device=dev)
    # copy i of run k of a row lies at fy * begin + i * count + k, in row fy * row + i of the big map
    at = ((fy * begin + k).unsqueeze(1) + count.unsqueeze(1) * copy).view(-1)
    first = ((row * fy).unsqueeze(1) + copy).mul_(w * fx).add_((col * fx).unsqueeze(1)).view(-1)
    n = at.numel()
    out_first = torch.empty(n, dtype=first.dtype, device=dev).index_copy_(0, at, first)
    out_length = torch.empty(n, dtype=runs.length.dtype, device=dev).index_copy_(
        0, at, (runs.length * fx).repeat_interleave(fy)
    )
    out_label = torch.empty(n, dtype=runs.label.dtype, device=dev).index_copy_(
        0, at, runs.label.repeat_interleave(fy)
    )
    return LabelRuns(starts.view(b, h * fy, w * fx), out_first, out_length, out_label)


def batch_touching_pairs(
    labels: torch.Tensor,
    n_nodes: torch.Tensor,
    *,
    n_max: int | None = None,
    runs: LabelRuns | None = None,
    blocks: tuple[int, int] = (1, 1),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`touching_pairs` of a batch of label maps in torch, on their device, in global node ids.

    Node ``i`` of image ``b`` has the global id ``offset[b] + i`` (``offset`` = the cumulative sum of
    ``n_nodes``, the layout of a PyG mini-batch). The work is done on the horizontal runs of equal ids
    (:func:`label_runs`), not on pixels: two consecutive runs of a row touch along one pixel pair; two
    rows are compared only where a run of either starts (between two such places neither id changes),
    which gives every vertical border with its length. Every pair is coded per image as
    ``(b * n_max + lo) * n_max + hi`` and counted with one ``bincount`` (or ``unique`` when the
    counters would be many).

    Args:
        labels: ``(B, H, W)`` int64 label maps, ids ``0 .. n_nodes[b] - 1`` per image.
        n_nodes: ``(B,)`` int64 node counts, on the labels' device.
        n_max: ``max(n_nodes)`` when known (saves a read-back).
        runs: ``label_runs(labels)`` when already computed.
        blocks: ``(fy, fx)``: ``labels`` stand for the map with every pixel repeated over a
            ``fy x fx`` block (:func:`bridge.slic.repeat_blocks`), whose pairs and counts are returned:
            the same pairs, a horizontal border ``fy`` times and a vertical one ``fx`` times as long.

    Returns:
        ``(lo, hi, counts)``: ``(P,)`` int64 tensors on the labels' device, global ids with
        ``lo < hi``, sorted by ``(lo, hi)``; ``counts`` = 4-neighbour pixel pairs across each border.

    Shapes:
        - labels: ``(B, H, W)``; n_nodes: ``(B,)``
        - lo, hi, counts: ``(P,)``

    Example:
        >>> labels = torch.tensor([[[0, 0, 1], [2, 2, 1]], [[0, 1, 1], [0, 1, 1]]])
        >>> [t.tolist() for t in batch_touching_pairs(labels, torch.tensor([3, 2]))]
        [[0, 0, 1, 3], [1, 2, 2, 4], [1, 2, 1, 2]]
    """
    b, h, w = labels.shape
    m = int(n_nodes.max()) if n_max is None else int(n_max)
    if runs is None:
        runs = label_runs(labels)
    flat = labels.reshape(-1)
    # horizontal: consecutive runs of one row (a run that starts in column 0 begins a row)
    left = torch.nonzero(runs.first[1:] % w != 0).squeeze(1)  # run left + 1 continues the row of run left
    h_a, h_b = runs.label.index_select(0, left), runs.label.index_select(0, left + 1)
    h_img = torch.div(runs.first.index_select(0, left), h * w, rounding_mode="floor")
    # vertical: rows y - 1 and y compared where a run of either starts, each place standing for the
    # pixels up to the next such place (every row starts with one, so no span leaves its row)
    joint = runs.starts[:, 1:] | runs.starts[:, :-1]  # (B, H - 1, W), lower rows 1 .. H - 1
    at = torch.nonzero(joint.view(-1)).squeeze(1)
    span = torch.diff(at, append=at.new_full((1,), joint.numel()))
    v_img = torch.div(at, max((h - 1) * w, 1), rounding_mode="floor")
    lower = at + (v_img + 1) * w
    v_a, v_b = flat.index_select(0, lower - w).to(torch.int64), flat.index_select(0, lower).to(torch.int64)
    differ = torch.nonzero(v_a != v_b).squeeze(1)
    a = torch.cat([h_a, v_a.index_select(0, differ)])
    c = torch.cat([h_b, v_b.index_select(0, differ)])
    img = torch.cat([h_img, v_img.index_select(0, differ)])
    fy, fx = blocks
    if fy < 1 or fx < 1:
        raise ValueError(f"blocks must be whole numbers >= 1, got {blocks}")
    # a border between two runs of a row crosses fy rows of the big map; a vertical span is fx times longer
    weight = torch.cat([torch.full_like(h_a, fy), span.index_select(0, differ) * fx]).to(torch.float64)
    lo, hi = torch.minimum(a, c), torch.maximum(a, c)
    code = (img * m + lo) * m + hi
    size = b * m * m
    uniq, counts = _codes_to_pairs(code, size, size <= max(_BINCOUNT_MAX, 2 * code.numel()), weight)
    offset = torch.cumsum(n_nodes, 0) - n_nodes
    image, rest = torch.div(uniq, m * m, rounding_mode="floor"), uniq % (m * m)
    base = offset.index_select(0, image)
    return base + torch.div(rest, m, rounding_mode="floor"), base + rest % m, counts


def batch_both_directions(
    src: torch.Tensor, dst: torch.Tensor, n: int, *attrs: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """:func:`both_directions` in torch on the tensors' device: ``(src, dst)`` and ``(dst, src)``,
    sorted by ``(source, target)``; ``attrs`` follow the edges.

    Shapes:
        - src, dst: ``(P,)``; attrs: ``(P, ...)``
        - edge_index: ``(2, 2P)``; attrs: ``(2P, ...)``

    Example:
        >>> src, dst = torch.tensor([0, 1]), torch.tensor([2, 2])
        >>> ei, w = batch_both_directions(src, dst, 3, torch.tensor([5.0, 7.0]))
        >>> ei.tolist(), w.tolist()
        ([[0, 1, 2, 2], [2, 2, 0, 1]], [5.0, 7.0, 5.0, 7.0])
    """
    row, col = torch.cat([src, dst]), torch.cat([dst, src])
    order = torch.argsort(row * max(int(n), 1) + col)  # codes are unique: no tie to break
    out = [torch.stack([row.index_select(0, order), col.index_select(0, order)])]
    out += [torch.cat([a, a]).index_select(0, order) for a in attrs]
    return tuple(out)


def batch_knn_edges(
    points: torch.Tensor, n_nodes: torch.Tensor, k: int, *, n_max: int | None = None
) -> torch.Tensor:
    """Undirected ``k``-nearest-neighbour edges within each graph of a batch, in torch on its device.

    The same edge sets as :func:`knn_edges` (``symmetric=True``) graph by graph: the points of every
    graph are laid into a padded ``(B, n_max, D)`` block, distances come from one batched
    ``torch.cdist``, padding and the diagonal are excluded, ``topk`` picks the neighbours and the
    union of both directions is made unique and sorted.

    Args:
        points: ``(N, D)`` float points of all graphs, graph after graph (global ids).
        n_nodes: ``(B,)`` int64 node counts (``sum = N``), on the points' device.
        k: neighbours per node; every graph must have more than ``k`` nodes.
        n_max: ``max(n_nodes)`` when known.

    Returns:
        ``(2, E)`` int64 edge index in global ids, sorted, both directions.

    Raises:
        ValueError: a graph with ``k`` or fewer nodes (the message names the first such graph).

    Shapes:
        - points: ``(N, D)``; n_nodes: ``(B,)``
        - output: ``(2, E)``

    Example:
        >>> pts = torch.tensor([[0.0], [1.0], [3.0], [0.0], [5.0]])
        >>> batch_knn_edges(pts, torch.tensor([3, 2]), 1).tolist()
        [[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]]
    """
    dev = points.device
    b = int(n_nodes.numel())
    m = int(n_nodes.max()) if n_max is None else int(n_max)
    fewest = int(n_nodes.min())
    if k >= fewest:
        i = int(torch.argmin(n_nodes))  # the first graph with the fewest nodes
        raise ValueError(
            f"k={k} but graph {i} has only {fewest} nodes; k must be at most N - 1 = {fewest - 1} "
            f"(lower k, ask for more segments, or use edges='region')"
        )
    total = int(points.shape[0])
    offset = torch.cumsum(n_nodes, 0) - n_nodes
    image = torch.repeat_interleave(torch.arange(b, device=dev), n_nodes, output_size=total)
    local = torch.arange(total, device=dev) - offset.index_select(0, image)
    slot = image * m + local
    block = points.new_zeros(b * m, points.shape[1]).index_copy_(0, slot, points).view(b, m, -1)
    dist = torch.cdist(block, block)  # (B, m, m)
    valid = torch.arange(m, device=dev).view(1, m) < n_nodes.view(b, 1)  # (B, m)
    dist.masked_fill_(~valid.unsqueeze(1), float("inf"))
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nbr = dist.view(b * m, m).index_select(0, slot).topk(k, dim=1, largest=False).indices  # (N, k) local
    source = (nbr + offset.index_select(0, image).unsqueeze(1)).reshape(-1)
    target = torch.arange(total, device=dev).repeat_interleave(k)
    lo, hi = torch.minimum(source, target), torch.maximum(source, target)
    code = torch.unique(lo * total + hi)
    (ei,) = batch_both_directions(torch.div(code, total, rounding_mode="floor"), code % total, total)
    return ei


def region_adjacency(
    labels: Any, *, return_attr: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Edges between regions that share a border (4-connectivity).

    Computed from shifted label arrays (each pixel against its right and lower neighbour) and one
    count per region pair; no loop over pixels or regions. Regions touching only at a corner are
    not neighbours.

    Args:
        labels: ``(H, W)`` integer label map with contiguous ids ``0 .. N-1`` (see
            :func:`bridge.segmentation.relabel` for maps with holes in their ids); a tensor is
            processed in torch on its device (:func:`batch_touching_pairs`), with the same result there.
        return_attr: also return the border length of each edge (number of 4-neighbour pixel pairs
            across the border).

    Returns:
        ``edge_index`` ``(2, E)`` long, or ``(edge_index, border)`` with ``border`` ``(E,)`` float32.

    Raises:
        ValueError: labels not 2-D integer, empty, negative or with unused ids.

    Shapes:
        - labels: ``(H, W)``
        - edge_index: ``(2, E)``, ``E`` even (both directions)
        - border: ``(E,)``

    Example:
        >>> ei, border = region_adjacency(np.array([[0, 1], [0, 1]]), return_attr=True)
        >>> ei.tolist(), border.tolist()
        ([[0, 1], [1, 0]], [2.0, 2.0])
    """
    if isinstance(labels, torch.Tensor) and labels.ndim == 2 and labels.numel() > 0:
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"labels has dtype {labels.dtype}; expected an integer label map")
        lab = labels.detach().long()
        lo_id, hi_id = torch.aminmax(lab)
        n = int(hi_id) + 1
        if int(lo_id) < 0 or not bool((torch.bincount(lab.reshape(-1), minlength=n) > 0).all()):
            check_labels(labels)  # raises the host check's message
        n_nodes = torch.tensor([n], device=lab.device)
        lo_t, hi_t, counts_t = batch_touching_pairs(lab.unsqueeze(0), n_nodes, n_max=n)
        ei_t, border_t = batch_both_directions(lo_t, hi_t, n, counts_t.to(torch.float32))
        return (ei_t, border_t) if return_attr else ei_t
    labels, n = check_labels(labels)
    lo, hi, counts = touching_pairs(labels, n)
    edge_index, border = both_directions(lo, hi, n, counts.astype(np.float32))
    ei = torch.from_numpy(edge_index.astype(np.int64, copy=False))
    if return_attr:
        return ei, torch.from_numpy(border)
    return ei


def undirected(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Make an edge set undirected: add reverse edges, drop self loops and duplicates, sort.

    Args:
        edge_index: ``(2, E)`` integer tensor with node indices ``0 .. N-1``.
        num_nodes: number of nodes ``N``.

    Returns:
        ``(2, E')`` long tensor sorted by ``(source, target)``, on ``edge_index``'s device.

    Raises:
        ValueError: ``edge_index`` not ``(2, E)`` integer, a negative ``num_nodes``, or a node index
            outside ``0 .. N-1`` (named with its edge; see :func:`gnn.models.check_edge_index`).

    Shapes:
        - edge_index: ``(2, E)``

    Example:
        >>> undirected(torch.tensor([[0, 1, 1], [1, 0, 1]]), 2).tolist()
        [[0, 1], [1, 0]]
    """
    from gnn.models import check_edge_index  # imported here: torch_geometric.nn is slow to import

    if not isinstance(edge_index, torch.Tensor) or edge_index.ndim != 2 or edge_index.shape[0] != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, torch.Tensor) else type(edge_index).__name__
        raise ValueError(f"edge_index has shape {shape}; expected a (2, E) tensor of node indices")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise ValueError(
            f"edge_index has dtype {edge_index.dtype}; expected integer node indices (torch.long)"
        )
    if (
        isinstance(num_nodes, (bool, np.bool_))
        or not isinstance(num_nodes, (int, np.integer))
        or num_nodes < 0
    ):
        raise ValueError(f"num_nodes must be an int >= 0, got {num_nodes!r}")
    n = int(num_nodes)
    check_edge_index(edge_index.detach(), n, name="edge_index")
    ei = edge_index.detach().cpu().numpy().astype(np.int64, copy=False)
    keep = ei[0] != ei[1]
    s, t = ei[0][keep], ei[1][keep]
    lo, hi, _ = _pairs_to_edges(np.minimum(s, t), np.maximum(s, t), n)
    (out,) = both_directions(lo, hi, n)
    return torch.from_numpy(out).to(edge_index.device)


def knn_edges(
    points: Any, k: int, *, symmetric: bool = True, chunk_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges from every point to its ``k`` nearest other points (Euclidean).

    Vectorised with ``torch.cdist`` + ``topk`` (in row chunks of ``chunk_size`` to bound memory).
    With ``symmetric=True`` (default) the edge set is the union of both directions, so a node may
    have more than ``k`` neighbours; with ``symmetric=False`` it is PyG's ``knn_graph`` layout:
    ``k`` edges ``j -> i`` into every node ``i`` (sorted by target, then source).

    Args:
        points: ``(N, D)`` float positions or features (array or tensor).
        k: neighbours per node, ``1 <= k < N``.
        symmetric: return the undirected union (sorted by source, then target).
        chunk_size: rows of the distance matrix computed at once.

    Returns:
        ``(edge_index, distances)``: ``(2, E)`` long and ``(E,)`` float32 Euclidean distances, on the
        device of a tensor ``points`` (the CPU for an array).

    Raises:
        ValueError: ``points`` not 2-D / empty / not finite, or ``k`` not in ``1 .. N-1``.

    Shapes:
        - points: ``(N, D)``
        - edge_index: ``(2, E)``; ``E = N * k`` when ``symmetric=False``
        - distances: ``(E,)``

    Example:
        >>> ei, dist = knn_edges(torch.tensor([[0.0], [1.0], [3.0]]), 1)
        >>> ei.tolist(), dist.tolist()
        ([[0, 1, 1, 2], [1, 0, 2, 1]], [1.0, 1.0, 2.0, 2.0])
    """
    if isinstance(points, np.ndarray):
        points = np.ascontiguousarray(points)  # e.g. pts[::-1]: torch cannot wrap negative strides
    p = torch.as_tensor(points)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"points has shape {tuple(p.shape)}; expected a non-empty (N, D) array")
    if not p.is_floating_point():
        p = p.float()
    p = p.detach().to(torch.float32)
    if not torch.isfinite(p).all():
        raise ValueError("points contains NaN or infinite values; expected finite coordinates")
    n = int(p.shape[0])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k >= n:
        raise ValueError(
            f"k={k} but there are only {n} nodes; k must be at most N - 1 = {n - 1} "
            f"(lower k or ask for more segments)"
        )
    k = int(k)
    nbrs = []
    for start in range(0, n, chunk_size):
        block = torch.cdist(p[start : start + chunk_size], p)
        rows = torch.arange(start, min(start + chunk_size, n), device=p.device)
        block[rows - start, rows] = float("inf")
        nbrs.append(block.topk(k, dim=1, largest=False).indices)
    nbr = torch.cat(nbrs).cpu().numpy().astype(np.int64)  # (N, k); .cpu(): points may be on CUDA
    target = np.repeat(np.arange(n, dtype=np.int64), k)
    source = nbr.reshape(-1)
    if symmetric:
        lo, hi, _ = _pairs_to_edges(np.minimum(source, target), np.maximum(source, target), n)
        (ei,) = both_directions(lo, hi, n)
    else:
        order = np.argsort(target * n + source, kind="stable")
        ei = np.stack([source[order], target[order]])
    edge_index = torch.from_numpy(ei).to(p.device)
    dist = (p.index_select(0, edge_index[0]) - p.index_select(0, edge_index[1])).norm(dim=1)
    return edge_index, dist
