"""End-to-end CNN -> GNN: a backbone's stage maps pooled into superpixels inside the forward pass.

:class:`CNNGraphClassifier` runs a (partly trainable) backbone, pools its stage maps into the regions of
a segment map with a differentiable area-weighted scatter-mean, links touching regions (or, for patch
graphs, the ``k`` nearest patches in feature space, recomputed in every block), and classifies the
graph with a :class:`gnn.models.GraphClassifier`. Gradients reach the backbone's trainable blocks
through the pooling. With ``global_head=True`` (the default) the backbone's own classifier (global
pooling + linear, what ``cnn.fit`` trains) is kept and the graph head's logits are added to it, so the
model contains the fine-tuned CNN (a graph head of zeros leaves it exactly).

The segment map of each image is computed once (e.g. :func:`bridge.segmentation.superpixels_batch`)
and travels with the image; :class:`SegmentedImages` augments both with the same random crop and flip
(torchvision's ``v2`` transforms with ``tv_tensors.Mask``, nearest-neighbour for the map).

Everything runs on the tensors' device with torch operations; the same code is tested on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engine import training as _engine
from engine.training import BatchFormat, bind_format

__all__ = [
    "GRAPHS_OF",
    "SEGMENTED_IMAGES",
    "CNNGraphClassifier",
    "ImageSegmenter",
    "SegmentedImages",
    "fit",
    "grid_segments",
    "pool_into_regions",
    "predict",
    "region_graph",
]

#: Kinds of graph a :class:`CNNGraphClassifier` builds.
GRAPHS_OF: tuple[str, ...] = ("superpixels", "patches")
#: The backbone stage whose cells are the nodes of a patch graph: the second deepest (stride 16 on most
#: backbones, 14 x 14 patches at 224 px as in ViG; the deepest, 7 x 7, leaves few nodes at small sizes).
PATCH_STAGE = -2


def region_graph(segments: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nodes and region-adjacency edges of a batch of segment maps, in torch on their device.

    Ids may be any non-negative ints per image (a cropped map misses some); each image's distinct ids
    become consecutive global node ids, image by image, in increasing id order.

    Args:
        segments: integer label maps.

    Returns:
        ``(node, graph, edge_index)``: the global node id of every pixel, the image of every node, and
        the undirected edges between nodes that touch (4-neighbourhood), both directions, sorted.

    Shapes:
        - segments: ``(B, H, W)``; node: ``(B, H, W)`` long; graph: ``(N,)`` long; edge_index: ``(2, E)``.

    Example:
        >>> seg = torch.tensor([[[0, 0, 5], [0, 0, 5]]])
        >>> node, graph, ei = region_graph(seg)
        >>> node.tolist(), graph.tolist(), ei.tolist()
        ([[[0, 0, 1], [0, 0, 1]]], [0, 0], [[0, 1], [1, 0]])
    """
    if segments.dim() != 3:
        raise ValueError(f"segments must be (B, H, W) label maps; got shape {tuple(segments.shape)}")
    if segments.is_floating_point() or segments.dtype == torch.bool:
        raise TypeError(f"segments must hold integer ids; got dtype {segments.dtype}")
    seg = segments.long()
    if seg.numel() == 0 or int(seg.min()) < 0:
        raise ValueError("segments must be non-empty with ids >= 0")
    b = seg.shape[0]
    span = int(seg.max()) + 1
    key = seg + torch.arange(b, device=seg.device).view(b, 1, 1) * span
    # ids present in each image -> consecutive node ids: a count over the key space, no sort
    present = torch.bincount(key.reshape(-1), minlength=b * span) > 0
    new_id = torch.cumsum(present, 0) - 1
    node = new_id[key]
    graph = torch.nonzero(present).view(-1) // span
    n = int(graph.numel())
    horizontal = node[:, :, :-1] != node[:, :, 1:]
    vertical = node[:, :-1, :] != node[:, 1:, :]
    src = torch.cat([node[:, :, :-1][horizontal], node[:, :-1, :][vertical]])
    dst = torch.cat([node[:, :, 1:][horizontal], node[:, 1:, :][vertical]])
    code = torch.unique(torch.minimum(src, dst) * n + torch.maximum(src, dst))
    lo, hi = code // n, code % n
    edge_index = torch.stack([torch.cat([lo, hi]), torch.cat([hi, lo])])
    order = torch.argsort(edge_index[0] * n + edge_index[1])
    return node, graph, edge_index[:, order]


