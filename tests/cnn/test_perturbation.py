"""Tests for cnn.perturbation: deletion / insertion curves with answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnn.explain import grad_cam
from cnn.perturbation import faithfulness, perturbation_curves

H = W = 32


class QuadrantModel(nn.Module):
    """Looks only at the mean red of the top-left quadrant: logit_0 = 12 (red - 0.8), logit_1 = -logit_0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
        mask = torch.zeros(1, 1, H, W)
        mask[..., : H // 2, : W // 2] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x) * self.mask
        red = a[:, 0].sum(dim=(1, 2)) / self.mask.sum()
        logit = 12.0 * (red - 0.8)
        return torch.stack([logit, -logit], dim=1)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, H, W, 3), dtype=np.uint8)
    imgs[:, : H // 2, : W // 2, 0] = 255  # a bright red quadrant: class 0, confidently
    imgs[:, : H // 2, : W // 2, 1:] = 0
    return imgs


@pytest.fixture
def model() -> QuadrantModel:
    return QuadrantModel().eval()


def _score(model: nn.Module):
    def score(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(_to_tensor(images)), dim=1)

    return score


def test_hirescam_puts_the_region_first_and_deletion_drops_at_once(model):
    imgs = _images()
    maps = grad_cam(model, _to_tensor(imgs), target=0, layer=model.conv, method="hirescam")
    quadrant = np.zeros((H, W), bool)
    quadrant[: H // 2, : W // 2] = True
    top = maps.numpy().reshape(len(imgs), -1).argsort(axis=1)[:, ::-1][:, : H * W // 4]
    assert quadrant.reshape(-1)[top].mean() == 1.0  # the first quarter of the ranking is the quadrant
    f = faithfulness(_score(model), imgs, maps, steps=20, fill="mean")
    deletion = f.curves["deletion"]
    assert (deletion[:, 0] > 0.99).all()  # confident at the start
    assert (deletion[:, 5] < 0.5).all()  # after the first 25 %, i.e. the whole quadrant, the class is gone
    assert f.deletion_auc.mean() < f.random_deletion_auc.mean() - 0.3
    assert f.insertion_auc.mean() > f.random_insertion_auc.mean() + 0.3


def test_gradcam_ranks_a_decoy_first_and_scores_worse_than_hirescam(model):
    # Grad-CAM averages the gradient over positions, so its map follows the red channel everywhere: a
    # redder decoy block that the model never looks at is ranked first. HiResCAM keeps the gradient per
    # position and ranks only the quadrant. Known by construction.
    imgs = _images()
    imgs[:, : H // 2, : W // 2, 0] = 230  # the quadrant the model reads: red 0.9 -> class 0
    imgs[:, H // 2 :, W // 2 :] = (255, 0, 0)  # the decoy: redder, ignored by the model
    x = _to_tensor(imgs)
    score = _score(model)
    maps = {m: grad_cam(model, x, target=0, layer=model.conv, method=m) for m in ("hirescam", "gradcam")}
    hires = faithfulness(score, imgs, maps["hirescam"], fill="mean")
    plain = faithfulness(score, imgs, maps["gradcam"], fill="mean")
    assert plain.deletion_auc.mean() > hires.deletion_auc.mean() + 0.1


def test_a_random_map_scores_like_the_random_baseline(model):
    imgs = _images(8, seed=1)
    noise = np.random.default_rng(5).random((8, H, W))
    f = faithfulness(_score(model), imgs, noise, steps=20, fill="mean", seed=3)
    assert abs(f.deletion_auc.mean() - f.random_deletion_auc.mean()) < 0.08
    assert abs(f.insertion_auc.mean() - f.random_insertion_auc.mean()) < 0.08


def test_curve_endpoints_and_one_batch_per_curve(model):
    imgs = _images(3)
    calls = []

    def score(images):
        calls.append(len(images))
        return _score(model)(images)

    c = perturbation_curves(score, imgs, np.ones((3, H, W)), steps=10, fill="blur")
    assert c["fractions"][0] == 0.0 and c["fractions"][-1] == 1.0 and c["deletion"].shape == (3, 11)
    np.testing.assert_allclose(c["deletion"][:, 0], c["insertion"][:, -1])  # both are the intact image
    np.testing.assert_allclose(c["deletion"][:, -1], c["insertion"][:, 0])  # both are the filled image
    assert calls == [3, 22, 22, 22]  # targets, then the 2 x 11 perturbed images of each image at once
    assert (c["targets"] == 0).all()


def test_mean_fill_replaces_removed_pixels_with_the_mean_colour():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, :2] = 200  # mean colour is 100
    seen = []

    def score(images):
        seen.append(images.copy())
        return torch.tensor([[1.0, 0.0]] * len(images))

    perturbation_curves(score, img, np.arange(16.0).reshape(1, 4, 4), steps=1, fill="mean")
    fully_deleted = seen[1][1]
    assert (fully_deleted == 100).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 8, 8, 3), np.float32)}, r"images must be a \(B, H, W, 3\) uint8 array"),
        ({"maps": np.zeros((2, 8, 7))}, r"maps must have shape \(B, H, W\) = \(2, 8, 8\)"),
        ({"maps": np.full((2, 8, 8), np.nan)}, "maps hold NaN or inf"),
        ({"steps": 0}, "steps must be a positive int"),
        ({"fill": "noise"}, "fill must be one of 'blur', 'mean'"),
        ({"score": lambda x: torch.ones(len(x))}, r"class probabilities \(N, C\)"),
        ({"score": [lambda x: x]}, r"one function per image \(2\), got 1 items"),
    ],
)
def test_bad_input(kwargs, match):
    args = {
        "score": lambda x: torch.ones(len(x), 2) / 2,
        "images": np.zeros((2, 8, 8, 3), np.uint8),
        "maps": np.zeros((2, 8, 8)),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        faithfulness(args.pop("score"), args.pop("images"), args.pop("maps"), **args)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ([0, -1], r"targets\[1\] = -1 is not a class of the score's output, .* must lie in 0\.\.1"),
        ([5, 0], r"targets\[0\] = 5 is not a class of the score's output, which gives 2 .* 0\.\.1"),
        ([0, 1.5], r"targets must be class indices \(ints\), got float64"),
        ([0], r"targets must give one class per image \(2\), got 1"),
    ],
    ids=["minus_one", "too_big", "fractional", "too_few"],
)
@pytest.mark.parametrize("per_image", [False, True], ids=["one_score", "score_per_image"])
def test_targets_outside_the_classes_are_refused(targets, match, per_image):
    calls = []

    def score(x):
        calls.append(len(x))
        return torch.ones(len(x), 2) / 2

    imgs, maps = np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match=match):
        perturbation_curves([score, score] if per_image else score, imgs, maps, steps=2, targets=targets)
    assert len(calls) <= (2 if per_image else 1)  # refused at the first output that shows the bad target
    ok = perturbation_curves(score, imgs, maps, steps=2, targets=[1, 0.0])
    assert ok["targets"].tolist() == [1, 0] and ok["targets"].dtype == np.int64


