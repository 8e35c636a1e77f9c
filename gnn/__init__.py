"""pixgraph gnn package: graph classifiers, the dense GCN, their training and node importance."""

from gnn.dense import DenseGCN, normalized_adjacency
from gnn.importance import node_importance
from gnn.models import ConvSpec, GraphClassifier, list_convs, list_presets, register_conv
from gnn.training import History, evaluate, fit, load_checkpoint, macro_f1, predict

__all__ = [
    "ConvSpec",
    "DenseGCN",
    "GraphClassifier",
    "History",
    "evaluate",
    "fit",
    "list_convs",
    "list_presets",
    "load_checkpoint",
    "macro_f1",
    "node_importance",
    "normalized_adjacency",
    "predict",
    "register_conv",
]
