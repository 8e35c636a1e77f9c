"""Image graphs outside PyG: networkx export, GraphML files, and drawings over the image.

* :func:`to_networkx` turns a ``Data(x, edge_index, edge_attr, pos, y)`` into an undirected
  :class:`networkx.Graph`; :func:`export_graphml` writes it for Gephi / Cytoscape / yEd.
* :func:`draw_graph` shows the image, the superpixel borders (``data.segments``), the nodes at their
  centroids and the edges; :func:`plot_node_importance` paints per-node values (e.g. GNN node
  importance) back onto the superpixels with :func:`paint_nodes`.

Positions follow :class:`bridge.ImageToGraph`: ``data.pos`` holds centroids ``(x, y)`` normalised to
``[0, 1]``, so the pixel position is ``pos * (W - 1, H - 1)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch_geometric.data import Data

from cnn.io import atomic_open
from cnn.plots import save_figure

__all__ = ["draw_graph", "export_graphml", "paint_nodes", "plot_node_importance", "to_networkx"]


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _check_data(data: Any) -> None:
    if not isinstance(data, Data):
        raise TypeError(f"data must be a torch_geometric.data.Data, got {type(data).__name__}")
    ei = getattr(data, "edge_index", None)
    if ei is None or ei.dim() != 2 or ei.shape[0] != 2:
        got = None if ei is None else tuple(ei.shape)
        raise ValueError(f"data.edge_index must be a (2, E) tensor, got {got}")


def _undirected(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges ``(E_u, 2)`` with ``u <= v`` and the index of the first directed copy."""
    ei = _np(data.edge_index).astype(np.int64)
    pairs = np.sort(ei.T, axis=1)
    if len(pairs) == 0:
        return pairs.reshape(0, 2), np.zeros(0, dtype=np.int64)
    uniq, first = np.unique(pairs, axis=0, return_index=True)
    return uniq, first


def _names(given: Sequence[str] | None, width: int, prefix: str, arg: str) -> list[str]:
    if given is None:
        return [f"{prefix}_{i}" for i in range(width)]
    names = [str(n) for n in given]
    if len(names) != width:
        raise ValueError(
            f"{arg} has {len(names)} names but there are {width} columns; pass one name per column"
        )
    return names


def _rows(t: Any, n: int, what: str) -> np.ndarray:
    a = _np(t)
    a = a.reshape(len(a), -1) if a.ndim != 2 else a
    if len(a) != n:
        raise ValueError(f"{what} has {len(a)} rows, expected {n}")
    return a


def to_networkx(
    data: Data,
    *,
    feature_names: Sequence[str] | None = None,
    edge_feature_names: Sequence[str] | None = None,
    flat: bool = False,
) -> nx.Graph:
    """Convert a graph to an undirected :class:`networkx.Graph` with its attributes.

    Node ``i`` gets ``pos`` (an ``(x, y)`` tuple, from ``data.pos``: image coordinates, y pointing
    down, so ``nx.draw(G, pos=nx.get_node_attributes(G, "pos"), ax=ax)`` wants ``ax.invert_yaxis()``
    to show the graph the way up it lies on the image), ``x`` (its feature list) and,
    for node-level labels, ``y``; a graph-level label ``y`` goes to ``G.graph["y"]``. Each undirected
    edge appears once with ``edge_attr`` (a list, from the first of its directed copies) and ``weight``
    when ``data.edge_weight`` exists. With ``feature_names`` / ``edge_feature_names`` the columns also
    become one scalar attribute each.

    Args:
        data: a PyG graph (``x``, ``edge_index``; ``pos``, ``edge_attr``, ``y`` optional).
        feature_names: a name per column of ``data.x``.
        edge_feature_names: a name per column of ``data.edge_attr``.
        flat: only scalar attributes (``x_0 .. x_{F-1}``, ``pos_x``, ``pos_y``, ``edge_attr_0 ..``),
            as file formats such as GraphML need.

    Shapes:
        - data.x: ``(N, F)``, data.pos: ``(N, 2)``, data.edge_index: ``(2, E)``, data.edge_attr: ``(E, D)``

    Example:
        >>> g = to_networkx(data)
        >>> g.number_of_nodes(), g.nodes[0]["pos"]
        (4, (0.214..., 0.214...))
    """
    _check_data(data)
    n = int(data.num_nodes)
    g = nx.Graph()
    attrs: dict[str, list[Any]] = {}
    if getattr(data, "x", None) is not None:
        x = _rows(data.x, n, "data.x").astype(np.float64)
        if flat or feature_names is not None:
            names = _names(feature_names, x.shape[1], "x", "feature_names")
            attrs.update({name: col for name, col in zip(names, x.T.tolist())})
        if not flat:
            attrs["x"] = x.tolist()
    if getattr(data, "pos", None) is not None:
        pos = _rows(data.pos, n, "data.pos").astype(np.float64)
        if flat:
            attrs["pos_x"], attrs["pos_y"] = pos[:, 0].tolist(), pos[:, 1].tolist()
        else:
            attrs["pos"] = [tuple(p) for p in pos.tolist()]
    y = getattr(data, "y", None)
    if y is not None:
        y_np = _np(y).reshape(-1)
        if y_np.size == n and n != 1:
            attrs["y"] = y_np.tolist()
        elif y_np.size == 1:
            g.graph["y"] = y_np.item()
        elif not flat:
            g.graph["y"] = y_np.tolist()
    node_keys = list(attrs)
    node_dicts = [dict(zip(node_keys, v)) for v in zip(*attrs.values())] if node_keys else [{}] * n
    g.add_nodes_from(zip(range(n), node_dicts))
    pairs, first = _undirected(data)
    eattrs: dict[str, list[Any]] = {}
    e = int(data.edge_index.shape[1])
    if getattr(data, "edge_attr", None) is not None:
        ea = _rows(data.edge_attr, e, "data.edge_attr").astype(np.float64)[first]
        if flat or edge_feature_names is not None:
            names = _names(edge_feature_names, ea.shape[1], "edge_attr", "edge_feature_names")
            eattrs.update({name: col for name, col in zip(names, ea.T.tolist())})
        if not flat:
            eattrs["edge_attr"] = ea.tolist()
    if getattr(data, "edge_weight", None) is not None:
        eattrs["weight"] = _np(data.edge_weight).reshape(-1).astype(np.float64)[first].tolist()
    edge_keys = list(eattrs)
    edge_dicts = [dict(zip(edge_keys, v)) for v in zip(*eattrs.values())] if edge_keys else [{}] * len(pairs)
    g.add_edges_from((u, v, d) for (u, v), d in zip(pairs.tolist(), edge_dicts))
    return g


