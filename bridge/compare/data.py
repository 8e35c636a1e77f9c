"""The images every arm sees: one centre-cropped view per image, one stratified split, and loaders.

Every arm reads the same pixels: each image is resized (shorter side to the backbone's resize size) and
centre-cropped to its input size once (:func:`cnn.transforms.center_view`); both the CNNs and the graph
builder read that view.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from bridge.compare.config import CompareConfig

__all__ = ["DataView", "ImageTensors", "make_loader", "prepare_data"]


@dataclasses.dataclass
class DataView:
    """The working images and the split.

    Shapes:
        - images: ``(N, S, S, 3)`` uint8; targets: ``(N,)`` int64; train / val / test: index arrays.
    """

    images: np.ndarray
    targets: np.ndarray
    classes: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str

    def fingerprint(self) -> dict[str, Any]:
        """A cheap content hash of what every arm sees: the views, labels, classes and split.

        Returns:
            ``{"sha256", "n_images", "classes", "counts", "image_size"}`` (JSON-ready); one changed
            pixel or label changes ``sha256``.

        Example:
            >>> view.fingerprint()["n_images"]  # doctest: +SKIP
            80
        """
        h = hashlib.sha256()
        h.update(json.dumps([list(self.images.shape), self.classes]).encode())
        h.update(np.ascontiguousarray(self.images).data)
        for a in (self.targets, self.train, self.val, self.test):
            h.update(np.ascontiguousarray(a, dtype=np.int64).data)
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {
            "sha256": h.hexdigest(),
            "n_images": int(len(self.targets)),
            "classes": list(self.classes),
            "counts": [int(c) for c in counts],
            "image_size": int(self.images.shape[1]) if self.images.ndim > 1 else 0,
        }


def prepare_data(
    cfg: CompareConfig,
    size: int,
    resize_size: int,
    log: Callable[[str], None],
    *,
    download: bool = True,
) -> DataView:
    """Load ``cfg.data``, take the ``size`` x ``size`` view of every image and split (seeded, stratified).

    A class too small for the split is named by its class name (its folder or label), not its index.
    """
    from cnn.datasets import load_dataset, split
    from cnn.transforms import center_view

    extra: dict[str, Any] = {}
    if cfg.data_split is not None:
        extra["split"] = cfg.data_split
    if cfg.data_root is not None:
        extra["root"] = cfg.data_root
    if not download:
        extra["download"] = False
    ds = load_dataset(cfg.data, max_per_class=cfg.max_per_class, seed=cfg.split_seed, **extra)
    n = len(ds)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):  # one OpenCV resize + crop per image, not per pixel
        images[i] = center_view(ds[i][0], size, resize_size)
    targets = np.array(ds.targets, dtype=np.int64)  # a writable copy
    train, val, test = split(ds, val=cfg.val, test=cfg.test, seed=cfg.split_seed)  # names small classes
    log(
        f"data {cfg.data!r}: {n} images, {len(ds.classes)} classes {list(ds.classes)}, "
        f"split train/val/test = {len(train)}/{len(val)}/{len(test)}, view {size}x{size}"
    )
    return DataView(images, targets, list(ds.classes), train, val, test, getattr(ds, "name", cfg.data))


class ImageTensors(torch.utils.data.Dataset):
    """Working images as normalised tensors; random resized crop + flip when ``train``.

    Shapes:
        - item: ``((3, S, S) float32, label)``.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, cfg: Any, *, train: bool) -> None:
        self.images, self.targets, self.cfg, self.train = images, targets, cfg, train
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
        if train:
            from torchvision.transforms import v2

            size = images.shape[1]
            interp = v2.InterpolationMode(cfg.interpolation)
            self.augment = v2.Compose(
                [
                    v2.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=interp, antialias=True),
                    v2.RandomHorizontalFlip(),
                ]
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)  # (3, S, S) uint8
        if self.train:
            x = self.augment(x)  # crop + flip on uint8: cheaper than on floats
        return (x.float().div_(255.0) - self.mean) / self.std, int(self.targets[i])


def make_loader(dataset: Any, batch_size: int, *, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` whose shuffling is seeded by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g)
