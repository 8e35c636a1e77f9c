"""Model checkpoints as ``.pth`` files: save atomically, load safely, find them in a folder.

Shared by both model families (a backbone, a graph classifier, any ``nn.Module``). A checkpoint is a
dict of tensors and plain Python values only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs)::

    {"state_dict": {name: Tensor}, "arch": "resnet18" | None, "num_classes": 2 | None,
     "classes": ["cat", "dog"] | None, "pixgraph_version": "0.1.0", "extra": {...} | None}

Its ``state_dict`` is the model's own, so ``create_backbone(arch, weights=path)`` reads it too.
:func:`load_checkpoint` also reads a bare ``state_dict`` file and the ``last.ckpt`` / ``best.ckpt`` files
that Lightning writes during :func:`engine.training.fit` (their History comes back under ``"history"``).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.files import CheckpointError, atomic_open, load_torch_file
from engine.history import History

__all__ = ["find_checkpoints", "load_checkpoint", "save_checkpoint"]

_KEYS = ("state_dict", "arch", "num_classes", "classes", "pixgraph_version", "extra")
#: Key of pixgraph's own entry in a Lightning checkpoint (History, model class and configuration).
META_KEY = "pixgraph"


def _version() -> str:
    try:
        return importlib.metadata.version("pixgraph")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _arch(model: nn.Module) -> str | None:
    name = getattr(model, "name", None)
    return name if isinstance(name, str) else None


def _num_classes(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is made of tensors, numbers, strings, None, lists, tuples, dicts."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use str keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; a checkpoint holds only tensors, numbers, strings, None, "
        "lists, tuples and dicts (so it loads with weights_only=True). Convert it first, e.g. "
        "numpy arrays with torch.as_tensor, paths with str"
    )


def _check_classes(classes: Sequence[str] | None, num_classes: int | None) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a list of class names, got {type(classes).__name__}")
    names = list(classes)
    if not all(isinstance(c, str) for c in names):
        raise TypeError(f"classes must be strings, got {names!r}")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"classes has {len(names)} names {names!r} but the model has {num_classes} classes; "
            "give one name per output of the model"
        )
    return names


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and what is needed to rebuild it to a ``.pth`` file, atomically.

    The file is written under a temporary name in the same folder and renamed over ``path``, so an
    existing checkpoint is never left half-written. Missing parent folders are created.

    Args:
        model: the model; its ``name`` (backbone architecture) and ``num_classes`` are recorded when
            it has them, its ``config`` (constructor arguments, e.g. of ``gnn.GraphClassifier``) as
            ``extra["model_config"]``. Tensors are stored on the CPU.
        path: destination file (conventionally ``.pth``).
        classes: class names, one per model output.
        extra: anything else to keep (epoch, metrics, configuration): tensors, numbers, strings, None,
            and lists/tuples/dicts of those.

    Returns:
        The path written.

    Raises:
        ValueError: ``classes`` does not have one name per class.
        TypeError: ``extra`` holds something that ``torch.load(weights_only=True)`` cannot read.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "best.pth"
        >>> save_checkpoint(nn.Linear(4, 2), path, classes=["cat", "dog"], extra={"epoch": 3}) == path
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    num_classes = _num_classes(model)
    names = _check_classes(classes, num_classes)
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
        extra = dict(extra)
        _check_plain(extra, "extra")
    config = _config(model)
    if config is not None and "model_config" not in (extra or {}):
        extra = {**(extra or {}), "model_config": config}
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": _arch(model),
        "num_classes": num_classes,
        "classes": names,
        "pixgraph_version": _version(),
        "extra": extra,
    }
    path = Path(path)
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path


#: Constructor arguments that only act in training: a model built with other values takes the weights.
_TRAINING_ONLY = ("dropout", "global_dropout")


def _config(model: nn.Module) -> dict[str, Any] | None:
    """The model's constructor arguments (its ``config`` dict) when it has them and they are plain."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        return None
    config = dict(config)
    try:
        _check_plain(config, "config")
    except TypeError:
        return None
    return config