def pool_into_regions(maps: Sequence[Tensor], node: Tensor, graph: Tensor) -> Tensor:
    """Area-weighted mean of every map over every region: differentiable in ``maps``.

    A map coarser than the segment map contributes each of its cells in proportion to the pixels the
    region covers in that cell (cell of pixel ``(y, x)``: ``(y * h // H, x * w // W)``), so the result
    is the mean of the map upsampled to ``H x W`` (nearest) over the region's pixels.

    Args:
        maps: feature maps of the batch (any resolution up to the segment map's).
        node: global node id of every pixel (:func:`region_graph`).
        graph: the image of every node (:func:`region_graph`).

    Returns:
        The pooled features of every node, the maps' channels side by side.

    Shapes:
        - maps: ``[(B, C_i, h_i, w_i), ...]``; node: ``(B, H, W)``; graph: ``(N,)``; output: ``(N, sum C_i)``.

    Example:
        >>> node = torch.tensor([[[0, 0, 1, 1]]])
        >>> pool_into_regions([torch.tensor([[[[1.0, 3.0]]]])], node, torch.tensor([0, 0])).tolist()
        [[1.0], [3.0]]
    """
    b, height, width = node.shape
    num_nodes, image = int(graph.numel()), graph
    flat = node.reshape(-1)
    area = torch.bincount(flat, minlength=num_nodes).clamp_min(1).to(maps[0].dtype).unsqueeze(1)
    out = []
    dev = node.device
    for m in maps:
        _, channels, h, w = m.shape
        values = m.permute(0, 2, 3, 1).reshape(b * h * w, channels)
        if (h, w) == (height, width):
            pooled = values.new_zeros(num_nodes, channels).index_add(0, flat, values)
        else:
            hw = h * w
            ys = torch.arange(height, device=dev) * h // height
            xs = torch.arange(width, device=dev) * w // width
            cell = (ys.view(1, height, 1) * w + xs.view(1, 1, width)).expand(b, height, width).reshape(-1)
            # (node, cell) overlaps counted over node x cell-of-its-image (a node lies in one image)
            counts = torch.bincount(flat * hw + cell, minlength=num_nodes * hw)
            pairs = torch.nonzero(counts).view(-1)
            nodes, cells = pairs // hw, pairs % hw
            rows = image[nodes] * hw + cells
            weight = counts[pairs].to(values.dtype).unsqueeze(1)
            pooled = values.new_zeros(num_nodes, channels).index_add(
                0, nodes, values.index_select(0, rows) * weight
            )
        out.append(pooled / area)
    return torch.cat(out, dim=1)


def grid_segments(batch: int, height: int, width: int, rows: int, cols: int, device: Any = None) -> Tensor:
    """Patch label maps: the ``rows x cols`` cells of a stage map as regions (ViG's patches).

    Shapes:
        - output: ``(batch, height, width)`` long, ids ``0 .. rows * cols - 1`` row-major.

    Example:
        >>> grid_segments(1, 2, 4, 1, 2).tolist()
        [[[0, 0, 1, 1], [0, 0, 1, 1]]]
    """
    ys = torch.arange(height, device=device) * rows // height
    xs = torch.arange(width, device=device) * cols // width
    return (ys.view(height, 1) * cols + xs.view(1, width)).expand(batch, height, width)


