"""A table-driven corpus of bad inputs across the public API and the ``pixgraph`` command (issue 13).

Every row is ``(id, call, expected exception type, message fragment)``; ``call`` takes a :class:`Ctx`
(a temporary folder with ready-made bad files, and ``monkeypatch``). Besides the type and the fragment,
every message must be a clear one: it never suggests ``weights_only=False``, holds no traceback, and is
not a bare torch / numpy / pickle message. CLI rows are ``(id, argv, exit code, stderr fragment)``.
A row that exposes a bug is marked ``xfail(strict=True, reason="BUG: ...")``.
"""

from __future__ import annotations

import math
import pickle
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_geometric.data import Data

import bridge
import cnn
import engine
import gnn
from bridge.cli import main
from cnn.backbones import PreprocessConfig

# ----------------------------------------------------------------------------------------------
# Inputs made on the fly


class _Evil:
    """A pickled object that would run code on load (torch must refuse it with weights_only=True)."""

    def __reduce__(self):
        return (print, ("pwned: this must never run",))


@dataclass
class Ctx:
    tmp: Path
    mp: pytest.MonkeyPatch

    def path(self, name: str) -> Path:
        return self.tmp / name


def _make_files(tmp: Path) -> None:
    """The shared bad files: random bytes, empty, truncated and pickled-object checkpoints, and images."""
    rng = np.random.default_rng(0)
    (tmp / "random.pth").write_bytes(rng.bytes(4096))
    (tmp / "empty.pth").write_bytes(b"")
    torch.manual_seed(0)
    torch.save(nn.Linear(4, 2).state_dict(), tmp / "good.pth")
    data = (tmp / "good.pth").read_bytes()
    (tmp / "truncated.pth").write_bytes(data[: len(data) // 2])
    torch.save({"state_dict": _Evil()}, tmp / "evil.pth")
    (tmp / "pickle.pth").write_bytes(pickle.dumps(_Evil()))
    (tmp / "text.pth").write_text("this is not a checkpoint\n")
    (tmp / "file.txt").write_text("not a folder")
    (tmp / "dir").mkdir()
    img = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp / "good.png"), img)
    png = (tmp / "good.png").read_bytes()
    (tmp / "truncated.png").write_bytes(png[: len(png) // 3])
    (tmp / "random.png").write_bytes(rng.bytes(2000))
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "empty.csv").write_text("")


def _folder(root: Path, classes: dict[str, list[str]]) -> Path:
    """A class-folder dataset; each file kind is 'good', 'random', 'empty' or 'truncated'."""
    src = {k: (root.parent / f"{k}.png").read_bytes() for k in ("good", "random", "empty", "truncated")}
    for c, kinds in classes.items():
        (root / c).mkdir(parents=True)
        for i, kind in enumerate(kinds):
            (root / c / f"{i}.png").write_bytes(src[kind])
    return root


def _manifest(ctx: Ctx, text: str) -> Path:
    p = ctx.path("list.csv")
    p.write_text(text.replace("{tmp}", str(ctx.tmp)))
    return p


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


def _image_loader(*, nan: bool = False, label: int | None = None, dtype=torch.long) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 8, 8, generator=g)
    if nan:
        x[3, 0, 2, 2] = math.nan
    y = (torch.arange(8) % 2).to(dtype)
    if label is not None:
        y[5] = label
    return DataLoader(TensorDataset(x, y), batch_size=4)


def _graph(
    n: int = 4, *, f: int = 3, y: int = 0, edges: list[list[int]] | None = None, nan: bool = False
) -> Data:
    g = torch.Generator().manual_seed(n + y)
    x = torch.randn(n, f, generator=g)
    if nan:
        x[1, 0] = math.nan
    ei = torch.tensor(edges if edges is not None else [[0, 1, 1, 2], [1, 0, 2, 1]], dtype=torch.long)
    return Data(x=x, edge_index=ei, y=torch.tensor([y]))


def _graphs(**bad: Any) -> list[Data]:
    gs = [_graph(4, y=i % 2) for i in range(6)]
    gs[3] = _graph(4, **{"y": 1, **bad})
    return gs


