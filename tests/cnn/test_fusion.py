import pytest
import torch
from torch import nn

from cnn.backbones import create_backbone
from cnn.fusion import fold_batchnorm


def n_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0", "torchvision/mobilenet_v3_small"])
def test_folded_copy_gives_the_same_logits_maps_and_embedding(name):
    m = create_backbone(name, weights=None, num_classes=3)
    # BatchNorm statistics away from (0, 1), so that folding them is not a no-op
    gen = torch.Generator().manual_seed(0)
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fast = fold_batchnorm(m)
    assert n_batchnorm(m) > 0 and n_batchnorm(fast) == 0
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    # the original is untouched, training flag included
    assert m.training and all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    m.eval()
    x = torch.randn(2, 3, 64, 64, generator=gen)  # not the probe input
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.embed(x), m.embed(x), rtol=1e-4, atol=1e-4)
        for a, b in zip(fast.features(x), m.features(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


class BatchNormAfterActivation(nn.Module):
    """conv -> ReLU -> BN: the BN does not read the conv's output and cannot be folded into it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.bn(self.act(self.conv(x)))))


def test_only_batchnorms_reading_a_conv_output_are_folded():
    m = BatchNormAfterActivation()
    with torch.no_grad():
        for bn in (m.bn, m.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 8, 8)
    fast = fold_batchnorm(m, x)
    assert isinstance(fast.bn, nn.BatchNorm2d) and isinstance(fast.bn2, nn.Identity)
    assert fast.conv2.bias is not None  # the folded shift became the conv's bias
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m.eval()(x))


class ChangedInPlace(nn.Module):
    """The conv's output is scaled in place before its BN reads it: that BN cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y.clamp_(max=0.1)
        return self.bn(y)


class AlsoReadElsewhere(nn.Module):
    """The conv's output feeds its BN and a sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return torch.full((1,), 1e5), self.bn(y) + y  # a large first output must not hide the second


def test_a_conv_output_changed_in_place_keeps_its_batchnorm():
    m = ChangedInPlace()
    with torch.no_grad():
        m.bn.running_mean.fill_(0.5)
    x = torch.randn(2, 3, 8, 8)
    fast = fold_batchnorm(m, x)
    assert isinstance(fast.bn, nn.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(fast(x * 100), m.eval()(x * 100))


def test_a_fold_that_changes_an_output_raises():
    m = AlsoReadElsewhere()
    with torch.no_grad():
        m.bn.running_mean.fill_(0.5)
        m.bn.running_var.fill_(2.0)
    with pytest.raises(RuntimeError, match="changed output tensor 1"):
        fold_batchnorm(m, torch.randn(2, 3, 8, 8))


def test_every_module_keeps_its_train_or_eval_flag():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    m.train()
    m[1].eval()  # a frozen BatchNorm inside a model being fine-tuned
    fast = fold_batchnorm(m, torch.randn(2, 3, 8, 8))
    assert m.training and m[0].training and not m[1].training and m[2].training
    assert isinstance(fast[1], nn.Identity) and not fast.training


def test_bad_arguments_name_what_to_pass():
    with pytest.raises(ValueError, match="example="):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
    with pytest.raises(ValueError, match="rtol"):
        fold_batchnorm(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 4, 4), rtol=-1)
    with pytest.raises(TypeError, match="nn.Module"):
        fold_batchnorm("resnet18")  # type: ignore[arg-type]
    half = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).half()
    with pytest.raises(ValueError, match=r"float16.*fold_batchnorm\(model\)\.half\(\)"):
        fold_batchnorm(half, torch.randn(1, 3, 4, 4).half())

    class NoTensor(nn.Module):
        def forward(self, x: torch.Tensor) -> str:
            return "no tensor"

    with pytest.raises(RuntimeError, match="holds 0 tensors"):
        fold_batchnorm(NoTensor(), torch.randn(1, 3, 4, 4))


def test_docstring_example_runs():
    import doctest

    import cnn.fusion

    result = doctest.testmod(cnn.fusion, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_check_runs_in_full_float32_and_restores_the_settings():
    """TF32 convolutions (cuDNN's default on GPUs) alone move outputs by ~1e-3: the check pins IEEE
    float32 for its two passes and gives the user's settings back."""
    from cnn.fusion import full_float32

    seen = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            seen.append(torch.backends.cudnn.conv.fp32_precision)
            return self.bn(self.conv(x))

    before = torch.backends.cudnn.conv.fp32_precision
    torch.backends.mkldnn.conv.fp32_precision = "bf16"
    try:
        fold_batchnorm(Probe().eval(), torch.randn(1, 3, 8, 8))
        assert seen[-2:] == ["ieee", "ieee"]  # the original's and the copy's checking passes
        assert torch.backends.mkldnn.conv.fp32_precision == "bf16"
        with full_float32():
            assert torch.backends.mkldnn.conv.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == before
    finally:
        torch.backends.mkldnn.conv.fp32_precision = "none"


def test_exact_float32_reads_the_current_settings():
    from cnn.fusion import exact_float32

    assert exact_float32("cpu") and exact_float32("cpu", "conv")  # the CPU defaults are IEEE
    cudnn = torch.backends.cudnn.conv
    saved = cudnn.fp32_precision
    try:
        cudnn.fp32_precision = "tf32"  # cuDNN's default
        assert not exact_float32(torch.device("cuda"), "conv") and exact_float32("cpu", "conv")
        cudnn.fp32_precision = "ieee"
        assert exact_float32(torch.device("cuda:0"), "conv")
    finally:
        cudnn.fp32_precision = saved
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # TF32 on GPUs; oneDNN's "tf32" is float32 on x86 CPUs
        assert exact_float32("cpu") and not exact_float32("cuda")
        torch.set_float32_matmul_precision("medium")  # bfloat16 products on the CPU too
        assert not exact_float32("cpu") and not exact_float32("cuda")
        assert exact_float32("cpu", "conv")  # convolutions keep their own setting
    finally:
        torch.set_float32_matmul_precision(old)
    assert exact_float32("cpu") and exact_float32("cuda")
    conv = torch.backends.mkldnn.conv
    before = conv.fp32_precision
    try:
        conv.fp32_precision = "bf16"
        assert not exact_float32("cpu", "conv") and exact_float32("cpu")
    finally:
        conv.fp32_precision = before
    with pytest.raises(ValueError, match="op must be 'matmul' or 'conv'"):
        exact_float32("cpu", "linear")
