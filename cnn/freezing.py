"""Freezing strategies for transfer learning: which parameters of a backbone train.

Three strategies, from cheapest to most flexible:

* ``"feature_extraction"``: the pretrained body is a fixed feature extractor; only ``model.head`` trains.
* ``"fine_tuning"``: the last ``trainable_blocks`` blocks of ``model.blocks()`` train together with the head.
* ``"full"``: every parameter trains (the pretrained weights are only the starting point).

:func:`choose_strategy` picks one from the size of the new data set and its similarity to the data the
backbone was trained on (the classic four cases of transfer learning).

Frozen batch normalisation: a BatchNorm layer whose parameters are all frozen is kept in eval mode even
when ``model.train()`` is called, so its running mean and variance do not move and it normalises with
the pretrained statistics. A forward pre-hook does this (installed by :func:`set_parameter_requires_grad`
and :func:`freeze`); it checks ``requires_grad`` at every call, so unfreezing the layer lets it train again.
"""

from __future__ import annotations

import dataclasses
from typing import cast

from torch import nn

from engine.norms import frozen_norm_pre_hook as _frozen_norm_pre_hook  # noqa: F401 - models pickled before 2026-12-07 name it here
from engine.norms import hold_frozen_norms, norms_with_stats

__all__ = [
    "STRATEGIES",
    "Strategy",
    "choose_strategy",
    "count_parameters",
    "freeze",
    "set_parameter_requires_grad",
]

STRATEGIES: tuple[str, ...] = ("feature_extraction", "fine_tuning", "full")
_DEFAULT_TRAINABLE_BLOCKS = 2


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A freezing strategy and why it was chosen; pass it straight to :func:`freeze`.

    Attributes:
        name: one of :data:`STRATEGIES`.
        trainable_blocks: for ``"fine_tuning"`` the number of last blocks that train; ``None`` otherwise.
        reason: a sentence saying why this strategy suits the data.

    Example:
        >>> s = choose_strategy(500, "high")
        >>> s.name, s.trainable_blocks
        ('feature_extraction', None)
    """

    name: str
    trainable_blocks: int | None
    reason: str

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.name!r}; known: {', '.join(STRATEGIES)}")


# ----------------------------------------------------------------------------------------------
# requires_grad and frozen batch norm


def _install_norm_hooks(module: nn.Module) -> None:
    hold_frozen_norms(module)


def set_parameter_requires_grad(module: nn.Module, flag: bool) -> nn.Module:
    """Set ``requires_grad`` of every parameter of ``module`` (the function of the lecture notes).

    ``set_parameter_requires_grad(model, False)`` freezes the whole model; a new head added afterwards
    trains. BatchNorm layers frozen this way stay in eval mode under ``model.train()`` (see the module
    docstring); ``flag=True`` lets them train again from the next ``model.train()``.

    Args:
        module: any module; changed in place.
        flag: ``True`` to train the parameters, ``False`` to freeze them.

    Returns:
        ``module``, for chaining.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> count_parameters(set_parameter_requires_grad(m, False))
        (0, 240)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}")
    for p in module.parameters():
        p.requires_grad_(flag)
    _install_norm_hooks(module)
    return module


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Number of trainable parameters and of all parameters (elements, not tensors).

    Example:
        >>> count_parameters(nn.Linear(4, 2))
        (10, 10)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


# ----------------------------------------------------------------------------------------------
# freeze


def _check_backbone(model: nn.Module, strategy: str) -> list[nn.Module]:
    head = getattr(model, "head", None)
    blocks = getattr(model, "blocks", None)
    # A Backbone's blocks() is a method; a raw timm model's `.blocks` is an nn.Sequential, not this contract.
    if not isinstance(head, nn.Module) or not callable(blocks) or isinstance(blocks, nn.Module):
        raise TypeError(
            f"strategy {strategy!r} needs a backbone with .head and .blocks() (a cnn.Backbone from "
            f"create_backbone); got {type(model).__name__}. For other models use "
            "set_parameter_requires_grad on the parts to freeze"
        )
    return list(blocks())