def _gc(in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return gnn.GraphClassifier(in_channels, 2, hidden=8, layers=2)


def _resnet() -> nn.Module:
    return cnn.create_backbone("resnet18", weights=None, num_classes=2)


def _img(h: int = 16, w: int = 16, *, nan: bool = False) -> np.ndarray:
    img = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    if nan:
        img[2, 3, 1] = np.nan
    return img


def _quadrants() -> np.ndarray:
    img = np.zeros((16, 16, 3), np.uint8)
    img[:8, 8:] = (255, 0, 0)
    img[8:, :8] = (0, 255, 0)
    img[8:, 8:] = (0, 0, 255)
    return img


def _converted() -> Data:
    return bridge.ImageToGraph(n_segments=4, method="grid", features=("color_mean",))(_quadrants(), label=0)


def _cfg() -> PreprocessConfig:
    return PreprocessConfig(input_size=32, crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)


def _offline(ctx: Ctx) -> None:
    """No network: any connection attempt fails at once (as on a machine without access)."""

    def refuse(*args: Any, **kwargs: Any):
        raise OSError("network is unreachable (disabled in tests)")

    ctx.mp.setattr(socket, "create_connection", refuse)
    ctx.mp.setattr(socket.socket, "connect", refuse)


def _fit_cnn(**kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        loader = kw.pop("loader") if "loader" in kw else _image_loader()
        model = kw.pop("model") if "model" in kw else _tiny_cnn()
        return cnn.fit(model, loader, progress=False, accelerator="cpu", epochs=kw.pop("epochs", 1), **kw)

    return call


def _fit_gnn(graphs: list[Data] | Any, **kw: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: gnn.fit(_gc(), graphs, progress=False, accelerator="cpu", epochs=1, **kw)


def _saved_resnet(ctx: Ctx) -> Path:
    return cnn.save_checkpoint(_resnet(), ctx.path("resnet.pth"), classes=["a", "b"])


def _corrupt_last_ckpt(ctx: Ctx) -> Any:
    ckpt = ctx.path("ckpt")
    ckpt.mkdir()
    (ckpt / "last.ckpt").write_bytes(ctx.path("random.pth").read_bytes())
    return _fit_cnn(checkpoint_dir=ckpt)(ctx)


def _cam(**kw: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: cnn.grad_cam(_tiny_cnn(), kw.pop("x", torch.randn(2, 3, 8, 8)), **kw)


def _feature_maps(layers: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        model = _tiny_cnn()
        with cnn.FeatureMaps(model, layers):
            model(torch.randn(1, 3, 8, 8))

    return call


def _score(images: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / 255
    return torch.stack([x.mean(dim=(1, 2, 3)), 1 - x.mean(dim=(1, 2, 3))], dim=1)


def _faith(images: Any = None, maps: Any = None, **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        rng = np.random.default_rng(0)
        ims = (rng.random((2, 8, 8, 3)) * 255).astype(np.uint8) if images is None else images
        mps = rng.random((2, 8, 8)).astype(np.float32) if maps is None else maps
        return cnn.faithfulness(kw.pop("score", _score), ims, mps, **kw)

    return call


def _dense_with(edge_index: Any, n: int = 3) -> Callable[[Ctx], Any]:
    return lambda ctx: bridge.to_dense(Data(x=torch.randn(n, 2), edge_index=edge_index))


def _forward(edges: list[list[int]]) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from torch_geometric.data import Batch

        return _gc().eval()(Batch.from_data_list([_graph(3, edges=edges)]))

    return call


def _graph_dataset(images: Any, converter: Any = None, **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        conv = converter or bridge.ImageToGraph(n_segments=4, method="grid", features=("color_mean",))
        root = kw.pop("root", None)
        root = ctx.path(root) if isinstance(root, str) else ctx.path("cache")
        kw.setdefault("workers", 0)
        return bridge.GraphDataset(images, conv, root=root, progress=False, **kw)

    return call


def _runnable(**kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from bridge.compare.run import check_runnable

        out = kw.pop("out", None)
        return check_runnable(bridge.CompareConfig(**{"data": "digits", **kw}), out=out)

    return call


def _items(n: int = 4, *, nan_at: int | None = None) -> list[tuple[np.ndarray, int]]:
    items = [(_quadrants(), i % 2) for i in range(n)]
    if nan_at is not None:
        items[nan_at] = (_img(16, 16, nan=True), 0)
    return items


def _history_csv(ctx: Ctx, text: str) -> Any:
    p = ctx.path("metrics.csv")
    p.write_text(text)
    return engine.History.from_csv(p)


# ----------------------------------------------------------------------------------------------
# The corpus


def row(id: str, call: Callable[[Ctx], Any], exc: type[BaseException], fragment: str, bug: str = ""):
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(call, exc, fragment, id=id, marks=marks)


CNN = [
    # create_backbone
    row("backbone-typo", lambda c: cnn.create_backbone("resnet19", weights=None), ValueError, "resnet19"),
    row("backbone-not-str", lambda c: cnn.create_backbone(18, weights=None), TypeError, "name"),
    row("backbone-empty-name", lambda c: cnn.create_backbone("", weights=None), ValueError, "backbone"),
    row(
        "backbone-missing-weights",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("missing.pth")),
        FileNotFoundError,
        "missing.pth",
    ),
    row(
        "backbone-random-bytes",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("random.pth")),
        ValueError,
        "random.pth",
    ),
    row(
        "backbone-empty-weights",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("empty.pth")),
        ValueError,
        "empty.pth",
    ),
    row(
        "backbone-truncated-weights",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("truncated.pth")),
        ValueError,
        "truncated.pth",
    ),
    row(
        "backbone-pickled-object",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("evil.pth")),
        ValueError,
        "evil.pth",
    ),
    row(
        "backbone-other-state-dict",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("good.pth")),
        ValueError,
        "good.pth",
    ),
    row(
        "backbone-weights-folder",
        lambda c: cnn.create_backbone("resnet18", weights=c.path("dir")),
        ValueError,
        "dir",
    ),
    row(
        "backbone-num-classes-0",
        lambda c: cnn.create_backbone("resnet18", weights=None, num_classes=0),
        ValueError,
        "num_classes",
    ),
    row(
        "backbone-num-classes-str",
        lambda c: cnn.create_backbone("resnet18", weights=None, num_classes="2"),
        ValueError,
        "num_classes",
    ),
    # build_transforms
    row("transforms-not-backbone", lambda c: cnn.build_transforms("resnet18", train=True), TypeError, "cfg"),
    row(
        "transforms-scale-reversed",
        lambda c: cnn.build_transforms(_cfg(), train=True, scale=(0.9, 0.1)),
        ValueError,
        "scale",
    ),
    row(
        "transforms-hflip-2",
        lambda c: cnn.build_transforms(_cfg(), train=True, hflip=2.0),
        ValueError,
        "hflip",
    ),
    row(
        "transforms-ratio-0",
        lambda c: cnn.build_transforms(_cfg(), train=True, ratio=(0.0, 1.0)),
        ValueError,
        "ratio",
    ),
    row("transforms-train-str", lambda c: cnn.build_transforms(_cfg(), train="yes"), TypeError, "train"),
    # freeze / choose_strategy
    row("freeze-unknown", lambda c: cnn.freeze(_resnet(), "half"), ValueError, "half"),
    row("freeze-not-module", lambda c: cnn.freeze("model", "full"), TypeError, "model"),
    row(
        "freeze-blocks-negative",
        lambda c: cnn.freeze(_resnet(), "fine_tuning", trainable_blocks=-1),
        ValueError,
        "trainable_blocks",
    ),
    row(
        "freeze-blocks-too-many",
        lambda c: cnn.freeze(_resnet(), "fine_tuning", trainable_blocks=99),
        ValueError,
        "99",
    ),
    row(
        "freeze-blocks-wrong-strategy",
        lambda c: cnn.freeze(_resnet(), "feature_extraction", trainable_blocks=2),
        ValueError,
        "trainable_blocks",
    ),
    row("strategy-negative", lambda c: cnn.choose_strategy(-5, "low"), ValueError, "n_images"),
    row("strategy-str-count", lambda c: cnn.choose_strategy("many", "low"), ValueError, "n_images"),
    row("strategy-similarity", lambda c: cnn.choose_strategy(100, "medium"), ValueError, "medium"),
    row("strategy-similarity-1.5", lambda c: cnn.choose_strategy(100, 1.5), ValueError, "similarity"),
    row("strategy-similarity-nan", lambda c: cnn.choose_strategy(100, math.nan), ValueError, "similarity"),
    row("strategy-large-0", lambda c: cnn.choose_strategy(100, "low", large=0), ValueError, "large"),
    # load_dataset
    row(
        "dataset-missing-folder",
        lambda c: cnn.load_dataset(c.path("nope")),
        FileNotFoundError,
        "nope' does not exist",
    ),
    row(
        "dataset-one-class",
        lambda c: cnn.load_dataset(_folder(c.path("ds"), {"cats": ["good", "good"]})),
        ValueError,
        "cats",
    ),
    row("dataset-empty-folder", lambda c: cnn.load_dataset(c.path("dir")), ValueError, "class"),
    row(
        "dataset-all-corrupt",
        lambda c: cnn.load_dataset(_folder(c.path("ds"), {"a": ["random", "empty"], "b": ["truncated"]})),
        ValueError,
        "ds",
    ),
    row(
        "dataset-truncated-raise",
        lambda c: cnn.load_dataset(
            _folder(c.path("ds"), {"a": ["good", "truncated"], "b": ["good", "good"]}), on_error="raise"
        ),
        ValueError,
        r"1\.png",
    ),
    row(
        "dataset-empty-image-raise",
        lambda c: cnn.load_dataset(
            _folder(c.path("ds"), {"a": ["good", "good"], "b": ["empty", "good"]}), on_error="raise"
        ),
        ValueError,
        r"0\.png",
    ),
    row(
        "dataset-on-error-bogus",
        lambda c: cnn.load_dataset(_folder(c.path("ds"), {"a": ["good"], "b": ["good"]}), on_error="ignore"),
        ValueError,
        "on_error",
    ),
    row(
        "dataset-max-per-class-0",
        lambda c: cnn.load_dataset(_folder(c.path("ds"), {"a": ["good"], "b": ["good"]}), max_per_class=0),
        ValueError,
        "max_per_class",
    ),
    row(
        "dataset-transform-not-callable",
        lambda c: cnn.load_dataset(_folder(c.path("ds"), {"a": ["good"], "b": ["good"]}), transform="resize"),
        TypeError,
        "transform",
    ),
    row(
        "dataset-file-not-csv",
        lambda c: cnn.load_dataset(c.path("file.txt")),
        NotADirectoryError,
        "file.txt' is a file; pass a folder",
    ),
    row("dataset-empty-manifest", lambda c: cnn.load_dataset(c.path("empty.csv")), ValueError, "empty.csv"),
    row(
        "dataset-manifest-three-fields",
        lambda c: cnn.load_dataset(_manifest(c, "path,label\n{tmp}/good.png,a,extra\n{tmp}/good.png,b\n")),
        ValueError,
        "list.csv",
    ),
    row(
        "dataset-manifest-missing-file",
        lambda c: cnn.load_dataset(
            _manifest(c, "path,label\n{tmp}/good.png,a\n{tmp}/gone.png,b\n"), on_error="raise"
        ),
        (ValueError, FileNotFoundError),
        "gone.png",
    ),
    row(
        "dataset-manifest-empty-label",
        lambda c: cnn.load_dataset(_manifest(c, "path,label\n{tmp}/good.png,a\n{tmp}/good.png,\n")),
        ValueError,
        "label",
    ),
    row("dataset-unknown-name", lambda c: cnn.load_dataset("imagenet22k"), ValueError, "imagenet22k"),
    row(
        "dataset-cifar10-no-download",
        lambda c: cnn.load_dataset("cifar10", root=c.path("data"), download=False),
        engine.DatasetNotAvailableError,
        "cifar10",
    ),
    row(
        "dataset-cifar10-offline",
        lambda c: (_offline(c), cnn.load_dataset("cifar10", root=c.path("data")))[1],
        engine.DatasetNotAvailableError,
        "not in",
    ),
    row("dataset-cifar10-bad-split", lambda c: cnn.load_dataset("cifar10", split="dev"), ValueError, "dev"),
    row("dataset-digits-split", lambda c: cnn.load_dataset("digits", split="train"), ValueError, "split"),
    row("dataset-elpv-classes", lambda c: cnn.load_dataset("elpv", classes="bogus"), ValueError, "classes"),
    row(
        "dataset-digits-threshold",
        lambda c: cnn.load_dataset("digits", threshold=0.5),
        ValueError,
        "threshold",
    ),
    # split
    row("split-fractions-sum", lambda c: cnn.split([0, 0, 1, 1] * 5, val=0.6, test=0.6), ValueError, "val"),
    row("split-empty", lambda c: cnn.split([]), ValueError, "empty"),
    row("split-negative-val", lambda c: cnn.split([0, 1] * 10, val=-0.1), ValueError, "val"),
    row("split-string", lambda c: cnn.split("abc"), ValueError, "targets must be a non-empty 1-D array"),
    row("split-float-labels", lambda c: cnn.split([0.5, 1.5] * 10), ValueError, "integer"),
    row("split-nan-labels", lambda c: cnn.split([0.0, math.nan] * 10), ValueError, "integer"),
    # read_image / write_image / resize
    row("read-missing", lambda c: cnn.read_image(c.path("nope.png")), FileNotFoundError, "nope.png"),
    row("read-random-bytes", lambda c: cnn.read_image(c.path("random.png")), ValueError, "random.png"),
    row("read-empty", lambda c: cnn.read_image(c.path("empty.png")), ValueError, "empty.png"),
    row("read-truncated", lambda c: cnn.read_image(c.path("truncated.png")), ValueError, "truncated.png"),
    row("read-folder", lambda c: cnn.read_image(c.path("dir")), IsADirectoryError, "dir' is a folder"),
    row(
        "read-not-path",
        lambda c: cnn.read_image(42),
        TypeError,
        "path must be",
    ),
    row("write-unknown-suffix", lambda c: cnn.write_image(c.path("x.xyz"), _quadrants()), ValueError, "xyz"),
    row("write-nan", lambda c: cnn.write_image(c.path("x.png"), _img(nan=True)), ValueError, "NaN"),
    row("write-4d", lambda c: cnn.write_image(c.path("x.png"), np.zeros((2, 4, 4, 3))), ValueError, "shape"),
    row(
        "write-under-file",
        lambda c: cnn.write_image(c.path("file.txt") / "x.png", _quadrants()),
        (ValueError, NotADirectoryError),
        "file.txt' is a file",
    ),
    row(
        "write-quality-200",
        lambda c: cnn.write_image(c.path("x.jpg"), _quadrants(), quality=200),
        ValueError,
        "quality",
    ),
    row("resize-0", lambda c: cnn.resize(_quadrants(), 0), ValueError, "size"),
    row("resize-1-tuple", lambda c: cnn.resize(_quadrants(), (10,)), ValueError, "size"),
    row("resize-interp", lambda c: cnn.resize(_quadrants(), 8, interpolation="bogus"), ValueError, "bogus"),
    row(
        "resize-empty-image",
        lambda c: cnn.resize(np.zeros((0, 5, 3), np.uint8), 8),
        (ValueError, TypeError),
        "non-empty",
    ),
    row("resize-not-array", lambda c: cnn.resize("image.png", 8), TypeError, "img"),
    # fit / evaluate / predict on images
    row("fit-list-loader", _fit_cnn(loader=[]), TypeError, "DataLoader"),
    row(
        "fit-empty-loader",
        _fit_cnn(loader=DataLoader(TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0).long()))),
        ValueError,
        "empty",
    ),
    row("fit-label-out-of-range", _fit_cnn(loader=_image_loader(label=5)), ValueError, "5"),
    row("fit-label-negative", _fit_cnn(loader=_image_loader(label=-1)), ValueError, "-1"),
    row(
        "fit-float-labels",
        _fit_cnn(loader=_image_loader(dtype=torch.float32)),
        (ValueError, TypeError),
        "label",
    ),
    row("fit-nan-images", _fit_cnn(loader=_image_loader(nan=True)), ValueError, "NaN"),
    row("fit-epochs-0", _fit_cnn(epochs=0), ValueError, "epochs"),
    row("fit-lr-negative", _fit_cnn(lr=-1.0), ValueError, "lr"),
    row("fit-optimizer", _fit_cnn(optimizer="lion"), ValueError, "lion"),
    row("fit-plateau-no-val", _fit_cnn(scheduler="plateau"), ValueError, "val_loader"),
    row("fit-patience-no-val", _fit_cnn(patience=2), ValueError, "val_loader"),
    row(
        "fit-single-tensors",
        _fit_cnn(loader=DataLoader(torch.randn(8, 3, 8, 8), batch_size=4)),
        TypeError,
        "pairs",
    ),
    row(
        "fit-nothing-to-train",
        _fit_cnn(model=cnn.set_parameter_requires_grad(_tiny_cnn(), False)),
        ValueError,
        "train",
    ),
    row(
        "fit-ckpt-dir-is-file",
        lambda c: _fit_cnn(checkpoint_dir=c.path("file.txt"))(c),
        ValueError,
        "file.txt",
    ),
    row(
        "fit-resume-random-bytes",
        lambda c: _fit_cnn(checkpoint_dir=c.path("ck"), resume=c.path("random.pth"))(c),
        ValueError,
        "random.pth",
    ),
    row(
        "fit-resume-missing",
        lambda c: _fit_cnn(checkpoint_dir=c.path("ck"), resume=c.path("nope.ckpt"))(c),
        FileNotFoundError,
        "nope.ckpt",
    ),
    row("fit-corrupt-last-ckpt", _corrupt_last_ckpt, ValueError, "last.ckpt"),
    row("evaluate-empty", lambda c: cnn.evaluate(_tiny_cnn(), []), ValueError, "empty"),
    row("evaluate-nan", lambda c: cnn.evaluate(_tiny_cnn(), _image_loader(nan=True)), ValueError, "NaN"),
    row("evaluate-label-9", lambda c: cnn.evaluate(_tiny_cnn(), _image_loader(label=9)), ValueError, "9"),
    row(
        "evaluate-device",
        lambda c: cnn.evaluate(_tiny_cnn(), _image_loader(), device="tpu9"),
        ValueError,
        "device='tpu9'",
    ),
    row("predict-nan", lambda c: cnn.predict(_tiny_cnn(), _image_loader(nan=True)), ValueError, "NaN"),
    row("predict-string-loader", lambda c: cnn.predict(_tiny_cnn(), "loader"), TypeError, "loader"),
    # checkpoints
    row("ckpt-missing", lambda c: cnn.load_checkpoint(c.path("nope.pth")), FileNotFoundError, "nope.pth"),
    row("ckpt-random", lambda c: cnn.load_checkpoint(c.path("random.pth")), ValueError, "random.pth"),
    row("ckpt-empty", lambda c: cnn.load_checkpoint(c.path("empty.pth")), ValueError, "empty.pth"),
    row(
        "ckpt-truncated", lambda c: cnn.load_checkpoint(c.path("truncated.pth")), ValueError, "truncated.pth"
    ),
    row(
        "ckpt-torch-pickled-object", lambda c: cnn.load_checkpoint(c.path("evil.pth")), ValueError, "evil.pth"
    ),
    row("ckpt-raw-pickle", lambda c: cnn.load_checkpoint(c.path("pickle.pth")), ValueError, "pickle.pth"),
    row("ckpt-text", lambda c: cnn.load_checkpoint(c.path("text.pth")), ValueError, "text.pth"),
    row(
        "ckpt-folder",
        lambda c: cnn.load_checkpoint(c.path("dir")),
        (ValueError, IsADirectoryError),
        "is a folder",
    ),
    row(
        "ckpt-wrong-model",
        lambda c: cnn.load_checkpoint(_saved_resnet(c), _tiny_cnn()),
        ValueError,
        "resnet.pth",
    ),
    row(
        "ckpt-other-classes",
        lambda c: cnn.load_checkpoint(_saved_resnet(c), _resnet(), classes=["x", "y"]),
        ValueError,
        "classes",
    ),
    row("save-not-module", lambda c: cnn.save_checkpoint("model", c.path("m.pth")), TypeError, "model"),
    row(
        "save-under-file",
        lambda c: cnn.save_checkpoint(_tiny_cnn(), c.path("file.txt") / "m.pth"),
        (ValueError, NotADirectoryError),
        "file.txt' is a file",
    ),
    row(
        "save-to-folder",
        lambda c: cnn.save_checkpoint(_tiny_cnn(), c.path("dir")),
        (ValueError, IsADirectoryError),
        "dir' is a folder",
    ),
    # grad_cam / FeatureMaps / faithfulness
    row("cam-3d", _cam(x=torch.randn(3, 8, 8)), ValueError, "x"),
    row("cam-method", _cam(method="scorecam"), ValueError, "scorecam"),
    row("cam-target-7", _cam(target=7), ValueError, "target"),
    row("cam-target-count", _cam(target=[0, 1, 1]), ValueError, "target"),
    row("cam-layer", _cam(layer="layer9"), ValueError, "layer9"),
    row("cam-not-module", lambda c: cnn.grad_cam("model", torch.randn(1, 3, 8, 8)), TypeError, "model"),
    row("fmaps-unknown-name", _feature_maps("nope"), ValueError, "nope"),
    row("fmaps-stage-on-plain-model", _feature_maps(5), ValueError, "5"),
    row("fmaps-foreign-module", _feature_maps(nn.Linear(2, 2)), ValueError, "not a submodule"),
    row("fmaps-empty", _feature_maps([]), ValueError, "layers"),
    row("faith-steps-0", _faith(steps=0), ValueError, "steps"),
    row("faith-fill", _faith(fill="noise"), ValueError, "noise"),
    row("faith-shape-mismatch", _faith(maps=np.random.default_rng(0).random((3, 8, 8))), ValueError, "maps"),
    row(
        "faith-score-not-callable", _faith(score="model"), (ValueError, TypeError), "score must be a function"
    ),
    row("faith-nan-maps", _faith(maps=np.full((2, 8, 8), np.nan)), ValueError, "NaN"),
]

BRIDGE = [
    # superpixels / region_adjacency / knn_edges
    row("sp-n-0", lambda c: bridge.superpixels(_img(), n_segments=0), ValueError, "n_segments"),
    row("sp-compactness", lambda c: bridge.superpixels(_img(), compactness=-1), ValueError, "compactness"),
    row("sp-method", lambda c: bridge.superpixels(_img(), method="quickshift9"), ValueError, "quickshift9"),
    row("sp-nan", lambda c: bridge.superpixels(_img(nan=True)), ValueError, "NaN"),
    row("sp-1d", lambda c: bridge.superpixels(np.zeros(16)), ValueError, "image"),
    row("sp-5-channels", lambda c: bridge.superpixels(np.zeros((8, 8, 5))), ValueError, r"\(8, 8, 5\)"),
    row("sp-too-many", lambda c: bridge.superpixels(_img(8, 8), n_segments=1000), ValueError, "n_segments"),
    row("sp-sigma", lambda c: bridge.superpixels(_img(), sigma=-1.0), ValueError, "sigma"),
    row("sp-empty", lambda c: bridge.superpixels(np.zeros((0, 0, 3))), ValueError, "image"),
    row("sp-string", lambda c: bridge.superpixels("coffee.png"), ValueError, "image must be a numpy array"),
    row("rag-1d", lambda c: bridge.region_adjacency(np.arange(5)), ValueError, "labels"),
    row("rag-negative", lambda c: bridge.region_adjacency(-np.ones((4, 4), np.int64)), ValueError, "labels"),
    row("rag-nan", lambda c: bridge.region_adjacency(np.full((4, 4), np.nan)), ValueError, "labels"),
    row("rag-3d", lambda c: bridge.region_adjacency(np.zeros((2, 4, 4), np.int64)), ValueError, "labels"),
    row("knn-k-0", lambda c: bridge.knn_edges(torch.rand(5, 2), 0), ValueError, "k"),
    row("knn-k-too-big", lambda c: bridge.knn_edges(torch.rand(5, 2), 5), ValueError, "k"),
    row(
        "knn-nan",
        lambda c: bridge.knn_edges(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), 1),
        ValueError,
        "NaN",
    ),
    row("knn-1d", lambda c: bridge.knn_edges(torch.rand(5), 1), ValueError, "points"),
    # ImageToGraph
    row("i2g-edges", lambda c: bridge.ImageToGraph(edges="delaunay"), ValueError, "delaunay"),
    row("i2g-feature", lambda c: bridge.ImageToGraph(features=("texture",)), ValueError, "texture"),
    row("i2g-no-features", lambda c: bridge.ImageToGraph(features=()), ValueError, "features"),
    row("i2g-k-0", lambda c: bridge.ImageToGraph(edges="knn", k=0), ValueError, "k"),
    row("i2g-batch-0", lambda c: bridge.ImageToGraph(batch_size=0), ValueError, "batch_size"),
    row("i2g-backbone-str", lambda c: bridge.ImageToGraph(backbone="resnet18"), TypeError, "backbone"),
    row("i2g-n-segments-str", lambda c: bridge.ImageToGraph(n_segments="75"), ValueError, "n_segments"),
    row("i2g-nan-image", lambda c: bridge.ImageToGraph(n_segments=4)(_img(nan=True)), ValueError, "NaN"),
    row(
        "i2g-too-many-segments",
        lambda c: bridge.ImageToGraph(n_segments=500)(_img(8, 8)),
        ValueError,
        "n_segments",
    ),
    row(
        "i2g-label-negative",
        lambda c: bridge.ImageToGraph(n_segments=4)(_img(), label=-1),
        ValueError,
        "label",
    ),
    row(
        "i2g-label-str",
        lambda c: bridge.ImageToGraph(n_segments=4)(_img(), label="cat"),
        ValueError,
        "label must be an integer",
    ),
    # to_dense
    row("dense-minus-1", _dense_with(torch.tensor([[0, -1], [1, 0]])), ValueError, "-1"),
    row("dense-index-5", _dense_with(torch.tensor([[0, 5], [1, 0]])), ValueError, "5"),
    row(
        "dense-float-index",
        _dense_with(torch.tensor([[0.0, 1.0], [1.0, 0.0]])),
        (ValueError, TypeError),
        "edge_index",
    ),
    row("dense-3-rows", _dense_with(torch.zeros(3, 2, dtype=torch.long)), ValueError, "edge_index"),
    row(
        "dense-no-x",
        lambda c: bridge.to_dense(Data(edge_index=torch.zeros(2, 0, dtype=torch.long))),
        ValueError,
        "x",
    ),
    row(
        "dense-not-data",
        lambda c: bridge.to_dense({"x": torch.zeros(2, 2)}),
        (ValueError, TypeError),
        "data needs x",
    ),
    # GraphDataset
    row("gds-root-file", _graph_dataset(_items(), root="file.txt"), ValueError, "file.txt"),
    row("gds-root-under-file", _graph_dataset(_items(), root="file.txt/sub"), ValueError, "file.txt"),
    row("gds-fingerprint", _graph_dataset(_items(), fingerprint="md5"), ValueError, "md5"),
    row(
        "gds-images-int",
        _graph_dataset(5),
        TypeError,
        "images",
    ),
    row("gds-converter", _graph_dataset(_items(), converter="slic"), TypeError, "converter"),
    row("gds-nan-image", _graph_dataset(_items(nan_at=2)), ValueError, "NaN"),
    row("gds-no-labels", _graph_dataset([_quadrants(), _quadrants()]), (ValueError, TypeError), "label"),
    row("gds-workers-negative", _graph_dataset(_items(), workers=-1), ValueError, "workers"),
    row("gds-empty", _graph_dataset([]), ValueError, "empty"),
    # draw_graph / export_graphml
    row(
        "draw-size-mismatch",
        lambda c: bridge.draw_graph(_img(8, 8), _converted()),
        ValueError,
        "segments must be",
    ),
    row("draw-not-data", lambda c: bridge.draw_graph(_quadrants(), "graph"), TypeError, "data"),
    row(
        "draw-node-values-length",
        lambda c: bridge.draw_graph(_quadrants(), _converted(), node_values=[1.0, 2.0]),
        ValueError,
        "node_values",
    ),
    row(
        "graphml-under-file",
        lambda c: bridge.export_graphml(_converted(), c.path("file.txt") / "g.graphml"),
        (ValueError, NotADirectoryError),
        "file.txt' is a file",
    ),
    row(
        "graphml-folder",
        lambda c: bridge.export_graphml(_converted(), c.path("dir")),
        (ValueError, IsADirectoryError),
        "dir' is a folder",
    ),
    row(
        "graphml-feature-names",
        lambda c: bridge.export_graphml(_converted(), c.path("g.graphml"), feature_names=["r"]),
        ValueError,
        "feature_names",
    ),
    # CompareConfig
    row("cfg-arm", lambda c: bridge.CompareConfig(arms=("svm",)), ValueError, "svm"),
    row("cfg-no-seeds", lambda c: bridge.CompareConfig(seeds=()), ValueError, "seeds"),
    row("cfg-dup-seeds", lambda c: bridge.CompareConfig(seeds=(0, 0)), ValueError, "duplicates"),
    row("cfg-image-size", lambda c: bridge.CompareConfig(image_size=2), ValueError, "image_size"),
    row("cfg-device", lambda c: bridge.CompareConfig(device="gpu:x"), ValueError, "device"),
    row(
        "cfg-faith-steps",
        lambda c: bridge.CompareConfig(faithfulness_steps=0),
        ValueError,
        "faithfulness_steps",
    ),
    row(
        "cfg-faith-images",
        lambda c: bridge.CompareConfig(faithfulness_images=-1),
        ValueError,
        "faithfulness_images",
    ),
    row("cfg-n-segments", lambda c: bridge.CompareConfig(n_segments=0), ValueError, "n_segments"),
    row("cfg-batch-0", lambda c: bridge.CompareConfig(batch_size=0), ValueError, "batch_size"),
    row("cfg-strategy", lambda c: bridge.CompareConfig(strategy="half"), ValueError, "half"),
]

