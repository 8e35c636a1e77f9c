"""Tests for cnn.plots: every figure is written to a PNG and shows what was asked for."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cnn.backbones import PreprocessConfig  # noqa: E402
from cnn.plots import (  # noqa: E402
    plot_confusion_matrix,
    plot_feature_maps,
    plot_grad_cam,
    plot_history,
    plot_predictions,
    save_figure,
    show_images,
)

CFG = PreprocessConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _normalise(images01: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) in [0, 1] -> normalised (B, 3, H, W) with CFG."""
    t = torch.from_numpy(images01).permute(0, 3, 1, 2).float()
    return (t - torch.tensor(CFG.mean)[:, None, None]) / torch.tensor(CFG.std)[:, None, None]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class _History:
    def to_dict(self):
        return {"train_acc": [0.5, 0.7, 0.9], "val_acc": [0.4, 0.6, 0.65], "train_loss": [1.0, 0.6, 0.3]}


def test_plot_history_from_object_and_dict(tmp_path):
    fig = plot_history(_History(), tmp_path / "h.png")
    assert _is_png(tmp_path / "h.png")
    assert not plt.fignum_exists(fig.number)  # saved -> closed
    acc, loss = fig.axes[:2]
    assert [list(line.get_ydata()) for line in acc.lines] == [[0.5, 0.7, 0.9], [0.4, 0.6, 0.65]]
    assert list(acc.lines[0].get_xdata()) == [1, 2, 3]
    assert len(loss.lines) == 1  # no val_loss given: only the train curve
    fig = plot_history({"train_acc": [0.1], "val_acc": [], "train_loss": [2.0], "val_loss": [2.5]})
    assert plt.fignum_exists(fig.number) and len(fig.axes[1].lines) == 2
    with pytest.raises(ValueError, match="history has none of"):
        plot_history({"accuracy": [1.0]})


def test_plot_predictions_grid_colours(tmp_path):
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8))
    labels = np.arange(20) % 3
    preds = labels.copy()
    preds[[2, 5, 11]] = (preds[[2, 5, 11]] + 1) % 3
    classes = ["cat", "dog", "owl"]
    fig = plot_predictions(images, labels, preds, classes, tmp_path / "p.png")
    assert _is_png(tmp_path / "p.png")
    assert len(fig.axes) == 20
    colours = [ax.title.get_color() for ax in fig.axes]
    assert colours == ["red" if i in (2, 5, 11) else "green" for i in range(20)]
    assert fig.axes[2].get_title() == f"{classes[preds[2]]} ({classes[labels[2]]})"
    assert np.array_equal(fig.axes[7].images[0].get_array(), images[7])


def test_plot_predictions_denormalises_tensors():
    rng = np.random.default_rng(1)
    pics = rng.random((4, 6, 6, 3)).astype(np.float32)
    fig = plot_predictions(_normalise(pics), [0, 1, 0, 1], [0, 1, 1, 1], ["a", "b"], cfg=CFG, rows=1, cols=4)
    shown = np.stack([np.asarray(ax.images[0].get_array()) for ax in fig.axes])
    assert np.allclose(shown, pics, atol=1e-5)
    assert [ax.title.get_color() for ax in fig.axes] == ["green", "green", "red", "green"]
    blank = plot_predictions(list(pics[:3]), [0, 0, 0], [0, 0, 0], ["a"], rows=1, cols=4)
    assert len(blank.axes) == 4 and not blank.axes[3].images


def test_grey_pictures_are_drawn_on_the_full_range_of_their_type(tmp_path):
    """A dark grey image stays dark and a flat one keeps its level (matplotlib would stretch each grey
    image to its own min..max); the same for plot_grad_cam's background."""
    dark = np.tile(np.arange(0, 41, 8, dtype=np.uint8), (6, 1))  # 0..40 of 255
    flat = np.full((6, 6), 0.8, np.float32)
    fig = plot_predictions([dark, flat], [0, 0], [0, 0], ["a"], rows=1, cols=2)
    assert [ax.images[0].get_clim() for ax in fig.axes] == [(0, 255), (0, 1.0)]
    cam_fig = plot_grad_cam(dark, np.zeros((6, 6)))
    assert cam_fig.axes[0].images[0].get_clim() == (0, 255)


def test_one_channel_tensors_with_a_three_channel_cfg_are_refused():
    grey = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"have 1 channel\(s\) but cfg has 3 means"):
        plot_predictions(grey, [0, 0], [0, 0], ["a"], cfg=CFG, rows=1, cols=2)
    with pytest.raises(ValueError, match=r"batch have 1 channel\(s\) but cfg has 3 means"):
        show_images(grey, CFG)
    one = PreprocessConfig(mean=(0.5,), std=(0.25,))
    fig = plot_predictions(grey, [0, 0], [0, 0], ["a"], cfg=one, rows=1, cols=2)
    assert np.allclose(np.asarray(fig.axes[0].images[0].get_array()), 0.5)  # 0 * 0.25 + 0.5, grey


