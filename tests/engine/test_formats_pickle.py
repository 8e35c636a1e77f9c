"""Batch formats travel to new processes (Lightning's ``ddp_spawn``), so they must pickle."""

from __future__ import annotations

import pickle

import pytest
import torch

from bridge.cnngraph import SEGMENTED_IMAGES
from cnn.training import IMAGES
from gnn.training import GRAPHS


@pytest.mark.parametrize("fmt", [IMAGES, GRAPHS, SEGMENTED_IMAGES], ids=lambda f: f.name)
def test_every_built_in_batch_format_survives_pickling(fmt):
    back = pickle.loads(pickle.dumps(fmt))
    assert back.name == fmt.name
    assert back.split is fmt.split and back.inputs is fmt.inputs  # module-level functions, found by name


def test_a_pickled_format_still_splits_a_batch():
    back = pickle.loads(pickle.dumps(IMAGES))
    x, y = torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])
    got_x, got_y = back.split((x, y))
    assert got_x is x and torch.equal(got_y, y)
    with pytest.raises((TypeError, ValueError)):
        back.split("not a batch")
