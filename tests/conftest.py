"""Suite-wide settings: headless plots, graph caches and downloads in a temporary folder (never in
~/.cache), glibc's malloc left as it is (the pixgraph command and the examples would otherwise keep
freed memory in the pytest process and put MALLOC_* variables in its environment; tests/engine/test_memory.py
turns it on where it tests it), and every test in a temporary working folder (a default output such as
runs/ or out/ never lands in the checkout)."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def _graph_cache_in_tmp(tmp_path_factory):
    old = {k: os.environ.get(k) for k in ("PIXGRAPH_CACHE", "PIXGRAPH_DATA", "PIXGRAPH_KEEP_FREED_MEMORY")}
    os.environ["PIXGRAPH_CACHE"] = str(tmp_path_factory.mktemp("pixgraph-cache"))
    os.environ["PIXGRAPH_DATA"] = str(tmp_path_factory.mktemp("pixgraph-data"))
    os.environ["PIXGRAPH_KEEP_FREED_MEMORY"] = "0"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