def test_plot_predictions_bad_input():
    imgs = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="same length, got 3, 2 and 3"):
        plot_predictions(imgs, [0, 1], [0, 1, 1], ["a", "b"])
    with pytest.raises(ValueError, match="preds holds class indices 0..2 but classes has 2"):
        plot_predictions(imgs, [0, 1, 1], [0, 1, 2], ["a", "b"])
    with pytest.raises(ValueError, match="channel-first"):
        plot_predictions([np.zeros((3, 5, 5))], [0], [0], ["a"])


def test_show_images_undoes_normalisation(tmp_path):
    pics = np.zeros((2, 4, 4, 3), dtype=np.float32)
    pics[0, ..., 0] = 1.0  # red
    pics[1, ..., 2] = 0.5  # half blue
    fig = show_images(
        _normalise(pics), CFG, labels=torch.tensor([1, 0]), classes=["x", "y"], path=tmp_path / "s.png"
    )
    assert _is_png(tmp_path / "s.png")
    ax = fig.axes[0]
    assert ax.get_title() == "y, x"
    grid = np.asarray(ax.images[0].get_array())
    assert grid.shape == (8, 14, 3)  # make_grid: 2 px padding around and between
    assert np.allclose(grid[2:6, 2:6], pics[0], atol=1e-5)
    assert np.allclose(grid[2:6, 8:12], pics[1], atol=1e-5)
    assert grid.min() >= 0 and grid.max() <= 1
    assert np.all(grid[:2] == 1.0) and np.all(grid[:, 6:8] == 1.0)  # white gaps between images
    with pytest.raises(ValueError, match="labels has 1 entries for a batch of 2"):
        show_images(_normalise(pics), CFG, labels=[0])


def test_plot_feature_maps(tmp_path):
    maps = torch.arange(20 * 3 * 3, dtype=torch.float32).reshape(1, 20, 3, 3)
    fig = plot_feature_maps(maps, max_maps=16, path=tmp_path / "f.png")
    assert _is_png(tmp_path / "f.png")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 16
    assert np.array_equal(shown[5].images[0].get_array(), maps[0, 5].numpy())
    assert len(plot_feature_maps(maps[0, :3]).axes) == 4  # 2x2 grid for 3 maps
    with pytest.raises(ValueError, match="pass one image: maps\\[0\\]"):
        plot_feature_maps(maps.expand(2, -1, -1, -1))


def test_plot_grad_cam(tmp_path):
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    cam = torch.zeros(4, 4)
    cam[:, :2] = 1.0
    fig = plot_grad_cam(image, cam, path=tmp_path / "g.png")
    assert _is_png(tmp_path / "g.png")
    ax = fig.axes[0]
    assert len(ax.images) == 2 and ax.images[1].get_extent() == [-0.5, 15.5, 15.5, -0.5]
    own, ax2 = plt.subplots()
    assert plot_grad_cam(image, cam.numpy(), ax=ax2, path=tmp_path / "g2.png") is own
    assert plt.fignum_exists(own.number)  # a figure the caller made is saved but not closed
    assert len(own.axes) == 2  # the colour bar
    bare, ax3 = plt.subplots()
    plot_grad_cam(image, cam, ax=ax3, colorbar=False)
    assert len(bare.axes) == 1
    with pytest.raises(ValueError, match="cam must be one"):
        plot_grad_cam(image, torch.zeros(2, 4, 4))


def test_plot_confusion_matrix(tmp_path):
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 2, 2, 0])
    fig = plot_confusion_matrix(y_true, y_pred, ["a", "b", "c"], tmp_path / "cm.png")
    assert _is_png(tmp_path / "cm.png")
    counts = np.asarray(fig.axes[0].images[0].get_array())
    assert counts.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 3]]
    assert [t.get_text() for t in fig.axes[0].texts][:3] == ["1", "1", "0"]
    with pytest.raises(ValueError, match="same length"):
        plot_confusion_matrix([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="y_true holds class indices 0..3 but classes has 3"):
        plot_confusion_matrix([0, 3], [0, 1], ["a", "b", "c"])


def test_save_figure_atomic_replaces_and_leaves_no_temp(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    target = tmp_path / "sub" / "plot.svg"
    target.parent.mkdir()
    target.write_text("old")
    save_figure(fig, target)
    assert target.read_text().lstrip().startswith("<?xml")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["plot.svg"]
    plt.close(fig)


def test_a_one_value_cfg_denormalises_three_channel_tensors():
    one = PreprocessConfig(mean=(0.5,), std=(0.25,))
    fig = show_images(torch.zeros(2, 3, 8, 8), one)
    assert np.allclose(np.asarray(fig.axes[0].images[0].get_array())[2:6, 2:6], 0.5)
