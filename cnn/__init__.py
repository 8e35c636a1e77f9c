"""pixgraph.cnn: transfer learning with pretrained CNNs (backbones, freezing, data, training, plots)."""

from cnn.backbones import (
    Backbone,
    PreprocessConfig,
    WeightsNotFoundError,
    create_backbone,
    list_backbones,
    register_backbone,
)
from cnn.checkpoints import find_checkpoints, load_checkpoint, save_checkpoint
from cnn.datasets import DATASETS, ELPV_CLASSES, ImageDataset, load_dataset, split
from cnn.explain import FeatureMaps, grad_cam
from cnn.freezing import Strategy, choose_strategy, count_parameters, freeze, set_parameter_requires_grad
from cnn.io import IMAGE_EXTENSIONS, INTERPOLATIONS, UnreadableImageError, read_image, resize, write_image
from cnn.plots import (
    plot_confusion_matrix,
    plot_feature_maps,
    plot_grad_cam,
    plot_history,
    plot_predictions,
    save_figure,
    show_images,
)
from cnn.training import History, evaluate, fit, predict
from cnn.transforms import ToRGBImage, build_transforms, denormalize, to_display

__all__ = [
    "DATASETS",
    "ELPV_CLASSES",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "Backbone",
    "FeatureMaps",
    "History",
    "ImageDataset",
    "PreprocessConfig",
    "Strategy",
    "ToRGBImage",
    "UnreadableImageError",
    "WeightsNotFoundError",
    "build_transforms",
    "choose_strategy",
    "count_parameters",
    "create_backbone",
    "denormalize",
    "evaluate",
    "find_checkpoints",
    "fit",
    "freeze",
    "grad_cam",
    "list_backbones",
    "load_checkpoint",
    "load_dataset",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_grad_cam",
    "plot_history",
    "plot_predictions",
    "predict",
    "read_image",
    "register_backbone",
    "resize",
    "save_checkpoint",
    "save_figure",
    "set_parameter_requires_grad",
    "show_images",
    "split",
    "to_display",
    "write_image",
]
