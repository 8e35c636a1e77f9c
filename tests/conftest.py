"""Suite-wide settings: headless plots, and graph caches in a temporary folder (never in ~/.cache)."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def _graph_cache_in_tmp(tmp_path_factory):
    old = os.environ.get("PIXGRAPH_CACHE")
    os.environ["PIXGRAPH_CACHE"] = str(tmp_path_factory.mktemp("pixgraph-cache"))
    yield
    if old is None:
        os.environ.pop("PIXGRAPH_CACHE", None)
    else:
        os.environ["PIXGRAPH_CACHE"] = old
