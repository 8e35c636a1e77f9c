"""pixgraph.engine: the one training engine (Lightning) and what both model families share.

``cnn`` and ``gnn`` never import each other; both import ``engine``, which knows neither images nor graphs:
a family describes its batches in a :class:`~engine.training.BatchFormat`. History, metrics, checkpoints,
safe file reading and the CPU allocator setting of the ``pixgraph`` command live here too.

Public names are imported on first use (PEP 562), so ``import engine`` stays cheap.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.checkpoints import find_checkpoints, load_checkpoint, save_checkpoint
    from engine.files import (
        CheckpointError,
        DatasetNotAvailableError,
        atomic_open,
        default_data_root,
        load_torch_file,
        replace_folder,
    )
    from engine.history import History
    from engine.memory import keep_freed_memory
    from engine.metrics import accuracy, classification_metrics, confusion_matrix, macro_f1
    from engine.stats import compare_pair, format_pair, mcnemar_exact, paired_bootstrap
    from engine.training import BatchFormat, bind_format, evaluate, fit, predict

_EXPORTS = {
    "compare_pair": "engine.stats",
    "format_pair": "engine.stats",
    "mcnemar_exact": "engine.stats",
    "paired_bootstrap": "engine.stats",
    "DatasetNotAvailableError": "engine.files",
    "default_data_root": "engine.files",
    "replace_folder": "engine.files",
    "find_checkpoints": "engine.checkpoints",
    "load_checkpoint": "engine.checkpoints",
    "save_checkpoint": "engine.checkpoints",
    "CheckpointError": "engine.files",
    "atomic_open": "engine.files",
    "load_torch_file": "engine.files",
    "History": "engine.history",
    "keep_freed_memory": "engine.memory",
    "accuracy": "engine.metrics",
    "classification_metrics": "engine.metrics",
    "confusion_matrix": "engine.metrics",
    "macro_f1": "engine.metrics",
    "BatchFormat": "engine.training",
    "bind_format": "engine.training",
    "evaluate": "engine.training",
    "fit": "engine.training",
    "predict": "engine.training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BatchFormat",
    "CheckpointError",
    "DatasetNotAvailableError",
    "History",
    "accuracy",
    "atomic_open",
    "bind_format",
    "classification_metrics",
    "compare_pair",
    "confusion_matrix",
    "default_data_root",
    "evaluate",
    "find_checkpoints",
    "fit",
    "format_pair",
    "keep_freed_memory",
    "load_checkpoint",
    "load_torch_file",
    "macro_f1",
    "mcnemar_exact",
    "paired_bootstrap",
    "predict",
    "replace_folder",
    "save_checkpoint",
]
