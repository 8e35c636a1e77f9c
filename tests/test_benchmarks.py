"""The benchmark scripts' options: ``--quick`` fills in only the options not given on the command line."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load(monkeypatch):
    """Import a benchmark script as a module; sys.path and sys.modules come back afterwards."""
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    before = set(sys.modules)

    def _load(name):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in set(sys.modules) - before:  # the scripts (and what they import from benchmarks/)
        if name.startswith("bench_"):
            del sys.modules[name]


def test_bench_scaling_explicit_options_win_over_quick(load, capsys):
    bench = load("bench_scaling")
    assert bench.main(["--quick", "--images", "2", "--sizes", "48", "--segments", "9"]) == 0
    out = capsys.readouterr().out
    assert "of 2 uint8 photo crops per cell, best of 1" in out  # --images given, --repeats from --quick
    assert "| 48 px |" in out and "| 112 px |" not in out and "| 224 px |" not in out


def test_bench_gnn_training_explicit_options_win_over_quick(load, monkeypatch, capsys):
    bench = load("bench_gnn_training")
    calls = []

    def fake(conv, batches, **kwargs):
        calls.append((conv, len(batches), kwargs))
        return 1.0

    monkeypatch.setattr(bench, "hand_loop", fake)
    monkeypatch.setattr(bench, "engine", fake)
    threads = torch.get_num_threads()
    try:
        args = ["--quick", "--epochs", "3", "--convs", "gcn", "--batch-size", "2", "--threads", str(threads)]
        assert bench.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    # --epochs given; --batches 2, --warmup 1 and --repeats 1 (one call each) from --quick
    assert len(calls) == 2
    for conv, n_batches, kwargs in calls:
        assert (conv, n_batches, kwargs["epochs"], kwargs["warmup"]) == ("gcn", 2, 3, 1)
    assert "3 epochs per run (1 warm-up), best of 1" in capsys.readouterr().out


def test_bench_gnn_training_rejects_warmup_not_below_epochs(load):
    bench = load("bench_gnn_training")
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--warmup", "2"])  # --quick's 2 epochs: nothing left to count


def test_bench_fold_batchnorm_explicit_options_win_over_quick(load, monkeypatch):
    bench = load("bench_fold_batchnorm")
    seen = []

    def fake(name, batch, batches, repeats):
        seen.append((name, batch, batches, repeats))
        return {"bn": 1, "bn_left": 0, "diff": 0.0, "plain": 1.0, "folded": 1.0}

    monkeypatch.setattr(bench, "measure", fake)
    assert bench.main(["--backbones", "x", "--quick", "--repeats", "2"]) == 0
    assert bench.main(["--backbones", "x", "--batch", "3"]) == 0
    assert seen == [("x", 2, 1, 2), ("x", 3, 2, 3)]


def test_bench_graph_building_explicit_options_win_over_quick(load, monkeypatch):
    bench = load("bench_graph_building")
    seen = {}
    monkeypatch.setattr(bench, "part_graphs", lambda images, repeats: seen.update(graphs=(images, repeats)))
    monkeypatch.setattr(bench, "part_cnn", lambda *args: seen.update(cnn=args))
    bench.main(["--quick", "--batch-size", "8", "--repeats", "2"])
    assert seen == {"graphs": (4, 2), "cnn": (1, 8, 2)}


def test_bench_mnist_superpixels_takes_data_root(load, tmp_path, capsys):
    bench = load("bench_mnist_superpixels")
    # the dataset error says "pass --data-root DIR": the script takes it (as --root)
    assert bench.main(["--data-root", str(tmp_path)]) == 0
    assert str(tmp_path) in capsys.readouterr().out


def test_bench_arm_stages_prints_every_stage_and_the_ratio(load, capsys):
    bench = load("bench_arm_stages")
    assert bench.main(["--data", "digits", "--image-size", "64", "--quick", "--images", "4"]) == 0
    out = capsys.readouterr().out
    assert "digits: 4 test images at 64 px" in out and "best of 1" in out  # --images given, rest quick
    for stage in ("B ", "C ", "C without the GNN", "frozen features", "D graphs"):
        assert any(line.startswith(stage) and line.rstrip().endswith("ms/img") for line in out.splitlines())
    assert "C / B: " in out and "(median of the rounds, " in out and "C beyond its backbone pass: " in out
    beyond = out.split("C beyond its backbone pass: ")[1]
    assert "ms/img (fastest passes)" in beyond and beyond.count("median of the rounds") == 1
    assert "freed memory kept" in out or "freed memory given back" in out


def test_bench_arm_stages_times_the_stages_round_by_round(load, monkeypatch):
    bench = load("bench_arm_stages")
    clock, calls = [0.0], []

    def stage(name, cost):
        def run(x):
            calls.append(name)
            clock[0] += cost * len(x) * (1 + calls.count(name))  # every stage slows down as time goes on

        return run

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    rates = bench.pass_rates({"b": stage("b", 1.0), "c": stage("c", 2.0)}, np.zeros((8, 1)), 4, 3)
    assert calls == ["b", "c"] + ["b", "b", "c", "c"] * 3  # warm-ups, then one pass of each per round
    assert rates["b"] == sorted(rates["b"], reverse=True) and rates["b"][0] > rates["b"][-1]  # round order
    assert len(rates["c"]) == 3 and rates["c"][0] == pytest.approx(8 / (2.0 * 4 * (3 + 4)))  # the first round


def test_bench_keep_freed_memory_alternates_fresh_processes(load, monkeypatch, capsys):
    bench = load("bench_keep_freed_memory")
    calls = []

    def fake_run(cmd, **kwargs):
        unit, size, mode = cmd[cmd.index("--child") + 1 : cmd.index("--child") + 4]
        calls.append((unit, size, mode, cmd[cmd.index("--batch-size") + 1], cmd[cmd.index("--repeats") + 1]))
        env = kwargs["env"]  # glibc's default really is the default: no setting passed on
        assert not any(
            k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "PIXGRAPH_KEEP_FREED_MEMORY") for k in env
        )
        seconds = 0.5 if mode == "default" else 0.25
        return subprocess.CompletedProcess(
            cmd, 0, stdout=f"a warning\nRESULT {seconds} 100.0 0.1\n", stderr=""
        )

    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench.main(["--quick", "--sizes", "48", "--rounds", "2"]) == 0
    # --sizes and --rounds given; batch 4 and 1 repeat from --quick; default and kept one after the other
    assert [c[2] for c in calls] == ["default", "kept"] * 6
    assert {c[1] for c in calls} == {"48"} and {c[3:] for c in calls} == {("4", "1")}
    out = capsys.readouterr().out
    assert out.count("| 8.0 | 16.0 | 2.00x | 100 / 100 | 0.100 / 0.100 |") == 3  # 4 images in 0.5 s, 0.25 s


def test_bench_keep_freed_memory_reports_a_failing_child(load, monkeypatch, capsys):
    bench = load("bench_keep_freed_memory")

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback: out of memory\n")

    monkeypatch.setattr(bench.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="exit code 1"):
        bench.main(["--quick"])
    assert "out of memory" in capsys.readouterr().err


def test_bench_keep_freed_memory_child_times_a_unit(load):
    bench = load("bench_keep_freed_memory")
    seconds, faults, system = (float(v) for v in bench.child("forward", 32, 2, 1, keep=False).split())
    assert seconds > 0 and faults >= 0 and system >= 0


def test_bench_dropout_prints_every_row_with_a_ratio(load, capsys):
    from gnn import models

    bench = load("bench_dropout")
    ours = models.dropout
    assert bench.main(["--quick", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "best of 1 rounds x 1 calls" in out  # --calls given, --repeats from --quick
    rows = [ln for ln in out.splitlines() if ln.startswith("| dropout 0.5 of") or "training step" in ln]
    assert len(rows) == 4 and all(line.rstrip().endswith("x |") for line in rows)  # 2 widths x 2
    assert models.dropout is ours  # the model's own dropout is back after the F.dropout runs


def test_bench_slic_parity_on_a_dataset_of_compare(load, capsys):
    import numpy as np

    bench = load("bench_slic_parity")
    imgs = bench.dataset_images("digits", 3, 32)
    assert len(imgs) == 3 and all(im.shape == (32, 32, 3) and im.dtype == np.uint8 for im in imgs)
    assert bench.main(["--data", "digits", "--images", "2", "--sizes", "32", "--segments", "9"]) == 0
    out = capsys.readouterr().out
    assert "2 digits images per cell" in out
    row = next(line for line in out.splitlines() if line.startswith("| 32 | 9 |"))
    count_ratio = float(row.split("|")[5])
    assert 0.2 < count_ratio < 5


def test_bench_checkouts_times_grey_images_of_the_size_given(load, capsys):
    bench = load("bench_checkouts")
    root = str(BENCHMARKS.parent)
    bench.main([root, root, "--rounds", "1", "--images", "2", "--repeats", "1", "--size", "48", "--gray"])
    out = capsys.readouterr().out
    assert (
        "2 grey images of 48 px, 75 segments, features color_mean,centroid, best of 1 rounds x 1 calls" in out
    )
    rows = [line for line in out.splitlines() if line.startswith(f"| {root} ")]
    assert len(rows) == 2 and rows[0].split("|")[3].strip() == "1.00x"
    assert rows[0].split("|")[-2] == rows[1].split("|")[-2]  # the same code builds the same graphs
    with pytest.raises(SystemExit, match="--size must be at least 16"):
        bench.main([root, "--size", "8"])


def test_bench_checkouts_compares_the_labels_of_checkouts(load, capsys):
    bench = load("bench_checkouts")
    root = str(BENCHMARKS.parent)
    bench.main([root, root, "--labels", "digits:32", "photos:32"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| digits")]
    assert len(rows) == 1 and rows[0][2].strip() == "1797" and rows[0][5:7] == [" 0 ", " 0 "]
    with pytest.raises(SystemExit, match="DATA:SIZE"):
        bench.main([root, "--labels", "elpv"])


def test_bench_arm_stages_refuses_zero_rounds(load, capsys):
    bench = load("bench_arm_stages")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--data", "digits", "--quick", "--repeats", "0"])
    assert exc.value.code == 2 and "--repeats must be at least 1" in capsys.readouterr().err


def test_bench_gcn_adjacency_baseline_normalises_in_every_layer_and_rows_are_printed(load, capsys):
    bench = load("bench_gcn_adjacency")
    from gnn.models import GraphClassifier

    model = GraphClassifier(5, 2, conv="gcn", hidden=8, layers=2)
    ref = bench.per_layer_copy(model)
    assert model._prepare is not None and ref._prepare is None
    assert all(c.normalize and c.add_self_loops for c in ref.convs)
    assert not any(c.normalize for c in model.convs)  # the copy did not change the model
    assert bench.main(["--quick", "--batches", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 8  # two layers x two shapes x (inference, training step), each with its ratios
    assert sum(row.startswith("| gin, ") for row in rows) == 4
    diffs = [float(v.split(";")[0]) for v in out.split("batch 128: ")[1:]]
    assert diffs and diffs[0] < 1e-4  # the two sides compute the same logits


def test_bench_gcn_adjacency_refuses_zero_rounds(load, capsys):
    bench = load("bench_gcn_adjacency")
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_bench_graph_loader_quick_trains_the_same_weights(load, capsys):
    bench = load("bench_graph_loader")
    assert bench.main(["--quick", "--graphs", "40"]) == 0
    out = capsys.readouterr().out
    assert "40 graphs, batches of 32, best and median of 1" in out  # --graphs given, --repeats from --quick
    assert "| arm D: 8 features | gnn.fit, 1 epochs |" in out
    assert "trained weights equal on both loaders: True" in out


def test_bench_checkouts_takes_the_node_features(load, monkeypatch, capsys):
    bench = load("bench_checkouts")
    root = str(BENCHMARKS.parent)
    seen = []

    def fake(*args):
        seen.append(args[-1])
        return {"slic": 1.0, "tensor": 1.0, "nodes": 5.0}

    monkeypatch.setattr(bench, "run_child", fake)
    bench.main([root, "--rounds", "1", "--features", "color_mean,color_std,centroid"])
    assert seen == ["color_mean,color_std,centroid"]
    assert "features color_mean,color_std,centroid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the older checkout"),
        (["{tmp}"], "has no bridge/ package"),
        (["{repo}", "twice"], "new, old or both, got twice"),
    ],
)
def test_demo_then_and_now_refuses_bad_arguments_before_running(tmp_path, args, message):
    """Each mistake stops the 15-minute script at once, with what to give instead."""
    args = [a.format(tmp=tmp_path, repo=BENCHMARKS.parent) for a in args]
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "demo_then_and_now.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "logs and runs in" not in proc.stdout  # nothing started


def test_demo_then_and_now_reports_a_failed_run_and_takes_a_relative_out_dir(tmp_path):
    """A run that fails is named with its exit status and log (the script goes on and exits 0), and a
    relative OUT_DIR is made absolute before the runs change folder."""
    fake = tmp_path / "old"
    (fake / "bridge").mkdir(parents=True)
    (fake / "bridge" / "__init__.py").write_text("")
    (fake / "bridge" / "cli.py").write_text("def main():\n    print('fake compare')\n    return 3\n")
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "demo_then_and_now.sh"), str(fake), "old", "out"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr
    log = tmp_path / "out" / "old.log"
    assert f"old run failed (exit status 3); see {log}" in proc.stdout
    assert "fake compare" in log.read_text()
