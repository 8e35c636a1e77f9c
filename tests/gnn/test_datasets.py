"""gnn.datasets: names, the x+pos transform, offline errors, and a hand-made raw file processed by PyG."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
import zipfile

import pytest
import torch
from torch_geometric.data import Data

from gnn.datasets import (
    GRAPH_DATASETS,
    ConcatPos,
    DatasetNotAvailableError,
    default_data_root,
    list_graph_datasets,
    load_graph_dataset,
)


def _offline(monkeypatch):
    """Every urlopen (PyG's download_url included) fails as without a network; calls are recorded."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


# -- ConcatPos -------------------------------------------------------------------------------------


def test_concat_pos_appends_positions_and_leaves_the_input_alone():
    x = torch.tensor([[0.5], [1.0], [0.0]])
    pos = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    data = Data(x=x, pos=pos, edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([7]))
    out = ConcatPos()(data)
    assert out.x.tolist() == [[0.5, 1.0, 2.0], [1.0, 3.0, 4.0], [0.0, 5.0, 6.0]]
    assert data.x.shape == (3, 1) and data.x is x  # the input graph is unchanged
    assert torch.equal(out.edge_index, data.edge_index) and out.y.item() == 7 and torch.equal(out.pos, pos)
    assert repr(ConcatPos()) == "ConcatPos()"


def test_concat_pos_1d_integer_and_missing_x():
    pos = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = ConcatPos()(Data(x=torch.tensor([3, 4]), pos=pos))
    assert out.x.dtype == torch.float32 and out.x.tolist() == [[3.0, 1.0, 2.0], [4.0, 3.0, 4.0]]
    only_pos = ConcatPos()(Data(pos=pos))
    assert torch.equal(only_pos.x, pos) and only_pos.x is not pos
    with pytest.raises(ValueError, match="no 'pos'.*pos_in_x=False"):
        ConcatPos()(Data(x=torch.ones(2, 1)))
    with pytest.raises(ValueError, match="x has 3 nodes but pos has 2"):
        ConcatPos()(Data(x=torch.ones(3, 1), pos=pos))


# -- names and errors --------------------------------------------------------------------------------


def test_names_and_unknown_name_lists_them(tmp_path):
    assert list_graph_datasets() == ["gnnbench-cifar10", "gnnbench-mnist", "mnist-superpixels"]
    assert sorted(GRAPH_DATASETS) == list_graph_datasets()
    with pytest.raises(
        ValueError, match="unknown graph dataset 'mnist'; known names: gnnbench-cifar10, gnnbench-mnist, "
    ):
        load_graph_dataset("mnist", root=tmp_path)
    with pytest.raises(
        ValueError, match=r"split='val' is not known for 'mnist-superpixels'; use one of 'train', 'test'"
    ):
        load_graph_dataset("mnist-superpixels", root=tmp_path, split="val")
    with pytest.raises(TypeError, match="pos_in_x must be True or False"):
        load_graph_dataset("gnnbench-mnist", root=tmp_path, pos_in_x=1)
    with pytest.raises(TypeError, match="root must be a folder path"):
        load_graph_dataset("gnnbench-mnist", root=3)


def test_gnn_does_not_import_cnn_or_bridge():
    import subprocess

    code = "import gnn.datasets, sys; print(sorted(m for m in ('cnn', 'bridge') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "url_end", "raw"),
    [
        ("gnnbench-mnist", "benchmarking-gnns/MNIST_v2.zip", "MNIST/raw"),
        ("gnnbench-cifar10", "benchmarking-gnns/CIFAR10_v2.zip", "CIFAR10/raw"),
        ("mnist-superpixels", "/MNISTSuperpixels.zip", "raw"),
    ],
)
def test_offline_error_says_what_to_download_and_where(name, url_end, raw, tmp_path, monkeypatch):
    calls = _offline(monkeypatch)
    with pytest.raises(
        DatasetNotAvailableError, match=f"graph dataset '{name}' is not in .*no network"
    ) as info:
        load_graph_dataset(name, root=tmp_path)
    err = info.value
    assert calls and err.name == name and err.folder == tmp_path / name
    assert len(err.urls) == 1 and err.urls[0].endswith(url_end) and err.urls[0] in str(err)
    assert f"\n  {tmp_path / name / raw}\n" in str(err)
    assert "pass --data-root DIR on the command line (root= in Python) or set $PIXGRAPH_DATA" in str(err)
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone, nothing half-made is left


def test_download_false_never_goes_online_and_env_root(tmp_path, monkeypatch):
    calls = _offline(monkeypatch)
    monkeypatch.setenv("PIXGRAPH_DATA", str(tmp_path / "cache"))
    assert default_data_root() == tmp_path / "cache"
    with pytest.raises(DatasetNotAvailableError, match="download=False") as info:
        load_graph_dataset("gnnbench-mnist", download=False)
    assert calls == [] and info.value.folder == tmp_path / "cache" / "gnnbench-mnist"


# -- a raw file put by hand, processed by PyG offline --------------------------------------------------


def _graphs(n: int, first_label: int) -> list[dict]:
    """Paths of 4 nodes, intensity i/10 at node i, positions (i, 10 * i), label first_label + graph index."""
    nodes = torch.arange(4, dtype=torch.float32)
    src, dst = torch.arange(3), torch.arange(1, 4)
    return [
        {
            "x": (nodes / 10).unsqueeze(1),
            "edge_index": torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]),
            "edge_attr": torch.ones(6, 1),
            "pos": torch.stack([nodes, 10 * nodes], dim=1),
            "y": torch.tensor([first_label + g]),
        }
        for g in range(n)
    ]


@pytest.mark.parametrize(("as_zip", "download"), [(False, True), (True, True), (True, False)])
def test_raw_file_put_by_hand_is_processed_offline(tmp_path, monkeypatch, as_zip, download):
    calls = _offline(monkeypatch)
    raw = tmp_path / "gnnbench-mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    splits = [_graphs(3, 0), _graphs(2, 5), _graphs(1, 9)]
    if as_zip:
        torch.save(splits, tmp_path / "MNIST_v2.pt")
        with zipfile.ZipFile(raw / "MNIST_v2.zip", "w") as zf:
            zf.write(tmp_path / "MNIST_v2.pt", "MNIST_v2.pt")
        (tmp_path / "MNIST_v2.pt").unlink()
    else:
        torch.save(splits, raw / "MNIST_v2.pt")
    val = load_graph_dataset("gnnbench-mnist", root=tmp_path, split="val", download=download)
    assert calls == []
    assert len(val) == 2 and [int(g.y) for g in val] == [5, 6]
    g = val[1]
    assert g.x.shape == (4, 3) and g.edge_index.shape == (2, 6)
    assert g.x[:, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert g.x[:, 1:].tolist() == [[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]
    plain = load_graph_dataset("gnnbench-mnist", root=tmp_path, split="train", pos_in_x=False)
    assert len(plain) == 3 and plain[0].x.shape == (4, 1)
    assert len(load_graph_dataset("gnnbench-mnist", root=tmp_path, split="test", download=False)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gnnbench-mnist"]  # no temporary folders left
    assert (raw / "MNIST_v2.pt").is_file()


@pytest.mark.network
def test_real_download_mnist_superpixels(tmp_path):
    test = load_graph_dataset("mnist-superpixels", root=tmp_path, split="test")
    assert len(test) == 10_000 and test.num_classes == 10 and test[0].x.shape == (75, 3)
