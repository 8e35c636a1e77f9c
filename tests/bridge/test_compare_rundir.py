"""bridge.compare.rundir: folder names, the lock, config.json checks, cells on disk."""

import datetime as dt
import json
import os

import pytest

from bridge.compare import rundir
from bridge.compare.config import CompareConfig
from bridge.compare.rundir import RunFolder, RunLock, default_out_dir


class _FrozenClock:
    """Stands in for the ``datetime`` module: every ``now()`` is the same second."""

    class datetime:  # noqa: N801  (mimics datetime.datetime)
        @staticmethod
        def now() -> dt.datetime:
            return dt.datetime(2024, 1, 2, 3, 4, 5)


def test_default_out_dir_suffixes_a_name_taken_within_the_same_second(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "_dt", _FrozenClock)
    first = default_out_dir("digits", tmp_path)
    assert first == tmp_path / "compare-digits-20240102-030405"
    assert default_out_dir("digits", tmp_path) == first  # nothing is created: still free
    first.mkdir()
    second = default_out_dir("digits", tmp_path)
    assert second == tmp_path / "compare-digits-20240102-030405-2"
    second.mkdir()
    assert default_out_dir("digits", tmp_path).name == "compare-digits-20240102-030405-3"
    # a folder dataset is named by its last component
    photos = tmp_path / "my" / "photos"
    photos.mkdir(parents=True)
    assert default_out_dir(str(photos), tmp_path).name == "compare-photos-20240102-030405"


def test_lock_is_exclusive_and_a_dead_runs_lock_is_taken_over(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        assert lock.path.read_text() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()
    # a lock file of a process that no longer exists (pid far above any pid_max) is stale
    (tmp_path / "run" / ".lock").write_text("99999999")
    with RunLock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())


def test_check_config_writes_then_accepts_the_same_and_refuses_another(tmp_path):
    folder = RunFolder(tmp_path / "r")
    cfg = CompareConfig(data="digits", seeds=(0,))
    assert folder.check_config(cfg) is False  # a new folder
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["seeds"] == [0] and saved["arms"] == ["linear_probe", "finetune", "gnn_cnn", "gnn_color"]
    assert folder.check_config(cfg) is True  # a resume
    with pytest.raises(ValueError, match="another configuration; resume it with `pixgraph compare --resume"):
        folder.check_config(CompareConfig(data="digits", seeds=(1,)))


def test_only_finished_cells_are_reused(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.finished_cell("finetune", 0) is None
    folder.write_cell({"arm": "finetune", "seed": 0, "status": "failed", "error": "x"})
    assert folder.finished_cell("finetune", 0) is None
    folder.write_cell({"arm": "finetune", "seed": 0, "status": "ok", "test": {"accuracy": 0.5}})
    assert folder.finished_cell("finetune", 0)["test"]["accuracy"] == 0.5
    assert (tmp_path / "cells" / "finetune-seed0.json").is_file()
    assert not [p for p in (tmp_path / "cells").iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_json_default_turns_numpy_scalars_into_json():
    import numpy as np

    text = json.dumps(
        {"a": np.int64(3), "b": np.float32(0.5), "c": np.float32("nan")}, default=rundir.json_default
    )
    assert json.loads(text) == {"a": 3, "b": 0.5, "c": None}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        json.dumps(object(), default=rundir.json_default)
