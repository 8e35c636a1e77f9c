"""From one image to a graph, step by step: superpixels, adjacency matrix A, feature matrix X.

1. segment the image into superpixels (SLIC) or square patches;
2. connect segments that share a border (region adjacency) -> edge_index;
3. describe every segment (mean/std colour, centroid) -> X;
4. the same in one call with ``ImageToGraph``; ``to_dense`` gives A (N x N) and X (N x F);
5. draw the graph over the image and export it for networkx / GraphML.

Run:  python examples/bridge_image_to_graph.py [--image my.jpg] [--n-segments 75] [--cnn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bridge import (
    ImageToGraph,
    draw_graph,
    export_graphml,
    node_features,
    region_adjacency,
    superpixels,
    to_dense,
    to_networkx,
)


def main(argv: list[str] | None = None) -> dict[str, int]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=None, help="an image file (default: scikit-image's coffee photo)")
    p.add_argument("--n-segments", type=int, default=75)
    p.add_argument("--method", default="slic", choices=("slic", "grid"))
    p.add_argument("--cnn", action="store_true", help="add efficientnet_lite0 stage features to every node")
    p.add_argument("--out", default="runs/image_to_graph")
    p.add_argument(
        "--quick", action="store_true", help="the image at 1/4 scale, cropped to at most 96x128 pixels"
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.image:
        from cnn import read_image

        image = read_image(args.image)
    else:
        from skimage import data

        image = data.coffee()
    if args.quick:
        image = image[::4, ::4][:96, :128]
    print(f"image {image.shape} {image.dtype}")

    labels, info = superpixels(image, n_segments=args.n_segments, method=args.method, return_info=True)
    asked, got = info["n_segments_requested"], info["n_segments"]
    print(f"1. superpixels: asked {asked}, got {got}; labels {labels.shape}")
    edge_index = region_adjacency(labels)
    n_edges = edge_index.shape[1] // 2
    print(f"2. region adjacency: {n_edges} undirected edges, edge_index {tuple(edge_index.shape)}")
    x, names = node_features(image, labels, features=("color_mean", "color_std", "centroid"))
    print(f"3. node features X {tuple(x.shape)}: {names}")

    backbone = None
    if args.cnn:
        from cnn import create_backbone

        backbone = create_backbone("efficientnet_lite0", weights="imagenet")
    conv = ImageToGraph(n_segments=args.n_segments, method=args.method, backbone=backbone)
    print(conv)
    graph = conv(image)
    A, X = to_dense(graph)
    symmetric = bool((A == A.T).all())
    print(f"4. Data: {graph}; A {tuple(A.shape)} (symmetric: {symmetric}), X {tuple(X.shape)}")
    degrees = A.sum(1).numpy()
    print(f"   degree: mean {degrees.mean():.2f}, min {degrees.min():.0f}, max {degrees.max():.0f}")

    draw_graph(image, graph, path=out / "graph.png")
    g = to_networkx(graph)
    export_graphml(graph, out / "graph.graphml")
    print(
        f"5. networkx: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges; wrote {out / 'graph.png'} "
        f"and {out / 'graph.graphml'}"
    )
    return {"nodes": int(graph.num_nodes), "edges": int(np.asarray(g.number_of_edges()))}


if __name__ == "__main__":
    main()
