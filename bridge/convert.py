"""Image -> graph: :class:`ImageToGraph` and the dense view :func:`to_dense`.

The two steps of the lecture notes: an image becomes nodes (superpixels or patches) with a feature
matrix ``X`` (N x F) and an adjacency matrix ``A`` (N x N). :class:`ImageToGraph` returns them in
PyG's sparse form, ``Data(x, edge_index, edge_attr, pos, y)``; :func:`to_dense` gives ``(A, X)``.

Example:
    >>> import numpy as np
    >>> img = np.zeros((32, 32, 3), np.uint8)
    >>> img[:16, 16:] = (255, 0, 0); img[16:, :16] = (0, 255, 0); img[16:, 16:] = (0, 0, 255)
    >>> conv = ImageToGraph(n_segments=4)
    >>> data = conv(img, label=1)
    >>> data.num_nodes, data.edge_index.shape[1], data.y.tolist()
    (4, 8, [1])
    >>> A, X = to_dense(data)
    >>> A.shape, X.shape
    (torch.Size([4, 4]), torch.Size([4, 8]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from gnn.models import check_edge_index

from .checks import (
    all_finite,
    as_float_image,
    check_backbone,
    check_label,
    check_labels,
    check_positive_int,
    check_size,
)
from .edges import (
    batch_both_directions,
    batch_knn_edges,
    batch_touching_pairs,
    both_directions,
    knn_edges,
    label_runs,
    touching_pairs,
)
from .features import (
    DEFAULT_STAGES,
    FEATURES,
    BackboneLike,
    CNNNodeFeatures,
    batch_hand_features,
    check_features,
    feature_names,
    hand_features,
)
from .segmentation import as_float_batch, check_options, get_segmentation
from .slic import repeat_blocks

__all__ = ["EDGES", "FORMAT_VERSION", "ImageToGraph", "prepare_many", "to_dense"]

EDGES = ("region", "knn", "knn_feature")
#: Version of the graph layout produced here; part of :meth:`ImageToGraph.config` (cache key).
FORMAT_VERSION = 1
# keys of ImageToGraph.config() that a segmentation back-end's name must not take (config[method] = version)
_CONFIG_KEYS = (
    *("format", "n_segments", "compactness", "method", "sigma", "edges", "k", "features"),
    *("keep_segments", "cnn", "skimage"),
)


def _edge_attr(
    edge_index: np.ndarray,
    pos: np.ndarray,
    region_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    n: int,
    height: int,
    width: int,
) -> np.ndarray:
    """``(E, 2)``: [shared border length / sqrt(H*W), centroid distance]."""
    row, col = edge_index
    code = np.minimum(row, col) * n + np.maximum(row, col)
    lo, hi, counts = region_pairs
    known = lo * n + hi  # sorted
    border = np.zeros(row.shape[0], np.float32)
    if known.size and row.size:
        at = np.clip(np.searchsorted(known, code), 0, known.size - 1)
        hit = known[at] == code
        border[hit] = counts[at[hit]]
    border /= math.sqrt(height * width)
    dist = np.linalg.norm(pos[row] - pos[col], axis=1).astype(np.float32)
    return np.stack([border, dist], axis=1)


def prepare_many(
    params: dict[str, Any],
    images: Sequence[Any],
    *,
    first: int | None = None,
    name: str = "images[{}]",
    segments: Sequence[Any] | None = None,
) -> list[dict[str, np.ndarray]]:
    """The per-image, CPU-only half of the conversion of several images (numpy in, numpy out).

    What :meth:`ImageToGraph.prepare` does, as a module-level function of the picklable
    :meth:`ImageToGraph.params`, so that worker processes can run it. A batched segmentation
    back-end (``slic_torch``) segments equal-sized images in one pass; the other steps run per image
    on ``torch.get_num_threads()`` threads.

    Args:
        params: :meth:`ImageToGraph.params` of the converter.
        images: the images (as :func:`bridge.segmentation.superpixels` accepts them).
        first: index of ``images[0]`` in the whole dataset, for error messages.
        name: how an image is named in error messages, formatted with its index.
        segments: one ``(H, W)`` label map per image (ids ``0 .. N-1``) to use instead of segmenting,
            e.g. the superpixels of an intact image for perturbed copies of it.

    Returns:
        One dict per image, as :meth:`ImageToGraph.prepare` returns.

    Raises:
        ValueError: a bad image, named by its index (``name`` formatted with ``first + i``; without
            ``first`` a lone image's error has no prefix); every image is checked before any work.

    Example:
        >>> parts = prepare_many(ImageToGraph(n_segments=4).params(), [np.zeros((8, 8), np.uint8)] * 2)
        >>> [p["x"].shape for p in parts]
        [(1, 4), (1, 4)]
    """

    def where(i: int) -> str:
        return "" if first is None and len(images) == 1 else name.format((first or 0) + i) + ": "

    if segments is not None and len(segments) != len(images):
        raise ValueError(
            f"segments has {len(segments)} label maps for {len(images)} images; give one per image"
        )
    imgs = []
    given: list[np.ndarray | None] = [None] * len(images)
    for i, image in enumerate(images):  # every check before any work, so that an error names its image
        try:
            imgs.append(as_float_image(image))
            check_size(imgs[-1].shape[0], imgs[-1].shape[1], params["n_segments"])
            if segments is not None:
                seg = check_labels(segments[i], name="segments")[0]
                if seg.shape != imgs[-1].shape[:2]:
                    raise ValueError(
                        f"segments has shape {seg.shape} but the image is {imgs[-1].shape[:2]}; "
                        "give the label map of this image"
                    )
                given[i] = seg
        except ValueError as err:
            raise ValueError(f"{where(i)}{err}") from None
    backend = get_segmentation(params["method"])
    opts = {k: params[k] for k in ("n_segments", "compactness", "sigma")}
    batched: list[np.ndarray | None] = given
    if segments is None and backend.batched and len(imgs) > 1:
        batched = list(backend.segment_many(imgs, **opts))

    def one(i: int) -> dict[str, np.ndarray]:
        try:
            labels = batched[i]
            return _finish(params, imgs[i], backend.segment(imgs[i], **opts) if labels is None else labels)
        except ValueError as err:
            raise ValueError(f"{where(i)}{err}") from None

    threads = min(len(imgs), torch.get_num_threads())
    if threads < 2:
        return [one(i) for i in range(len(imgs))]
    # numpy's bincounts and comparisons release the GIL: the torch threads' cores share the work
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(len(imgs))))


def _finish(params: dict[str, Any], img: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Region statistics and edges of one segmented image (``img`` checked, ``labels`` contiguous)."""
    n = int(labels.max()) + 1
    x, pos = hand_features(img, labels, n, params["features"])
    # border counts of touching regions (needed for every edge kind: edge_attr column 0)
    pairs = touching_pairs(labels, n)
    out = {"labels": labels, "x": x, "pos": pos, "pairs": np.stack(pairs).astype(np.int64)}
    if params["edges"] == "region":
        (ei,) = both_directions(pairs[0], pairs[1], n)
        out["edge_index"] = ei
    elif params["edges"] == "knn":
        out["edge_index"] = _knn(pos, params["k"])
    return out


def _too_few_nodes(k: int, n: int) -> str:
    """The message for an image whose ``n`` nodes cannot have ``k`` nearest neighbours each."""
    return (
        f"k={k} but the image gave only {n} nodes; k must be at most N - 1 = {n - 1} "
        f"(lower k, ask for more segments, or use edges='region')"
    )


def _knn(points: np.ndarray, k: int) -> np.ndarray:
    n = points.shape[0]
    if k >= n:
        raise ValueError(_too_few_nodes(k, n))
    ei, _ = knn_edges(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)), k)
    return ei.numpy()


