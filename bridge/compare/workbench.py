"""The workbench every arm shares: data view and split, frozen backbone, embeddings, graphs, timing.

Each piece is computed on first use and kept (an arm that needs no graphs never builds them), so a run
that resumes with only CNN arms left never segments an image.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from bridge.compare.data import DataView, prepare_data

if TYPE_CHECKING:
    from bridge.compare.config import CompareConfig
    from bridge.compare.rundir import RunFolder
    from cnn.backbones import Backbone

__all__ = ["Embeddings", "FrozenView", "GraphSet", "Speeds", "Workbench", "scale_of"]


#: A feature's std is floored at this fraction of the median std over features (:func:`scale_of`).
STD_FLOOR = 0.1


def scale_of(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale ``(F,)`` of ``(N, F)`` training rows, for standardising ``(x - mean) / scale``.

    The scale is each feature's std, floored at ``STD_FLOOR`` times the median std over features
    (:func:`torch.quantile` at 0.5). Without the floor a feature constant on the training images (a ReLU
    channel that never fires on black digits, say) is divided by ~0, and a small activation on a test
    image becomes a value of 1e5 or more. On scikit-learn's digits (efficientnet_lite0, 98 of 1280
    embedding dims constant on the training split) a linear probe without weight decay reached a
    validation loss of 276 with a 1e-6 floor, 0.180 with scale 1 for constant features (scikit-learn's
    rule), 0.153 with this floor and 0.148 with 0.3x; 0.1x is within 0.005 of 0.3x and leaves more
    features their own std. Validation data only, never the test split: ``benchmarks/bench_std_floor.py``.

    Example:
        >>> mean, scale = scale_of(torch.tensor([[0.0, 1.0], [0.0, 3.0]]))
        >>> mean.tolist(), [round(v, 3) for v in scale.tolist()]
        ([0.0, 2.0], [0.071, 1.414])
    """
    sd = train.std(0)
    floor = STD_FLOOR * float(torch.quantile(sd.float(), 0.5)) if sd.numel() else 0.0
    return train.mean(0), sd.clamp_min(max(floor, 1e-6))


class Speeds(NamedTuple):
    """Inference speeds of an arm (:meth:`Workbench.speed_and_backbone`)."""

    #: the arm's fastest pass, images/s
    images_per_s: float
    #: the frozen backbone's fastest pass in the same rounds, images/s
    backbone_images_per_s: float
    #: median over the rounds of the arm's speed over the backbone's
    vs_backbone: float


@dataclasses.dataclass
class Embeddings:
    """Pooled frozen-backbone features of every image, standardised with train-set mean and std.

    Shapes:
        - values: ``(N, F)``; mean, std: ``(F,)`` (what was subtracted / divided by).
    """

    values: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    seconds: float


@dataclasses.dataclass
class GraphSet:
    """One graph per image, node features standardised with train-set mean and std (the same for every
    seed); ``seconds`` is the time to build (or load) them."""

    graphs: list[Any]
    seconds: float
    mean: torch.Tensor
    std: torch.Tensor