RUNNABLE = [
    # what compare() checks before any work: CompareConfig plus check_runnable
    row("run-gnn", _runnable(gnn="bogus"), ValueError, "gnn='bogus' \\(--gnn\\) is not a known"),
    row("run-backbone", _runnable(backbone="resnet19"), ValueError, "did you mean 'resnet18'"),
    row("run-weights-folder", lambda c: _runnable(weights=str(c.path("dir")))(c), ValueError, "--weights"),
    row("run-data-missing", lambda c: _runnable(data=str(c.path("nope")))(c), ValueError, "--data"),
    row("run-out-file", lambda c: _runnable(out=c.path("file.txt"))(c), ValueError, "file.txt"),
    row("run-device-cuda9", _runnable(device="cuda:9"), ValueError, "cuda"),
    row("run-seed-str", _runnable(seeds=("a",)), ValueError, "seeds"),
    row("run-fractions", _runnable(val=0.6, test=0.6), ValueError, "val"),
    row("run-n-explain", _runnable(n_explain=-1), ValueError, "n_explain"),
    row("run-lr", _runnable(lr_gnn=-1.0), ValueError, "lr_gnn"),
    row("run-hidden", _runnable(hidden=0), ValueError, "hidden"),
    row("run-layers", _runnable(layers=0), ValueError, "layers"),
    row(
        "run-compactness",
        _runnable(compactness=-1.0),
        ValueError,
        "compactness",
    ),
    row(
        "run-blocks",
        _runnable(strategy="fine_tuning", trainable_blocks=-2),
        ValueError,
        "trainable_blocks",
    ),
    row(
        "run-split-seed",
        _runnable(split_seed="x"),
        ValueError,
        "split_seed",
    ),
]