class ImageToGraph:
    """Callable that turns an image into a :class:`torch_geometric.data.Data` graph.

    Nodes are SLIC superpixels or square patches (:func:`bridge.segmentation.superpixels`); node
    features are the chosen region statistics (:func:`bridge.features.node_features`) followed by
    CNN stage features pooled into each node when a ``backbone`` is given; edges are region
    adjacency (``"region"``), ``k`` nearest centroids (``"knn"``) or ``k`` nearest nodes in the
    (standardised) feature space (``"knn_feature"``). The input image is never modified.

    Output ``Data`` fields: ``x`` ``(N, F)`` float32; ``edge_index`` ``(2, E)`` long, undirected,
    sorted, no self loops; ``edge_attr`` ``(E, 2)`` float32 = [shared border length in pixel pairs
    divided by ``sqrt(H * W)`` (0 for k-NN edges between regions that do not touch), Euclidean
    distance of the normalised centroids]; ``pos`` ``(N, 2)`` float32 centroids ``(x, y)`` in
    ``[0, 1]``; ``y`` ``(1,)`` long when a label is given; ``segments`` ``(1, H, W)`` long label
    map when ``keep_segments`` (images of different sizes then cannot share a mini-batch).

    A ``(B, H, W, C)`` tensor batch (:meth:`batch_tensor`, also reached through :meth:`batch` and
    ``__call__`` with tensors) is converted in torch on its device, CPU or CUDA with the same code:
    segmentation (``slic_torch``), then, over the horizontal runs of equal ids of the label maps
    (:func:`bridge.edges.label_runs`), region adjacency, region statistics and CNN pooling, and the
    ``Data`` objects, all there; the graphs equal those of the NumPy path (:meth:`prepare` +
    :meth:`assemble`) up to float32 rounding of the features.

    Args:
        n_segments: superpixels / patches asked for.
        compactness: SLIC compactness.
        method: a segmentation back-end (:func:`bridge.segmentation.list_segmentations`):
            ``"slic_torch"`` (the default: SLIC in torch, batched, on the images' device), ``"slic"``
            (scikit-image), ``"grid"`` or one registered by the user.
        sigma: SLIC pre-smoothing.
        edges: ``"region"``, ``"knn"`` or ``"knn_feature"``.
        k: neighbours for the k-NN edge kinds (must be smaller than the node count of every image).
        features: region statistics from :data:`bridge.features.FEATURES` (may be empty with a backbone).
        backbone: optional cnn backbone (``cnn.create_backbone(...)``) for CNN node features.
        stages: backbone stages to pool (default: the last three; ``None`` = all); only with ``backbone``.
        batch_size: images per backbone forward pass.
        keep_segments: store the label map as ``data.segments``.

    Shapes:
        - image: ``(H, W)`` or ``(H, W, 3)``
        - data.x: ``(N, F)``; data.edge_index: ``(2, E)``; data.edge_attr: ``(E, 2)``; data.pos: ``(N, 2)``

    Example:
        >>> conv = ImageToGraph(n_segments=75, edges="region", features=("color_mean", "centroid"))
        >>> conv  # doctest: +NORMALIZE_WHITESPACE
        ImageToGraph(n_segments=75, compactness=10.0, method='slic_torch', sigma=0.0, edges='region', k=8,
        features=('color_mean', 'centroid'), backbone=None, stages=None, batch_size=32, keep_segments=True)
        >>> from skimage.data import astronaut
        >>> data = conv(astronaut(), label=3)
        >>> data.x.shape[1], data.y.tolist()
        (5, [3])
    """

    def __init__(
        self,
        *,
        n_segments: int = 75,
        compactness: float = 10.0,
        method: str = "slic_torch",
        sigma: float = 0.0,
        edges: str = "region",
        k: int = 8,
        features: Sequence[str] = ("color_mean", "color_std", "centroid"),
        backbone: BackboneLike | None = None,
        stages: Sequence[int] | None = DEFAULT_STAGES,
        batch_size: int = 32,
        keep_segments: bool = True,
    ) -> None:
        n_segments = check_options(n_segments, compactness, method, sigma)
        if method in _CONFIG_KEYS:
            raise ValueError(
                f"method={method!r} is also a key of ImageToGraph.config(); register the segmentation "
                f"back-end under another name"
            )
        if edges not in EDGES:
            raise ValueError(f"unknown edges {edges!r}; expected one of {', '.join(map(repr, EDGES))}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        features = check_features(features, allow_empty=True)
        if not features and backbone is None:
            raise ValueError(
                f"no node features: features is empty and backbone is None; choose some of {FEATURES} "
                f"or pass a cnn backbone"
            )
        if backbone is not None:
            check_backbone(backbone)
        elif stages is not None and (isinstance(stages, int) or tuple(stages) != DEFAULT_STAGES):
            raise ValueError(f"stages={stages!r} needs a backbone; pass backbone=cnn.create_backbone(...)")
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.method = method
        self.sigma = float(sigma)
        self.edges = edges
        self.k = int(k)
        self.features = features
        self.keep_segments = bool(keep_segments)
        self.batch_size = batch_size = check_positive_int(batch_size, "batch_size")
        self.cnn = (
            CNNNodeFeatures(backbone, stages=stages, batch_size=batch_size) if backbone is not None else None
        )

    # -- description ---------------------------------------------------------------------------
    @property
    def backbone(self) -> BackboneLike | None:
        return None if self.cnn is None else self.cnn.backbone

    @property
    def stages(self) -> list[int] | None:
        return None if self.cnn is None else self.cnn.stages

    def params(self) -> dict[str, Any]:
        """The picklable, backbone-free settings of the per-image half (:meth:`prepare`)."""
        return {
            "n_segments": self.n_segments,
            "compactness": self.compactness,
            "method": self.method,
            "sigma": self.sigma,
            "edges": self.edges,
            "k": self.k,
            "features": self.features,
        }

    def config(self) -> dict[str, Any]:
        """JSON-able configuration (the cache key of :class:`bridge.dataset.GraphDataset`).

        Includes the backbone's name, a SHA-256 of its weights, the stages and preprocessing, the
        scikit-image version (SLIC results may change between versions) and, for a segmentation
        back-end with a ``version`` (``slic_torch``), ``config[method] = version``.
        """
        import skimage

        cfg: dict[str, Any] = {"format": FORMAT_VERSION, **self.params()}
        cfg["features"] = list(self.features)
        cfg["keep_segments"] = self.keep_segments
        cfg["cnn"] = None if self.cnn is None else self.cnn.config()
        # skimage's lazy-loader stub (__init__.pyi) does not declare __version__; it exists at runtime.
        cfg["skimage"] = skimage.__version__  # type: ignore[attr-defined]
        version = get_segmentation(self.method).version
        if version is not None:  # the back-end's results change with its own version
            cfg[self.method] = version
        return cfg

    def feature_names(self, channels: int = 3) -> list[str]:
        """Column names of ``data.x`` (for images with ``channels`` colour channels)."""
        names = feature_names(self.features, channels)
        return names + (self.cnn.names() if self.cnn is not None else [])

    def __repr__(self) -> str:
        name = None if self.backbone is None else getattr(self.backbone, "name", type(self.backbone).__name__)
        return (
            f"{type(self).__name__}(n_segments={self.n_segments}, compactness={self.compactness}, "
            f"method={self.method!r}, sigma={self.sigma}, edges={self.edges!r}, k={self.k}, "
            f"features={self.features}, backbone={name!r}, stages={self.stages}, "
            f"batch_size={self.batch_size}, keep_segments={self.keep_segments})"
        )

    # -- the two halves ------------------------------------------------------------------------
    def prepare(self, image: Any) -> dict[str, np.ndarray]:
        """Per-image half: segmentation, region statistics and (non-feature) edges, numpy only.

        Safe to run in worker processes; :meth:`assemble` finishes the graphs.

        Returns:
            dict with ``labels`` ``(H, W)``, ``x`` ``(N, F_hand)``, ``pos`` ``(N, 2)``, ``pairs``
            ``(3, P)`` (touching region pairs and border counts) and, except for
            ``edges="knn_feature"``, ``edge_index`` ``(2, E)``.
        """
        return prepare_many(self.params(), [image])[0]

    def assemble(
        self,
        images: Sequence[Any],
        parts: Sequence[dict[str, np.ndarray]],
        labels: Sequence[Any] | None = None,
        *,
        first: int | None = None,
        name: str = "images[{}]",
    ) -> list[Data]:
        """Main-process half: batched CNN features, feature-space edges, ``Data`` objects.

        Args:
            images: the images given to :meth:`prepare` (only read when a backbone is set).
            parts: the outputs of :meth:`prepare`, one per image.
            labels: optional class ids, one per image.
            first: index of ``images[0]`` in the whole dataset, for error messages.
            name: how an image is named in error messages, formatted with its index.

        Raises:
            ValueError: node features that are NaN or infinite (e.g. from a backbone with NaN weights),
                naming the image and the feature columns; for ``edges="knn_feature"``, an image with
                ``k`` or fewer nodes, named by its index.
        """
        if labels is not None:
            labels = [check_label(v) for v in labels]
            if len(labels) != len(parts):
                raise ValueError(
                    f"got {len(parts)} images but {len(labels)} labels; expected one label per image"
                )
        cnn_feats: list[torch.Tensor | None] = [None] * len(parts)
        if self.cnn is not None:
            cnn_feats = list(self.cnn(images, [p["labels"] for p in parts]))
        out = []
        for i, part in enumerate(parts):
            lab = part["labels"]
            n = int(part["x"].shape[0])
            x = torch.from_numpy(part["x"])
            cnn_x = cnn_feats[i]
            if cnn_x is not None:
                x = torch.cat([x, cnn_x], dim=1)
            if not all_finite(x):
                self._non_finite(x, i, first=first, count=len(parts), name=name)
            if "edge_index" in part:
                ei = part["edge_index"]
            else:
                z = x.numpy().astype(np.float64)
                sd = z.std(axis=0)
                z = (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
                try:
                    ei = _knn(z, self.k)
                except ValueError as err:  # named like the errors of prepare_many
                    where = "" if first is None and len(parts) == 1 else name.format((first or 0) + i) + ": "
                    raise ValueError(f"{where}{err}") from None
            pairs = part["pairs"]
            attr = _edge_attr(ei, part["pos"], (pairs[0], pairs[1], pairs[2]), n, *lab.shape)
            data = Data(
                x=x,
                edge_index=torch.from_numpy(np.ascontiguousarray(ei, dtype=np.int64)),
                edge_attr=torch.from_numpy(attr),
                pos=torch.from_numpy(part["pos"]),
            )
            if labels is not None:
                data.y = torch.tensor([labels[i]], dtype=torch.long)
            if self.keep_segments:
                data.segments = torch.from_numpy(lab.astype(np.int64, copy=False)).unsqueeze(0)
            out.append(data)
        return out

    def _non_finite(self, x: torch.Tensor, i: int, *, first: int | None, count: int, name: str) -> None:
        """Raise the error for image ``i`` whose node features hold NaN / inf, naming the columns."""
        where = "image" if first is None and count == 1 else name.format((first or 0) + i)
        cols = torch.nonzero(~torch.isfinite(x).all(dim=0)).flatten().tolist()
        names = next((n for n in (self.feature_names(3), self.feature_names(1)) if len(n) == x.shape[1]), [])
        shown = [names[c] if c < len(names) else str(c) for c in cols[:5]]
        source = (
            "the CNN backbone gives NaN / inf (check its weights, e.g. after a diverged fine-tuning)"
            if self.cnn is not None
            else "check the image"
        )
        raise ValueError(
            f"{where}: the node features contain NaN or infinite values in {len(cols)} column(s) "
            f"({', '.join(shown)}{', ...' if len(cols) > 5 else ''}); {source}"
        )

    # -- public calls --------------------------------------------------------------------------
    def __call__(self, image: Any, label: Any = None) -> Data:
        """Convert one image (and optional integer class label) into a graph; a tensor image is
        converted on its device (:meth:`batch_tensor`)."""
        if isinstance(image, torch.Tensor) and image.ndim in (2, 3):
            x_img = as_float_batch(image.unsqueeze(0), name="image", single=True)  # errors name one image
            levels = _uint8_levels(image, x_img)
            return self._convert_tensor(x_img, None if label is None else [label], levels=levels)[0]
        return self.batch([image], None if label is None else [label])[0]

    def batch_tensor(
        self,
        images: torch.Tensor,
        labels: Sequence[Any] | torch.Tensor | None = None,
        *,
        segments: torch.Tensor | Sequence[Any] | None = None,
        collate: bool = False,
    ) -> Any:
        """Convert a tensor batch into graphs with torch ops on the batch's device (CPU or CUDA).

        Segmentation (the back-end's ``tensor`` function: ``slic_torch`` stays on the device; others
        segment a host copy), the label runs (:func:`bridge.edges.label_runs`, computed once, of the
        back-end's working-resolution map where it has one, ``segment_tensor_blocks``: pixel counts,
        centroids, borders and, where the stage maps' cells are whole blocks, the CNN pooling count
        every label's block from it, with the same results), node
        features (:func:`bridge.features.batch_hand_features`, then CNN features pooled on the
        backbone's device), region adjacency (:func:`bridge.edges.batch_touching_pairs`), k-NN edges
        (:func:`bridge.edges.batch_knn_edges`) and edge attributes are computed for the whole batch at
        once in global node ids, then cut into one ``Data`` per image; nothing goes through the host
        except node and edge counts.
        The graphs equal those of :meth:`batch` on the same images (features up to float32 rounding).

        Args:
            images: ``(B, H, W, C)`` (or ``(B, H, W)``) uint8 or float ``[0, 1]`` tensor, any device.
            labels: optional class ids, one per image (a sequence or a ``(B,)`` tensor).
            segments: optional ``(B, H, W)`` label maps (a tensor or array, or ``B`` ``(H, W)`` maps; ids
                ``0 .. N_b - 1`` per image) used instead of segmenting.
            collate: return one PyG ``Batch`` of the ``B`` graphs, equal to ``Batch.from_data_list``
                of the list (the same fields, ``batch``, ``ptr``, ``num_graphs`` and
                ``to_data_list()``), made from the batch's tensors without a ``Data`` per image: what
                a model's forward takes.

        Returns:
            ``B`` graphs whose tensors lie on the images' device (CNN features computed on the
            backbone's device are moved there), or with ``collate`` one ``Batch`` of them. The
            graphs' tensors are views into the batch's tensors (no copy per graph): ``torch.save`` of
            one graph writes the storage of the whole batch, so clone a graph (``graph.clone()``)
            before saving it alone.

        Raises:
            ValueError: a bad batch (see :func:`bridge.segmentation.as_float_batch`), more segments
                than pixels, bad ``segments``, too few nodes for ``k``, non-finite node features.

        Shapes:
            - images: ``(B, H, W, C)``
            - output[b]: ``x`` ``(N_b, F)``, ``edge_index`` ``(2, E_b)``, ``edge_attr`` ``(E_b, 2)``,
              ``pos`` ``(N_b, 2)``, ``segments`` ``(1, H, W)``

        Example:
            >>> imgs = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
            >>> imgs[:, :16, 16:] = 255
            >>> graphs = ImageToGraph(n_segments=4).batch_tensor(imgs, labels=[0, 1])
            >>> [(g.num_nodes, g.edge_index.shape[1], g.y.item()) for g in graphs]
            [(4, 8, 0), (4, 8, 1)]
            >>> batch = ImageToGraph(n_segments=4).batch_tensor(imgs, collate=True)
            >>> batch.num_graphs, batch.x.shape[0], batch.ptr.tolist()
            (2, 8, [0, 4, 8])
        """
        x_img = as_float_batch(images)
        return self._convert_tensor(
            x_img, labels, segments=segments, collate=collate, levels=_uint8_levels(images, x_img)
        )

    def _convert_tensor(
        self,
        x_img: torch.Tensor,
        labels: Sequence[Any] | torch.Tensor | None = None,
        *,
        segments: torch.Tensor | Sequence[Any] | None = None,
        collate: bool = False,
        levels: torch.Tensor | None = None,
    ) -> Any:
        """:meth:`batch_tensor` of a batch already checked by :func:`bridge.segmentation.as_float_batch`;
        ``levels``: the uint8 batch it was made from (:func:`bridge.features.batch_hand_features`)."""
        b, h, w, c = x_img.shape
        dev = x_img.device
        check_size(h, w, self.n_segments)
        ys = None
        if labels is not None:
            label_list = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
            ys = [check_label(v) for v in label_list]
            if len(ys) != b:
                raise ValueError(f"got {b} images but {len(ys)} labels; expected one label per image")
        fy = fx = 1
        if segments is None:
            backend = get_segmentation(self.method)
            # labels at the segmentation's working resolution (every one standing for a fy x fx block)
            small, fy, fx = backend.segment_tensor_blocks(
                x_img, n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma
            )
        else:
            small = _checked_segments(segments, (b, h, w), dev)
        # the runs of the small map, shared by the region statistics (pixel counts and centroids; colour
        # from the runs repeated to full resolution), the CNN pooling (where the stage maps' cells are
        # whole blocks) and the region adjacency, each counting a run's pixels fy x fx times: the same
        # counts as the full-resolution map's, without a pass over it
        small_runs = label_runs(small)
        image_of_run = torch.div(small_runs.first, small[0].numel(), rounding_mode="floor")
        ends = torch.zeros(2, b, dtype=torch.int64, device=dev)  # every image's largest and smallest id
        ends[0].scatter_reduce_(0, image_of_run, small_runs.label, "amax", include_self=False)
        ends[1].scatter_reduce_(0, image_of_run, small_runs.label, "amin", include_self=False)
        n_nodes = ends[0] + 1
        largest, lowest = ends.tolist()  # the one read-back: graph sizes, to cut the batch into graphs
        if min(lowest) < 0:  # given segments are checked before; a back-end's labels here
            i = lowest.index(min(lowest))
            raise ValueError(
                f"segmentation back-end {self.method!r} gave images[{i}] negative ids (min {lowest[i]}); "
                "a back-end must give ids 0..N-1 in every label map"
            )
        counts = [v + 1 for v in largest]
        n_max, total = max(counts), sum(counts)
        if self.edges != "region" and self.k >= min(counts):  # named like the errors of batch()
            i = counts.index(min(counts))
            raise ValueError(f"{f'images[{i}]: ' if b > 1 else ''}{_too_few_nodes(self.k, counts[i])}")
        x, pos = batch_hand_features(
            x_img, small, n_nodes, self.features, runs=small_runs, blocks=(fy, fx), levels=levels
        )
        if self.cnn is not None:
            # ids checked above (none below 0, n_nodes from the largest): no second check
            pooled = self.cnn.pool_batch(x_img, small, n_nodes, runs=small_runs, blocks=(fy, fx), check=False)
            x = torch.cat([x, pooled.to(dev)], dim=1)
        if not all_finite(x):
            finite = torch.isfinite(x).all(dim=1)
            bad = int(torch.repeat_interleave(torch.arange(b, device=dev), n_nodes)[~finite][0])
            start = sum(counts[:bad])
            self._non_finite(
                x[start : start + counts[bad]].cpu(), bad, first=None, count=b, name="images[{}]"
            )
        lo, hi, border = batch_touching_pairs(small, n_nodes, n_max=n_max, runs=small_runs, blocks=(fy, fx))
        if self.edges == "region":
            ei, border_e = batch_both_directions(lo, hi, total, border.to(torch.float32))
        else:
            if self.edges == "knn":
                points = pos
            else:  # standardised node features, per graph (population std, 1 where constant)
                points = _standardise(x.to(torch.float64), n_nodes, total).to(torch.float32)
            ei = batch_knn_edges(points, n_nodes, self.k, n_max=n_max)
            known = lo * total + hi  # sorted
            code = torch.minimum(ei[0], ei[1]) * total + torch.maximum(ei[0], ei[1])
            border_e = torch.zeros(ei.shape[1], dtype=torch.float32, device=dev)
            if known.numel() and code.numel():
                at = torch.searchsorted(known, code).clamp_(max=known.numel() - 1)
                hit = known.index_select(0, at) == code
                border_e = torch.where(hit, border.index_select(0, at).to(torch.float32), border_e)
        border_e = border_e / math.sqrt(h * w)
        dist = (pos.index_select(0, ei[0]) - pos.index_select(0, ei[1])).norm(dim=1)
        attr = torch.stack([border_e, dist], dim=1)
        image_of_node = torch.repeat_interleave(torch.arange(b, device=dev), n_nodes, output_size=total)
        edge_image = image_of_node.index_select(0, ei[0])  # edges are grouped by graph (sorted by source)
        edge_counts = torch.bincount(edge_image, minlength=b).tolist()
        seg = repeat_blocks(small, fy, fx) if self.keep_segments else None
        if collate:
            return _collated(x, ei, attr, pos, image_of_node, counts, edge_counts, ys, seg)
        offsets = torch.cumsum(n_nodes, 0) - n_nodes
        ei = ei - offsets.index_select(0, edge_image)
        parts = zip(
            torch.split(x, counts),
            torch.split(pos, counts),
            torch.split(ei, edge_counts, dim=1),
            torch.split(attr, edge_counts),
        )
        out = []
        for i, (xi, pi, ei_i, ai) in enumerate(parts):
            data = Data(x=xi, edge_index=ei_i, edge_attr=ai, pos=pi)
            if ys is not None:
                data.y = torch.tensor([ys[i]], dtype=torch.long, device=dev)
            if seg is not None:
                data.segments = seg[i : i + 1]
            out.append(data)
        return out

    def batch(
        self,
        images: Sequence[Any],
        labels: Sequence[Any] | None = None,
        *,
        segments: Sequence[Any] | None = None,
    ) -> list[Data]:
        """Convert many images: segmentation (in one pass for a batched back-end such as ``"slic_torch"``)
        and CNN features in chunks of ``batch_size``.

        ``segments`` (one ``(H, W)`` label map per image) skips the segmentation: the graphs get those
        nodes, e.g. the superpixels of an intact image for perturbed copies of it, with node features
        computed from the given pixels. A ``(B, H, W, C)`` tensor goes to :meth:`batch_tensor`
        (converted on its device)."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return self.batch_tensor(images, labels, segments=segments)  # type: ignore[arg-type]
        images = list(images)
        if labels is not None:
            labels = list(labels)
            if len(labels) != len(images):
                raise ValueError(
                    f"got {len(images)} images but {len(labels)} labels; expected one label per image"
                )
        if segments is not None and len(segments) != len(images):
            raise ValueError(f"got {len(images)} images but {len(segments)} segment maps; give one per image")
        parts = []
        for start in range(0, len(images), self.batch_size):
            stop = start + self.batch_size
            parts.extend(
                prepare_many(
                    self.params(),
                    images[start:stop],
                    first=start if len(images) > 1 else None,
                    segments=None if segments is None else segments[start:stop],
                )
            )
        return self.assemble(images, parts, labels)


def _collated(
    x: torch.Tensor,
    edge_index: torch.Tensor,
    edge_attr: torch.Tensor,
    pos: torch.Tensor,
    batch: torch.Tensor,
    counts: list[int],
    edge_counts: list[int],
    ys: list[int] | None,
    segments: torch.Tensor | None,
) -> Any:
    """The ``Batch`` that ``Batch.from_data_list`` makes of the graphs of :meth:`ImageToGraph.batch_tensor`,
    from the batch-wide tensors (global node ids): the fields, ``batch``, ``ptr``, and the slice and
    increment tables that ``to_data_list()`` and ``get_example`` read (on the CPU, as PyG keeps them).

    Shapes:
        - x: ``(N, F)``; edge_index: ``(2, E)`` global ids, grouped by graph; edge_attr: ``(E, 2)``;
          pos: ``(N, 2)``; batch: ``(N,)``; counts, edge_counts: ``B`` nodes and edges per graph;
          segments: ``(B, H, W)`` or None
    """
    from torch_geometric.data import Batch

    b, dev = len(counts), x.device
    zero = torch.zeros(1, dtype=torch.int64)
    node_ptr = torch.cat([zero, torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)])
    edge_ptr = torch.cat([zero, torch.cumsum(torch.tensor(edge_counts, dtype=torch.int64), 0)])
    graph_ptr = torch.arange(b + 1)
    none = torch.zeros(b, dtype=torch.int64)
    out = Batch(_base_cls=Data)
    out.x, out.edge_index, out.edge_attr, out.pos = x, edge_index, edge_attr, pos
    slices = {"x": node_ptr, "edge_index": edge_ptr, "edge_attr": edge_ptr, "pos": node_ptr}
    incs = {"x": none, "edge_index": node_ptr[:-1], "edge_attr": none, "pos": none}
    if ys is not None:
        out.y = torch.tensor(ys, dtype=torch.long, device=dev)
        slices["y"], incs["y"] = graph_ptr, none
    if segments is not None:
        out.segments = segments
        slices["segments"], incs["segments"] = graph_ptr, none
    out.batch, out.ptr = batch, node_ptr.to(dev)
    out._num_graphs, out._slice_dict, out._inc_dict = b, slices, incs
    return out


def _uint8_levels(images: torch.Tensor, x_img: torch.Tensor) -> torch.Tensor | None:
    """The uint8 images that :func:`bridge.segmentation.as_float_batch` made ``x_img`` from, in its
    ``(B, H, W, C)`` shape (colour statistics from whole-number sums of the levels: exact); ``None``
    for float images."""
    return images.detach().reshape(x_img.shape) if images.dtype == torch.uint8 else None


def _checked_segments(segments: Any, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """Given label maps as one ``(B, H, W)`` int64 tensor on ``device``; ids ``0 .. N_b - 1``, each used.

    ``segments`` may be a ``(B, H, W)`` tensor or array, or a sequence of ``B`` ``(H, W)`` maps (tensors
    or arrays). The checks are a few reductions over the whole batch; an error names the first bad map.

    Shapes:
        - segments: ``(B, H, W)`` or ``[(H, W)] * B``
        - output: ``(B, H, W)``
    """
    want = f"integer label maps of shape {shape} (one (H, W) map per image)"
    try:
        if isinstance(segments, torch.Tensor):
            seg = segments.detach()
        elif isinstance(segments, (list, tuple)) and any(isinstance(s, torch.Tensor) for s in segments):
            seg = torch.stack([torch.as_tensor(_contiguous(s)).detach().to(device) for s in segments])
        else:
            seg = torch.from_numpy(np.ascontiguousarray(segments))  # also a flipped view segs[:, :, ::-1]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"segments could not be read as a tensor ({err}); expected {want}") from None
    if tuple(seg.shape) != shape or seg.is_floating_point() or seg.is_complex():
        raise ValueError(f"segments has dtype {seg.dtype} and shape {tuple(seg.shape)}; expected {want}")
    seg = seg.to(device, torch.int64)
    b = shape[0]
    lo, hi = seg.flatten(1).aminmax(dim=1)
    if bool((lo < 0).any()):
        i = int(torch.nonzero(lo < 0)[0, 0])
        raise ValueError(
            f"segments[{i}] contains negative ids (min {int(lo[i])}); expected ids 0..N-1 in every map "
            f"(use bridge.segmentation.relabel on each label map)"
        )
    size = hi + 1
    offsets = torch.cumsum(size, 0) - size
    used = torch.bincount((seg + offsets.view(b, 1, 1)).reshape(-1), minlength=int(size.sum()))
    if not bool((used > 0).all()):
        first = int(torch.nonzero(used == 0)[0, 0])
        i = int(torch.searchsorted(offsets, torch.tensor(first, device=device), right=True)) - 1
        raise ValueError(
            f"segments[{i}] has holes in its ids: id {first - int(offsets[i])} of 0..{int(hi[i])} is unused; "
            f"expected contiguous ids 0..N-1 in every map (use bridge.segmentation.relabel on each label map)"
        )
    return seg


def _contiguous(value: Any) -> Any:
    """A NumPy array as a C-contiguous one (torch cannot wrap negative strides); anything else as is."""
    return np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value


def _standardise(z: torch.Tensor, n_nodes: torch.Tensor, total: int) -> torch.Tensor:
    """Columns of ``(N, F)`` node features standardised per graph (mean 0, population std 1; std 0 -> 1)."""
    dev = z.device
    b = int(n_nodes.numel())
    image = torch.repeat_interleave(torch.arange(b, device=dev), n_nodes, output_size=total)
    count = n_nodes.to(z.dtype).unsqueeze(1)
    mean = torch.zeros(b, z.shape[1], dtype=z.dtype, device=dev).index_add_(0, image, z) / count
    dev_sq = (z - mean.index_select(0, image)) ** 2
    sd = torch.sqrt(torch.zeros_like(mean).index_add_(0, image, dev_sq) / count)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return (z - mean.index_select(0, image)) / sd.index_select(0, image)


def to_dense(data: Data, *, weighted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjacency matrix ``A`` and feature matrix ``X`` of a graph.

    Args:
        data: a graph with ``x`` and ``edge_index`` (``edge_attr`` needed when ``weighted``).
        weighted: ``A[i, j]`` = edge weight instead of 1: ``data.edge_weight`` when present, else
            the first column of ``data.edge_attr`` (the normalised border length for
            :class:`ImageToGraph` graphs).

    Returns:
        ``(A, X)``: ``A`` ``(N, N)`` float32, symmetric (an edge in one direction counts for both),
        zero diagonal unless the graph has self loops; ``X`` = ``data.x`` ``(N, F)``.

    Raises:
        ValueError: ``data`` without ``x`` / ``edge_index``, an edge index outside ``0 .. N-1`` (named
            with ``N``), ``x`` rows that do not match ``num_nodes``, or ``weighted`` without finite
            weights.
        TypeError: a non-integer ``edge_index``.

    Shapes:
        - A: ``(N, N)``
        - X: ``(N, F)``

    Example:
        >>> d = Data(x=torch.ones(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]))
        >>> to_dense(d)[0].tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    if getattr(data, "x", None) is None or getattr(data, "edge_index", None) is None:
        raise ValueError("data needs x (N, F) and edge_index (2, E); got a graph without them")
    x = data.x
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"data.x must be a 2-D tensor (N, F); got {shape}")
    n = int(data.num_nodes) if data.num_nodes is not None else int(x.shape[0])
    if x.shape[0] != n:
        raise ValueError(
            f"data.x has {x.shape[0]} rows but data.num_nodes is {n}; expected one feature row per node "
            f"(fix data.num_nodes or data.x)"
        )
    ei = data.edge_index
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"data.edge_index has shape {tuple(ei.shape)}; expected (2, E)")
    if ei.is_floating_point() or ei.is_complex() or ei.dtype == torch.bool:
        raise TypeError(f"data.edge_index must hold integer node indices (torch.long); got dtype {ei.dtype}")
    check_edge_index(ei, n)
    if weighted:
        w = getattr(data, "edge_weight", None)
        if w is None:
            attr = getattr(data, "edge_attr", None)
            if attr is None:
                raise ValueError(
                    "weighted=True needs data.edge_weight or data.edge_attr; the graph has neither"
                )
            w = attr[:, 0] if attr.ndim == 2 else attr
        w = w.to(torch.float32)
        if w.shape != (ei.shape[1],):
            raise ValueError(
                f"the edge weights have shape {tuple(w.shape)}; expected one per edge ({ei.shape[1]},)"
            )
        if not bool(torch.isfinite(w).all()):
            raise ValueError(
                "the edge weights (data.edge_weight, else data.edge_attr[:, 0]) contain NaN or inf; "
                "expected finite weights (fix them, or use weighted=False)"
            )
    else:
        w = torch.ones(ei.shape[1], dtype=torch.float32, device=ei.device)
    A = torch.zeros(n, n, dtype=torch.float32, device=ei.device)
    A[ei[0], ei[1]] = w
    A = torch.where(A != 0, A, A.T)
    return A, x
