"""Lazy package attributes (PEP 562): ``import cnn`` stays cheap until a name is used.

Example:
    >>> getattr_, dir_ = lazy_exports("engine", {"History": "engine.history"})
    >>> getattr_("History").__name__
    'History'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names live in its submodules.

    Args:
        package: the package's ``__name__``.
        names: public name -> module that defines it; the module is imported on first use.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)  # cache: later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