def config_differences(
    saved: Mapping[str, Any], now: Mapping[str, Any], *, ignore: Sequence[str] = ()
) -> str:
    """Every key (not in ``ignore``) whose value differs, as ``"key: <saved> in the checkpoint, <now>
    now"``, joined by ``", "`` (an empty string when none does).

    Example:
        >>> config_differences({"hidden": 64, "pool": "mean"}, {"hidden": 32, "pool": "mean"})
        'hidden: 64 in the checkpoint, 32 now'
    """
    keys = [k for k in {**saved, **now} if k not in ignore and saved.get(k) != now.get(k)]
    return ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in keys)


def _describe(arch: str | None, num_classes: int | None, classes: list[str] | None) -> str:
    what = repr(arch) if arch else "an unnamed model"
    if num_classes is not None:
        what += f" with {num_classes} classes"
    if classes:
        what += f" {classes!r}"
    return what


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), optionally into a model.

    A bare ``state_dict`` file (``torch.save(model.state_dict(), path)``, as in the lecture notes) is
    read too; its ``arch``, ``num_classes`` and ``classes`` are then ``None``.

    Args:
        path: the ``.pth`` file.
        model: when given, the weights are loaded into it in place, after checking that its architecture,
            number of classes and ``config`` (when both have one; dropout rates aside) match the
            checkpoint's.
        classes: the class names you expect; checked against the names stored in the checkpoint.

    Returns:
        The checkpoint dict (keys ``state_dict``, ``arch``, ``num_classes``, ``classes``,
        ``pixgraph_version``, ``extra``, ``history``), tensors on the CPU; ``history`` is the training
        :class:`~engine.history.History` when the file has one, else ``None``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder (the message lists the checkpoint files inside).
        ValueError: the file is not a checkpoint, or architecture, classes or weights do not match
            (the message names both sides and how to build a matching model).

    Example:
        >>> import tempfile
        >>> path = save_checkpoint(nn.Linear(4, 2), Path(tempfile.mkdtemp()) / "best.pth", classes=["a", "b"])
        >>> model = nn.Linear(4, 2)
        >>> load_checkpoint(path, model)["classes"]
        ['a', 'b']

    A backbone is rebuilt from what the file says:
    ``create_backbone(ckpt["arch"], weights=None, num_classes=ckpt["num_classes"])``.
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(q.name for q in p.iterdir() if q.suffix in (".pth", ".ckpt") and q.is_file())
        listed = ", ".join(inside[:5]) + (", ..." if len(inside) > 5 else "")
        found = f"it holds {listed}" if inside else "it holds no .pth or .ckpt file"
        raise IsADirectoryError(
            f"checkpoint {str(p)!r} is a folder, not a file ({found}); give the .pth file inside it, "
            f"e.g. {str(p / (inside[0] if inside else 'best.pth'))!r}"
        )
    if not p.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(p)!r} does not exist; find_checkpoints(folder) lists .pth files"
        )
    obj = load_torch_file(p, expected="a checkpoint (.pth or .ckpt written by pixgraph, or a state_dict)")
    if isinstance(obj, Mapping) and "pytorch-lightning_version" in obj and "state_dict" in obj:
        ckpt = _from_lightning(obj, p)
    elif isinstance(obj, Mapping) and "state_dict" in obj:
        ckpt = {k: obj.get(k) for k in _KEYS}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        ckpt = dict.fromkeys(_KEYS)
        ckpt["state_dict"] = dict(obj)
    else:
        raise CheckpointError(
            f"{str(p)!r} holds a {type(obj).__name__}, not a checkpoint (a dict with 'state_dict', "
            "written by save_checkpoint) nor a state_dict; give a .pth or .ckpt written by pixgraph",
            p,
        )
    history = ckpt.get("history")
    if history is None and isinstance(ckpt.get("extra"), Mapping):
        history = ckpt["extra"].get("history")
    ckpt["history"] = History.from_dict(history) if isinstance(history, Mapping) else None
    state: Any = ckpt["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(p)!r}: 'state_dict' is not a dict of tensors; give another file", p)
    ckpt["state_dict"] = dict(state)

    stored_classes = ckpt["classes"]
    if classes is not None:
        expected = _check_classes(classes, None)
        if stored_classes is not None and list(stored_classes) != expected:
            raise ValueError(
                f"checkpoint {str(p)!r} was saved with classes {list(stored_classes)!r}, "
                f"you expect {expected!r}; relabel your data or use a checkpoint trained on these classes"
            )
    if model is None:
        return ckpt
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")

    arch, n = ckpt["arch"], ckpt["num_classes"]
    model_arch, model_n = _arch(model), _num_classes(model)
    if (arch and model_arch and arch != model_arch) or (
        n is not None and model_n is not None and n != model_n
    ):
        raise ValueError(
            f"checkpoint {p.name!r} was saved from {_describe(arch, n, stored_classes)}; "
            f"the model is {_describe(model_arch, model_n, None)}; build the model as "
            f"{(arch or model_arch)!r} with num_classes={n if n is not None else model_n}"
        )
    saved_config = ckpt["extra"].get("model_config") if isinstance(ckpt["extra"], Mapping) else None
    model_config = _config(model)
    if isinstance(saved_config, Mapping) and model_config is not None:
        differ = config_differences(saved_config, model_config, ignore=_TRAINING_ONLY)
        if differ:
            raise ValueError(
                f"checkpoint {p.name!r} was saved from a {type(model).__name__} of another configuration "
                f"({differ}); build the model with the checkpoint's: "
                f"{type(model).__name__}(**ckpt['extra']['model_config'])"
            )
    own = model.state_dict()
    state = ckpt["state_dict"]
    # A file saved from the wrapped network (no "model." prefix) loads into a Backbone, and vice versa.
    if set(state) != set(own):
        if all(k.startswith("model.") for k in own) and {f"model.{k}" for k in state} == set(own):
            state = {f"model.{k}": v for k, v in state.items()}
        elif all(k.startswith("model.") for k in state) and {k[6:] for k in state} == set(own):
            state = {k[6:]: v for k, v in state.items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]})"
        )
        if wrong:
            k = wrong[0]
            shapes = f"{tuple(state[k].shape)} in the file and {tuple(own[k].shape)} in the model"
            detail += f", {k!r} has shape {shapes}"
        raise ValueError(
            f"checkpoint {p.name!r} ({_describe(arch, n, stored_classes)}) does not fit the model "
            f"{_describe(model_arch, model_n, None)}: {detail}"
        )
    model.load_state_dict(state)
    return ckpt


