"""bridge.compare.rundir: folder names, the lock, config.json checks, cells on disk."""

import datetime as dt
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time

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


def _owner(path):
    return json.loads(path.read_text())


def test_lock_is_exclusive_and_a_dead_runs_lock_is_taken_over(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        owner = _owner(lock.path)
        assert owner["pid"] == os.getpid() and owner["hostname"] == socket.gethostname()
        assert owner["start"] == rundir.process_start_time(os.getpid()) is not None
        with pytest.raises(RuntimeError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
            RunLock(tmp_path / "run").__enter__()  # this very process holds it
    assert not (tmp_path / "run" / ".lock").exists()
    # an old-format lock of a process that no longer exists (pid far above any pid_max) is stale
    (tmp_path / "run" / ".lock").write_text("99999999")
    with RunLock(tmp_path / "run"):
        assert _owner(tmp_path / "run" / ".lock")["pid"] == os.getpid()


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_lock_says_how_to_clear_it(tmp_path, live_process):
    lock = tmp_path / ".lock"
    start = rundir.process_start_time(live_process.pid)
    lock.write_text(json.dumps({"pid": live_process.pid, "hostname": socket.gethostname(), "start": start}))
    with pytest.raises(RuntimeError, match=rf"pid {live_process.pid} .*delete {lock} and run again"):
        with RunLock(tmp_path):
            pass
    assert _owner(lock)["pid"] == live_process.pid  # left alone


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path, live_process):
    lock = tmp_path / ".lock"
    for pid in (live_process.pid, os.getpid()):  # alive, but not the process that wrote the lock
        lock.write_text(json.dumps({"pid": pid, "hostname": socket.gethostname(), "start": "proc:1"}))
        with RunLock(tmp_path):
            assert _owner(lock)["pid"] == os.getpid()
        assert not lock.exists()


def test_a_lock_of_another_host_is_held(tmp_path):
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": 1, "hostname": "elsewhere.example", "start": "proc:5"}))
    with pytest.raises(RuntimeError, match="pid 1 on elsewhere.example"):
        with RunLock(tmp_path):
            pass


def test_process_start_time_tells_processes_apart(live_process):
    mine, other = rundir.process_start_time(os.getpid()), rundir.process_start_time(live_process.pid)
    assert mine is not None and other is not None and mine != other
    assert rundir.process_start_time(99999999) is None


def test_check_config_writes_then_accepts_the_same_and_refuses_another(tmp_path):
    folder = RunFolder(tmp_path / "r")
    cfg = CompareConfig(data="digits", seeds=(0,))
    assert folder.check_config(cfg) is False  # a new folder
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["seeds"] == [0]
    assert saved["arms"] == ["linear_probe", "finetune", "gnn_cnn", "gnn_color", "e2e"]
    assert folder.check_config(cfg) is True  # a resume
    with pytest.raises(
        ValueError, match=r"another configuration \(seeds: stored \[0\], given \[1\]\); resume it"
    ):
        folder.check_config(CompareConfig(data="digits", seeds=(1,)))


def test_an_older_config_reads_with_defaults_and_is_left_as_it_was(tmp_path):
    folder = RunFolder(tmp_path)
    old = CompareConfig(data="digits", seeds=(0,)).to_dict()
    del old["data_split"], old["data_root"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg, missing = folder.read_config()
    assert missing == ["data_split", "data_root"] and cfg == CompareConfig(data="digits", seeds=(0,))
    assert folder.check_config(cfg) is True
    assert json.loads((tmp_path / "config.json").read_text()) == old


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "is empty"),
        ('{"data": "dig', "is not valid JSON"),
        ('{"seeds": []}', "invalid configuration .*seeds is empty"),
        ("3", "holds a int"),
    ],
)
def test_a_corrupt_config_names_the_file_and_the_fix(tmp_path, content, match):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=f"config.json.*{match}.*start a new run"):
        RunFolder(tmp_path).read_config()
    with pytest.raises(FileNotFoundError, match="is .* a pixgraph run folder"):
        RunFolder(tmp_path / "nothing").read_config()


