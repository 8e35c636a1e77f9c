"""Tests for engine.files: atomic_open (whole or nothing) and load_torch_file (one clear CheckpointError)."""

from __future__ import annotations

import os
import pickle
import re

import pytest
import torch

from engine.files import (
    CheckpointError,
    DatasetNotAvailableError,
    atomic_open,
    default_data_root,
    load_torch_file,
    replace_folder,
)


class Payload:
    """A custom class: a pickle of it must never be unpickled by load_torch_file."""

    touched = False

    def __setstate__(self, state):
        Payload.touched = True
        self.__dict__.update(state)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_open_writes_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "x.bin"
    with atomic_open(target) as fh:
        fh.write(b"hello")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_bytes() == b"hello"
    assert _listing(target.parent) == ["x.bin"]


def test_atomic_open_keeps_old_file_when_block_raises(tmp_path):
    target = tmp_path / "w.pth"
    target.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target) as fh:
            fh.write(b"new half-written")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old contents"
    assert _listing(tmp_path) == ["w.pth"]  # no temp files left


def test_atomic_open_keeps_old_file_on_keyboard_interrupt(tmp_path):
    target = tmp_path / "w.pth"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as fh:
            fh.write(b"new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and _listing(tmp_path) == ["w.pth"]


def test_atomic_open_replaces_and_uses_normal_permissions(tmp_path):
    target = tmp_path / "w.pth"
    target.write_bytes(b"old")
    with atomic_open(target) as fh:
        torch.save({"w": torch.arange(3)}, fh)
    assert torch.equal(load_torch_file(target)["w"], torch.arange(3))
    (tmp_path / "ref").write_bytes(b"")
    assert target.stat().st_mode & 0o777 == (tmp_path / "ref").stat().st_mode & 0o777
    assert _listing(tmp_path) == ["ref", "w.pth"]


def test_load_round_trip_on_cpu(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.ones(2, 2), "n": 3, "names": ["a"]}, path)
    got = load_torch_file(path)
    assert torch.equal(got["w"], torch.ones(2, 2)) and got["n"] == 3 and got["names"] == ["a"]
    assert got["w"].device.type == "cpu"


def test_atomic_open_refuses_a_folder_target(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match=r"out' is a folder; give a file path inside it"):
        with atomic_open(tmp_path / "out"):
            pass
    assert _listing(tmp_path / "out") == []  # no temp file written


def test_atomic_open_refuses_a_parent_that_is_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"file.txt' is a file, not a folder"):
        with atomic_open(tmp_path / "file.txt" / "sub" / "x.bin"):
            pass
    assert (tmp_path / "file.txt").read_text() == "x"


