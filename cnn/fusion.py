"""An inference copy of a CNN with its BatchNorm layers folded into the convolutions before them.

In eval mode a ``BatchNorm2d`` that follows a convolution is a fixed per-channel scale and shift, so it
can be multiplied into the convolution's weights and bias once (``torch.nn.utils.fusion``) instead of
being applied to every feature map of every batch. On this project's 2 CPU cores the BatchNorm layers
cost about a third of ``efficientnet_lite0``'s forward pass (``benchmarks/bench_graph_building.py``
times the folded backbone beside the original).

:func:`fold_batchnorm` finds the pairs from the data flow, not from module names: one probe pass with
forward hooks records which convolution produced the very tensor each BatchNorm receives, unchanged
(its version counter tells an in-place change apart). A BatchNorm that reads anything else (a sum, an
activation, a tensor changed in place) is left as it is. The copy is then compared with the original on
the probe input, output tensor by output tensor; a difference beyond float rounding there raises (a
convolution's output that other operations also read, for example) instead of returning the copy.
The original model, its parameters and every module's train/eval flag, is not changed.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from engine.modes import eval_mode

__all__ = ["count_batchnorm", "exact_float32", "fold_batchnorm", "full_float32"]

M = TypeVar("M", bound=nn.Module)


def count_batchnorm(model: nn.Module) -> int:
    """The ``BatchNorm2d`` layers (timm's ``BatchNormAct2d`` included) of a model.

    Example:
        >>> count_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()))
        1
    """
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or lists / tuples / dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def _replacement(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What a folded BatchNorm becomes: nothing (``nn.Identity``), or for timm's ``BatchNormAct2d`` its
    dropout and activation, in the order of its forward; ``None`` for a subclass of unknown forward."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if type(bn).__name__ == "BatchNormAct2d" and isinstance(drop, nn.Module) and isinstance(act, nn.Module):
        return nn.Sequential(drop, act)
    return None


def _probe_input(model: nn.Module) -> torch.Tensor:
    cfg = getattr(model, "cfg", None)
    size = getattr(cfg, "input_size", None)
    if size is None:
        raise ValueError(
            f"{type(model).__name__} has no cfg.input_size to build a probe input from; pass example=, "
            "a batch the model accepts, e.g. torch.randn(2, 3, 224, 224)"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, int(size), int(size), generator=gen).to(device, dtype)


#: The convolution and matrix-product back-ends whose float32 precision :func:`full_float32` pins.
_FP32_BACKENDS = (("cudnn", "conv"), ("cuda", "matmul"), ("mkldnn", "conv"), ("mkldnn", "matmul"))


def exact_float32(device: torch.device | str, op: str = "matmul") -> bool:
    """Whether float32 matrix products (``op="matmul"``) or convolutions (``op="conv"``) on ``device``
    run in full float32 (IEEE) under the current settings, not TF32 or bfloat16.

    Reads the per-backend setting of torch >= 2.9 (``torch.backends.cuda.matmul``,
    ``torch.backends.cudnn.conv``, ``torch.backends.mkldnn.matmul`` / ``.conv``; ``"none"`` defers to
    ``torch.backends.fp32_precision``, and ``"none"`` there is the IEEE default), else the legacy switches
    (``torch.get_float32_matmul_precision()``, ``torch.backends.cudnn.allow_tf32``). A setting that cannot
    be read counts as not exact. On a GPU cuDNN convolutions default to TF32, so ``op="conv"`` is False
    there unless changed; CPU defaults are exact. On the CPU only bfloat16 counts as not exact: torch's
    ``set_float32_matmul_precision("high")`` sets oneDNN to ``"tf32"``, which x86 CPUs compute in full
    float32 (bit-identical ``bmm`` results on this project's machine), while ``"medium"`` (bfloat16)
    does round. Code that needs exact products (distances computed as ``|a|^2 - 2 a.b + |b|^2``, which
    cancel) can compute in float64 when this is False, without changing the global settings (which
    other threads may be using).

    Example:
        >>> exact_float32("cpu"), exact_float32("cpu", "conv")
        (True, True)
        >>> exact_float32("cuda", "conv")  # cuDNN's TF32 default
        False
    """
    if op not in ("matmul", "conv"):
        raise ValueError(f"op must be 'matmul' or 'conv', got {op!r}")
    backends = torch.backends
    cuda = torch.device(device).type == "cuda"
    try:
        backend = (backends.cudnn if op == "conv" else backends.cuda) if cuda else backends.mkldnn
        target = getattr(backend, op, None)  # e.g. torch.backends.cudnn.conv (torch >= 2.9)
        setting = getattr(target, "fp32_precision", None)
        if setting is None:  # torch before the per-backend API
            if op == "conv":
                return not (cuda and bool(backends.cudnn.allow_tf32))
            legacy = torch.get_float32_matmul_precision()
            return legacy == "highest" if cuda else legacy != "medium"
        if setting == "none":
            setting = getattr(backends, "fp32_precision", "none")
    except (AttributeError, RuntimeError):
        return False
    return str(setting) in ("ieee", "none") if cuda else str(setting) != "bf16"


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Float32 convolutions and matrix products in full precision (IEEE) inside the block, not TF32 or
    bfloat16 (cuDNN convolutions default to TF32 on GPUs); the settings are restored afterwards.

    Example:
        >>> with full_float32():
        ...     torch.backends.cudnn.conv.fp32_precision
        'ieee'
    """
    saved: list[tuple[Any, str]] = []
    legacy: tuple[bool, bool] | None = None
    try:
        for backend, op in _FP32_BACKENDS:
            target = getattr(getattr(torch.backends, backend, None), op, None)
            if target is None or not hasattr(target, "fp32_precision"):  # torch before the per-backend API
                continue
            saved.append((target, target.fp32_precision))
            target.fp32_precision = "ieee"
        if not saved:
            legacy = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        yield
    finally:
        for target, value in reversed(saved):
            target.fp32_precision = value
        if legacy is not None:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy


def fold_batchnorm(model: M, example: torch.Tensor | None = None, *, rtol: float = 1e-3) -> M:
    """A frozen eval-mode copy of ``model`` in which every ``BatchNorm2d`` applied directly to a
    ``Conv2d``'s output is folded into that convolution (for inference only: the copy cannot be trained).

    Args:
        model: any ``nn.Module`` (a :class:`cnn.backbones.Backbone` keeps its interface: ``features``,
            ``embed``, ``cfg``, ...). It is not changed.
        example: a batch the model accepts, used for the probe pass that finds the pairs and for the
            check of the copy; ``None`` = ``torch.randn(2, 3, S, S)`` with ``S = model.cfg.input_size``.
        rtol: the largest difference allowed between each output tensor of the copy and of the
            original on ``example``, relative to that tensor's largest value. Both run in full float32
            for this check (:func:`full_float32`: TF32 convolutions, cuDNN's default on GPUs, alone
            move efficientnet_lite0's outputs by about 1e-3).

    Returns:
        The copy: eval mode, ``requires_grad=False`` everywhere, its folded BatchNorms replaced by
        ``nn.Identity`` (or, for timm's ``BatchNormAct2d``, by its activation).

    Raises:
        ValueError: no ``example`` and no ``model.cfg.input_size``, a negative ``rtol``, or parameters
            that are not float32 / float64 (fold first, then convert: ``fold_batchnorm(m).half()``).
        RuntimeError: an output of the folded copy differs from the original's by more than ``rtol``
            (or is not finite), or the model's output holds no tensor to compare.

    Shapes:
        - example: what ``model`` takes, e.g. ``(B, 3, S, S)``

    Example:
        >>> from cnn.backbones import create_backbone
        >>> m = create_backbone("resnet18", weights=None)
        >>> fast = fold_batchnorm(m)
        >>> count_batchnorm(m), count_batchnorm(fast)
        (20, 0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or rtol < 0:
        raise ValueError(f"rtol must be a number >= 0, got {rtol!r}")
    odd = sorted({str(p.dtype) for p in model.parameters() if p.dtype not in (torch.float32, torch.float64)})
    if odd:
        raise ValueError(
            f"fold_batchnorm needs float32 or float64 parameters, got {', '.join(odd)}; fold first, then "
            "convert the copy (fold_batchnorm(model).half())"
        )
    x = _probe_input(model) if example is None else example
    folded = copy.deepcopy(model).eval()
    paths = {m: p for p, m in folded.named_modules()}
    # id of a conv's output -> (conv, the output, its version counter when the conv returned it)
    produced: dict[int, tuple[nn.Module, torch.Tensor, int]] = {}
    reads: list[tuple[nn.Module, nn.Module | None]] = []
    calls: Counter[nn.Module] = Counter()

    def after_conv(mod: nn.Module, _inp: Any, out: Any) -> None:
        calls[mod] += 1
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (mod, out, out._version)  # the output is kept: its id is not reused

    def before_bn(mod: nn.Module, inp: Any) -> None:
        calls[mod] += 1
        t = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
        source = produced.get(id(t)) if t is not None else None
        unchanged = source is not None and t is not None and source[2] == t._version
        reads.append((mod, source[0] if unchanged else None))  # type: ignore[index]

    handles = []
    for m in folded.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(before_bn))
    try:  # outside inference mode: its tensors have no version counter
        with torch.inference_mode(False), torch.no_grad():
            folded(x.clone())
    finally:
        for h in handles:
            h.remove()
    produced.clear()
    readers = Counter(conv for _, conv in reads if conv is not None)
    for bn, conv in reads:
        if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, nn.Conv2d):
            continue
        replacement = _replacement(bn)
        if (
            replacement is None
            or calls[bn] != 1
            or calls[conv] != 1
            or readers[conv] != 1
            or bn.running_mean is None
            or bn.running_var is None
            or bn.num_features != conv.out_channels
        ):
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        parent_path, _, name = paths[bn].rpartition(".")
        folded.get_submodule(parent_path).register_module(name, replacement)
    folded.requires_grad_(False)
    # TF32 (cuDNN's default) alone moves outputs by ~1e-3; the model's modes come back module by module
    with eval_mode(model), torch.no_grad(), full_float32():
        want, got = _tensors(model(x)), _tensors(folded(x))
    if not want or len(want) != len(got):
        raise RuntimeError(
            f"cannot check the folded copy of {type(model).__name__}: its output holds "
            f"{len(want)} tensors (the copy's {len(got)}); fold a module that returns tensors"
        )
    for i, (a, b) in enumerate(zip(want, got)):
        if not a.numel():
            continue
        scale = float(a.abs().max())
        worst = float((a - b).abs().max())
        if not worst <= rtol * max(scale, 1e-12):  # also when NaN
            raise RuntimeError(
                f"folding the BatchNorm layers of {type(model).__name__} changed output tensor {i} by "
                f"{worst:.3g} (its largest value {scale:.3g}, rtol {rtol}): a convolution's output is "
                "also read by something else than its BatchNorm. Use the model as it is"
            )
    return folded
