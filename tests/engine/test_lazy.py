"""Tests for engine.lazy: PEP 562 exports, and that importing the packages stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine
from engine.lazy import lazy_exports

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("lightning", "matplotlib")


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package ``lazyfake`` whose ``VALUE`` lives in ``lazyfake.sub`` and is exported lazily."""
    pkg = tmp_path / "lazyfake"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from engine.lazy import lazy_exports

            LOCAL = 1
            __getattr__, __dir__ = lazy_exports(__name__, {"VALUE": "lazyfake.sub", "GHOST": "lazyfake.sub"})
            """
        )
    )
    (pkg / "sub.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("lazyfake", "lazyfake.sub"):
        sys.modules.pop(name, None)


def test_getattr_imports_on_first_use_and_caches(fake_package):
    import lazyfake

    assert "lazyfake.sub" not in sys.modules
    assert lazyfake.VALUE == 42
    assert "lazyfake.sub" in sys.modules
    assert vars(lazyfake)["VALUE"] == 42  # cached on the package: the hook is not called again


def test_dir_lists_exports_and_module_names(fake_package):
    import lazyfake

    names = dir(lazyfake)
    assert {"VALUE", "GHOST", "LOCAL"} <= set(names)
    assert names == sorted(names)
    assert "lazyfake.sub" not in sys.modules  # dir() imports nothing


def test_unknown_attribute(fake_package):
    import lazyfake

    with pytest.raises(AttributeError, match="module 'lazyfake' has no attribute 'nope'"):
        lazyfake.nope  # noqa: B018
    with pytest.raises(AttributeError, match="GHOST"):
        lazyfake.GHOST  # noqa: B018  # listed, but its module does not define it
    assert not hasattr(lazyfake, "nope")


def test_returned_functions_work_directly():
    getattr_, dir_ = lazy_exports("engine", {"History": "engine.history"})
    from engine.history import History

    assert getattr_("History") is History
    assert "History" in dir_()
    with pytest.raises(AttributeError, match="module 'engine' has no attribute 'fit2'"):
        getattr_("fit2")


def test_engine_exports_resolve():
    assert sorted(engine.__all__) == sorted(engine._EXPORTS)
    assert set(engine.__all__) <= set(dir(engine))
    for name in ("History", "CheckpointError", "accuracy", "atomic_open"):
        assert getattr(engine, name).__module__ == engine._EXPORTS[name]
    with pytest.raises(AttributeError, match="module 'engine' has no attribute 'nope'"):
        engine.nope  # noqa: B018


def _loaded_after(code: str) -> list[str]:
    """Which HEAVY modules a fresh interpreter holds after running ``code``."""
    script = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def test_importing_packages_is_cheap():
    assert _loaded_after("import cnn, gnn, bridge, engine") == []


def test_using_fit_imports_lightning():
    loaded = _loaded_after("import cnn\ncnn.fit")
    assert "lightning" in loaded


@pytest.mark.parametrize("package", ["cnn", "gnn", "bridge", "engine", "bridge.compare"])
def test_every_public_name_of_every_package_resolves(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(set(module.__all__)), "duplicate names in __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_exported_names_survive_importing_every_submodule():
    """A submodule import binds the submodule on its package; an exported function of the same name
    (``bridge.compare``, ``cnn.faithfulness`` before it moved) must still be what users call."""
    script = """
import importlib, pkgutil, types
import bridge, cnn, engine, gnn
for pkg in (bridge, cnn, engine, gnn):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not info.name.endswith("cli"):
            importlib.import_module(info.name)
bad = []
for pkg in (bridge, cnn, engine, gnn):
    for name in pkg.__all__:
        value = getattr(pkg, name)
        if isinstance(value, types.ModuleType) and not callable(value):
            bad.append(f"{pkg.__name__}.{name}")
from bridge import compare
try:
    compare("not a config")
except (TypeError, ValueError) as err:
    print("compare raised", type(err).__name__)
print("bad", bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert "bad []" in out
    assert "compare raised" in out  # the call reached the function, which checks its argument