def _dead_pid():
    """A pid that no process has: a child that has exited and been reaped."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name != "posix", reason="stale temp files are detected with os.kill(pid, 0)")
def test_atomic_open_removes_stale_temps_of_dead_writers_only(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".x.bin.{dead}.0a1b2c3d.tmp"
    live = tmp_path / f".x.bin.{os.getppid()}.deadbeef.tmp"  # a live process (pytest's parent)
    other = tmp_path / f".y.bin.{dead}.0a1b2c3d.tmp"  # another target's: not this write's business
    from engine.files import _HOST

    here = tmp_path / f".x.bin.{_HOST}.{dead}.0a1b2c3d.tmp"  # this machine's, dead: stale
    elsewhere = tmp_path / f".x.bin.other-machine.{dead}.0a1b2c3d.tmp"  # its pid means nothing here
    for p in (stale, live, other, here, elsewhere):
        p.write_bytes(b"half")
    with atomic_open(tmp_path / "x.bin") as fh:
        fh.write(b"whole")
    assert _listing(tmp_path) == sorted([live.name, other.name, elsewhere.name, "x.bin"])


def _raises_naming(path, reason):
    with pytest.raises(CheckpointError, match=re.escape(repr(str(path))) + ".*" + reason) as info:
        load_torch_file(path)
    assert info.value.path == path
    assert isinstance(info.value, ValueError)
    assert "weights_only=False" not in str(info.value)
    return info.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    _raises_naming(path, "empty")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pth"
    noise = torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    path.write_bytes(b"\x00" + noise.numpy().tobytes())  # starts like neither a zip nor a pickle
    _raises_naming(path, "not a torch file")


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises_naming(path, "truncated")


def test_pickle_of_custom_class_is_never_unpickled(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"obj": Payload()}, path)
    Payload.touched = False
    err = _raises_naming(path, "never unpickled")
    assert not Payload.touched
    assert "weights_only" not in str(err)


def test_plain_pickle_of_custom_class(tmp_path):
    path = tmp_path / "legacy.pkl"
    with open(path, "wb") as fh:
        pickle.dump(Payload(), fh, protocol=2)  # starts with b"\x80", like torch's legacy format
    Payload.touched = False
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as info:
        load_torch_file(path)
    assert not Payload.touched
    assert "weights_only=False" not in str(info.value)


def test_expected_and_fix_in_message(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="as a checkpoint of fit: the file is empty.*; run fit again"):
        load_torch_file(path, expected="a checkpoint of fit", fix="run fit again")
    with pytest.raises(CheckpointError, match="delete it and run again"):
        load_torch_file(path)


def test_missing_file(tmp_path):
    path = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match="missing.pth.*does not exist; expected weights there"):
        load_torch_file(path, expected="weights")


def test_folder_given(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder; expected a torch file") as info:
        load_torch_file(tmp_path)
    assert info.value.path == tmp_path


def test_accepts_str_path(tmp_path):
    path = tmp_path / "s.pth"
    torch.save(torch.zeros(1), path)
    assert torch.equal(load_torch_file(os.fspath(path)), torch.zeros(1))


# ----------------------------------------------------------------------------------------------
# Dataset folders


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("PIXGRAPH_DATA", str(tmp_path / "data"))
    assert default_data_root() == tmp_path / "data"
    assert not (tmp_path / "data").exists()  # nothing is created
    monkeypatch.delenv("PIXGRAPH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_root() == tmp_path / ".cache" / "pixgraph" / "data"


def test_replace_folder_new_and_replaced(tmp_path):
    (tmp_path / "tmp1").mkdir()
    (tmp_path / "tmp1" / "a.txt").write_text("first")
    replace_folder(tmp_path / "tmp1", tmp_path / "data")
    assert (tmp_path / "data" / "a.txt").read_text() == "first"

    (tmp_path / "tmp2").mkdir()
    (tmp_path / "tmp2" / "b.txt").write_text("second")
    replace_folder(tmp_path / "tmp2", tmp_path / "data")
    assert _listing(tmp_path / "data") == ["b.txt"]
    assert _listing(tmp_path) == ["data"]  # no temporary or old folders left


def test_replace_folder_failure_keeps_old(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("old")
    with pytest.raises(OSError):
        replace_folder(tmp_path / "missing_tmp", tmp_path / "data")
    assert (tmp_path / "data" / "a.txt").read_text() == "old"
    assert _listing(tmp_path) == ["data"]
    # a complete folder already there (as another process would leave it) is kept without error
    replace_folder(tmp_path / "missing_tmp", tmp_path / "data", done=lambda p: (p / "a.txt").is_file())
    assert (tmp_path / "data" / "a.txt").read_text() == "old"


def test_dataset_not_available_error_pickles(tmp_path):
    err = DatasetNotAvailableError(
        "download x.tgz into the folder", name="cifar10", folder=tmp_path, urls=["https://e.org/x.tgz"]
    )
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, DatasetNotAvailableError) and isinstance(back, RuntimeError)
    assert (str(back), back.name, back.folder, back.urls) == (str(err), "cifar10", tmp_path, err.urls)
