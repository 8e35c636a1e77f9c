"""pixgraph.cnn: transfer learning with pretrained CNNs (backbones, freezing, data, training, plots).

Public names are imported on first use (PEP 562), so ``import cnn`` stays cheap.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from cnn.backbones import (
        Backbone,
        PreprocessConfig,
        WeightsNotFoundError,
        check_backbone_name,
        create_backbone,
        list_backbones,
        register_backbone,
    )
    from cnn.datasets import (
        DATASETS,
        ELPV_CLASSES,
        DatasetNotAvailableError,
        ImageDataset,
        default_data_root,
        describe_dataset,
        format_description,
        load_dataset,
        split,
    )
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
    from cnn.transforms import (
        ToRGBImage,
        build_transforms,
        center_view,
        denormalize,
        normalize_images,
        to_display,
    )
    from engine.checkpoints import find_checkpoints, load_checkpoint, save_checkpoint

_EXPORTS = {
    "DatasetNotAvailableError": "cnn.datasets",
    "describe_dataset": "cnn.datasets",
    "default_data_root": "cnn.datasets",
    "format_description": "cnn.datasets",
    "center_view": "cnn.transforms",
    "normalize_images": "cnn.transforms",
    "Backbone": "cnn.backbones",
    "PreprocessConfig": "cnn.backbones",
    "WeightsNotFoundError": "cnn.backbones",
    "check_backbone_name": "cnn.backbones",
    "create_backbone": "cnn.backbones",
    "list_backbones": "cnn.backbones",
    "register_backbone": "cnn.backbones",
    "DATASETS": "cnn.datasets",
    "ELPV_CLASSES": "cnn.datasets",
    "ImageDataset": "cnn.datasets",
    "load_dataset": "cnn.datasets",
    "split": "cnn.datasets",
    "FeatureMaps": "cnn.explain",
    "grad_cam": "cnn.explain",
    "Strategy": "cnn.freezing",
    "choose_strategy": "cnn.freezing",
    "count_parameters": "cnn.freezing",
    "freeze": "cnn.freezing",
    "set_parameter_requires_grad": "cnn.freezing",
    "IMAGE_EXTENSIONS": "cnn.io",
    "INTERPOLATIONS": "cnn.io",
    "UnreadableImageError": "cnn.io",
    "read_image": "cnn.io",
    "resize": "cnn.io",
    "write_image": "cnn.io",
    "plot_confusion_matrix": "cnn.plots",
    "plot_feature_maps": "cnn.plots",
    "plot_grad_cam": "cnn.plots",
    "plot_history": "cnn.plots",
    "plot_predictions": "cnn.plots",
    "save_figure": "cnn.plots",
    "show_images": "cnn.plots",
    "History": "cnn.training",
    "evaluate": "cnn.training",
    "fit": "cnn.training",
    "predict": "cnn.training",
    "ToRGBImage": "cnn.transforms",
    "build_transforms": "cnn.transforms",
    "denormalize": "cnn.transforms",
    "to_display": "cnn.transforms",
    "find_checkpoints": "engine.checkpoints",
    "load_checkpoint": "engine.checkpoints",
    "save_checkpoint": "engine.checkpoints",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Backbone",
    "DATASETS",
    "DatasetNotAvailableError",
    "ELPV_CLASSES",
    "FeatureMaps",
    "History",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "ImageDataset",
    "PreprocessConfig",
    "Strategy",
    "ToRGBImage",
    "UnreadableImageError",
    "WeightsNotFoundError",
    "build_transforms",
    "center_view",
    "check_backbone_name",
    "choose_strategy",
    "count_parameters",
    "create_backbone",
    "default_data_root",
    "denormalize",
    "describe_dataset",
    "evaluate",
    "find_checkpoints",
    "fit",
    "format_description",
    "freeze",
    "grad_cam",
    "list_backbones",
    "load_checkpoint",
    "load_dataset",
    "normalize_images",
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
