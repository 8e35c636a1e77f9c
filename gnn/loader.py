"""Mini-batches of an in-memory list of graphs, gathered from tensors concatenated once.

PyG's ``DataLoader`` collates every mini-batch with ``Batch.from_data_list``, which walks every graph and
every attribute in Python (about 6 ms for 32 superpixel graphs with CNN node features on 2 CPU cores,
as long as a small GCN's training step). For a list of graphs that stays in memory and is read epoch
after epoch, :func:`graph_loader` concatenates each attribute of all graphs once; a mini-batch is then
one ``index_select`` per attribute plus the node offsets of ``edge_index``. The batches are those of PyG's
``DataLoader`` with the same arguments: the same graphs in the same order (the same sampler), and every
field, ``batch``, ``ptr`` and the slice and increment tables that ``to_data_list()`` reads equal to
``Batch.from_data_list``'s. Graphs whose attributes do not fit that scheme (other than tensors, a
custom ``__cat_dim__`` or ``__inc__``, differing keys, dtypes or devices) are collated by PyG as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

__all__ = ["GatheredCollater", "graph_loader"]


class GatheredCollater:
    """``Batch.from_data_list`` for graphs of one list, gathered from its attributes concatenated once.

    Items that are not graphs of the list (e.g. copies made by worker processes) go to PyG's own
    ``Batch.from_data_list``, as does every batch when the graphs do not fit the scheme (see the module
    docstring; :attr:`gathered` says which).

    Args:
        graphs: the graphs, PyG ``Data`` objects with the same keys.

    Example:
        >>> g = [Data(x=torch.ones(n, 2), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([n]))
        ...      for n in (2, 3)]
        >>> batch = GatheredCollater(g)(g[::-1])
        >>> batch.edge_index.tolist(), batch.y.tolist(), batch.ptr.tolist()
        ([[0, 3], [1, 4]], [3, 2], [0, 3, 5])
    """

    def __init__(self, graphs: Sequence[Any]) -> None:
        self.graphs = list(graphs)
        self._index = {id(g): i for i, g in enumerate(self.graphs)}
        # per table of rows per graph (node-level keys share one, edge-level keys another): first row of
        # each graph, rows of each graph, whether every graph has one row (graph-level keys: y, u)
        self._tables: list[tuple[Tensor, Tensor, bool]] = []
        self._store: dict[str, tuple[Tensor, int, int, bool]] | None = self._concatenate()

    @property
    def gathered(self) -> bool:
        """Whether batches are gathered from the concatenated attributes (else PyG collates them)."""
        return self._store is not None

    def _concatenate(self) -> dict[str, tuple[Tensor, int, int, bool]] | None:
        """Per key: (all graphs' values concatenated, its table of rows, concatenation dim, whether it
        takes the node offsets); None when a graph does not fit."""
        graphs = self.graphs
        if not graphs or any(type(g) is not Data for g in graphs):
            return None
        first = graphs[0]
        keys = list(first.keys())
        if "batch" in keys or "ptr" in keys or any(sorted(g.keys()) != sorted(keys) for g in graphs):
            return None
        nodes = [g.num_nodes for g in graphs]
        if any(n is None for n in nodes) or "num_nodes" in first._store:
            return None
        store: dict[str, tuple[Tensor, int, int, bool]] = {}
        table_of: dict[tuple[int, ...], int] = {}
        for key in keys:
            values = [g[key] for g in graphs]
            if not all(isinstance(v, Tensor) and v.dim() > 0 and not v.is_sparse for v in values):
                return None
            ref = values[0]
            if any(v.dtype != ref.dtype or v.device != ref.device or v.dim() != ref.dim() for v in values):
                return None
            dim = first.__cat_dim__(key, ref)
            dim = dim + ref.dim() if dim < 0 else dim
            with_offsets = key == "edge_index"
            for g, v, n in zip(graphs, values, nodes):  # the increments and dims Data defines by default
                if g.__cat_dim__(key, v) not in (dim, dim - v.dim()) or g.__inc__(key, v) != (
                    n if with_offsets else 0
                ):
                    return None
            if dim != (1 if with_offsets else 0) or (with_offsets and ref.dtype != torch.int64):
                return None
            if any(
                v.shape[:dim] + v.shape[dim + 1 :] != ref.shape[:dim] + ref.shape[dim + 1 :] for v in values
            ):
                return None
            sizes = tuple(v.shape[dim] for v in values)
            if sizes not in table_of:  # keys with the same rows per graph share one table (one gather index)
                rows = torch.tensor(sizes, dtype=torch.int64)
                table_of[sizes] = len(self._tables)
                self._tables.append((torch.cumsum(rows, 0) - rows, rows, all(r == 1 for r in sizes)))
            store[key] = (torch.cat(values, dim), table_of[sizes], dim, with_offsets)
        self._nodes = torch.tensor(nodes, dtype=torch.int64)
        return store

    def __call__(self, items: Sequence[Any]) -> Batch:
        ids = [self._index.get(id(g), -1) for g in items]  # the list holds its graphs: ids stay theirs
        if self._store is None or not ids or min(ids) < 0:
            return Batch.from_data_list(list(items))
        which = torch.tensor(ids, dtype=torch.int64)
        b = len(ids)
        nodes = self._nodes.index_select(0, which)
        zero = torch.zeros(1, dtype=torch.int64)
        node_ptr = torch.cat([zero, torch.cumsum(nodes, 0)])
        out = Batch(_base_cls=Data)
        slices: dict[str, Tensor] = {}
        incs: dict[str, Tensor] = {}
        gathered = []  # per table: the batch's row index, rows per graph and their cumulative sums
        for start, rows, one_row in self._tables:
            take = rows.index_select(0, which)
            ptr = torch.cumsum(take, 0)
            if one_row:  # one row per graph (y, u): the graphs themselves
                idx = start.index_select(0, which)
            else:  # row r of the batch's k-th graph is row start[k] + r of the concatenation
                total = int(ptr[-1])
                shift = start.index_select(0, which) - (ptr - take)
                idx = torch.repeat_interleave(shift, take, output_size=total) + torch.arange(total)
            gathered.append((idx, take, ptr))
        for key, (values, table, dim, with_offsets) in self._store.items():
            idx, take, ptr = gathered[table]
            value = values.index_select(dim, idx.to(values.device))
            if with_offsets:
                offsets = torch.repeat_interleave(node_ptr[:-1], take, output_size=int(ptr[-1]))
                value = value + offsets.to(values.device)
                incs[key] = node_ptr[:-1]
            else:
                incs[key] = torch.zeros(b, dtype=torch.int64)
            out[key] = value
            slices[key] = torch.cat([zero, ptr])
        device = next(iter(self._store.values()))[0].device
        out.batch = torch.repeat_interleave(torch.arange(b), nodes, output_size=int(node_ptr[-1])).to(device)
        out.ptr = node_ptr.to(device)
        out._num_graphs, out._slice_dict, out._inc_dict = b, slices, incs
        return out


def graph_loader(
    graphs: Sequence[Any], batch_size: int = 1, *, shuffle: bool = False, **kwargs: Any
) -> DataLoader:
    """PyG's ``DataLoader`` over an in-memory list of graphs, whose batches are gathered from the graphs'
    attributes concatenated once (:class:`GatheredCollater`): the same batches, several times faster
    to make.

    Args:
        graphs: ``Data`` objects (kept in memory for the loader's life).
        batch_size: graphs per batch.
        shuffle: reshuffle every epoch (with ``generator=`` for a seeded order, as PyG's loader).
        **kwargs: other arguments of PyG's ``DataLoader`` (``generator``, ``drop_last``; with
            ``follow_batch`` or ``exclude_keys`` PyG collates; worker processes collate their copies
            with PyG).

    Returns:
        A ``torch_geometric.loader.DataLoader`` (``loader.dataset`` is the list).

    Example:
        >>> g = [Data(x=torch.ones(2, 1), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([i]))
        ...      for i in range(5)]
        >>> [b.num_graphs for b in graph_loader(g, batch_size=2)]
        [2, 2, 1]
    """
    graphs = list(graphs)
    loader = DataLoader(graphs, batch_size=batch_size, shuffle=shuffle, **kwargs)
    if not kwargs.get("follow_batch") and not kwargs.get("exclude_keys"):  # else PyG's collater does those
        loader.collate_fn = GatheredCollater(graphs)
    return loader
