"""Workbench: inference speed from the fastest of several passes (fake clock), and scale_of."""

import types

import numpy as np
import pytest
import torch

from bridge.compare import workbench as wb
from bridge.compare.config import CompareConfig
from bridge.compare.workbench import STD_FLOOR, Workbench, scale_of


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


def test_speed_synchronizes_the_bench_gpu_not_the_current_one(monkeypatch):
    """With ``--device cuda:1`` every timed pass waits for cuda:1 (a bare synchronize() waits for the
    current device, cuda:0 unless something changed it)."""
    waited = []
    monkeypatch.setattr(wb.torch.cuda, "synchronize", lambda device=None: waited.append(device))
    bench = _bench(8, 4)
    bench.__dict__["device"] = torch.device("cuda", 1)
    bench.speed(lambda imgs: None, n_max=8, repeat=2)
    assert waited and all(d == torch.device("cuda", 1) for d in waited)


def test_scale_of_keeps_a_feature_constant_on_train_bounded():
    """A feature that is 0 on every training row must not blow a small test value up to ~1e5."""
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(200, 9, generator=gen) * torch.arange(1.0, 10.0)  # stds about 1 .. 9
    train[:, 0] = 0.0  # a dead ReLU channel on the training images
    mean, scale = scale_of(train)
    sd = train.std(0)
    median = float(torch.quantile(sd, 0.5))
    assert scale[0] == pytest.approx(STD_FLOOR * median)
    assert torch.equal(scale[1:], sd[1:])  # features above the floor keep their own std
    assert torch.equal(mean, train.mean(0))
    test = torch.zeros(1, 9)
    test[0, 0] = 0.5
    assert float((test - mean)[0, 0] / scale[0]) == pytest.approx(0.5 / (STD_FLOOR * median))
    assert float((test - mean)[0, 0] / scale[0]) < 10.0


def test_scale_of_all_constant_features_fall_back_to_a_tiny_positive_scale():
    mean, scale = scale_of(torch.ones(5, 3))
    assert torch.equal(mean, torch.ones(3)) and bool((scale > 0).all())


def test_speed_and_backbone_time_both_in_the_same_rounds(monkeypatch):
    """The machine slows down 2x after every round: the arm's and the backbone's fastest passes are
    both from that round, so their ratio is the arm's cost against the backbone's, not the drift."""
    clock = [0.0]
    calls = []
    slow = [1.0]

    def backbone_pass(imgs):
        calls.append("backbone")
        clock[0] += 0.01 * len(imgs) * slow[0]

    def arm(imgs):
        calls.append("arm")
        clock[0] += 0.02 * len(imgs) * slow[0]
        if len(calls) > 2 and calls.count("arm") % 4 == 1:  # after each round's arm pass (4 batches)
            slow[0] *= 2.0

    bench = _bench(64, 16)
    bench.__dict__["frozen"] = types.SimpleNamespace(embed=backbone_pass)  # image -> embedding
    monkeypatch.setattr(Workbench, "normalize", lambda self, imgs: imgs)
    monkeypatch.setattr(wb.time, "perf_counter", lambda: clock[0])
    speeds = bench.speed_and_backbone(arm, n_max=64, repeat=3)
    assert calls[:2] == ["backbone", "arm"]  # one warm-up batch each
    assert calls[2:] == (["backbone"] * 4 + ["arm"] * 4) * 3  # then round after round, one pass each
    assert speeds.backbone_images_per_s == pytest.approx(64 / 0.64)
    assert speeds.images_per_s == pytest.approx(64 / 1.28)
    assert speeds.vs_backbone == pytest.approx(0.5)  # every round's ratio
    assert bench.speed(arm, n_max=64, repeat=1) < speeds.images_per_s  # timed alone later, slower


def test_speed_over_the_backbone_is_the_median_of_the_rounds(monkeypatch):
    """Pass times (backbone, arm) per round: (1, 2), (1, 2), (2, 1.2), (1, 2), (1, 2). The fastest passes
    alone would say the arm runs at 1 / 1.2 = 0.83x of the backbone, from two different rounds' luck;
    the median of the rounds' ratios says 0.5x."""
    clock = [0.0]
    costs = iter([0.0, 0.0] + [c for pair in [(1, 2), (1, 2), (2, 1.2), (1, 2), (1, 2)] for c in pair])

    def timed(imgs):  # one batch per pass (n_max = batch size): each call costs the next figure
        clock[0] += next(costs)

    bench = _bench(16, 16)
    bench.__dict__["frozen"] = types.SimpleNamespace(embed=timed)
    monkeypatch.setattr(Workbench, "normalize", lambda self, imgs: imgs)
    monkeypatch.setattr(wb.time, "perf_counter", lambda: clock[0])
    speeds = bench.speed_and_backbone(timed, n_max=16, repeat=5)
    assert speeds.images_per_s == pytest.approx(16 / 1.2) and speeds.backbone_images_per_s == 16.0
    assert speeds.vs_backbone == pytest.approx(0.5)
