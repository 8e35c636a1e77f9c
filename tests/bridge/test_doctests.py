"""The examples in the docstrings of these modules run and print what they show.

(gnn.models is left out: its example registers a conv in the global registry, which other tests list.)
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "bridge.checks",
    "bridge.segmentation",
    "bridge.slic",
    "bridge.convert",
    "bridge.edges",
    "bridge.features",
    "gnn.dense",
    "bridge.compare.workbench",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
