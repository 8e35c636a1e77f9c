"""Tests for cnn.freezing: strategies, frozen BatchNorm, choose_strategy, and a registry smoke test."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from cnn.backbones import create_backbone, list_backbones
from cnn.freezing import (
    STRATEGIES,
    Strategy,
    choose_strategy,
    count_parameters,
    freeze,
    set_parameter_requires_grad,
)


@pytest.fixture
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet18", weights=None, num_classes=2)


def _trainable_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


def _norm_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{buf}": getattr(m, buf).clone()
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buf in ("running_mean", "running_var", "num_batches_tracked")
    }


def _changed(before: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    after = _norm_stats(model)
    return [k for k in before if not torch.equal(before[k], after[k])]


def test_feature_extraction_trains_only_the_head(resnet):
    freeze(resnet, "feature_extraction")
    head_ids = {id(p) for p in resnet.head.parameters()}
    assert _trainable_ids(resnet) == head_ids
    assert count_parameters(resnet) == (2 * 512 + 2, sum(p.numel() for p in resnet.parameters()))


def test_fine_tuning_trains_last_blocks_and_head(resnet):
    blocks = resnet.blocks()
    freeze(resnet, "fine_tuning", trainable_blocks=2)
    expected = {id(p) for m in [*blocks[-2:], resnet.head] for p in m.parameters()}
    assert _trainable_ids(resnet) == expected
    assert all(not p.requires_grad for b in blocks[:-2] for p in b.parameters())
    # default is 2 blocks; N = len(blocks) trains everything
    freeze(resnet, "fine_tuning")
    assert _trainable_ids(resnet) == expected
    freeze(resnet, "fine_tuning", trainable_blocks=len(blocks))
    assert count_parameters(resnet)[0] == count_parameters(resnet)[1]


def test_full_undoes_an_earlier_freeze(resnet):
    freeze(resnet, "feature_extraction")
    freeze(resnet, "full")
    trainable, total = count_parameters(resnet)
    assert trainable == total > 0
    resnet.train()
    before = _norm_stats(resnet)
    resnet(torch.randn(4, 3, 32, 32))
    assert _changed(before, resnet), "unfrozen BatchNorm layers must update their running statistics"


def test_frozen_batchnorm_stats_do_not_move_in_train_mode(resnet):
    freeze(resnet, "feature_extraction")
    resnet.train()
    before = _norm_stats(resnet)
    assert before
    out = resnet(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert out.shape == (4, 2)
    assert _changed(before, resnet) == []
    assert all(not m.training for m in resnet.modules() if isinstance(m, nn.BatchNorm2d))
    assert resnet.head.training  # only norm layers are held in eval mode


def test_frozen_batchnorm_survives_pickle_and_deepcopy():
    torch.manual_seed(0)
    net = set_parameter_requires_grad(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), False)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):  # e.g. for ddp_spawn
        clone.train()
        before = _norm_stats(clone)
        clone(torch.randn(2, 3, 8, 8))
        assert _changed(before, clone) == []
        freeze(clone, "full")  # and unfreezing the copy works
        clone.train()
        clone(torch.randn(2, 3, 8, 8))
        assert _changed(before, clone)


def test_fine_tuning_moves_only_the_trainable_blocks_norm_stats(resnet):
    freeze(resnet, "fine_tuning", trainable_blocks=1)
    last = resnet.blocks()[-1]
    resnet.train()
    before = _norm_stats(resnet)
    resnet(torch.randn(4, 3, 32, 32))
    changed = set(_changed(before, resnet))
    last_norms = {id(m) for m in last.modules() if isinstance(m, nn.BatchNorm2d)}
    for name, m in resnet.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            moved = f"{name}.running_mean" in changed
            assert moved == (id(m) in last_norms), name


def test_set_parameter_requires_grad_lecture_flow(resnet):
    """Freeze everything, then replace the head: the new head trains, frozen BN stays in eval."""
    assert set_parameter_requires_grad(resnet, False) is resnet
    assert count_parameters(resnet)[0] == 0
    resnet.reset_classifier(3)
    assert count_parameters(resnet)[0] == 512 * 3 + 3
    resnet.train()
    before = _norm_stats(resnet)
    resnet(torch.randn(2, 3, 32, 32))
    assert _changed(before, resnet) == []
    # unfreezing lets BatchNorm train again
    set_parameter_requires_grad(resnet, True)
    resnet.train()
    resnet(torch.randn(2, 3, 32, 32))
    assert _changed(before, resnet)


def test_freeze_accepts_a_strategy(resnet):
    freeze(resnet, Strategy("fine_tuning", 1, "test"))
    expected = {id(p) for m in [resnet.blocks()[-1], resnet.head] for p in m.parameters()}
    assert _trainable_ids(resnet) == expected
    with pytest.raises(ValueError, match="contradicts the Strategy"):
        freeze(resnet, Strategy("fine_tuning", 1, "test"), trainable_blocks=2)


def test_full_works_on_any_module():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    set_parameter_requires_grad(m, False)
    freeze(m, "full")
    assert count_parameters(m) == (24, 24)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "linear_probe"}, ValueError, "known: feature_extraction, fine_tuning, full"),
        ({"strategy": "fine_tuning", "trainable_blocks": 0}, ValueError, r"from 1 to 5 .*got 0"),
        ({"strategy": "fine_tuning", "trainable_blocks": 6}, ValueError, r"from 1 to 5 .*got 6"),
        ({"strategy": "fine_tuning", "trainable_blocks": 1.5}, ValueError, "must be an int"),
        ({"strategy": "feature_extraction", "trainable_blocks": 2}, ValueError, "only applies to"),
    ],
)
def test_freeze_errors(resnet, kwargs, error, match):
    with pytest.raises(error, match=match):
        freeze(resnet, **kwargs)


def test_freeze_needs_head_and_blocks_for_partial_strategies():
    with pytest.raises(TypeError, match=r"needs a backbone with \.head and \.blocks\(\)"):
        freeze(nn.Linear(2, 2), "feature_extraction")
    raw = nn.Module()  # a raw timm-style model: .blocks is a Sequential, not the Backbone method
    raw.blocks, raw.head = nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2)
    with pytest.raises(TypeError, match="a cnn.Backbone from create_backbone"):
        freeze(raw, "fine_tuning")
    with pytest.raises(TypeError, match="flag must be True or False"):
        set_parameter_requires_grad(nn.Linear(2, 2), 0)


@pytest.mark.parametrize(
    ("n_images", "similarity", "name", "blocks"),
    [
        (500, "high", "feature_extraction", None),
        (500, "low", "fine_tuning", 3),
        (50_000, "high", "fine_tuning", 2),
        (50_000, "low", "full", None),
        (9_999, 0.5, "feature_extraction", None),
        (10_000, 0.49, "full", None),
    ],
)
def test_choose_strategy_four_cases(n_images, similarity, name, blocks):
    s = choose_strategy(n_images, similarity)
    assert (s.name, s.trainable_blocks) == (name, blocks)
    assert s.name in STRATEGIES
    assert str(n_images) in s.reason and ("similar" in s.reason or "different" in s.reason)


def test_choose_strategy_large_threshold_and_frozen_result():
    assert choose_strategy(2_000, "high", large=1_000).name == "fine_tuning"
    assert choose_strategy(2_000, "high").name == "feature_extraction"
    s = choose_strategy(2_000, "high")
    with pytest.raises(AttributeError):
        s.name = "full"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, "high"), {}, ValueError, "n_images must be a positive int"),
        ((10, "medium"), {}, ValueError, "similarity must be 'high', 'low'"),
        ((10, 1.5), {}, ValueError, r"in \[0, 1\].*1\.5"),
        ((10, None), {}, TypeError, "similarity must be"),
        ((10, "high"), {"large": 0}, ValueError, "large must be a positive int"),
    ],
)
def test_choose_strategy_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        choose_strategy(*args, **kwargs)


def test_strategy_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown strategy 'probe'"):
        Strategy("probe", None, "")


@pytest.mark.parametrize("name", list_backbones())
def test_registry_smoke(name):
    """Every backbone: logits shape, >= 3 feature stages, gradients reach the head and nothing frozen."""
    torch.manual_seed(0)
    model = create_backbone(name, weights=None, num_classes=2)
    size = 75 if name in ("inception_v3", "xception") else 64
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        feats = model.features(x)
    assert len(feats) >= 3
    assert [f.shape[1] for f in feats] == model.feature_channels
    assert all(f.dim() == 4 and f.shape[0] == 1 for f in feats)

    freeze(model, "feature_extraction")
    model.train()  # frozen BatchNorm must stay in eval: batch 1 would fail in train mode
    before = _norm_stats(model)
    logits = model(x)
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    logits.sum().backward()
    head = {id(p) for p in model.head.parameters()}
    for pname, p in model.named_parameters():
        if id(p) in head:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        else:
            assert p.grad is None, pname
    assert _changed(before, model) == []


def test_models_pickled_with_the_former_hook_location_still_load():
    """Whole models saved with torch.save(model) name the hook as cnn.freezing._frozen_norm_pre_hook."""
    import pickle

    from cnn import freezing
    from engine.norms import frozen_norm_pre_hook

    assert freezing._frozen_norm_pre_hook is frozen_norm_pre_hook
    hook = pickle.loads(b"ccnn.freezing\n_frozen_norm_pre_hook\n.")  # a GLOBAL reference, as saved then
    assert hook is frozen_norm_pre_hook