GNN = [
    row("gc-conv", lambda c: gnn.GraphClassifier(3, 2, conv="transformer9"), ValueError, "transformer9"),
    row("gc-in-0", lambda c: gnn.GraphClassifier(0, 2), ValueError, "in_channels"),
    row("gc-classes-1", lambda c: gnn.GraphClassifier(3, 1), ValueError, "num_classes"),
    row("gc-layers-0", lambda c: gnn.GraphClassifier(3, 2, layers=0), ValueError, "layers"),
    row("gc-pool", lambda c: gnn.GraphClassifier(3, 2, pool="median"), ValueError, "median"),
    row("gc-dropout", lambda c: gnn.GraphClassifier(3, 2, dropout=1.5), ValueError, "dropout"),
    row("gc-norm", lambda c: gnn.GraphClassifier(3, 2, norm="group9"), ValueError, "group9"),
    row("gc-heads-0", lambda c: gnn.GraphClassifier(3, 2, conv="gat", heads=0), ValueError, "heads"),
    row("gc-forward-index-5", _forward([[0, 5], [1, 0]]), ValueError, "5"),
    row("gc-forward-index-negative", _forward([[0, -1], [1, 0]]), ValueError, "-1"),
    row(
        "gc-forward-width",
        lambda c: _gc(5).eval()(_graph(3)),
        ValueError,
        "5",
    ),
    row("dgcn-in-0", lambda c: gnn.DenseGCN(0, 4), ValueError, "in_channels"),
    row("dgcn-activation", lambda c: gnn.DenseGCN(3, 4, activation="swish9"), ValueError, "swish9"),
    row(
        "dgcn-not-square",
        lambda c: gnn.DenseGCN(3, 4)(torch.rand(2, 3), torch.rand(2, 3)),
        ValueError,
        "square",
    ),
    row(
        "dgcn-node-mismatch",
        lambda c: gnn.DenseGCN(3, 4)(torch.rand(4, 4), torch.rand(3, 3)),
        ValueError,
        "same N",
    ),
    row(
        "dgcn-nan-adjacency",
        lambda c: gnn.normalized_adjacency(torch.full((3, 3), math.nan)),
        ValueError,
        "NaN",
    ),
    row("gfit-nan", _fit_gnn(_graphs(nan=True)), ValueError, "NaN"),
    row("gfit-index-out-of-range", _fit_gnn(_graphs(edges=[[0, 9], [9, 0]])), ValueError, "9"),
    row("gfit-width", _fit_gnn(_graphs(f=5)), ValueError, "5"),
    row(
        "gfit-no-y",
        _fit_gnn([Data(x=torch.rand(3, 3), edge_index=torch.zeros(2, 0, dtype=torch.long))]),
        ValueError,
        "y",
    ),
    row("gfit-single-data", _fit_gnn(_graph()), TypeError, "list"),
    row("gfit-empty", _fit_gnn([]), ValueError, "empty"),
    row("gfit-label-out-of-range", _fit_gnn(_graphs(y=7)), ValueError, "7"),
    row("gpredict-nan", lambda c: gnn.predict(_gc(), _graphs(nan=True)), ValueError, "NaN"),
    row("gevaluate-label", lambda c: gnn.evaluate(_gc(), _graphs(y=4)), ValueError, "4"),
    row("gevaluate-index", lambda c: gnn.evaluate(_gc(), _graphs(edges=[[0, 4], [4, 0]])), ValueError, "4"),
    row("gckpt-random", lambda c: gnn.load_checkpoint(c.path("random.pth"), _gc()), ValueError, "random.pth"),
    row("gckpt-empty", lambda c: gnn.load_checkpoint(c.path("empty.pth"), _gc()), ValueError, "empty.pth"),
    row(
        "gckpt-truncated", lambda c: gnn.load_checkpoint(c.path("truncated.pth")), ValueError, "truncated.pth"
    ),
    row("gckpt-pickled", lambda c: gnn.load_checkpoint(c.path("evil.pth")), ValueError, "evil.pth"),
    row(
        "gckpt-wrong-model",
        lambda c: gnn.load_checkpoint(gnn.save_checkpoint(_gc(3), c.path("g.pth")), _gc(7)),
        ValueError,
        "g.pth",
    ),
]

