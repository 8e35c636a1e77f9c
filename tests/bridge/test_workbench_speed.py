"""Workbench.speed: images per second from the fastest of several passes, measured on a fake clock."""

import types

import numpy as np
import pytest
import torch

from bridge.compare import workbench as wb
from bridge.compare.config import CompareConfig
from bridge.compare.workbench import Workbench


def _bench(n_test: int, batch_size: int) -> Workbench:
    bench = Workbench(CompareConfig(batch_size=batch_size, device="cpu"), None, log=print, progress=False)
    images = np.zeros((n_test + 5, 4, 4, 3), np.uint8)
    bench.__dict__["data"] = types.SimpleNamespace(images=images, test=np.arange(5, 5 + n_test))
    bench.__dict__["device"] = torch.device("cpu")
    return bench


@pytest.mark.parametrize("repeat, expected", [(1, 64 / 3.0), (3, 64 / 1.0), (4, 64 / 1.0)])
def test_speed_counts_the_fastest_pass(monkeypatch, repeat, expected):
    """Passes of 3 s, 1 s, 2 s, 5 s on the clock: the fastest pass within ``repeat`` gives the speed."""
    clock = [0.0]
    costs = iter([0.5, 3.0, 1.0, 2.0, 5.0])  # warm-up batch, then one cost per pass
    batches = []

    def run(imgs):
        batches.append(len(imgs))
        if len(batches) == 1 or (len(batches) - 1) % 4 == 0:  # the warm-up, then each pass's first batch
            clock[0] += next(costs)

    monkeypatch.setattr(wb.time, "perf_counter", lambda: clock[0])
    assert _bench(100, 16).speed(run, n_max=64, repeat=repeat) == pytest.approx(expected)
    assert batches == [16] + [16] * 4 * repeat  # one warm-up batch, 64 images per pass in batches of 16


def test_speed_with_fewer_test_images_than_n_max(monkeypatch):
    clock = [0.0]

    def run(imgs):
        clock[0] += 0.1 * len(imgs)

    monkeypatch.setattr(wb.time, "perf_counter", lambda: clock[0])
    assert _bench(10, 4).speed(run, n_max=64) == pytest.approx(10.0)  # 10 images, 0.1 s each
