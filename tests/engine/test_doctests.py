"""The docstring examples of every engine module run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "engine.checkpoints",
    "engine.files",
    "engine.history",
    "engine.lazy",
    "engine.metrics",
    "engine.modes",
    "engine.norms",
    "engine.stats",
    "engine.training",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