ENGINE = [
    row("acc-length", lambda c: engine.accuracy([0, 1], [0]), ValueError, "length"),
    row("acc-empty", lambda c: engine.accuracy([], []), ValueError, "0 items"),
    row("cm-out-of-range", lambda c: engine.confusion_matrix([0, 5], [0, 1], 2), ValueError, "5"),
    row("f1-classes-0", lambda c: engine.macro_f1([0], [0], 0), ValueError, "num_classes"),
    row(
        "metrics-float-preds",
        lambda c: engine.classification_metrics([0.5, 1.0], [0, 1], 2),
        ValueError,
        "int",
    ),
    row("mcnemar-length", lambda c: engine.mcnemar_exact([True, False], [True]), ValueError, "length"),
    row("bootstrap-level", lambda c: engine.paired_bootstrap([1, 0], [0, 1], level=1.5), ValueError, "level"),
    row(
        "bootstrap-resamples",
        lambda c: engine.paired_bootstrap([1, 0], [0, 1], resamples=0),
        ValueError,
        "resamples",
    ),
    row("pair-length", lambda c: engine.compare_pair([0, 1], [0], [0, 1]), ValueError, "preds_b"),
    row(
        "history-missing",
        lambda c: engine.History.from_csv(c.path("nope.csv")),
        FileNotFoundError,
        "nope.csv",
    ),
    row(
        "history-empty",
        lambda c: _history_csv(c, ""),
        ValueError,
        "metrics.csv",
    ),
    row(
        "history-columns",
        lambda c: _history_csv(c, "a,b\n1,2\n"),
        ValueError,
        "metrics.csv",
    ),
    row(
        "history-not-numbers",
        lambda c: _history_csv(c, "epoch,step,train_loss,train_acc\n0,1,abc,0.5\n"),
        ValueError,
        "metrics.csv",
    ),
    row(
        "torchfile-missing", lambda c: engine.load_torch_file(c.path("nope.pt")), FileNotFoundError, "nope.pt"
    ),
    row("torchfile-random", lambda c: engine.load_torch_file(c.path("random.pth")), ValueError, "random.pth"),
    row("torchfile-empty", lambda c: engine.load_torch_file(c.path("empty.pth")), ValueError, "empty.pth"),
    row("torchfile-pickled", lambda c: engine.load_torch_file(c.path("evil.pth")), ValueError, "evil.pth"),
    row(
        "torchfile-raw-pickle",
        lambda c: engine.load_torch_file(c.path("pickle.pth")),
        ValueError,
        "pickle.pth",
    ),
    row("torchfile-folder", lambda c: engine.load_torch_file(c.path("dir")), ValueError, "dir"),
]

