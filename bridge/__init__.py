"""pixgraph.bridge: images become graphs (superpixels or patches, adjacency + feature matrices, CNN node
features), cached graph datasets, networkx export and drawing, and the CNN-vs-GNN comparison.

Public names are imported on first use (PEP 562), so ``import bridge`` stays cheap.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from bridge.cnngraph import CNNGraphClassifier, ImageSegmenter, SegmentedImages
    from bridge.compare import ARMS, CompareConfig, compare, list_arms, quick_config, register_arm
    from bridge.convert import ImageToGraph, to_dense
    from bridge.dataset import GraphDataset, default_cache_dir
    from bridge.edges import knn_edges, region_adjacency
    from bridge.explain import cnn_scorer, graph_pixel_maps, graph_scorer
    from bridge.features import FEATURES, CNNNodeFeatures, node_features, pool_feature_maps
    from bridge.nxgraph import draw_graph, export_graphml, paint_nodes, plot_node_importance, to_networkx
    from bridge.segmentation import (
        SegmentationBackend,
        get_segmentation,
        list_segmentations,
        register_segmentation,
        relabel,
        superpixels,
        superpixels_batch,
        unregister_segmentation,
    )
    from bridge.slic import slic_batch

_EXPORTS = {
    "CNNGraphClassifier": "bridge.cnngraph",
    "ImageSegmenter": "bridge.cnngraph",
    "SegmentedImages": "bridge.cnngraph",
    "cnn_scorer": "bridge.explain",
    "graph_pixel_maps": "bridge.explain",
    "graph_scorer": "bridge.explain",
    "list_arms": "bridge.compare",
    "register_arm": "bridge.compare",
    "default_cache_dir": "bridge.dataset",
    "SegmentationBackend": "bridge.segmentation",
    "get_segmentation": "bridge.segmentation",
    "list_segmentations": "bridge.segmentation",
    "register_segmentation": "bridge.segmentation",
    "unregister_segmentation": "bridge.segmentation",
    "ARMS": "bridge.compare",
    "CompareConfig": "bridge.compare",
    "compare": "bridge.compare",
    "quick_config": "bridge.compare",
    "ImageToGraph": "bridge.convert",
    "to_dense": "bridge.convert",
    "GraphDataset": "bridge.dataset",
    "knn_edges": "bridge.edges",
    "region_adjacency": "bridge.edges",
    "CNNNodeFeatures": "bridge.features",
    "FEATURES": "bridge.features",
    "node_features": "bridge.features",
    "pool_feature_maps": "bridge.features",
    "draw_graph": "bridge.nxgraph",
    "export_graphml": "bridge.nxgraph",
    "paint_nodes": "bridge.nxgraph",
    "plot_node_importance": "bridge.nxgraph",
    "to_networkx": "bridge.nxgraph",
    "relabel": "bridge.segmentation",
    "superpixels": "bridge.segmentation",
    "superpixels_batch": "bridge.segmentation",
    "slic_batch": "bridge.slic",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ARMS",
    "CNNGraphClassifier",
    "CNNNodeFeatures",
    "ImageSegmenter",
    "SegmentedImages",
    "CompareConfig",
    "FEATURES",
    "GraphDataset",
    "ImageToGraph",
    "SegmentationBackend",
    "cnn_scorer",
    "compare",
    "default_cache_dir",
    "draw_graph",
    "export_graphml",
    "get_segmentation",
    "graph_pixel_maps",
    "graph_scorer",
    "knn_edges",
    "list_arms",
    "list_segmentations",
    "node_features",
    "paint_nodes",
    "plot_node_importance",
    "pool_feature_maps",
    "quick_config",
    "region_adjacency",
    "register_arm",
    "register_segmentation",
    "relabel",
    "slic_batch",
    "superpixels",
    "superpixels_batch",
    "to_dense",
    "to_networkx",
    "unregister_segmentation",
]
