"""The arm registry: one function per arm, registered under a name with a title.

An arm takes the shared :class:`~bridge.compare.workbench.Workbench` (data view and split, frozen
backbone, embeddings, graphs, all computed once and only when an arm asks) and a seed, trains one model,
and returns its result cell (a JSON-serialisable dict, see :meth:`Workbench.result_cell`). Adding an arm
is one function and one decorator line::

    @register_arm("knn_probe", title="E. k-nearest neighbours on the frozen embeddings")
    def knn_probe(bench: Workbench, seed: int) -> dict[str, Any]: ...

The built-in arms (``linear_probe``, ``finetune``, ``gnn_cnn``, ``gnn_color``, ``e2e``) are one line each in
:data:`BUILTIN_ARMS`; their functions live in :mod:`bridge.compare.arms`, imported on the first look-up,
so reading the registry costs no heavy import.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.compare.workbench import Workbench

__all__ = ["BUILTIN_ARMS", "ArmFn", "ArmSpec", "arm_titles", "get_arm", "list_arms", "register_arm"]

ArmFn = Callable[["Workbench", int], dict[str, Any]]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGISTRY: dict[str, ArmSpec] = {}


@dataclasses.dataclass(frozen=True)
class ArmSpec:
    """One registered arm.

    Attributes:
        name: the key in configurations, cell file names (``cells/<name>-seed<seed>.json``) and ``--arms``.
        title: the row label of the report table.
        run: ``run(bench, seed) -> cell``.
    """

    name: str
    title: str
    run: ArmFn


#: The built-in arms: (name = function of :mod:`bridge.compare.arms`, title), in report order.
BUILTIN_ARMS: tuple[tuple[str, str], ...] = (
    ("linear_probe", "A. linear probe (frozen backbone + linear head)"),
    ("finetune", "B. fine-tuned CNN (last blocks + head)"),
    ("gnn_cnn", "C. GNN, superpixels with CNN + colour + position features"),
    ("gnn_color", "D. GNN, superpixels with colour + position features"),
    ("e2e", "E. CNN -> GNN end to end (B's trainable blocks, graph head over regions)"),
)
_builtins_loaded = False


def _load_builtins() -> None:
    """Put the built-in arms first in the registry (their module is imported on the first look-up)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    from bridge.compare import arms

    added = dict(_REGISTRY)
    _REGISTRY.clear()
    for name, title in BUILTIN_ARMS:
        _REGISTRY[name] = ArmSpec(name, title, getattr(arms, name))
    for name, spec in added.items():
        if name in _REGISTRY:
            raise ValueError(f"arm {name!r} is a built-in arm; register yours under another name")
        _REGISTRY[name] = spec
    _builtins_loaded = True


def register_arm(name: str, *, title: str) -> Callable[[ArmFn], ArmFn]:
    """Decorator that registers ``fn(bench, seed) -> cell`` as the arm ``name``.

    Arms run (and appear in reports) in registration order. The function is returned unchanged.

    Raises:
        ValueError: ``name`` is not lower-case ``snake_case`` (it becomes a file name), or is taken.
        TypeError: ``title`` is not a non-empty string.

    Example:
        >>> @register_arm("always_zero", title="Z. predicts class 0")  # doctest: +SKIP
        ... def always_zero(bench, seed):
        ...     d = bench.data
        ...     return bench.result_cell(model, history, torch.zeros(len(d.test)), 0.0, 1.0)
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"arm name {name!r} must be lower-case snake_case (letters, digits, '_'), e.g. 'knn_probe'"
        )
    if not isinstance(title, str) or not title.strip():
        raise TypeError(f"title must be a non-empty string (the report's row label), got {title!r}")

    def decorate(fn: ArmFn) -> ArmFn:
        if not callable(fn):
            raise TypeError(f"register_arm({name!r}) decorates a function (bench, seed) -> cell, got {fn!r}")
        old = _REGISTRY.get(name)
        if old is None and any(name == b for b, _ in BUILTIN_ARMS):
            raise ValueError(f"arm {name!r} is a built-in arm; register yours under another name")
        if old is not None and old.run is not fn:
            raise ValueError(f"arm {name!r} is already registered ({old.title!r}); choose another name")
        _REGISTRY[name] = ArmSpec(name, title, fn)
        return fn

    return decorate


def list_arms() -> tuple[str, ...]:
    """Names of the registered arms, in registration order (the built-in five first).

    Example:
        >>> list_arms()[:5]
        ('linear_probe', 'finetune', 'gnn_cnn', 'gnn_color', 'e2e')
    """
    _load_builtins()
    return tuple(_REGISTRY)


def get_arm(name: str) -> ArmSpec:
    """The registered arm ``name``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.

    Example:
        >>> get_arm("finetune").title
        'B. fine-tuned CNN (last blocks + head)'
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def arm_titles() -> dict[str, str]:
    """``{name: title}`` of every registered arm, in order.

    Example:
        >>> arm_titles()["gnn_color"]
        'D. GNN, superpixels with colour + position features'
    """
    _load_builtins()
    return {name: spec.title for name, spec in _REGISTRY.items()}