#: Messages that are a bare library error, not one written for the user.
_RAW = re.compile(
    r"^(pop from empty list|list index out of range|index -?\d+ is out of bounds|invalid load key"
    r"|PytorchStreamReader|Weights only load failed|Expecting value|division by zero|tuple index out of range"
    r"|'[^']*'$|\d+$|Expected .* but got|mat\d and mat\d shapes cannot be multiplied|could not convert)",
    re.IGNORECASE,
)


def assert_clear(message: str) -> None:
    """A message written for the user: no weights_only=False advice, no traceback, no bare library error."""
    text = message.strip()
    assert text, "empty message"
    assert "weights_only=False" not in text, text
    assert "Traceback" not in text, text
    assert not _RAW.match(text), f"a bare library message: {text!r}"
    first = text.splitlines()[0]
    assert len(first) >= 20 and " " in first, f"too terse to name the problem and the fix: {first!r}"


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> Ctx:
    _make_files(tmp_path)
    return Ctx(tmp_path, monkeypatch)


@pytest.mark.parametrize(("call", "exc", "fragment"), CNN + BRIDGE + RUNNABLE + GNN + ENGINE)
def test_bad_input_raises_a_clear_error(call, exc, fragment, ctx, recwarn):
    with pytest.raises(exc) as info:
        call(ctx)
    message = str(info.value)
    assert re.search(fragment, message), message
    assert_clear(message)
    assert not any("pwned" in str(w.message) for w in recwarn)


