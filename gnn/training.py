"""Training of graph classifiers: ``fit``, ``evaluate``, ``predict`` on pixgraph's one engine.

The engine (:mod:`engine.training`, Lightning) is shared with the image models; this module only says
what a graph batch is (a PyG ``Batch`` carrying its labels in ``y``) and checks every graph once before
training (feature width, label range, edge indices, finite features, edge weights and ``u``, non-negative
edge weights, and for a :class:`~gnn.models.GraphClassifier` the inputs' dtypes and shapes its layers
need), so a run never dies late on bad input. ``gnn.fit`` therefore has the signature, History,
checkpoints (``last.ckpt``, ``best.ckpt``, ``best.pth``), logs and resume of ``cnn.fit``;
``load_checkpoint(path, model)`` reads any of them.

``evaluate`` counts accuracy as in the lecture notes (``_, preds = torch.max(logits, 1)``,
``preds.eq(labels).sum()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data.data import BaseData

from engine import training as _engine
from engine.checkpoints import load_checkpoint
from engine.history import History
from engine.metrics import macro_f1
from engine.training import BatchFormat, bind_format, num_classes_of
from gnn.models import GraphClassifier, check_dtype

__all__ = ["GRAPHS", "History", "evaluate", "fit", "load_checkpoint", "macro_f1", "predict"]


class _Batches:
    """A re-iterable list of ready batches (Lightning would read a bare list as several loaders)."""

    def __init__(self, items: Sequence[BaseData]) -> None:
        self.items = list(items)

    def __iter__(self) -> Iterator[BaseData]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _as_loader(loader: Any, name: str) -> Any:
    if isinstance(loader, BaseData):
        raise TypeError(
            f"{name} must be an iterable of graphs or batches (a DataLoader or a list); got a single"
            f" {type(loader).__name__}. Wrap it in a list: [{name.split('_')[0]}_data]"
        )
    if isinstance(loader, (list, tuple)):
        if not loader:
            raise ValueError(f"{name} is empty; give at least one batch")
        return _Batches(loader)
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be a DataLoader or a list of Data/Batch; got {type(loader).__name__}")
    return loader


def _graph_items(loader: Any) -> Iterable[Any]:
    """The graphs of a PyG DataLoader's dataset (no collation), else the loader's batches."""
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        if len(dataset) and isinstance(dataset[0], BaseData):
            return (dataset[i] for i in range(len(dataset)))
    return loader


def _fields_read(model: Any) -> tuple[str, ...]:
    """Graph fields besides ``x`` and the edge weights that a GraphClassifier's layers read."""
    if not isinstance(model, GraphClassifier):
        return ()
    return (("edge_attr",) if model.edge_dim else ()) + (("u",) if model.global_channels else ())


def _check_graphs(
    loader: Any,
    *,
    name: str,
    in_channels: int | None,
    num_classes: Callable[[], int] | int,
    dtype: torch.dtype | None = None,
    check_model: Callable[[BaseData], str | None] | None = None,
    reads: Sequence[str] = (),
) -> int:
    """Scan every graph once before training; return the number of classes (``num_classes()`` when lazy).

    ``dtype`` is the model's float dtype (``x`` must have it); ``check_model`` runs the model's own input
    checks on a graph and returns the field its layers read as edge weights (None: none); that field and
    ``reads`` (other fields the layers read) must be finite. Models without ``check_model`` (any other
    than GraphClassifier) are only checked for ``x``, ``edge_index`` and labels.
    """
    n_graphs, ys = 0, []
    for i, item in enumerate(_graph_items(loader)):
        where = f"{name} item {i}"
        if not isinstance(item, BaseData):
            raise TypeError(
                f"{name} must yield torch_geometric Data/Batch objects; {where} is {type(item).__name__}"
            )
        x, ei, y = item.x, item.edge_index, item.y
        if x is None or x.dim() != 2:
            shape = None if x is None else tuple(x.shape)
            raise ValueError(f"{where}: node features x must be (N, F); got {shape}")
        if in_channels is not None and x.size(1) != in_channels:
            raise ValueError(
                f"{where}: x has {x.size(1)} features per node but the model has in_channels={in_channels};"
                f" build the model with in_channels={x.size(1)} or fix the graphs' features"
            )
        if x.size(0) == 0:
            raise ValueError(f"{where}: a graph with 0 nodes; every graph needs at least one node")
        if not x.is_floating_point():
            raise TypeError(f"{where}: x must be float; got {x.dtype} (convert with data.x = data.x.float())")
        if dtype is not None and x.dtype != dtype:
            try:
                check_dtype("x", x, dtype)
            except TypeError as e:
                raise TypeError(f"{where}: {e}") from None
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{where}: node features x hold NaN or inf; fix the features of this graph"
                " (e.g. torch.nan_to_num or drop the graph)"
            )
        if ei is None or ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(
                f"{where}: edge_index must be (2, E); got {None if ei is None else tuple(ei.shape)}"
            )
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= x.size(0)):
            raise ValueError(
                f"{where}: edge_index refers to node {int(ei.max())} (or {int(ei.min())}) but the graph has"
                f" {x.size(0)} nodes; indices must be in [0, {x.size(0) - 1}]"
            )
        weight = item["edge_weight"] if "edge_weight" in item else None
        if weight is not None and weight.numel() and float(weight.min()) < 0:
            raise ValueError(
                f"{where}: edge_weight has negative values; GCN normalisation needs weights >= 0"
            )
        if check_model is not None:
            try:
                source = check_model(item)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{where}: {e}") from None
            for field in {source, *(reads or ())} - {None}:  # only what the model's layers read
                value = item[field] if field in item else None
                if (
                    isinstance(value, Tensor)
                    and value.is_floating_point()
                    and not bool(torch.isfinite(value).all())
                ):
                    raise ValueError(
                        f"{where}: {field} holds NaN or inf; fix this graph's {field}"
                        " (e.g. torch.nan_to_num or drop the graph)"
                    )
            if source == "edge_attr" and item.edge_attr.numel() and float(item.edge_attr.min()) < 0:
                raise ValueError(
                    f"{where}: edge_attr has negative values and the model's layers read it as edge weights"
                    " (a 1-D or (E, 1) edge_attr without edge_weight); GCN normalisation needs weights >= 0:"
                    " fix the values, or give them as edge features to conv='gat'/'gin' with edge_dim"
                )
        graphs = int(item.num_graphs) if item.batch is not None else 1
        if y is None:
            raise ValueError(f"{where}: labels y are missing; set data.y to a (1,) long tensor per graph")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"{where}: labels y must be integer class indices; got dtype {y.dtype}")
        if y.numel() != graphs:
            raise ValueError(
                f"{where}: expected one label per graph ({graphs}); got y of shape {tuple(y.shape)}."
                " This trainer does graph classification: set data.y = torch.tensor([label])"
            )
        ys.append(y.reshape(-1))
        n_graphs += graphs
    if n_graphs == 0:
        raise ValueError(f"{name} holds no graphs")
    labels = torch.cat(ys)
    lo, hi = int(labels.min()), int(labels.max())
    num_classes = num_classes() if callable(num_classes) else num_classes
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} has label {bad} outside the class range [0, {num_classes}) of the model;"
            " relabel the data to 0..num_classes-1 or build the model with more classes"
        )
    return num_classes