def test_a_corrupt_cell_names_the_file_and_says_delete_it(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_cell({"arm": "finetune", "seed": 0, "status": "ok", "test": {"accuracy": 0.5}})
    path = tmp_path / "cells" / "finetune-seed0.json"
    path.write_text(path.read_text()[:20])  # truncated by a crash of something else
    with pytest.raises(
        ValueError, match=rf"finetune-seed0.json' is not valid JSON .*delete {path} to recompute"
    ):
        folder.check_cells(["linear_probe", "finetune"], [0, 1])
    path.write_text('{"status": "ok"}')
    with pytest.raises(ValueError, match="finished cell without test results"):
        folder.finished_cell("finetune", 0)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        folder.finished_cell("finetune", 0)


def _fingerprint(**kw):
    base = {"sha256": "a" * 64, "n_images": 80, "classes": ["0", "1"], "counts": [40, 40], "image_size": 32}
    return {**base, **kw}


def test_data_fingerprint_is_stored_then_checked(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.check_data(_fingerprint()) is None  # a new run: stored silently
    assert folder.check_data(_fingerprint()) is None  # the same data
    with pytest.raises(
        ValueError,
        match=r"changed since the run started \(images: 80 then, 82 now; .*"
        r"images per class: \[40, 40\] then, \[41, 41\] now\).*start a new run",
    ):
        folder.check_data(_fingerprint(sha256="b" * 64, n_images=82, counts=[41, 41]))
    with pytest.raises(ValueError, match="same images and labels counts, but the pixels or labels changed"):
        folder.check_data(_fingerprint(sha256="c" * 64))
    # an older run folder with cells but no data.json: recorded now, with one line
    old = RunFolder(tmp_path / "old")
    old.write_cell({"arm": "finetune", "seed": 0, "status": "failed"})
    assert "was missing (a run of an older version)" in old.check_data(_fingerprint())
    assert json.loads((tmp_path / "old" / "data.json").read_text()) == _fingerprint()


def test_a_data_view_fingerprint_sees_one_pixel():
    import numpy as np

    from bridge.compare.data import DataView

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    targets = np.array([0, 0, 0, 1, 1, 1])
    idx = (np.array([0, 3]), np.array([1, 4]), np.array([2, 5]))
    view = DataView(images, targets, ["a", "b"], *idx, "x")
    fp = view.fingerprint()
    assert fp["n_images"] == 6 and fp["counts"] == [3, 3] and fp["image_size"] == 4
    assert DataView(images.copy(), targets.copy(), ["a", "b"], *idx, "y").fingerprint() == fp
    changed = images.copy()
    changed[5, 0, 0, 0] ^= 1
    assert DataView(changed, targets, ["a", "b"], *idx, "x").fingerprint()["sha256"] != fp["sha256"]
    relabelled = np.array([0, 0, 1, 1, 1, 0])
    assert DataView(images, relabelled, ["a", "b"], *idx, "x").fingerprint()["sha256"] != fp["sha256"]


def test_check_output_dir(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert rundir.check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # nothing created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # no probe left behind
    with pytest.raises(ValueError, match="--out .*file.txt' is a file, not a folder"):
        rundir.check_output_dir(tmp_path / "file.txt")
    with pytest.raises(ValueError, match="--cache .* lies under .*file.txt', which is a file"):
        rundir.check_output_dir(tmp_path / "file.txt" / "sub", name="cache")


def test_check_output_dir_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "p"
        try:
            probe.touch()
            probe.unlink()
            writable = True  # root ignores the permission bits
        except OSError:
            writable = False
        if writable:
            pytest.skip("running as root: a 0o500 folder is still writable")
        with pytest.raises(
            ValueError, match="--out .*cannot write into .*locked.*choose a folder you can write"
        ):
            rundir.check_output_dir(locked / "run")
    finally:
        locked.chmod(0o700)


def test_config_differences_lists_only_given_fields():
    stored = CompareConfig(data="digits", seeds=(0,)).to_dict()
    given = CompareConfig(data="digits", seeds=(0,), batch_size=8).to_dict()
    assert rundir.config_differences(stored, given, ["seeds"]) == []
    assert rundir.config_differences(stored, given) == ["batch_size: stored 32, given 8"]


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


def test_an_empty_lock_is_waited_for_while_young_and_stale_when_old(tmp_path, monkeypatch):
    """An empty .lock is an owner between creating and writing it (older pixgraph): not taken over at
    once; once older than the grace period it is a crashed run's and taken over."""
    lock = tmp_path / ".lock"
    lock.write_text("")
    monkeypatch.setattr(rundir, "_LOCK_TRIES", 3)
    monkeypatch.setattr(rundir, "_EMPTY_LOCK_GRACE_S", 60.0)
    with pytest.raises(RuntimeError, match="could not lock"):
        with RunLock(tmp_path):
            pass
    assert lock.read_text() == ""  # left to its owner
    old = lock.stat().st_mtime - 120
    os.utime(lock, (old, old))
    with RunLock(tmp_path):
        assert _owner(lock)["pid"] == os.getpid()


def test_leaving_never_removes_another_runs_lock(tmp_path, live_process):
    lock = tmp_path / ".lock"
    other = {"pid": live_process.pid, "hostname": socket.gethostname(), "start": "proc:1"}
    with RunLock(tmp_path):
        lock.write_text(json.dumps(other))  # as if another run had taken the folder over
    assert _owner(lock) == other


def _hold_repeatedly(folder, until, seed, queue):
    """Take the lock again and again; half the holds end as a crash would (a dead run's lock left
    behind), so the others must break stale locks while competing. A marker file created exclusively
    while holding counts every moment two processes held the lock together."""
    rng = random.Random(seed)
    holds = overlaps = 0
    marker = folder / "marker"
    while time.time() < until:
        lock = RunLock(folder)
        try:
            lock.__enter__()
        except RuntimeError:  # held by a live process: try again
            continue
        holds += 1
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            marker.unlink()
        except FileExistsError:
            overlaps += 1
        if rng.random() < 0.5:
            lock.path.write_text(
                json.dumps({"pid": 99999999, "hostname": socket.gethostname(), "start": "x"})
            )
        else:
            lock.__exit__(None, None, None)
    queue.put((holds, overlaps))


def test_processes_racing_for_the_lock_never_hold_it_together(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    until = time.time() + 2.0
    procs = [ctx.Process(target=_hold_repeatedly, args=(tmp_path, until, i, queue)) for i in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(h for h, _ in results) > 20 and sum(h > 0 for h, _ in results) >= 2  # they did compete
    assert [o for _, o in results] == [0, 0, 0]


def test_breaking_a_stale_lock_never_removes_a_live_one(tmp_path, monkeypatch):
    """A judged .lock stale; before A acts, B removed it and published its own live lock. A must leave
    B's lock in place, also if a third run C tries to lock at that very moment (a rename-aside of the
    lock opened a window in which C's lock got in and B's was lost)."""
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": 99999999, "hostname": socket.gethostname(), "start": "x"}))
    seen = os.stat(lock)  # what A judged stale
    lock.unlink()
    (tmp_path / "b.tmp").write_text(json.dumps({"pid": 1, "hostname": "B"}))
    os.link(tmp_path / "b.tmp", lock)
    real_rename = os.rename

    def rename(src, dst):  # C links its lock whenever .lock is moved away
        real_rename(src, dst)
        if os.fspath(src) == os.fspath(lock):
            (tmp_path / "c.tmp").write_text(json.dumps({"pid": 2, "hostname": "C"}))
            os.link(tmp_path / "c.tmp", lock)

    monkeypatch.setattr(rundir.os, "rename", rename)
    RunLock(tmp_path)._remove_if_same(seen)
    assert _owner(lock) == {"pid": 1, "hostname": "B"}
    assert not (tmp_path / ".lock.break").exists()