# ----------------------------------------------------------------------------------------------
# The CLI (other rows than tests/bridge/test_cli.py)

D = ["compare", "--data", "digits"]


def cli(id: str, argv: list[str], code: int, fragment: str, bug: str = ""):
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(argv, code, fragment, id=id, marks=marks)


CLI = [
    cli("compare-weights-random", [*D, "--weights", "{tmp}/random.pth"], 2, "random.pth"),
    cli("compare-weights-empty", [*D, "--weights", "{tmp}/empty.pth"], 2, "empty.pth"),
    cli("compare-weights-truncated", [*D, "--weights", "{tmp}/truncated.pth"], 2, "truncated.pth"),
    cli("compare-weights-pickled", [*D, "--weights", "{tmp}/evil.pth"], 2, "evil.pth"),
    cli("compare-seeds-dup", [*D, "--seeds", "0,0"], 2, "duplicates"),
    cli("compare-seeds-empty", [*D, "--seeds", ","], 2, "seeds"),
    cli("compare-n-segments-0", [*D, "--n-segments", "0"], 2, "expected a positive integer"),
    cli("compare-image-size-neg", [*D, "--image-size", "-3"], 2, "expected a positive integer"),
    cli("compare-arms-unknown", [*D, "--arms", "svm"], 2, "svm"),
    cli("compare-gnn-empty", [*D, "--gnn", ""], 2, "--gnn"),
    cli("compare-resume-truncated-config", ["compare", "--resume", "{tmp}/run"], 2, "config.json"),
    cli("compare-data-corrupt-folder", ["compare", "--data", "{tmp}/corrupt"], 2, "corrupt"),
    cli("compare-data-bad-manifest", ["compare", "--data", "{tmp}/bad.csv"], 2, "bad.csv"),
    cli(
        "compare-offline-download",
        ["compare", "--data", "cifar10", "--no-download", "--data-root", "{tmp}/dl"],
        2,
        "cifar10",
    ),
    cli("graphs-method", ["graphs", "--data", "digits", "--method", "felzenszwalb"], 2, "invalid choice"),
    cli("graphs-edges", ["graphs", "--data", "digits", "--edges", "full"], 2, "invalid choice"),
    cli("graphs-k-0", ["graphs", "--data", "digits", "--k", "0"], 2, "expected a positive integer"),
    cli("graphs-missing-data", ["graphs", "--data", "{tmp}/nope"], 2, "nope"),
    cli("show-random-image", ["show", "{tmp}/random.png", "--out", "{tmp}/g.png"], 2, "random.png"),
    cli("show-empty-image", ["show", "{tmp}/empty.png", "--out", "{tmp}/g.png"], 2, "empty.png"),
    cli("show-truncated-image", ["show", "{tmp}/truncated.png", "--out", "{tmp}/g.png"], 2, "truncated.png"),
    cli(
        "show-too-many-segments",
        ["show", "{tmp}/good.png", "--n-segments", "5000", "--out", "{tmp}/g.png"],
        2,
        "segments",
    ),
    cli(
        "explain-weights-random",
        ["explain", "chelsea", "--weights", "{tmp}/random.pth", "--out", "{tmp}/x"],
        2,
        "random.pth",
    ),
    cli(
        "explain-random-image",
        ["explain", "{tmp}/random.png", "--weights", "none", "--out", "{tmp}/x"],
        2,
        "random.png",
    ),
    cli("finetune-device", ["finetune", "--data", "digits", "--device", "bogus"], 2, "--device"),
    cli(
        "finetune-epochs-0",
        ["finetune", "--data", "digits", "--epochs", "0"],
        2,
        "expected a positive integer",
    ),
    cli(
        "train-gnn-n-segments",
        ["train-gnn", "--data", "digits", "--n-segments", "abc"],
        2,
        "expected a positive integer",
    ),
    cli("data-bad-manifest", ["data", "{tmp}/bad.csv"], 2, "bad.csv"),
    cli("data-unknown-name", ["data", "imagenet22k"], 2, "imagenet22k"),
]


@pytest.fixture
def cli_inputs(ctx) -> Path:
    tmp = ctx.tmp
    _folder(tmp / "corrupt", {"a": ["random", "empty"], "b": ["truncated", "random"]})
    (tmp / "bad.csv").write_text(f'path,label\n{tmp}/good.png,a,extra\n"unclosed,b\n')
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text('{"data": "digits", "seeds": [0, ')
    return tmp


@pytest.mark.parametrize(("argv", "code", "fragment"), CLI)
def test_cli_bad_input_exits_2_with_a_clear_line(argv, code, fragment, cli_inputs, capsys):
    tmp = str(cli_inputs)
    try:
        got = main([a.replace("{tmp}", tmp) for a in argv])
    except SystemExit as exc:  # argparse
        got = exc.code
    out = capsys.readouterr()
    err = " ".join(out.err.split())
    assert got == code, out.err + out.out
    assert re.search(fragment, err), err
    assert "Traceback" not in out.err and "weights_only=False" not in out.err
    assert "error" not in out.out.lower()


def test_corpus_is_large_enough():
    assert len(CNN) + len(BRIDGE) + len(RUNNABLE) + len(GNN) + len(ENGINE) + len(CLI) >= 110