def export_graphml(
    data: Data,
    path: str | os.PathLike,
    *,
    feature_names: Sequence[str] | None = None,
    edge_feature_names: Sequence[str] | None = None,
) -> Path:
    """Write a graph as GraphML (scalar attributes: ``x_0 .. x_{F-1}``, ``pos_x``, ``pos_y``, ...).

    The file is written to a temporary name in the same folder and renamed, so an existing file is
    replaced only by a complete one.

    Args:
        data: a PyG graph.
        path: the ``.graphml`` file.
        feature_names: names for the columns of ``data.x`` instead of ``x_i``.
        edge_feature_names: names for the columns of ``data.edge_attr`` instead of ``edge_attr_i``.

    Returns:
        The path written.

    Example:
        >>> export_graphml(data, "graph.graphml")
        >>> nx.read_graphml("graph.graphml").number_of_nodes()
        4
    """
    g = to_networkx(data, feature_names=feature_names, edge_feature_names=edge_feature_names, flat=True)
    target = Path(path)
    with atomic_open(target) as f:
        nx.write_graphml(g, f)
    return target


# ----------------------------------------------------------------------------------------------
# Drawing


def _image01(image: Any) -> np.ndarray:
    """``(H, W, 3)`` float image in ``[0, 1]`` from uint8 / float arrays or tensors (grey -> RGB)."""
    a = _np(image)
    if a.ndim == 3 and a.shape[-1] not in (3, 4) and a.shape[0] in (1, 3):
        raise ValueError(
            f"image must be channel-last (H, W, 3), got shape {a.shape}; use np.transpose(image, (1, 2, 0))"
        )
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3), (H, W, 1) or (H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(
            f"image has dtype {a.dtype}; draw uint8 (0..255) or float (0..1) images, e.g. "
            "image.astype(np.uint8) for 0..255 integers or image / 65535 for 16-bit ones"
        )
    a = a.astype(np.float32)
    # values far outside 0..1 mean another scale (0..255): refused, not drawn white; a resampling
    # overshoot (bicubic: about -0.1..1.2) is clipped
    if a.size and (float(a.min()) < -1.0 or float(a.max()) > 2.0):
        raise ValueError(
            f"float image values span {float(a.min()):.3g}..{float(a.max()):.3g}; floats are drawn as 0..1 "
            "(divide 0..255 values by 255, or pass uint8)"
        )
    return np.clip(a, 0.0, 1.0)


def _segments(segments: Any, shape: tuple[int, int] | None, arg: str) -> np.ndarray:
    s = _np(segments)
    if s.ndim == 3 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2 or (shape is not None and s.shape != shape):
        want = "(H, W)" if shape is None else f"(H, W) = {shape}"
        raise ValueError(
            f"{arg} must be a label map of shape {want} (or (1, H, W)), got {_np(segments).shape}"
        )
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"{arg} must hold integer superpixel ids, got dtype {s.dtype}")
    return s.astype(np.int64, copy=False)


def _axes(ax: Axes | None, shape: tuple[int, int]) -> tuple[Figure, Axes, bool]:
    if ax is not None:
        return ax.figure, ax, False  # type: ignore[return-value]
    h, w = shape
    scale = 5.0 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(w * scale, 2.0) + 1.0, max(h * scale, 2.0)))
    return fig, ax, True


def _save(fig: Figure, path: str | os.PathLike | None, created: bool) -> Figure:
    if path is not None:
        save_figure(fig, path)
        if created:
            plt.close(fig)
    return fig


