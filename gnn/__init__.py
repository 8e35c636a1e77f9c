"""pixgraph gnn package: graph classifiers, the dense GCN, their training and node importance.

Public names are imported on first use (PEP 562), so ``import gnn`` stays cheap.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.checkpoints import find_checkpoints, save_checkpoint
    from gnn.datasets import ConcatPos, list_graph_datasets, load_graph_dataset
    from gnn.dense import DenseGCN, normalized_adjacency
    from gnn.importance import node_importance
    from gnn.loader import graph_loader
    from gnn.models import ConvSpec, GraphClassifier, list_convs, list_presets, register_conv
    from gnn.training import History, evaluate, fit, load_checkpoint, macro_f1, predict

_EXPORTS = {
    "ConcatPos": "gnn.datasets",
    "list_graph_datasets": "gnn.datasets",
    "load_graph_dataset": "gnn.datasets",
    "DenseGCN": "gnn.dense",
    "normalized_adjacency": "gnn.dense",
    "node_importance": "gnn.importance",
    "graph_loader": "gnn.loader",
    "ConvSpec": "gnn.models",
    "GraphClassifier": "gnn.models",
    "list_convs": "gnn.models",
    "list_presets": "gnn.models",
    "register_conv": "gnn.models",
    "find_checkpoints": "engine.checkpoints",
    "save_checkpoint": "engine.checkpoints",
    "History": "gnn.training",
    "evaluate": "gnn.training",
    "fit": "gnn.training",
    "load_checkpoint": "gnn.training",
    "macro_f1": "gnn.training",
    "predict": "gnn.training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ConcatPos",
    "ConvSpec",
    "DenseGCN",
    "GraphClassifier",
    "History",
    "evaluate",
    "find_checkpoints",
    "fit",
    "graph_loader",
    "list_convs",
    "list_graph_datasets",
    "list_presets",
    "load_checkpoint",
    "load_graph_dataset",
    "macro_f1",
    "node_importance",
    "normalized_adjacency",
    "predict",
    "register_conv",
    "save_checkpoint",
]
