"""engine.memory: freed memory reused without new page faults (glibc), the setting passed to children
and honoured by glibc there, the opt-out, nothing changed where glibc's malloc is not in charge or the
user chose its settings, and the pixgraph command calling it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from engine import memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A convolution and two elementwise steps on maps of about 50 MB (over glibc's largest mmap threshold),
# six times in the main thread: the page faults of rounds 3 to 6 tell whether the blocks freed by a
# round were reused (none, once the heap has grown to the rounds' size: posix_memalign may not fit a
# freed block of the same size at once) or mapped anew (one per 4 KiB page, every round).
FAULTS = """
import resource, sys
import torch
from engine.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory(children=False)
x, w = torch.randn(16, 32, 112, 112), torch.randn(64, 32, 3, 3)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = torch.relu(torch.nn.functional.conv2d(x, w, padding=1)) * 2.0
    del y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("FAULTS", sum(faults[2:]))
"""


def _clean_env() -> dict[str, str]:
    """This environment without any malloc or huge-page setting (glibc's default in a child)."""
    drop = ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "LD_PRELOAD", memory.OPT_OUT)
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in drop}


def _later_round_faults(mode: str, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return int(next(line for line in out.stdout.splitlines() if line.startswith("FAULTS")).split()[1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_memory_is_reused_without_new_page_faults_also_in_children():
    default = _later_round_faults("default", _clean_env())
    if default < 3000:  # transparent huge pages for everything: a few faults either way
        pytest.skip(f"only {default} faults with glibc's default: huge pages, nothing to compare")
    assert _later_round_faults("keep", _clean_env()) < 0.25 * default
    # a child started with CHILD_ENV (what the parent passes on) reuses freed memory without a call
    assert _later_round_faults("default", {**_clean_env(), **memory.CHILD_ENV}) < 0.25 * default


class FakeLibc:
    """Stands in for glibc: records mallopt calls, changes nothing in the test process."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

        def mallopt(param: int, value: int) -> int:
            self.calls.append((param, value))
            return 1

        self.mallopt = mallopt


@pytest.fixture
def fake_glibc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    for key in (*memory.CHILD_ENV, *memory._USER_SETTINGS, "GLIBC_TUNABLES", memory.OPT_OUT):
        monkeypatch.setenv(key, "placeholder")  # recorded as it was, so teardown restores it
        monkeypatch.delenv(key)
    return libc


def test_sets_both_options_and_passes_them_on(fake_glibc):
    assert memory.keep_freed_memory()
    assert fake_glibc.calls == [(memory._M_MMAP_MAX, 0), (memory._M_TRIM_THRESHOLD, -1)]
    assert {k: os.environ[k] for k in memory.CHILD_ENV} == memory.CHILD_ENV
    assert memory.keep_freed_memory()  # a second call: its own variables are not "the user's"
    assert memory.keep_freed_memory(children=False)


def test_children_false_leaves_the_environment(fake_glibc):
    assert memory.keep_freed_memory(children=False)
    assert not any(k in os.environ for k in memory.CHILD_ENV)


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_opt_out(fake_glibc, monkeypatch, value):
    monkeypatch.setenv(memory.OPT_OUT, value)
    assert memory.keep_freed_memory() is False
    assert fake_glibc.calls == [] and not any(k in os.environ for k in memory.CHILD_ENV)


@pytest.mark.parametrize(
    "key, value",
    [
        ("MALLOC_MMAP_MAX_", "65536"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_MMAP_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
    ],
)
def test_the_users_own_malloc_settings_win(fake_glibc, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    assert memory.keep_freed_memory() is False
    assert fake_glibc.calls == [] and os.environ[key] == value


def test_other_c_libraries_and_preloaded_allocators_are_left_alone(monkeypatch):
    for key in memory.CHILD_ENV:
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    monkeypatch.delenv(memory.OPT_OUT, raising=False)
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    assert memory._glibc() is None and memory.keep_freed_memory() is False
    monkeypatch.undo()
    if GLIBC:
        monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
        assert memory._glibc() is None
    assert not any(k in os.environ for k in memory.CHILD_ENV)


def test_the_command_calls_it(monkeypatch, tmp_path):
    from bridge import cli

    calls: list[bool] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda children=True: calls.append(children) or True)
    argv = ["show", "coffee", "--n-segments", "20", "--out", str(tmp_path / "g.png")]
    assert cli.main(argv) == 0
    assert calls == [True]
