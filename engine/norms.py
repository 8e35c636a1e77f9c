"""Frozen normalisation layers stay frozen in training: the one rule both ``cnn.freeze`` and ``fit`` apply.

A BatchNorm (or InstanceNorm with running statistics) layer whose affine parameters are all frozen
(``requires_grad=False``) is kept in eval mode even under ``model.train()``: its running mean and
variance do not move and it normalises with the statistics it was trained with. Freezing only the
parameters, as ``for p in model.parameters(): p.requires_grad = False`` does, would otherwise let
every training batch overwrite the pretrained statistics, so a "frozen" backbone would change.

A forward pre-hook checks ``requires_grad`` at every call, so unfreezing a layer lets it train again.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["frozen_norm_pre_hook", "hold_frozen_norms", "norms_with_stats"]


def frozen_norm_pre_hook(module: nn.Module, args: Any) -> None:
    """Keep a normalisation layer with running statistics in eval mode while its parameters are frozen
    (the forward pre-hook that :func:`hold_frozen_norms` installs)."""
    if module.training and not any(p.requires_grad for p in module.parameters(recurse=False)):
        module.training = False


def norms_with_stats(module: nn.Module) -> list[nn.modules.batchnorm._NormBase]:
    """BatchNorm (and InstanceNorm with running stats) layers of ``module`` that have affine parameters.

    Example:
        >>> len(norms_with_stats(nn.Sequential(nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))))
        1
    """
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        and m.track_running_stats
        and any(True for _ in m.parameters(recurse=False))
    ]


def hold_frozen_norms(module: nn.Module) -> list[RemovableHandle]:
    """Install the pre-hook that keeps frozen normalisation layers of ``module`` in eval mode.

    Idempotent (a layer carries the hook at most once, also after a deepcopy). Layers without affine
    parameters (``affine=False``) are left alone: nothing says whether they are meant to be frozen.

    Returns:
        The handles of the hooks installed now (``handle.remove()`` takes one off again); layers that
        already carried the hook are not among them.

    Example:
        >>> import torch
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> for p in m.parameters():
        ...     p.requires_grad = False
        >>> len(hold_frozen_norms(m)), len(hold_frozen_norms(m))  # the second call adds none
        (1, 0)
        >>> _ = m.train()(torch.randn(2, 3, 8, 8))
        >>> m[1].training, int(m[1].num_batches_tracked)
        (False, 0)
    """
    return [
        norm.register_forward_pre_hook(frozen_norm_pre_hook)
        for norm in norms_with_stats(module)
        if frozen_norm_pre_hook not in norm._forward_pre_hooks.values()
    ]
