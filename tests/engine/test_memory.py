"""engine.memory: freed memory reused without new page faults (glibc), the setting passed to children,
nothing changed on other C libraries, and the pixgraph command applying it unless told not to."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from engine import memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate and touch a 256 MB tensor, free it, then do the same again: the page faults of the second
# round tell whether the first block's pages were reused (a few) or mapped anew (one per 4 KiB page).
FAULTS = """
import resource, sys
import torch
from engine.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory(children=False)
n = 64 * 2**20
x = torch.ones(n); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(n)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_round_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in memory.CHILD_ENV}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_memory_is_reused_without_new_page_faults():
    pages = 256 * 2**20 // 4096
    assert _second_round_faults("default") > 0.9 * pages  # glibc maps a 256 MB block anew every time
    assert _second_round_faults("keep") < 0.01 * pages


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_children_get_the_setting_but_a_users_own_value_stays(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "7")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert memory.keep_freed_memory(children=True)
    assert os.environ["MALLOC_MMAP_MAX_"] == "7"
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == memory.CHILD_ENV["MALLOC_TRIM_THRESHOLD_"]


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    for key in memory.CHILD_ENV:
        monkeypatch.delenv(key, raising=False)
    assert memory.keep_freed_memory() is False
    assert not any(key in os.environ for key in memory.CHILD_ENV)


def test_the_command_keeps_freed_memory_unless_told_not_to(monkeypatch, tmp_path):
    from bridge import cli

    calls: list[bool] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda children=True: calls.append(children) or True)
    argv = ["show", "coffee", "--n-segments", "20", "--out", str(tmp_path / "g.png")]
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("PIXGRAPH_KEEP_FREED_MEMORY", raising=False)
    assert cli.main(argv) == 0
    assert calls == [True]
    monkeypatch.setenv("PIXGRAPH_KEEP_FREED_MEMORY", "0")
    assert cli.main(argv) == 0
    assert calls == [True]
