"""pixgraph.cnn: transfer learning with pretrained CNNs (backbones, freezing, data, training, explanations)."""

from cnn.backbones import (
    Backbone,
    PreprocessConfig,
    WeightsNotFoundError,
    create_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "Backbone",
    "PreprocessConfig",
    "WeightsNotFoundError",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
