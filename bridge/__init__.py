"""pixgraph.bridge: images become graphs (superpixels or patches, adjacency + feature matrices, CNN node
features), cached graph datasets, networkx export and drawing, and the CNN-vs-GNN comparison."""

from bridge.compare import ARMS, CompareConfig, compare, quick_config
from bridge.convert import ImageToGraph, to_dense
from bridge.dataset import GraphDataset
from bridge.edges import knn_edges, region_adjacency
from bridge.features import FEATURES, CNNNodeFeatures, node_features, pool_feature_maps
from bridge.nxgraph import draw_graph, export_graphml, paint_nodes, plot_node_importance, to_networkx
from bridge.segmentation import relabel, superpixels, superpixels_batch
from bridge.slic import slic_batch

__all__ = [
    "ARMS",
    "FEATURES",
    "CNNNodeFeatures",
    "CompareConfig",
    "GraphDataset",
    "ImageToGraph",
    "compare",
    "draw_graph",
    "export_graphml",
    "knn_edges",
    "node_features",
    "paint_nodes",
    "plot_node_importance",
    "pool_feature_maps",
    "quick_config",
    "region_adjacency",
    "relabel",
    "slic_batch",
    "superpixels",
    "superpixels_batch",
    "to_dense",
    "to_networkx",
]