class CNNGraphClassifier(nn.Module):
    """A backbone whose stage maps, pooled into regions, feed a GNN head: trained end to end.

    Node features: the chosen stages pooled into each region (:func:`pool_into_regions`), the region's
    mean input colour and its centroid ``(x, y)`` in ``[0, 1]``, standardised by a BatchNorm. Edges:
    touching regions (``graph="superpixels"``), or for ``graph="patches"`` (the cells of the backbone's
    second-deepest stage, :data:`PATCH_STAGE`; no segment map needed) the ``k`` nearest patches in
    feature space, recomputed in every block.

    Freeze the backbone as for fine-tuning (``cnn.freeze(model.backbone, "fine_tuning",
    trainable_blocks=1)``): the GNN head always trains.

    Args:
        backbone: a ``cnn.create_backbone(..., num_classes=C)`` model (its head is the global path).
        num_classes: classes; the backbone's head is reset to it when it differs.
        graph: ``"superpixels"`` (segment maps given with the images) or ``"patches"``.
        stages: backbone stages to pool (default: the last three).
        conv, hidden, layers, dropout: the :class:`gnn.models.GraphClassifier` head.
        k: neighbours of the patch graph.
        global_head: add the backbone's own classifier logits (the model then contains the CNN).
        segmenter: ``segmenter(images) -> (B, H, W)`` label maps, used when images come alone (e.g. an
            :class:`ImageSegmenter`; not part of the weights).

    Shapes:
        - input: ``(images, segments)`` with images ``(B, 3, H, W)`` normalised and segments
          ``(B, H, W)`` integer maps; or images alone with ``graph="patches"``.
        - output: ``(B, num_classes)`` logits.

    Example:
        >>> from cnn.backbones import create_backbone
        >>> model = CNNGraphClassifier(create_backbone("resnet18", weights=None), 2, hidden=16, layers=1)
        >>> x, seg = torch.randn(2, 3, 64, 64), torch.arange(64).view(1, 1, 64).expand(2, 64, 64) // 16
        >>> model((x, seg)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        backbone: Any,
        num_classes: int,
        *,
        graph: str = "superpixels",
        stages: Sequence[int] = (-3, -2, -1),
        conv: str = "gcn",
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.0,
        k: int = 8,
        global_head: bool = True,
        segmenter: Any = None,
    ) -> None:
        super().__init__()
        from bridge.checks import check_backbone
        from gnn.models import GraphClassifier

        check_backbone(backbone)
        if graph not in GRAPHS_OF:
            raise ValueError(f"graph={graph!r}; use one of {', '.join(map(repr, GRAPHS_OF))}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        channels = list(backbone.feature_channels)
        picked = [int(s) for s in stages]
        bad = [s for s in picked if not -len(channels) <= s < len(channels)]
        if not picked or bad:
            raise ValueError(
                f"stages={list(stages)!r}: give indices of the backbone's {len(channels)} stages "
                f"({-len(channels)}..{len(channels) - 1})"
            )
        self.stages = sorted({s % len(channels) for s in picked})
        if global_head and backbone.num_classes != num_classes:
            backbone.reset_classifier(num_classes)
        self.backbone: Any = backbone
        self.segmenter: Any = segmenter
        self.graph = graph
        self.global_head = bool(global_head)
        self.num_classes = num_classes
        width = sum(channels[s] for s in self.stages) + 5  # stages + colour mean + centroid
        self.norm = nn.BatchNorm1d(width)
        self.gnn = GraphClassifier(
            width,
            num_classes,
            conv=conv,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            dynamic_k=k if graph == "patches" else None,
        )

    def forward(self, inputs: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """Logits of ``(images, segments)`` (or of images alone for patch graphs)."""
        if isinstance(inputs, (tuple, list)):
            x, segments = inputs
            if self.graph == "patches":  # its nodes are the stage map's cells: segments would replace them
                raise ValueError(
                    "graph='patches' takes images alone (its nodes are the cells of the deepest stage map), "
                    "got (images, segments); give image batches (cnn.fit / cnn.predict with an image "
                    "loader), or build the model with graph='superpixels' to use the segment maps"
                )
        else:
            x, segments = inputs, None
        if self.global_head:
            logits, all_maps = self.backbone.forward_with_features(x)
        else:
            logits, all_maps = None, self.backbone.features(x)
        maps = [all_maps[s] for s in self.stages]
        b, _, height, width = x.shape
        if segments is None and self.graph == "superpixels":
            if self.segmenter is None:
                raise ValueError(
                    "graph='superpixels' needs (images, segments), or a segmenter "
                    "(model.segmenter = ImageSegmenter(...)) to segment images given alone"
                )
            segments = self.segmenter(x)
        if segments is None:
            rows, cols = all_maps[PATCH_STAGE].shape[2:]
            segments = grid_segments(b, height, width, rows, cols, device=x.device)
        elif tuple(segments.shape) != (b, height, width):
            raise ValueError(
                f"segments has shape {tuple(segments.shape)}; expected (B, H, W) = {(b, height, width)}, one "
                "label map per image at the images' size"
            )
        with torch.no_grad():
            node, graph, edge_index = region_graph(segments.to(x.device))
        ys = (
            torch.linspace(0.0, 1.0, height, device=x.device)
            .view(1, 1, height, 1)
            .expand(b, 1, height, width)
        )
        xs = torch.linspace(0.0, 1.0, width, device=x.device).view(1, 1, 1, width).expand(b, 1, height, width)
        pixel_maps = [x, torch.cat([xs, ys], dim=1)]
        feats = pool_into_regions([*(m.float() for m in maps), *pixel_maps], node, graph)
        out = self.gnn(self.norm(feats), edge_index, graph, num_graphs=b)
        return out if logits is None else logits + out

    def extra_repr(self) -> str:
        return f"graph={self.graph!r}, stages={self.stages}, global_head={self.global_head}"


class ImageSegmenter:
    """Normalised images -> superpixel label maps, for a :class:`CNNGraphClassifier` given images alone.

    Undoes the normalisation, rounds to uint8 and runs :func:`bridge.segmentation.superpixels_batch`;
    no gradient flows through it.

    Shapes:
        - images: ``(B, 3, H, W)`` normalised with ``mean`` / ``std``; output: ``(B, H, W)`` long.

    Example:
        >>> seg = ImageSegmenter((0.5,) * 3, (0.5,) * 3, n_segments=4)
        >>> seg(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 16, 16])
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        n_segments: int = 75,
        compactness: float = 10.0,
        method: str = "slic_torch",
    ) -> None:
        from bridge.segmentation import check_options

        check_options(n_segments, compactness, method, 0.0)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.n_segments, self.compactness, self.method = n_segments, compactness, method

    def __repr__(self) -> str:
        return (
            f"ImageSegmenter(n_segments={self.n_segments}, compactness={self.compactness}, "
            f"method={self.method!r})"
        )

    def __call__(self, images: Tensor) -> Tensor:
        from bridge.segmentation import superpixels_batch

        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        with torch.no_grad():
            pixels = ((images.detach() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        # one (B, H, W, 3) batch on the images' device: slic_torch segments it there (no host round trip)
        maps = superpixels_batch(
            pixels.permute(0, 2, 3, 1),
            n_segments=self.n_segments,
            compactness=self.compactness,
            method=self.method,
        )
        return torch.as_tensor(maps, dtype=torch.long, device=images.device)


class SegmentedImages(torch.utils.data.Dataset):
    """Images with their segment maps, normalised; the same random crop + flip on both when ``train``.

    Args:
        images: ``(N, H, W, 3)`` uint8.
        segments: ``(N, H, W)`` integer label maps (e.g. :func:`bridge.segmentation.superpixels_batch`).
        targets: ``(N,)`` class ids.
        cfg: the backbone's preprocessing config (``mean``, ``std``, ``interpolation``).
        train: augment (``RandomResizedCrop((H, W), scale=(0.6, 1))`` + ``RandomHorizontalFlip``, as arm B).

    Shapes:
        - item: ``((3, H, W) float32, (H, W) int64, label)``.

    Example:
        >>> ds = SegmentedImages(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), int), [0, 1], cfg,
        ...                      train=True)  # doctest: +SKIP
        >>> [t.shape for t in ds[0][:2]]  # doctest: +SKIP
        [torch.Size([3, 8, 8]), torch.Size([8, 8])]
    """

    def __init__(self, images: np.ndarray, segments: Any, targets: Any, cfg: Any, *, train: bool) -> None:
        if len(images) != len(segments) or len(images) != len(targets):
            raise ValueError(
                f"got {len(images)} images, {len(segments)} segment maps and {len(targets)} targets; "
                "give one segment map and one target per image"
            )
        if tuple(np.shape(segments)[1:3]) != tuple(np.shape(images)[1:3]):
            raise ValueError(
                f"segment maps are {tuple(np.shape(segments)[1:3])} but images are "
                f"{tuple(np.shape(images)[1:3])}; segment the images at the size they are given"
            )
        self.images, self.segments, self.train = images, segments, train
        self.targets = np.asarray(targets, dtype=np.int64)
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
        if train:
            from torchvision.transforms import v2

            size = (int(np.shape(images)[1]), int(np.shape(images)[2]))  # (H, W): a crop keeps the shape
            interp = v2.InterpolationMode(getattr(cfg, "interpolation", "bilinear"))
            self.augment = v2.Compose(
                [
                    v2.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=interp, antialias=True),
                    v2.RandomHorizontalFlip(),
                ]
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1)  # (3, S, S) uint8
        seg = torch.as_tensor(np.asarray(self.segments[i]), dtype=torch.int64)
        if self.train:
            from torchvision import tv_tensors

            x, seg = self.augment(tv_tensors.Image(x), tv_tensors.Mask(seg))  # nearest for the Mask
            x, seg = x.as_subclass(Tensor), seg.as_subclass(Tensor)
        return (x.float().div_(255.0) - self.mean) / self.std, seg, int(self.targets[i])


def _split(batch: Any) -> tuple[tuple[Tensor, Tensor], Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise TypeError(
            "the loader must yield (images, segments, labels) batches (a DataLoader over SegmentedImages); "
            f"got {type(batch).__name__}"
        )
    return (batch[0], batch[1]), batch[2]


def _inputs(batch: Any) -> tuple[Tensor, Tensor]:
    return _split(batch)[0]


def _check(model: nn.Module, loader: Any, name: str, num_classes: int | None) -> int:
    """First batch: float images, integer segment maps of the images' size, labels in range."""
    try:
        (x, seg), y = _split(next(iter(loader)))
    except StopIteration:
        raise ValueError(f"{name} is empty (0 batches); give it at least one labelled image") from None
    if not x.is_floating_point() or x.dim() != 4:
        raise TypeError(f"{name}: images must be (B, 3, H, W) float; got {x.dtype} {tuple(x.shape)}")
    if seg.is_floating_point() or tuple(seg.shape) != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"{name}: segments must be integer maps (B, H, W) = {(x.shape[0], *x.shape[2:])}; got "
            f"{seg.dtype} {tuple(seg.shape)}"
        )
    n = num_classes if num_classes is not None else int(getattr(model, "num_classes", 0))
    if n < 1:
        raise ValueError(
            f"{name}: cannot tell the model's number of classes; give it a num_classes attribute"
        )
    targets = torch.as_tensor(getattr(loader.dataset, "targets", y))
    if int(targets.min()) < 0 or int(targets.max()) >= n:
        raise ValueError(
            f"{name} has labels in [{int(targets.min())}, {int(targets.max())}]; the model has {n} classes"
        )
    return n


#: Batches of :class:`SegmentedImages`: ``(images, segments, labels)``.
SEGMENTED_IMAGES = BatchFormat(
    name="segmented images",
    split=_split,
    inputs=_inputs,
    check=_check,
    shapes=(
        "    - images: ``(B, 3, H, W)`` float normalised; segments: ``(B, H, W)`` int64.\n"
        "    - labels: ``(B,)`` int64 in ``[0, num_classes)``; logits ``(B, num_classes)``."
    ),
)

fit = bind_format(
    _engine.fit,
    SEGMENTED_IMAGES,
    module=__name__,
    example=(
        "    >>> model = CNNGraphClassifier(create_backbone('efficientnet_lite0', num_classes=2), 2)\n"
        "    >>> hist = fit(model, DataLoader(SegmentedImages(..., train=True), 32, shuffle=True), epochs=4)"
    ),
)
predict = bind_format(
    _engine.predict,
    SEGMENTED_IMAGES,
    module=__name__,
    example="    >>> preds, probs = predict(model, DataLoader(SegmentedImages(..., train=False), 64))",
)