def freeze(
    model: nn.Module,
    strategy: str | Strategy,
    *,
    trainable_blocks: int | None = None,
) -> nn.Module:
    """Choose which parameters of a backbone train, in place.

    Every call starts from scratch: parameters outside the chosen part are frozen, those inside are made
    trainable, so ``freeze(model, "full")`` undoes an earlier freeze. Frozen BatchNorm layers stay in eval
    mode under ``model.train()``: their running statistics do not move.

    Args:
        model: a :class:`cnn.backbones.Backbone` (anything with ``.head`` and ``.blocks()``; for
            ``"full"`` any module).
        strategy: ``"feature_extraction"`` (only ``model.head`` trains), ``"fine_tuning"`` (the last
            ``trainable_blocks`` of ``model.blocks()`` and the head train) or ``"full"`` (everything
            trains); or a :class:`Strategy` from :func:`choose_strategy`.
        trainable_blocks: blocks to train with ``"fine_tuning"``, ``1 <= N <= len(model.blocks())``;
            default 2 (or the Strategy's number).

    Returns:
        ``model``, for chaining.

    Raises:
        ValueError: unknown strategy (the message lists the known ones), ``trainable_blocks`` out of
            range or given with a strategy other than ``"fine_tuning"``.
        TypeError: ``"feature_extraction"``/``"fine_tuning"`` on a model without ``head``/``blocks()``.

    Example:
        >>> m = create_backbone("resnet18", weights=None, num_classes=2)
        >>> _ = freeze(m, "feature_extraction")  # returns m
        >>> count_parameters(m)
        (1026, 11177538)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(strategy, Strategy):
        if trainable_blocks is not None and trainable_blocks != strategy.trainable_blocks:
            raise ValueError(
                f"trainable_blocks={trainable_blocks!r} contradicts the Strategy's "
                f"trainable_blocks={strategy.trainable_blocks!r}; pass one or the other"
            )
        trainable_blocks = strategy.trainable_blocks
        strategy = strategy.name
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if trainable_blocks is not None and strategy != "fine_tuning":
        raise ValueError(
            f"trainable_blocks={trainable_blocks!r} only applies to strategy 'fine_tuning', "
            f"not {strategy!r}; leave it out"
        )

    if strategy == "full":
        trainable: list[nn.Module] = [model]
    else:
        blocks = _check_backbone(model, strategy)
        trainable = [cast(nn.Module, model.head)]  # checked by _check_backbone
        if strategy == "fine_tuning":
            n = _DEFAULT_TRAINABLE_BLOCKS if trainable_blocks is None else trainable_blocks
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(blocks):
                raise ValueError(
                    f"trainable_blocks must be an int from 1 to {len(blocks)} (the number of blocks of "
                    f"{getattr(model, 'name', type(model).__name__)!r}), got {n!r}; "
                    f"use 'feature_extraction' for 0 blocks or 'full' to train everything"
                )
            trainable = blocks[len(blocks) - n :] + trainable

    set_parameter_requires_grad(model, False)
    for part in trainable:
        set_parameter_requires_grad(part, True)
    # Norm layers that train again follow the model's mode now, not only after the next model.train().
    for norm in norms_with_stats(model):
        if any(p.requires_grad for p in norm.parameters(recurse=False)):
            norm.training = model.training
        else:
            norm.training = False
    return model


# ----------------------------------------------------------------------------------------------
# choose_strategy


def choose_strategy(
    n_images: int,
    similarity: str | float,
    *,
    large: int = 10_000,
) -> Strategy:
    """Pick a freezing strategy from the size of the data set and its similarity to ImageNet.

    The four cases of transfer learning:

    ============  ======================================  =========================================
    data set      similar to the pretraining data          different from it
    ============  ======================================  =========================================
    small         ``feature_extraction``: a linear         ``fine_tuning`` of 3 blocks: the top
                  classifier on the top features; more     features are too specific, but few images
                  would overfit                            cannot train the whole network
    large         ``fine_tuning`` of 2 blocks: enough      ``full``: enough data to adapt every
                  data to adapt the top layers safely      layer; the weights are a good start
    ============  ======================================  =========================================

    Args:
        n_images: number of training images.
        similarity: ``"high"`` or ``"low"``, or a number in ``[0, 1]`` (``>= 0.5`` counts as high).
        large: a data set with at least this many images counts as large.

    Returns:
        A :class:`Strategy` with the name, the blocks to fine-tune and the reason.

    Example:
        >>> choose_strategy(50_000, "low").name
        'full'
        >>> choose_strategy(800, 0.2).trainable_blocks
        3
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive int (the number of training images), got {n_images!r}")
    if isinstance(large, bool) or not isinstance(large, int) or large < 1:
        raise ValueError(
            f"large must be a positive int (images from which a data set is large), got {large!r}"
        )
    if isinstance(similarity, str):
        if similarity not in ("high", "low"):
            raise ValueError(f"similarity must be 'high', 'low' or a number in [0, 1], got {similarity!r}")
        similar = similarity == "high"
    elif isinstance(similarity, (int, float)) and not isinstance(similarity, bool):
        if not 0.0 <= float(similarity) <= 1.0:
            raise ValueError(f"similarity must be in [0, 1] when given as a number, got {similarity!r}")
        similar = float(similarity) >= 0.5
    else:
        raise TypeError(
            f"similarity must be 'high', 'low' or a number in [0, 1], got {type(similarity).__name__}"
        )
    size = f"{n_images} images ({'>=' if n_images >= large else '<'} {large}: "
    size += "large)" if n_images >= large else "small)"
    if not similar and n_images < large:
        return Strategy(
            "fine_tuning",
            3,
            f"{size}, different from the pretraining data: the top features are too specific to the "
            "old task, so retrain the last 3 blocks and the head; few images cannot train the whole network",
        )
    if not similar:
        return Strategy(
            "full",
            None,
            f"{size}, different from the pretraining data: enough images to adapt every layer; "
            "the pretrained weights are a good initialisation",
        )
    if n_images < large:
        return Strategy(
            "feature_extraction",
            None,
            f"{size}, similar to the pretraining data: the pretrained features already fit; train a "
            "linear classifier on them (fine-tuning would overfit)",
        )
    return Strategy(
        "fine_tuning",
        2,
        f"{size}, similar to the pretraining data: enough images to fine-tune the last 2 blocks "
        "and the head without overfitting",
    )
