"""Tests for engine.checkpoints: atomic save, weights_only load, mismatch errors, find_checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from cnn.backbones import create_backbone
from engine.checkpoints import find_checkpoints, load_checkpoint, save_checkpoint
from engine.files import CheckpointError


@pytest.fixture
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet18", weights=None, num_classes=2)


def _fresh(num_classes: int = 2, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return create_backbone("resnet18", weights=None, num_classes=num_classes)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip_contents_and_weights_only(resnet, tmp_path):
    path = save_checkpoint(resnet, tmp_path / "sub" / "best.pth", classes=["cat", "dog"], extra={"epoch": 3})
    assert path == tmp_path / "sub" / "best.pth" and path.is_file()
    (tmp_path / "sub" / "ref").write_bytes(b"")  # same permissions as any new file (not 0600)
    assert path.stat().st_mode & 0o777 == (tmp_path / "sub" / "ref").stat().st_mode & 0o777
    raw = torch.load(path, weights_only=True)  # plain tensors and primitives only
    assert set(raw) == {"state_dict", "arch", "num_classes", "classes", "pixgraph_version", "extra"}
    assert (raw["arch"], raw["num_classes"], raw["classes"]) == ("resnet18", 2, ["cat", "dog"])
    assert raw["extra"] == {"epoch": 3} and isinstance(raw["pixgraph_version"], str)

    other = _fresh()
    assert not _same_weights(resnet, other)
    ckpt = load_checkpoint(path, other, classes=["cat", "dog"])
    assert _same_weights(resnet, other)
    assert ckpt["classes"] == ["cat", "dog"]


def test_backbone_reads_the_file_as_weights(resnet, tmp_path):
    path = save_checkpoint(resnet, tmp_path / "m.pth")
    rebuilt = create_backbone("resnet18", weights=path)
    assert rebuilt.num_classes == 2 and _same_weights(resnet, rebuilt)


def test_plain_state_dict_file_loads(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    torch.save(net.state_dict(), tmp_path / "plain.pth")
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ckpt = load_checkpoint(tmp_path / "plain.pth", other)
    assert ckpt["arch"] is None and _same_weights(net, other)


def test_unnamed_module_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    save_checkpoint(net, tmp_path / "lin.pth")
    other = nn.Linear(3, 2)
    ckpt = load_checkpoint(tmp_path / "lin.pth", other)
    assert ckpt["arch"] is None and ckpt["num_classes"] is None
    assert torch.equal(net.weight, other.weight)


def test_save_replaces_atomically_and_leaves_no_temp_files(resnet, tmp_path):
    path = tmp_path / "best.pth"
    save_checkpoint(_fresh(seed=5), path)
    save_checkpoint(resnet, path)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]
    other = _fresh()
    load_checkpoint(path, other)
    assert _same_weights(resnet, other)


def test_failed_save_keeps_the_old_file(resnet, tmp_path, monkeypatch):
    path = save_checkpoint(resnet, tmp_path / "best.pth")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_fresh(seed=7), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]


def test_architecture_mismatch_names_both(resnet, tmp_path):
    path = save_checkpoint(resnet, tmp_path / "x.pth", classes=["a", "b"])
    other = create_backbone("mobilenet_v2", weights=None, num_classes=4)
    with pytest.raises(ValueError, match=r"saved from 'resnet18' with 2 classes \['a', 'b'\]") as err:
        load_checkpoint(path, other)
    assert "the model is 'mobilenet_v2' with 4 classes" in str(err.value)
    assert "build the model as 'resnet18' with num_classes=2" in str(err.value)


def test_class_count_mismatch(resnet, tmp_path):
    path = save_checkpoint(resnet, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="with 2 classes; the model is 'resnet18' with 3 classes"):
        load_checkpoint(path, _fresh(num_classes=3))


def test_class_names_mismatch(resnet, tmp_path):
    path = save_checkpoint(resnet, tmp_path / "x.pth", classes=["cat", "dog"])
    with pytest.raises(ValueError, match=r"saved with classes \['cat', 'dog'\], you expect \['dog', 'cat'\]"):
        load_checkpoint(path, classes=["dog", "cat"])


def test_weights_that_do_not_fit(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="does not fit the model"):
        load_checkpoint(tmp_path / "odd.pth", nn.Linear(3, 2))


def test_save_errors(resnet, tmp_path):
    with pytest.raises(ValueError, match="classes has 3 names"):
        save_checkpoint(resnet, tmp_path / "a.pth", classes=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"extra\['when'\] is a object"):
        save_checkpoint(resnet, tmp_path / "a.pth", extra={"when": object()})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        save_checkpoint({"w": 1}, tmp_path / "a.pth")
    assert not (tmp_path / "a.pth").exists()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "run").mkdir()
    with pytest.raises(IsADirectoryError, match=r"run' is a folder, not a file \(it holds no .pth"):
        load_checkpoint(tmp_path / "run")
    save_checkpoint(nn.Linear(2, 2), tmp_path / "run" / "best.pth")
    with pytest.raises(IsADirectoryError, match=r"\(it holds best.pth\); give the .pth file inside it"):
        load_checkpoint(tmp_path / "run")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a checkpoint"):
        load_checkpoint(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(
        CheckpointError, match=r"junk.pth' as a checkpoint .*: the file \(9 bytes\) is not a torch file"
    ) as err:
        load_checkpoint(tmp_path / "junk.pth")
    assert "weights_only=False" not in str(err.value)


def test_find_checkpoints_newest_first(tmp_path):
    net = nn.Linear(2, 2)
    (tmp_path / "a").mkdir()
    paths = [save_checkpoint(net, tmp_path / name) for name in ("old.pth", "a/mid.pth", "new.pth")]
    for i, p in enumerate(paths):
        os.utime(p, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".best.pth.123.tmp").write_text("x")
    assert find_checkpoints(tmp_path) == paths[::-1]
    assert find_checkpoints(tmp_path, recursive=False) == [paths[2], paths[0]]
    assert find_checkpoints(tmp_path, pattern="*.txt") == [tmp_path / "notes.txt"]
    assert find_checkpoints(tmp_path / "a", pattern="*.ckpt") == []


def test_find_checkpoints_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_checkpoints(tmp_path / "nope")
    (tmp_path / "f.pth").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        find_checkpoints(tmp_path / "f.pth")
    with pytest.raises(ValueError, match="pattern must be a non-empty glob"):
        find_checkpoints(tmp_path, pattern="")


def test_a_model_config_is_kept_and_checked_on_load(tmp_path):
    """A GraphClassifier's constructor arguments go into extra['model_config']; loading into a model of
    another configuration is refused with the differences named (dropout rates aside: they only train)."""
    from gnn.models import GraphClassifier

    torch.manual_seed(0)
    model = GraphClassifier(3, 2, hidden=16, layers=2, pool="add", dropout=0.3)
    path = save_checkpoint(model, tmp_path / "best.pth", extra={"epoch": 1})
    ckpt = load_checkpoint(path)
    assert ckpt["extra"]["epoch"] == 1 and ckpt["extra"]["model_config"] == model.config
    same = GraphClassifier(**{**ckpt["extra"]["model_config"], "dropout": 0.0})  # dropout aside
    load_checkpoint(path, same)
    assert _same_weights(same, model)
    with pytest.raises(
        ValueError, match=r"another configuration \(pool: 'add' in the checkpoint, 'mean' now\)"
    ):
        load_checkpoint(path, GraphClassifier(3, 2, hidden=16, layers=2, pool="mean"))


def test_a_lightning_checkpoint_carries_the_model_config(tmp_path):
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from gnn.models import GraphClassifier
    from gnn.training import fit

    g = torch.Generator().manual_seed(0)
    ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    graphs = [
        Data(x=torch.randn(4, 2, generator=g), edge_index=ring, y=torch.tensor([i % 2])) for i in range(8)
    ]
    fit(GraphClassifier(2, 2, hidden=8, layers=1, pool="max"), DataLoader(graphs, batch_size=4), epochs=1,
        checkpoint_dir=tmp_path, progress=False, accelerator="cpu")  # fmt: skip
    for name in ("last.ckpt", "best.pth"):
        assert load_checkpoint(tmp_path / name)["extra"]["model_config"]["pool"] == "max"
    with pytest.raises(ValueError, match="pool: 'max' in the checkpoint, 'mean' now"):
        load_checkpoint(tmp_path / "last.ckpt", GraphClassifier(2, 2, hidden=8, layers=1))