@pytest.mark.parametrize("score", ["model", 5, [lambda x: x, "model"]])
def test_score_that_is_not_a_function_is_a_type_error(score):
    with pytest.raises(TypeError, match=r"score must be a function .*(, got (str|int)|score\[1\] is a str)"):
        faithfulness(score, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8)))


def test_one_scoring_function_per_image_sees_only_its_image(model):
    imgs = _images(3)
    seen: list[set[int]] = [set(), set(), set()]

    def scorer(i):
        def score(images):
            seen[i].add(len(images))
            assert np.array_equal(images[0], imgs[i]) or len(images) > 1
            return _score(model)(images)

        return score

    per_image = faithfulness([scorer(i) for i in range(3)], imgs, np.ones((3, H, W)), steps=4, fill="mean")
    shared = faithfulness(_score(model), imgs, np.ones((3, H, W)), steps=4, fill="mean")
    np.testing.assert_allclose(per_image.deletion_auc, shared.deletion_auc)
    assert seen == [{1, 10}] * 3  # the intact image, then 2 x 5 perturbed copies
    with pytest.raises(ValueError, match=r"one function per image \(3\), got 2"):
        faithfulness([scorer(0), scorer(1)], imgs, np.ones((3, H, W)))


def test_faithfulness_reads_a_generator_of_scorers_once_for_both_orders():
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    imgs[:, :4, :4, 0] = 255
    maps = np.zeros((2, 8, 8))
    maps[:, :4, :4] = 1

    def score(x):
        red = torch.tensor(x[:, :4, :4, 0].mean(axis=(1, 2)) / 255.0)
        return torch.stack([red, 1 - red], dim=1)

    from_list = faithfulness([score, score], imgs, maps, steps=4, fill="mean")
    from_generator = faithfulness((score for _ in range(2)), imgs, maps, steps=4, fill="mean")
    assert np.allclose(from_generator.deletion_auc, from_list.deletion_auc)
    assert np.allclose(from_generator.random_deletion_auc, from_list.random_deletion_auc)