def _from_lightning(obj: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The checkpoint dict of a Lightning ``.ckpt`` written by ``fit``: the wrapped model's weights."""
    state = obj["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{str(path)!r}: 'state_dict' is not a dict of tensors; give another file", path
        )
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    found = obj.get(META_KEY)
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    ckpt: dict[str, Any] = dict.fromkeys(_KEYS)
    ckpt.update(
        state_dict=weights or dict(state),
        arch=meta.get("arch"),
        num_classes=meta.get("num_classes"),
        classes=meta.get("classes"),
        extra={"epoch": obj.get("epoch"), "global_step": obj.get("global_step")},
    )
    if isinstance(meta.get("model_config"), Mapping):
        ckpt["extra"]["model_config"] = dict(meta["model_config"])
    ckpt["history"] = meta.get("history")
    return ckpt


def find_checkpoints(
    directory: str | os.PathLike,
    *,
    pattern: str = "*.pth",
    recursive: bool = True,
) -> list[Path]:
    """The checkpoint files in a folder, newest first (the lecture notes' "find .pth files").

    Args:
        directory: folder to search.
        pattern: glob pattern of file names, e.g. ``"*.pth"`` or ``"*.ckpt"``.
        recursive: search sub-folders too.

    Returns:
        Paths sorted by modification time, newest first (ties by path). Temporary files of an
        interrupted save (names starting with ``.``) are skipped.

    Raises:
        FileNotFoundError: ``directory`` does not exist.
        NotADirectoryError: ``directory`` is a file.

    Example:
        >>> find_checkpoints("runs")  # doctest: +SKIP
        [PosixPath('runs/exp2/best.pth'), PosixPath('runs/exp1/best.pth')]
    """
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise NotADirectoryError(f"{str(d)!r} is a file, not a directory; pass the folder that holds it")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be a non-empty glob pattern such as '*.pth', got {pattern!r}")
    found = d.rglob(pattern) if recursive else d.glob(pattern)
    files = [f for f in found if f.is_file() and not f.name.startswith(".")]
    files.sort(key=lambda f: str(f))
    files.sort(key=lambda f: f.stat().st_mtime_ns, reverse=True)
    return files