class FrozenView(nn.Module):
    """The frozen backbone as arm C's graph builder sees it: stage maps at the working size, from the
    same pass that gives the global embedding (arm A's input, C's ``u``), which it keeps.

    ``cfg.input_size`` is the working size, so node features are pooled from the very maps that give
    arm A its embedding (no resizing), and at inference one backbone pass serves both.

    Shapes:
        - features(x): ``(B, 3, S, S)`` -> ``[(B, C_i, h_i, w_i), ...]``; :attr:`embeddings` collects
          the ``(B, F)`` embeddings of the calls since :meth:`take`.

    Example:
        >>> from cnn.backbones import create_backbone
        >>> view = FrozenView(create_backbone("resnet18", weights=None).eval(), 64)
        >>> maps = view.features(torch.randn(2, 3, 64, 64))
        >>> view.take().shape, view.cfg.input_size
        (torch.Size([2, 512]), 64)
    """

    def __init__(self, backbone: Backbone, size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = dataclasses.replace(backbone.cfg, input_size=int(size))
        self.name = f"{backbone.name}@{int(size)}"
        self.feature_channels = list(backbone.feature_channels)
        self.embeddings: list[torch.Tensor] = []
        self.eval()

    def train(self, mode: bool = True) -> FrozenView:
        """Always in eval mode: the backbone is frozen (BatchNorm keeps its running statistics), whatever
        a caller restores after its own ``eval()``."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        emb, maps = self.backbone.embed_with_features(x)
        self.embeddings.append(emb)
        return maps

    def take(self) -> torch.Tensor:
        """The embeddings collected since the last call, ``(B, F)``, and forget them."""
        out = torch.cat(self.embeddings) if self.embeddings else torch.empty(0)
        self.embeddings = []
        return out


class Workbench:
    """Shared, lazily computed inputs of every arm: data, frozen backbone, embeddings, graphs, timing.

    Args:
        cfg: the comparison.
        folder: the run folder (models of the first seed go to ``folder.models_dir``).
        log: where progress lines go.
        progress: progress bars.
        download: ``False`` never downloads a dataset (a missing one raises ``DatasetNotAvailableError``).
    """

    def __init__(
        self,
        cfg: CompareConfig,
        folder: RunFolder,
        *,
        log: Callable[[str], None],
        progress: bool,
        download: bool = True,
    ) -> None:
        self.cfg, self.folder, self.log, self.progress = cfg, folder, log, progress
        self.download = download
        self._graphs: dict[bool, GraphSet] = {}

    def __repr__(self) -> str:
        return f"Workbench(data={self.cfg.data!r}, backbone={self.cfg.backbone!r}, folder={self.folder!r})"

    def backbone(self, num_classes: int | None = None) -> Backbone:
        """A fresh pretrained backbone (with a new ``num_classes`` head when given)."""
        from cnn.backbones import create_backbone

        return create_backbone(self.cfg.backbone, weights=self.cfg.weights, num_classes=num_classes)

    @functools.cached_property
    def device(self) -> torch.device:
        """Where frozen passes, graph building and inference run: ``cfg.device``, with ``"auto"`` the
        first GPU when there is one, else the CPU (training goes through Lightning, :meth:`fit_kwargs`)."""
        dev = self.cfg.device
        if dev == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device("cuda" if dev == "gpu" else dev)

    @functools.cached_property
    def frozen(self) -> Backbone:
        """The backbone in eval mode with every parameter frozen, on :attr:`device` (arms A and C)."""
        from cnn.freezing import set_parameter_requires_grad

        model = self.backbone()
        set_parameter_requires_grad(model, False)
        return model.eval().to(self.device)

    @functools.cached_property
    def frozen_view(self) -> FrozenView:
        """:class:`FrozenView` of :attr:`frozen` at the working image size (arm C's node features)."""
        return FrozenView(self.frozen, int(self.data.images.shape[1]))

    @functools.cached_property
    def data(self) -> DataView:
        """The working images (the backbone's view size unless ``cfg.image_size``) and the split."""
        pcfg = self.frozen.cfg
        size = self.cfg.image_size or pcfg.input_size
        resize_size = int(round(size / pcfg.crop_pct))
        return prepare_data(self.cfg, size, resize_size, self.log, download=self.download)

    def normalize(self, images: np.ndarray) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` float with the frozen backbone's mean and std."""
        from cnn.transforms import normalize_images

        return normalize_images(images, self.frozen.cfg.mean, self.frozen.cfg.std).to(self.device)

    @functools.cached_property
    def embeddings(self) -> Embeddings:
        """:class:`Embeddings` of every working image (one batched pass of the frozen backbone)."""
        t0 = time.perf_counter()
        images, bs = self.data.images, self.cfg.batch_size
        with torch.inference_mode():
            emb = torch.cat(
                [self.frozen.embed(self.normalize(images[i : i + bs])) for i in range(0, len(images), bs)]
            )
        emb = emb.float().cpu()
        train = emb[self.data.train]
        mu, sd = scale_of(train)
        return Embeddings((emb - mu) / sd, mu, sd, time.perf_counter() - t0)

    @functools.cached_property
    def patch_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the patch graph: the cells of the frozen backbone's second-deepest stage map
        at the working size (stride 16 on most backbones: 14 x 14 patches at 224 px, as in ViG)."""
        from bridge.cnngraph import PATCH_STAGE

        size = int(self.data.images.shape[1])
        with torch.inference_mode():
            maps = self.frozen.features(torch.zeros(1, 3, size, size, device=self.device))
        cells = maps[PATCH_STAGE]
        return int(cells.shape[2]), int(cells.shape[3])

    @property
    def knn(self) -> int:
        """Neighbours per node of a patch graph: ``cfg.knn``, at most the patches less one."""
        rows, cols = self.patch_grid if self.cfg.graph == "patches" else (0, 0)
        return min(self.cfg.knn, rows * cols - 1) if rows * cols else self.cfg.knn

    def converter(self, with_cnn: bool, *, keep_segments: bool = False) -> Any:
        """Graph builder of arm C (``with_cnn``) or D; label maps only when pictures need them.

        Arm C with ``cfg.graph == "patches"`` takes the cells of the deepest stage map as nodes, linked to
        their ``cfg.knn`` nearest cells in feature space; arm D always takes superpixels.
        """
        from bridge.convert import ImageToGraph

        cfg = self.cfg
        patches = with_cnn and cfg.graph == "patches"
        rows, cols = self.patch_grid if patches else (0, 0)
        return ImageToGraph(
            n_segments=rows * cols if patches else cfg.n_segments,
            compactness=cfg.compactness,
            method="grid" if patches else cfg.segmentation,
            features=("color_mean", "color_std", "centroid"),
            edges="knn_feature" if patches else "region",
            k=self.knn,
            backbone=self.frozen_view if with_cnn else None,
            batch_size=cfg.batch_size,
            keep_segments=keep_segments,
        )

    def global_features(self, images: np.ndarray) -> torch.Tensor:
        """The standardised frozen embedding of images (arm A's input, the graph-level ``u`` of arm C).

        Shapes:
            - images: ``(B, S, S, 3)`` uint8; output: ``(B, F)``.
        """
        emb = self.embeddings
        with torch.inference_mode():
            return (self.frozen.embed(self.normalize(images)).float().cpu() - emb.mean) / emb.std

    def conversion_embeddings(self, images: np.ndarray) -> torch.Tensor:
        """:meth:`global_features` of ``images`` just converted into graphs with CNN node features: the
        embeddings the frozen view kept from that conversion's backbone pass (the same values as a pass
        of their own; one backbone pass instead of two per scored batch of the GNN explainers). When the
        view holds another number of rows (nothing converted, or rows left from an earlier conversion),
        they are dropped and the embeddings computed again.

        Shapes:
            - images: ``(B, S, S, 3)`` uint8; output: ``(B, F)``.
        """
        kept = self.frozen_view.take()
        if kept.shape[0] != len(images):
            return self.global_features(images)
        emb = self.embeddings
        return (kept.float().cpu() - emb.mean) / emb.std

    @functools.cached_property
    def segment_maps(self) -> np.ndarray:
        """Superpixels of every working image (``cfg.segmentation``, ``cfg.n_segments``), computed once.

        Shapes:
            - output: ``(N, S, S)`` int32.
        """
        from bridge.segmentation import superpixels_batch

        cfg, images = self.cfg, self.data.images
        t0 = time.perf_counter()
        out = np.empty(images.shape[:3], dtype=np.int32)
        step = 256
        for i in range(0, len(images), step):
            maps = superpixels_batch(
                list(images[i : i + step]),
                n_segments=cfg.n_segments,
                compactness=cfg.compactness,
                method=cfg.segmentation,
            )
            out[i : i + len(maps)] = np.stack([np.asarray(m) for m in maps])
        self.log(
            f"segment maps: {len(images)} images in {time.perf_counter() - t0:.1f} s ({cfg.segmentation})"
        )
        return out

    def graphs(self, with_cnn: bool) -> GraphSet:
        """The :class:`GraphSet` of every working image (built once, cached on disk by its converter)."""
        if with_cnn not in self._graphs:
            from bridge.dataset import GraphDataset, default_cache_dir

            d = self.data
            items = [(d.images[i], int(d.targets[i])) for i in range(len(d.targets))]
            t0 = time.perf_counter()
            ds = GraphDataset(
                items, self.converter(with_cnn), root=default_cache_dir(), progress=self.progress
            )
            if with_cnn:
                self.frozen_view.take()  # the embeddings of the conversion are not needed (see .embeddings)
            graphs = [ds[i] for i in range(len(ds))]
            x_train = torch.cat([graphs[i].x for i in d.train])
            mu, sd = scale_of(x_train)
            for g in graphs:
                g.x = (g.x - mu) / sd
            if with_cnn:  # arm C also reads arm A's input: the standardised global embedding
                u = self.embeddings.values
                for i, g in enumerate(graphs):
                    g.u = u[i : i + 1]
            self._graphs[with_cnn] = GraphSet(graphs, time.perf_counter() - t0, mu, sd)
        return self._graphs[with_cnn]

    def gnn_model(self, in_channels: int, *, with_cnn: bool = False, dropout: float = 0.0) -> nn.Module:
        """A fresh graph classifier of arm C (``with_cnn``: reads the global embedding ``u`` too, and on
        patch graphs recomputes its k-NN edges per block when ``cfg.dynamic_knn``) or D."""
        from gnn.models import GraphClassifier

        cfg = self.cfg
        patches = with_cnn and cfg.graph == "patches"
        return GraphClassifier(
            in_channels,
            len(self.data.classes),
            conv=cfg.gnn,
            hidden=cfg.hidden,
            layers=cfg.layers,
            dropout=dropout,
            global_channels=int(self.embeddings.values.shape[1]) if with_cnn else None,
            dynamic_k=self.knn if patches and cfg.dynamic_knn else None,
        )

    def e2e_model(self, graph: str | None = None) -> nn.Module:
        """A fresh arm-E model (:class:`bridge.cnngraph.CNNGraphClassifier`) on a pretrained backbone with a
        head for the data's classes; on superpixels it segments images given alone as ``cfg`` says."""
        from bridge.cnngraph import CNNGraphClassifier, ImageSegmenter

        cfg, n = self.cfg, len(self.data.classes)
        graph = cfg.graph if graph is None else graph
        backbone = self.backbone(num_classes=n)
        model = CNNGraphClassifier(
            backbone, n, graph=graph, conv=cfg.gnn, hidden=cfg.hidden, layers=cfg.layers, k=self.knn
        )
        if graph == "superpixels":
            pcfg = backbone.cfg
            model.segmenter = ImageSegmenter(
                pcfg.mean,
                pcfg.std,
                n_segments=cfg.n_segments,
                compactness=cfg.compactness,
                method=cfg.segmentation,
            )
        return model

    def fit_kwargs(self, seed: int) -> dict[str, Any]:
        """Keyword arguments every arm passes to ``fit``: seed, progress bars, device.

        ``cfg.device`` maps to Lightning's ``accelerator`` and ``devices``: ``"cuda:N"`` is GPU ``N``.
        """
        cfg = self.cfg
        strategy = cfg.lightning_strategy
        if strategy == "auto" and (cfg.devices > 1 or cfg.num_nodes > 1):
            strategy = "ddp_spawn"  # this process drives the comparison: only training is spread
        common = dict(seed=seed, progress=self.progress, restore_best=True, strategy=strategy)
        common["num_nodes"] = cfg.num_nodes
        device = cfg.device
        if device.startswith("cuda:"):
            return dict(common, accelerator="cuda", devices=[int(device[5:])])
        return dict(common, accelerator=device, devices=cfg.devices)

    @torch.inference_mode()
    def speed(self, run: Callable[[np.ndarray], Any], n_max: int = 64, repeat: int = 3) -> float:
        """Images per second of ``run`` from raw working images to logits (graph building included).

        The first ``n_max`` test images go through ``run`` in batches of ``cfg.batch_size``, ``repeat``
        times after one warm-up batch; the fastest pass counts (as ``timeit`` does: slower passes
        measure other work on the same cores, not the arm).

        Shapes:
            - run's input: ``(B, S, S, 3)`` uint8 test images, ``B <= cfg.batch_size``.

        Example:
            >>> bench.speed(lambda imgs: probe(bench.normalize(imgs)))  # doctest: +SKIP
            812.4
        """
        n, times = self._pass_times([run], n_max, repeat)
        return n / min(times[0])

    @torch.inference_mode()
    def speed_and_backbone(
        self, run: Callable[[np.ndarray], Any], n_max: int = 64, repeat: int = 5
    ) -> Speeds:
        """:meth:`speed` of ``run`` and of the frozen backbone (image -> embedding), timed pass for pass.

        Each of the ``repeat`` rounds times one pass of the backbone, then one pass of ``run``, over
        the same images. An arm's speed measured minutes after another's also measures how fast the
        machine was then (on a shared VM the same pass can vary by a third within a minute:
        ``benchmarks/bench_arm_stages.py`` prints the spread); its speed over the backbone's in the
        same round does not, so ratios between arms (C / B) hold across the run. That ratio is the
        median over the rounds (steadier than the fastest pass of each over the fastest of the other:
        one lucky pass moves that by several percent).

        Returns:
            :class:`Speeds`: the fastest pass of ``run`` and of the backbone in images/s, and the
            median over the rounds of ``run``'s speed over the backbone's.

        Example:
            >>> run = lambda imgs: model(bench.normalize(imgs))  # doctest: +SKIP
            >>> bench.speed_and_backbone(run).vs_backbone  # doctest: +SKIP
            0.97
        """
        frozen = self.frozen
        n, (reference, arm) = self._pass_times(
            [lambda imgs: frozen.embed(self.normalize(imgs)), run], n_max, repeat
        )
        ratio = float(np.median(np.asarray(reference) / np.asarray(arm)))
        return Speeds(n / min(arm), n / min(reference), ratio)

    def _pass_times(
        self, runs: Sequence[Callable[[np.ndarray], Any]], n_max: int, repeat: int
    ) -> tuple[int, list[list[float]]]:
        """The number of images and every run's pass times in seconds, round by round: a warm-up
        batch each, then ``repeat`` rounds of one pass per run in turn."""
        d, bs = self.data, self.cfg.batch_size
        imgs = d.images[d.test[:n_max]]
        device = self.device  # its own GPU, not the current one (--device cuda:1)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        for run in runs:
            run(imgs[:bs])  # warm-up: one full batch
        sync()
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(max(1, repeat)):
            for k, run in enumerate(runs):
                t0 = time.perf_counter()
                for i in range(0, len(imgs), bs):
                    run(imgs[i : i + bs])
                sync()
                times[k].append(time.perf_counter() - t0)
        return len(imgs), times
