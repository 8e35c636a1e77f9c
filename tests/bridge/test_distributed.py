"""Tests of the distributed conversion of bridge.dataset.GraphDataset (split by rank, merged by rank 0).

Two ranks are two processes forked from the test process (no re-import of torch), given the
environment torchrun gives its workers. With a gloo process group the ranks meet at collectives; with
only RANK/WORLD_SIZE they meet through the shard files. Both then train one GNN with Lightning DDP
(``strategy="ddp"``, which adopts the torchrun environment, as in ``torchrun train.py``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import socket
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from scipy import ndimage
from torch_geometric.loader import DataLoader

import bridge.dataset as dataset_module
from bridge.convert import ImageToGraph
from bridge.dataset import GraphDataset
from gnn.models import GraphClassifier
from gnn.training import fit

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not torch.distributed.is_available(),
    reason="needs os.fork and torch.distributed (Linux, macOS)",
)

QUIET = {"workers": 0, "progress": False}
KEYS = ("x", "edge_index", "edge_attr", "pos", "y", "segments")
SHARD = re.compile(r"\.shard-\d+-of-\d+\.pt$")


def make_items(n: int = 10, size: int = 32, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Smooth random colour images (SLIC finds regions in them), labels 0/1."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((n, size, size, 3)), sigma=(0, 2, 2, 0))
    lo = noise.min(axis=(1, 2, 3), keepdims=True)
    hi = noise.max(axis=(1, 2, 3), keepdims=True)
    images = ((noise - lo) / (hi - lo) * 255).astype(np.uint8)
    return [(images[i], i % 2) for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def params_hash(model: torch.nn.Module) -> str:
    """Hash of the parameters (not the buffers: DDP leaves BatchNorm's running statistics per rank)."""
    h = hashlib.sha256()
    for name, value in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def assert_same_graphs(a: GraphDataset, b: GraphDataset) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        assert set(a[i].keys()) == set(b[i].keys())
        for key in KEYS:
            assert torch.equal(a[i][key], b[i][key]), (i, key)


def assert_same_file(path_a: str, path_b: str) -> None:
    """Two cache files hold the same payload: every tensor, slice and the checksum over all of them."""
    a = torch.load(path_a, weights_only=True)
    b = torch.load(path_b, weights_only=True)
    assert a.keys() == b.keys() and a["checksum"] == b["checksum"]
    for part in ("data", "slices"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert a[part][key].dtype == b[part][key].dtype and torch.equal(a[part][key], b[part][key])
    for key in ("segments", "segment_shapes", "segment_offsets"):
        assert torch.equal(a[key], b[key]) and a[key].dtype == b[key].dtype


# -- the ranks -----------------------------------------------------------------------------------


class Seen(Callback):
    """Puts the world the trainer saw and the graphs this rank trained on into ``report``."""

    def __init__(self, report: dict) -> None:
        self.report = report
        self.graphs = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.graphs += batch.num_graphs

    def on_train_end(self, trainer, pl_module):
        backend = torch.distributed.get_backend()
        self.report.update(trainer_world=trainer.world_size, backend=backend, seen=self.graphs)


def _rank(rank: int, world: int, port: int, root: str, out: str, group: bool, method: str) -> None:
    """One rank of a torchrun-like run: build the dataset (twice), then train one GNN with DDP."""
    report: dict = {"rank": rank}
    try:
        torch.set_num_threads(1)  # a forked child never reuses the parent's OpenMP pool
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
            GROUP_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            TORCHELASTIC_RUN_ID="pixgraph-test",
        )
        if group:
            torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        segmented: list[int] = []  # the items this process really segmented
        prepare = dataset_module.prepare_many

        def counting(params, images, *, first=None, name=""):
            segmented.extend(range(first, first + len(images)))
            return prepare(params, images, first=first, name=name)

        dataset_module.prepare_many = counting  # this forked process only
        items = make_items()
        conv = ImageToGraph(n_segments=8, method=method)
        ds = GraphDataset(items, conv, root=root, timeout=60, **QUIET)
        report.update(
            reused=ds.reused,
            converted=ds.converted_indices,
            segmented=list(segmented),
            world=[ds.rank, ds.world_size],
            cache=os.path.basename(ds.cache_path),
        )
        segmented.clear()
        again = GraphDataset(items, conv, root=root, timeout=60, **QUIET)
        report.update(again_reused=again.reused, again_converted=again.converted_indices, again=segmented)

        torch.manual_seed(rank)  # different starting weights: DDP makes them one model
        model = GraphClassifier(ds.num_features, 2, hidden=8, layers=1)
        report["initial"] = params_hash(model)
        loader = DataLoader(ds, batch_size=2, shuffle=True)
        hist = fit(
            model,
            loader,
            epochs=2,
            accelerator="cpu",
            devices=world,
            strategy="ddp",
            progress=False,
            logger=False,
            callbacks=[Seen(report)],
        )
        report.update(final=params_hash(model), epochs=len(hist))
    except BaseException:
        report["error"] = traceback.format_exc()
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def fork_ranks(target, out: Path, args: tuple, *, world: int = 2, wait: float = 150) -> list[dict]:
    """Run ``target(rank, world, port, *args)`` in ``world`` forked processes; their reports, by rank.

    Each rank writes ``out/rank<r>.json``; a rank still running after ``wait`` seconds is killed.
    """
    out.mkdir(exist_ok=True)
    port = free_port()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=(r, world, port, *args)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + wait
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for r in hung:
        procs[r].kill()
        procs[r].join()
    assert not hung, f"rank(s) {hung} still ran after {wait} s"
    reports = []
    for r in range(world):
        file = out / f"rank{r}.json"
        assert file.exists(), f"rank {r} wrote no report (exit code {procs[r].exitcode})"
        reports.append(json.loads(file.read_text()))
    return reports


def run_ranks(tmp_path: Path, *, group: bool, method: str) -> tuple[Path, list[dict]]:
    root = tmp_path / "cache"
    reports = fork_ranks(_rank, tmp_path / "out", (str(root), str(tmp_path / "out"), group, method))
    for report in reports:
        assert "error" not in report, f"rank {report['rank']} failed:\n{report['error']}"
    return root, reports


def check_run(tmp_path: Path, root: Path, reports: list[dict], method: str) -> None:
    items = make_items()
    conv = ImageToGraph(n_segments=8, method=method)
    one = GraphDataset(items, conv, root=tmp_path / "one", distributed=False, **QUIET)
    # (a) one cache file, the one a one-process run writes, and no shard left
    assert sorted(os.listdir(root)) == [os.path.basename(one.cache_path)]
    assert [r["cache"] for r in reports] == [os.path.basename(one.cache_path)] * 2
    # (b) the same graphs, to the byte
    assert_same_file(str(root / reports[0]["cache"]), one.cache_path)
    loaded = GraphDataset(items, conv, root=root, **QUIET)
    assert loaded.reused and loaded.converted_indices == []
    assert_same_graphs(loaded, one)
    # (c) each rank converted only its block, and a second build converted nothing
    assert [r["world"] for r in reports] == [[0, 2], [1, 2]]
    assert [r["converted"] for r in reports] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [r["segmented"] for r in reports] == [r["converted"] for r in reports]
    assert [r["reused"] for r in reports] == [False, False]
    assert [(r["again_reused"], r["again_converted"], r["again"]) for r in reports] == [(True, [], [])] * 2
    # (d) one GNN trained by 2 processes: same weights on both, changed by training, 2 epochs each
    assert [(r["trainer_world"], r["backend"]) for r in reports] == [(2, "gloo")] * 2
    assert reports[0]["initial"] != reports[1]["initial"]
    assert reports[0]["final"] == reports[1]["final"]
    assert reports[0]["final"] not in (reports[0]["initial"], reports[1]["initial"])
    assert [r["epochs"] for r in reports] == [2, 2]
    assert [r["seen"] for r in reports] == [10, 10]  # 5 graphs per rank and epoch (DistributedSampler)


def test_two_ranks_with_a_gloo_process_group_convert_once_and_train_one_model(tmp_path):
    root, reports = run_ranks(tmp_path, group=True, method="slic")
    check_run(tmp_path, root, reports, "slic")


def test_two_ranks_with_only_rank_and_world_size_meet_through_files(tmp_path):
    """torchrun + Lightning: no process group while the dataset is built (Lightning makes it in fit)."""
    root, reports = run_ranks(tmp_path, group=False, method="grid")
    check_run(tmp_path, root, reports, "grid")


def _convert_in_a_group(rank: int, world: int, port: int, root: str, out: str, items: list) -> None:
    """Join a gloo group as ``rank``, build the dataset of ``items``; report what it raised, if anything."""
    report: dict = {"rank": rank}
    try:
        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        GraphDataset(items, ImageToGraph(n_segments=4, method="grid"), root=root, timeout=60, **QUIET)
    except Exception as err:
        report.update(error=type(err).__name__, message=str(err))
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def _rank_with_a_bad_item(rank: int, world: int, port: int, root: str, out: str) -> None:
    """A rank of a gloo group whose items hold a bad label in rank 1's block."""
    items = make_items(6, size=16)
    items[4] = (items[4][0], -3)
    _convert_in_a_group(rank, world, port, root, out, items)


def test_an_error_on_one_rank_is_raised_on_every_rank_of_a_process_group(tmp_path):
    root, out = tmp_path / "cache", tmp_path / "out"
    reports = fork_ranks(_rank_with_a_bad_item, out, (str(root), str(out)), wait=60)  # no rank hangs
    assert [r.get("error") for r in reports] == ["RuntimeError", "ValueError"]
    assert reports[1]["message"].startswith("item 4:")
    assert "rank 1: ValueError: item 4:" in reports[0]["message"]
    assert not root.exists() or os.listdir(root) == []


# -- one process playing each rank in turn (file-system coordination) ------------------------------


@pytest.mark.parametrize("n", [7, 1])
def test_a_shard_left_by_rank_1_is_merged_by_rank_0(tmp_path, monkeypatch, n):
    items = make_items(n, size=16)
    conv = ImageToGraph(n_segments=4, method="grid")
    one = GraphDataset(items, conv, root=tmp_path / "one", distributed=False, **QUIET)
    root = tmp_path / "dist"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    name = os.path.basename(one.cache_path)
    with pytest.raises(TimeoutError, match=rf"rank 1 of 2 waited 0.2 s for rank 0 .*{name}"):
        GraphDataset(items, conv, root=root, timeout=0.2, **QUIET)
    assert os.listdir(root) == [name.replace(".pt", ".shard-1-of-2.pt")]
    monkeypatch.setenv("RANK", "0")
    rank0 = GraphDataset(items, conv, root=root, timeout=5, **QUIET)
    assert (rank0.rank, rank0.world_size, rank0.reused) == (0, 2, False)
    assert rank0.converted_indices == list(range(n // 2))
    assert os.listdir(root) == [name]
    assert_same_file(rank0.cache_path, one.cache_path)
    assert_same_graphs(rank0, one)
    monkeypatch.setenv("RANK", "1")
    rank1 = GraphDataset(items, conv, root=root, timeout=0.2, **QUIET)
    assert rank1.reused and rank1.converted_indices == [] and rank1.rank == 1


def test_a_missing_shard_is_a_timeout_that_names_it(tmp_path, monkeypatch):
    items = make_items(4, size=16)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"rank\(s\) 1, 2, .*shard-1-of-3\.pt.*shard-2-of-3\.pt") as info:
        GraphDataset(items, ImageToGraph(n_segments=4, method="grid"), root=tmp_path, timeout=0.3, **QUIET)
    assert time.monotonic() - start < 10
    assert "timeout=" in str(info.value)
    assert os.listdir(tmp_path) == []  # no cache file, nothing half-written


def test_force_makes_every_rank_convert_again_and_waits_for_the_new_file(tmp_path, monkeypatch):
    items = make_items(4, size=16)
    conv = ImageToGraph(n_segments=4, method="grid")
    first = GraphDataset(items, conv, root=tmp_path, distributed=False, **QUIET)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TimeoutError, match="rank 0 to merge"):  # the old file is not the one it waits for
        GraphDataset(items, conv, root=tmp_path, timeout=0.2, force=True, **QUIET)
    monkeypatch.setenv("RANK", "0")
    again = GraphDataset(items, conv, root=tmp_path, timeout=5, force=True, **QUIET)
    assert again.converted_indices == [0, 1] and not again.reused
    assert os.listdir(tmp_path) == [os.path.basename(first.cache_path)]
    assert_same_graphs(again, first)


def test_distributed_false_converts_everything_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    items = make_items(3, size=16)
    ds = GraphDataset(
        items, ImageToGraph(n_segments=4, method="grid"), root=tmp_path, distributed=False, **QUIET
    )
    assert (ds.rank, ds.world_size, ds.converted_indices) == (0, 1, [0, 1, 2])
    assert os.listdir(tmp_path) == [os.path.basename(ds.cache_path)]
    assert not SHARD.search(ds.cache_path)


def test_a_single_item_dataset(tmp_path):
    items = make_items(1, size=16)
    conv = ImageToGraph(n_segments=4, method="grid")
    ds = GraphDataset(items, conv, root=tmp_path, **QUIET)
    assert len(ds) == 1 and torch.equal(ds[0].x, conv(*items[0]).x)
    assert GraphDataset(items, conv, root=tmp_path, **QUIET).reused


def test_bad_distributed_settings(tmp_path, monkeypatch):
    items = make_items(2, size=16)
    conv = ImageToGraph(n_segments=4, method="grid")
    with pytest.raises(TypeError, match="distributed must be None"):
        GraphDataset(items, conv, root=tmp_path, distributed="yes", **QUIET)
    for bad in (0, -1.0, True, "60"):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            GraphDataset(items, conv, root=tmp_path, timeout=bad, **QUIET)
    with pytest.raises(ValueError, match="distributed=True but this process is not part"):
        GraphDataset(items, conv, root=tmp_path, distributed=True, **QUIET)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="RANK='two' is not an integer"):
        GraphDataset(items, conv, root=tmp_path, **QUIET)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 and WORLD_SIZE=2"):
        GraphDataset(items, conv, root=tmp_path, **QUIET)
    assert os.listdir(tmp_path) == []  # all refused before any conversion


def _rank_with_its_own_data(rank: int, world: int, port: int, root: str, out: str) -> None:
    """A rank of a gloo group whose items differ from the other rank's (another copy of the data)."""
    items = make_items(4, size=16)
    if rank == 1:
        items[0] = (items[0][0] // 2, items[0][1])
    _convert_in_a_group(rank, world, port, root, out, items)


def test_ranks_that_see_different_data_say_so_instead_of_waiting(tmp_path):
    """Each rank would wait for the other's file of another key until the timeout; with a process group
    the keys are compared first and every rank names the difference."""
    root, out = tmp_path / "cache", tmp_path / "out"
    reports = fork_ranks(_rank_with_its_own_data, out, (str(root), str(out)), wait=60)
    assert [r.get("error") for r in reports] == ["ValueError", "ValueError"]
    assert all("the ranks computed different graph cache keys (rank 0: " in r["message"] for r in reports)
    assert not root.exists() or os.listdir(root) == []
