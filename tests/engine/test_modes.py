"""engine.modes.eval_mode: eval inside the block, every submodule's own flag afterwards."""

import pytest
from torch import nn

from engine.modes import eval_mode


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Sequential(nn.Dropout(), nn.Linear(2, 1)))


@pytest.mark.parametrize("start", ["train", "eval", "mixed"])
def test_eval_inside_and_every_flag_back_afterwards(start):
    m = _model()
    if start == "eval":
        m.eval()
    elif start == "mixed":
        m[1].eval()  # a frozen BatchNorm inside a training model
        m[2][0].eval()
    before = [x.training for x in m.modules()]
    with eval_mode(m):
        assert not any(x.training for x in m.modules())
    assert [x.training for x in m.modules()] == before


def test_flags_the_block_changes_are_given_back():
    """An eval model whose block switches a part to training (as a fine-tuning step would) comes back
    in eval; a training model whose block leaves it in eval comes back training."""
    m = _model().eval()
    with eval_mode(m):
        m[2].train()
    assert not any(x.training for x in m.modules())
    t = _model()
    with eval_mode(t):
        t[1].train()
    assert all(x.training for x in t.modules())