def draw_graph(
    image: Any,
    data: Data,
    *,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    node_values: Any = None,
    show_segments: bool = True,
    cmap: str = "viridis",
) -> Figure:
    """Draw a graph over its image: superpixel borders, nodes at the centroids, edges as lines.

    Args:
        image: the picture the graph was made from, ``uint8`` or float in ``[0, 1]``.
        data: the graph; ``data.pos`` (normalised ``(x, y)``) is required, ``data.segments`` is used
            for the borders when present.
        ax: draw into these axes (the figure is then not closed after saving).
        path: where to save the figure.
        node_values: one number per node to colour the nodes (with a colour bar).
        show_segments: draw the superpixel borders (needs ``data.segments``).
        cmap: colour map for ``node_values``.

    Raises:
        ValueError: no ``data.pos``, a label map of another size than the image, or ``node_values`` of
            the wrong length.

    Shapes:
        - image: ``(H, W, 3)`` or ``(H, W)``; data.segments: ``(1, H, W)`` or ``(H, W)``
        - data.pos: ``(N, 2)``; node_values: ``(N,)``

    Example:
        >>> data = ImageToGraph(n_segments=50)(image)
        >>> fig = draw_graph(image, data, path="graph.png")
    """
    from skimage.segmentation import mark_boundaries

    _check_data(data)
    pic = _image01(image)
    h, w = pic.shape[:2]
    if getattr(data, "pos", None) is None:
        raise ValueError("data.pos is missing; draw_graph needs node centroids (x, y) in [0, 1]")
    n = int(data.num_nodes)
    xy = _rows(data.pos, n, "data.pos").astype(np.float64)[:, :2] * np.array([w - 1, h - 1], dtype=np.float64)
    values = None
    if node_values is not None:
        values = _np(node_values).astype(np.float64).reshape(-1)
        if len(values) != n:
            raise ValueError(
                f"node_values has {len(values)} entries for a graph of {n} nodes; pass one per node"
            )
    seg = getattr(data, "segments", None)
    if show_segments and seg is not None:
        pic = mark_boundaries(pic, _segments(seg, (h, w), "data.segments"), color=(1.0, 1.0, 0.0))
    fig, ax, created = _axes(ax, (h, w))
    ax.imshow(pic)
    pairs, _ = _undirected(data)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # self-loops have no length to draw
    ax.add_collection(LineCollection(xy[pairs], colors="white", linewidths=1.0, alpha=0.8, zorder=2))
    dots = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=values if values is not None else "red",
        cmap=cmap if values is not None else None,
        s=max(6.0, 400.0 / max(n, 1) ** 0.5),
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
    )
    if values is not None:
        fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    return _save(fig, path, created)


def paint_nodes(segments: Any, values: Any) -> np.ndarray:
    """Give every pixel the value of its superpixel: ``values[segments]``.

    Args:
        segments: superpixel id per pixel, ``0 .. N-1``.
        values: one number per superpixel (node).

    Returns:
        A float64 image of the node values.

    Raises:
        ValueError: ids outside ``0 .. len(values) - 1``, or ``values`` not 1-D.

    Shapes:
        - segments: ``(H, W)`` or ``(1, H, W)``; values: ``(N,)``; output: ``(H, W)``

    Example:
        >>> paint_nodes(np.array([[0, 1], [1, 2]]), [0.5, 1.0, 2.0])
        array([[0.5, 1. ],
               [1. , 2. ]])
    """
    s = _segments(segments, None, "segments")
    v = _np(values).astype(np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one number per node, shape (N,), got {v.shape}")
    if s.size and (s.min() < 0 or s.max() >= len(v)):
        raise ValueError(
            f"segments holds ids {s.min()}..{s.max()} but values has {len(v)} entries; "
            "pass one value per superpixel (node)"
        )
    return v[s]


def plot_node_importance(
    image: Any,
    segments: Any,
    values: Any,
    *,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Overlay per-node values (e.g. GNN node importance) painted onto their superpixels.

    Args:
        image: the picture, ``uint8`` or float in ``[0, 1]``.
        segments: superpixel id per pixel (``data.segments``).
        values: one number per node.
        ax: draw into these axes (the figure is then not closed after saving).
        path: where to save the figure.
        alpha: opacity of the overlay.
        cmap: colour map of the overlay.
        colorbar: add a colour bar (turn off in dense grids of panels).
        vmin, vmax: colour range (default: the values' range; use 0 and 1 for importances in [0, 1]).

    Shapes:
        - image: ``(H, W, 3)`` or ``(H, W)``; segments: ``(H, W)`` or ``(1, H, W)``; values: ``(N,)``

    Example:
        >>> imp = node_importance(model, data)
        >>> fig = plot_node_importance(image, data.segments, imp, path="importance.png")
    """
    from skimage.segmentation import mark_boundaries

    pic = _image01(image)
    h, w = pic.shape[:2]
    seg = _segments(segments, (h, w), "segments")
    heat = paint_nodes(seg, values)
    fig, ax, created = _axes(ax, (h, w))
    ax.imshow(mark_boundaries(pic, seg, color=(1.0, 1.0, 1.0)))
    overlay = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    if colorbar:
        fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    ax.axis("off")
    return _save(fig, path, created)