def _check_graph_loader(model: nn.Module, loader: Any, name: str, num_classes: int | None) -> int:
    """Scan every graph of a loader once; return the model's number of classes."""
    in_channels = getattr(model, "in_channels", None)
    in_channels = in_channels if isinstance(in_channels, int) and not isinstance(in_channels, bool) else None
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return _check_graphs(
        loader,
        name=name,
        in_channels=in_channels,
        dtype=dtypes.pop() if len(dtypes) == 1 and isinstance(model, GraphClassifier) else None,
        check_model=model._check_graph if isinstance(model, GraphClassifier) else None,
        reads=_fields_read(model),
        num_classes=num_classes
        if num_classes is not None
        else lambda: num_classes_of(model, lambda: next(iter(loader))),
    )


def _split_graphs(batch: Any) -> tuple[Any, Tensor]:
    if not isinstance(batch, BaseData):
        raise TypeError(
            f"the loader must yield torch_geometric Data/Batch objects; got {type(batch).__name__}"
        )
    if batch.y is None:
        raise ValueError("the loader's graphs have no labels y; set data.y = torch.tensor([label]) per graph")
    return batch, batch.y.reshape(-1)


def _graph_inputs(batch: Any) -> Any:
    return batch


#: Graph batches: PyG ``Data``/``Batch`` objects with one label per graph in ``y``. Module-level
#: functions only, so the format pickles (Lightning's ``ddp_spawn`` sends the module to new processes).
GRAPHS = BatchFormat(
    name="graphs",
    split=_split_graphs,
    inputs=_graph_inputs,
    check=_check_graph_loader,
    as_loader=_as_loader,
    shapes=(
        "    - batch.x: ``(N, F)`` float; batch.edge_index: ``(2, E)``; batch.y: ``(num_graphs,)`` int64.\n"
        "    - logits: ``(num_graphs, num_classes)``."
    ),
)

fit = bind_format(
    _engine.fit,
    GRAPHS,
    module=__name__,
    example=(
        "    >>> from torch_geometric.loader import DataLoader\n"
        "    >>> model = GraphClassifier(5, 2, hidden=16)\n"
        "    >>> loader = DataLoader(graphs, batch_size=32, shuffle=True)\n"
        '    >>> hist = fit(model, loader, epochs=5, checkpoint_dir="runs/gcn")\n'
        "    >>> hist.train_acc[-1]\n"
        "    0.97"
    ),
)
evaluate = bind_format(
    _engine.evaluate,
    GRAPHS,
    module=__name__,
    example=(
        "    >>> evaluate(model, DataLoader(test_graphs, batch_size=64))\n"
        "    {'accuracy': 0.91, 'loss': 0.31, 'correct': 910, 'n': 1000, 'macro_f1': 0.90}"
    ),
)
predict = bind_format(
    _engine.predict,
    GRAPHS,
    module=__name__,
    example="    >>> preds, probs = predict(model, DataLoader(graphs, batch_size=64))",
)
