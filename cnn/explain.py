"""Look inside a CNN: intermediate feature maps (forward hooks) and Grad-CAM heat maps.

* :class:`FeatureMaps` is a context manager that records the outputs of chosen layers during any
  forward pass made inside its ``with`` block, then removes its hooks.
* :func:`grad_cam` computes class activation maps for a whole batch at once, without touching the
  model's parameter gradients or its train/eval mode: Grad-CAM (Selvaraju et al., 2017), Grad-CAM++
  (Chattopadhyay et al., 2018) and HiResCAM (Draelos and Carin, 2020), which keeps the gradient at
  every position and so shows exactly the positions that moved the logit.

Layers are named by module path (``"model.layer4"``), given as modules, or, for a
:class:`~cnn.backbones.Backbone`, as stage indices (``0`` .. ``len(feature_channels) - 1``, negative
indices count from the deepest stage), the same stages that ``Backbone.features`` returns.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnn.backbones import Backbone
from engine.modes import eval_mode

__all__ = ["CAM_METHODS", "FeatureMaps", "grad_cam"]

#: Class activation map variants of :func:`grad_cam`.
CAM_METHODS = ("gradcam", "gradcam++", "hirescam")

LayerSpec = str | int | nn.Module


def _module_paths(model: nn.Module) -> dict[int, str]:
    """``id(module) -> path`` for every submodule (the first path when a module is shared)."""
    paths: dict[int, str] = {}
    for path, mod in model.named_modules():
        paths.setdefault(id(mod), path)
    return paths


def _resolve_layer(model: nn.Module, layer: Any, paths: dict[int, str]) -> tuple[str, nn.Module]:
    """Turn a layer spec into ``(path inside model, module)``; clear errors for anything else."""
    if isinstance(layer, bool):
        raise TypeError(f"layer must be a module path (str), a module or a stage index (int), got {layer!r}")
    if isinstance(layer, int):
        if not isinstance(model, Backbone):
            raise ValueError(
                f"layer={layer!r}: integer layers are stage indices of a cnn.Backbone, but the model is a "
                f"{type(model).__name__}; pass a module path such as {_some_names(model, 1)[0]!r} instead"
            )
        n = len(model.stage_names)
        if not -n <= layer < n:
            raise ValueError(
                f"layer={layer} is out of range: backbone {model.name!r} has {n} stages "
                f"(use 0..{n - 1}, or -1 for the deepest)"
            )
        path = "model." + model.stage_names[layer]
        return path, model.get_submodule(path)
    if isinstance(layer, str):
        candidates = [layer]
        if isinstance(model, Backbone):  # "layer4" also means "model.layer4" inside a backbone
            candidates.append("model." + layer if layer else "model")
        for path in candidates:
            try:
                return path, model.get_submodule(path)
            except AttributeError:
                continue
        names = _all_names(model)
        if isinstance(model, Backbone):
            names += [p[len("model.") :] for p in names if p.startswith("model.")]
        close = difflib.get_close_matches(layer, names, n=5)
        hint = ", ".join(repr(c) for c in (close or _some_names(model, 8)))
        raise ValueError(
            f"layer={layer!r} is not a submodule of {type(model).__name__}; valid names include {hint} "
            "(see [name for name, _ in model.named_modules()])"
        )
    if isinstance(layer, nn.Module):
        if id(layer) not in paths:
            raise ValueError(
                f"layer {type(layer).__name__} is not a submodule of the model {type(model).__name__}; "
                "pass one of its modules, e.g. model.get_submodule(name)"
            )
        return paths[id(layer)], layer
    raise TypeError(
        f"layer must be a module path (str), a module or a stage index (int), got {type(layer).__name__}"
    )


def _all_names(model: nn.Module) -> list[str]:
    return [p for p, _ in model.named_modules() if p]


def _some_names(model: nn.Module, k: int) -> list[str]:
    names = _all_names(model)
    if isinstance(model, Backbone):
        names = ["model." + p for p in model.stage_names] + names
    return names[:k] or [""]


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class FeatureMaps:
    """Record the outputs of chosen layers during forward passes (a context manager over forward hooks).

    The hooks exist only inside the ``with`` block; on exit they are removed, even after an exception.
    Every map is stored detached and copied (so later in-place ops such as ``ReLU(inplace=True)``
    cannot change it); a second forward pass inside the block replaces the maps of the first.

    Args:
        model: any ``nn.Module``; a :class:`~cnn.backbones.Backbone` also accepts stage indices.
        layers: one layer or a sequence of layers, each a module path inside ``model``
            (``"model.layer1"``; inside a Backbone ``"layer1"`` works too), a submodule of ``model``,
            or an int stage index of a Backbone (``-1`` = deepest stage).

    Attributes:
        maps: ``{path: tensor}``, in the order of ``layers`` once the block has ended; keys are
            module paths inside ``model`` (stage ``i`` of a Backbone is ``"model." + stage path``).
            ``fm[layer]`` looks a map up by the same spec that was passed in ``layers``.
        names: the resolved module paths, in order.

    Raises:
        ValueError: an unknown layer name (the message lists valid names), a module that is not part of
            ``model``, or a stage index out of range / on a model that is not a Backbone.

    Shapes:
        - maps[name]: whatever the layer outputs, usually ``(B, C, H, W)``.

    Example:
        >>> m = create_backbone("resnet18", weights=None)
        >>> with FeatureMaps(m, [1, "layer4"]) as fm:
        ...     _ = m(torch.randn(2, 3, 64, 64))
        >>> fm.names, tuple(fm["layer4"].shape)
        (['model.layer1', 'model.layer4'], (2, 512, 2, 2))
    """

    def __init__(self, model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        specs = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not specs:
            raise ValueError("layers is empty; pass at least one module path, module or stage index")
        paths = _module_paths(model)
        resolved: dict[str, nn.Module] = {}
        self._keys: dict[Any, str] = {}
        for spec in specs:
            path, module = _resolve_layer(model, spec, paths)
            resolved.setdefault(path, module)
            self._keys[spec if not isinstance(spec, nn.Module) else id(spec)] = path
        self.model = model
        self._modules = resolved
        self.names: list[str] = list(resolved)
        self.maps: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            t = _first_tensor(output)
            if t is not None:
                self.maps[name] = t.detach().clone()

        return hook

    def __enter__(self) -> FeatureMaps:
        if self._handles:
            raise RuntimeError(
                "this FeatureMaps is already active; nested `with` on one instance is not supported"
            )
        self.maps = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
        self.maps = {n: self.maps[n] for n in self.names if n in self.maps}  # order of `layers`

    def remove(self) -> None:
        """Remove the hooks (called on exit of the ``with`` block; safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __getitem__(self, layer: LayerSpec) -> torch.Tensor:
        key = self._keys.get(id(layer) if isinstance(layer, nn.Module) else layer)
        if key is None:
            key = layer if isinstance(layer, str) else None
        if key not in self.maps:
            raise KeyError(
                f"no map recorded for layer {layer!r}; recorded: {list(self.maps)} "
                "(run a forward pass inside the `with` block)"
            )
        return self.maps[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={self.names})"


def _default_layer(model: nn.Module) -> LayerSpec:
    if isinstance(model, Backbone):
        return -1
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"layer=None: {type(model).__name__} is not a cnn.Backbone and has no nn.Conv2d to default to; "
            "pass layer= a module path or module"
        )
    return convs[-1]


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    b, c = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must be class indices (int or int sequence), got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"target has {t.numel()} entries for a batch of {b}; pass one int or one per image")
    if bool(((t < 0) | (t >= c)).any()):
        raise ValueError(f"target={target!r} is out of range for {c} classes (use 0..{c - 1})")
    return t


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target: int | Sequence[int] | torch.Tensor | None = None,
    layer: LayerSpec | None = None,
    method: str = "gradcam",
) -> torch.Tensor:
    """Grad-CAM heat maps for a batch: where the evidence for a class sits in the image.

    For the activation ``A`` of ``layer`` and the logit ``y_c`` of the target class, with gradients
    ``G = dy_c / dA``:

    * ``"gradcam"``: channel weights ``alpha_k = mean_ij G_kij``, map ``relu(sum_k alpha_k A_k)``;
    * ``"gradcam++"``: ``alpha_k = sum_ij a_kij relu(G_kij)`` with
      ``a = G^2 / (2 G^2 + sum_ij A_k G^3)``, map ``relu(sum_k alpha_k A_k)``;
    * ``"hirescam"``: ``relu(sum_k G_k * A_k)``, element-wise, no spatial averaging.

    The map is upsampled bilinearly to the input size and divided by its maximum (an all-zero map
    stays zero). The gradient is taken with :func:`torch.autograd.grad` with respect
    to the activation only, so it works with frozen parameters and leaves every ``param.grad`` as it
    was. The model runs in eval mode; the mode of every submodule is restored afterwards.

    Args:
        model: a classifier returning logits ``(B, num_classes)``.
        x: a normalised input batch.
        target: class per image: ``None`` (the predicted class), one int for all images, or ``B`` ints.
        layer: the layer to explain: module path, module, or Backbone stage index. ``None`` means the
            deepest stage of a Backbone, or the last ``nn.Conv2d`` of any other model.
        method: one of :data:`CAM_METHODS`.

    Returns:
        Heat maps in ``[0, 1]``, detached, on the device of ``x``.

    Raises:
        ValueError: bad ``x`` shape, target out of range, unknown layer, or a layer that did not run.
        RuntimeError: called inside ``torch.inference_mode()``.

    Shapes:
        - x: ``(B, C, H, W)``
        - output: ``(B, H, W)``

    Example:
        >>> m = create_backbone("resnet18", weights=None)
        >>> grad_cam(m, torch.randn(2, 3, 64, 64), target=3).shape
        torch.Size([2, 64, 64])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {got}; add a batch axis with x[None]")
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, CAM_METHODS))}, got {method!r}")
    if torch.is_inference_mode_enabled():  # enable_grad cannot lift it: the backward pass would fail
        raise RuntimeError(
            "grad_cam needs gradients, which torch.inference_mode() switches off; call it outside "
            "inference_mode (torch.no_grad() around it is fine)"
        )
    path, module = _resolve_layer(
        model, _default_layer(model) if layer is None else layer, _module_paths(model)
    )
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _inputs: Any, output: Any) -> Any:
        t = _first_tensor(output)
        if t is None:
            return None
        act = t if t.requires_grad else t.detach().requires_grad_(True)
        store["act"] = act
        # hand a copy downstream: later in-place ops must not rewrite the activation we differentiate
        out = act.clone()
        return out if isinstance(output, torch.Tensor) else (out, *output[1:])

    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise ValueError(
                    f"model must return logits (B, num_classes), got {getattr(logits, 'shape', logits)}"
                )
            if "act" not in store:
                raise ValueError(
                    f"layer {path!r} did not run in the forward pass; pick a layer the model uses"
                )
            t = _targets(target, logits)
            score = logits.gather(1, t[:, None]).sum()  # images are independent in eval mode
            (grads,) = torch.autograd.grad(score, store["act"], allow_unused=True)
    finally:
        handle.remove()
    act = store["act"].detach()
    if act.dim() != 4:
        raise ValueError(
            f"layer {path!r} outputs shape {tuple(act.shape)}; Grad-CAM needs a (B, C, h, w) map"
        )
    if grads is None:
        grads = torch.zeros_like(act)
    if method == "hirescam":
        cam = F.relu((grads * act).sum(dim=1, keepdim=True))
    else:
        if method == "gradcam":
            weights = grads.mean(dim=(2, 3), keepdim=True)
        else:  # gradcam++
            g2 = grads.pow(2)
            denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g2 * grads
            a = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
            weights = (a * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
