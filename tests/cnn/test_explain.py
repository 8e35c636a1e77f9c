"""Tests for cnn.explain: FeatureMaps hooks and Grad-CAM on a case whose answer is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnn.backbones import create_backbone
from cnn.explain import CAM_METHODS, FeatureMaps, grad_cam


class ColourNet(nn.Module):
    """Class 1 = "red", class 0 = "blue": each logit is the global mean of one detector channel.

    The 1x1 conv copies the red channel to map 0 and the blue channel to map 1, so for class 1 the
    Grad-CAM weights are (>0, 0) and the map is the red detector: high where the image is red.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0  # red
            self.conv.weight[1, 2] = 1.0  # blue
        self.act = nn.ReLU(inplace=True)  # in place after the explained layer: must not break it
        self.pool = nn.AvgPool2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv(self.pool(x)))  # (B, 2, H/4, W/4): Grad-CAM must upsample
        m = self.drop(a).mean(dim=(2, 3))
        return torch.stack([m[:, 1], m[:, 0]], dim=1)  # (blue, red)


def _red_left(width_red: int = 40, size: int = 64) -> torch.Tensor:
    """(3, size, size): red on the first ``width_red`` columns, blue on the rest."""
    x = torch.zeros(3, size, size)
    x[0, :, :width_red] = 1.0
    x[2, :, width_red:] = 1.0
    return x


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return create_backbone("resnet18", weights=None, num_classes=3)


def test_feature_maps_match_features_and_are_detached(resnet):
    resnet.eval()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with FeatureMaps(resnet, [0, "layer2", resnet.model.layer3, -1]) as fm:
        resnet(x)
    assert fm.names == ["model.act1", "model.layer2", "model.layer3", "model.layer4"]
    assert list(fm.maps) == fm.names
    ref = resnet.features(x)
    for got, want in zip(fm.maps.values(), [ref[0], ref[2], ref[3], ref[4]]):
        assert torch.allclose(got, want)
        assert not got.requires_grad
    assert fm[-1].shape == (2, 512, 2, 2)
    assert fm["layer2"] is fm.maps["model.layer2"]
    with FeatureMaps(resnet, [-1, 1]) as deep_first:
        resnet(x)
    assert list(deep_first.maps) == ["model.layer4", "model.layer1"]
    assert all(len(m._forward_hooks) == 0 for m in resnet.modules())


def test_feature_maps_hooks_removed_after_error(resnet):
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureMaps(resnet, ["model.layer1"]):
            assert len(resnet.model.layer1._forward_hooks) == 1
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in resnet.modules())


def test_feature_maps_bad_layers(resnet):
    with pytest.raises(ValueError, match=r"layer='layr4'.*valid names include.*'layer4'"):
        FeatureMaps(resnet, ["layr4"])
    with pytest.raises(ValueError, match="out of range.*5 stages"):
        FeatureMaps(resnet, 5)
    with pytest.raises(ValueError, match="not a submodule"):
        FeatureMaps(resnet, nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="stage indices of a cnn.Backbone"):
        FeatureMaps(ColourNet(), 0)
    with pytest.raises(ValueError, match="layers is empty"):
        FeatureMaps(resnet, [])


def test_grad_cam_known_answer_and_batch():
    torch.manual_seed(0)
    net = ColourNet()
    for p in net.parameters():  # frozen: the gradient must come from the activation alone
        p.requires_grad_(False)
    net.train()
    net.pool.eval()
    x = torch.stack([_red_left(), _red_left().flip(-1)])  # red on the left, red on the right
    cam = grad_cam(net, x)  # argmax: red covers 40/64 columns, so class 1 for both
    assert cam.shape == (2, 64, 64)
    assert cam.min() >= 0 and cam.max() <= 1 and not cam.requires_grad
    assert torch.allclose(cam[0, :, :32], torch.ones(64, 32))
    assert cam[0, :, 44:].max() == 0
    assert torch.allclose(cam[1, :, -32:], torch.ones(64, 32))
    assert cam[1, :, :20].max() == 0
    blue = grad_cam(net, x, target=0)  # the other class lights up the other side
    assert blue[0, :, :36].max() == 0 and torch.allclose(blue[0, :, 44:], torch.ones(64, 20))
    mixed = grad_cam(net, x, target=[1, 0], layer="conv")
    assert torch.equal(mixed[0], cam[0]) and mixed[1, :, -32:].max() == 0
    # mode of every submodule restored, parameters untouched
    assert net.training and net.drop.training and not net.pool.training
    assert all(p.grad is None for p in net.parameters())


def test_grad_cam_backbone_smoke_keeps_grads_clean(resnet):
    resnet.train()
    marker = torch.full_like(resnet.head.weight, 7.0)
    resnet.head.weight.grad = marker.clone()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # grad_cam turns gradients on for itself
        cam = grad_cam(resnet, x)
    assert cam.shape == (3, 64, 64) and torch.isfinite(cam).all()
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.equal(resnet.head.weight.grad, marker)
    assert all(p.grad is None for n, p in resnet.named_parameters() if n != "model.fc.weight")
    assert resnet.training and all(len(m._forward_hooks) == 0 for m in resnet.modules())
    resnet.head.weight.grad = None
    resnet.eval()
    shallow = grad_cam(resnet, x, target=2, layer=2)
    assert shallow.shape == (3, 64, 64)


def test_grad_cam_bad_input(resnet):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        grad_cam(resnet, x, target=3)
    with pytest.raises(ValueError, match="target has 2 entries for a batch of 1"):
        grad_cam(resnet, x, target=[0, 1])
    with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\) tensor.*x\[None\]"):
        grad_cam(resnet, x[0])
    with pytest.raises(ValueError, match="valid names include"):
        grad_cam(resnet, x, layer="nope")
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside inference_mode"):
        grad_cam(resnet, x)
    with torch.no_grad():  # no_grad is lifted inside
        assert grad_cam(resnet, x).shape == (1, 32, 32)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_every_cam_method_gives_normalised_maps_on_the_input_grid(method):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    cam = grad_cam(model, torch.randn(2, 3, 12, 12), target=1, method=method)
    assert cam.shape == (2, 12, 12) and float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
    assert torch.isfinite(cam).all()


def test_unknown_cam_method_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"method must be one of 'gradcam', 'gradcam\+\+', 'hirescam', got 'cam'"
    ):
        grad_cam(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), torch.zeros(1, 3, 4, 4), method="cam")
