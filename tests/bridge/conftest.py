"""Shared fakes of the bridge tests.

With ``--import-mode=importlib`` a conftest cannot be imported by name, so the fakes reach the tests
through fixtures.
"""

import dataclasses

import pytest
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class FakeCfg:
    """The preprocessing part of the backbone contract (like ``cnn.backbones.PreprocessConfig``)."""

    input_size: int = 32
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"


class FakeBackbone(nn.Module):
    """A tiny stand-in for a cnn backbone: ``features(x)``, ``cfg``, ``name``, ``feature_channels``.

    Stage layouts, with answers known by construction:

    - ``"pair"``: a 2x2 average (3 channels, stride 2) and a strided 3x3 conv ``self.conv``
      (4 channels, stride 2).
    - ``"pyramid"``: the input itself (3 channels, stride 1), a 2x2 average (3, stride 2) and a 1x1
      conv ``self.conv`` of a further 2x2 average (2, stride 4).

    Args:
        layout: ``"pair"`` or ``"pyramid"``.
        **cfg: fields of :class:`FakeCfg` to change (``input_size``, ``mean``, ``std``, ``interpolation``).
    """

    def __init__(self, layout: str = "pair", **cfg):
        super().__init__()
        if layout == "pair":
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.feature_channels = [3, 4]
        elif layout == "pyramid":
            self.conv = nn.Conv2d(3, 2, 1)
            self.feature_channels = [3, 3, 2]
        else:
            raise ValueError(f"unknown layout {layout!r}; expected 'pair' or 'pyramid'")
        self.layout = layout
        self.cfg = FakeCfg(**cfg)
        self.name = "fake"

    def features(self, x):
        s1 = F.avg_pool2d(x, 2)
        if self.layout == "pair":
            return [s1, self.conv(x)]
        return [x, s1, self.conv(F.avg_pool2d(s1, 2))]


@pytest.fixture
def fake_backbone():
    """The :class:`FakeBackbone` class: call it for a fresh backbone, ``fake_backbone("pyramid", ...)``."""
    return FakeBackbone
