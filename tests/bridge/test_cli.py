"""bridge.cli: every subcommand, exit codes, bad input found before any work, resume that cannot lie."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bridge.cli import EXIT_CODES, build_parser, main

COMMANDS = ["compare", "finetune", "train-gnn", "graphs", "explain", "show", "data"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pixgraph " + command in out
    assert "exit codes:" in out and "130" in out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    for code in EXIT_CODES:
        assert f"  {code} " in out.stdout


def test_importing_the_cli_loads_no_heavy_package():
    code = "import sys, bridge.cli; bridge.cli.build_parser(); print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("lightning", "matplotlib", "torch_geometric", "bridge.compare"):
        assert f"'{heavy}'" not in out, heavy


def test_compare_help_lists_the_registry_and_the_datasets(capsys, monkeypatch):
    from bridge.compare import registry

    registry.list_arms()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_arm("knn_probe", title="E. nearest neighbours (50% of the time)")(
        lambda bench, seed: {}
    )
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for arm in ("linear_probe", "finetune", "gnn_cnn", "gnn_color"):
        assert arm in text
    assert "knn_probe: E. nearest neighbours (50% of the time)" in text
    assert "cifar10" in text and "hymenoptera" in text and ".csv manifest" in text


def test_train_gnn_help_lists_the_graph_datasets(capsys):
    with pytest.raises(SystemExit):
        main(["train-gnn", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "gnnbench-mnist" in text and "gnnbench-cifar10" in text


# ----------------------------------------------------------------------------------------------
# Bad input: one table, each row an exit code and a fragment of stderr; nothing is trained


@pytest.fixture
def bad_inputs(tmp_path, monkeypatch):
    """A tmp folder with a regular file, a one-class folder and an empty folder; no CUDA."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PIXGRAPH_DATA", str(tmp_path / "data-cache"))
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "dir").mkdir()
    (tmp_path / "empty").mkdir()
    return tmp_path


D = ["compare", "--data", "digits"]
BAD = [
    # (argv, exit code, fragment of stderr)
    ([*D, "--gnn", "bogus"], 2, "--gnn) is not a known graph convolution; use one of gat, gcn, gin, sage"),
    ([*D, "--image-size", "2"], 2, "image_size=2 (--image-size) is too small; use at least 16"),
    ([*D, "--image-size", "16", "--n-segments", "75"], 2, "use --n-segments <= 64"),
    ([*D, "--device", "bogus"], 2, "(--device) is not understood; use one of cpu, cuda, cuda:N, auto"),
    ([*D, "--device", "cuda"], 2, "torch.cuda.is_available() is False"),
    ([*D, "--device", "cuda:1"], 2, "torch.cuda.is_available() is False"),
    ([*D, "--device", "gpu:x"], 2, "device='gpu:x' (--device) is not understood"),
    ([*D, "--arms", "linear_probe,svm"], 2, "choose from linear_probe, finetune, gnn_cnn, gnn_color"),
    ([*D, "--arms", ","], 2, "--arms ',' names no arm"),
    ([*D, "--arms", "finetune,finetune"], 2, "has duplicates"),
    ([*D, "--weights", "{tmp}/missing.pth"], 2, "(--weights): no such file"),
    ([*D, "--backbone", "resnet19"], 2, "unknown backbone 'resnet19'"),
    (["compare", "--data", "{tmp}/missing"], 2, "is not an existing folder or .csv manifest"),
    (["compare", "--data", "{tmp}/file.txt"], 2, "it is a file without the .csv suffix"),
    (["compare", "--data", "{tmp}/missing.csv"], 2, "is not an existing folder or .csv manifest"),
    (["compare", "--data", "{tmp}/one"], 2, "1 class folder(s) ['cats']"),
    (["compare", "--data", "{tmp}/empty"], 2, "0 class folder(s) []"),
    ([*D, "--split", "test"], 2, "--split only applies to downloaded datasets"),
    ([*D, "--data-root", "{tmp}"], 2, "--data-root only applies to downloaded datasets"),
    (["compare", "--data", "cifar10", "--data-root", "{tmp}/file.txt/x"], 2, "which is a file, not a folder"),
    ([*D, "--out", "{tmp}/file.txt"], 2, "--out '{tmp}/file.txt' is a file, not a folder"),
    ([*D, "--out", "{tmp}/file.txt/sub"], 2, "lies under '{tmp}/file.txt', which is a file"),
    (["compare", "--resume", "{tmp}"], 2, "no config.json there"),
    (["compare", "--resume", "{tmp}/missing"], 2, "no config.json there"),
    ([*D, "--seeds", "a,b"], 2, "seeds must be comma-separated integers"),
    ([*D, "--max-per-class", "0"], 2, "expected a positive integer, got '0'"),
    ([*D, "--max-per-class", "2"], 2, "max_per_class=2 is too small"),
    ([*D, "--similarity", "medium"], 2, "invalid choice: 'medium'"),
    ([*D, "--epochs-gnn", "0"], 2, "expected a positive integer"),
    ([*D, "--batch-size", "x"], 2, "expected a positive integer, got 'x'"),
    (["finetune", "--data", "digits", "--blocks", "2"], 2, "--blocks 2 needs --freeze fine_tuning"),
    (["finetune", "--data", "digits", "--freeze", "half"], 2, "invalid choice: 'half'"),
    (["finetune", "--data", "digits", "--strategy", "half"], 2, "'half' (--strategy) is not a Lightning"),
    (["finetune", "--data", "digits", "--strategy", "full", "--freeze", "fine_tuning"], 2, "disagree"),
    (["finetune", "--data", "digits", "--head", "gnn"], 2, "invalid choice: 'gnn'"),
    ([*D, "--graph", "pixels"], 2, "invalid choice: 'pixels'"),
    ([*D, "--segmentation", "watershed"], 2, "'watershed' (--segmentation) is not a segmentation back-end"),
    ([*D, "--devices", "0"], 2, "expected a positive integer"),
    (["train-gnn", "--data", "digits", "--gnn", "bogus"], 2, "is not a known graph convolution"),
    (["train-gnn", "--data", "mnist-superpixels", "--cnn-features"], 2, "--cnn-features: not used with"),
    (["train-gnn", "--data", "gnnbench-mnist", "--gnn", "bogus"], 2, "--gnn 'bogus' is not a known"),
    (["train-gnn", "--data", "gnnbench-mnist", "--device", "cuda"], 2, "torch.cuda.is_available() is False"),
    (["train-gnn", "--data", "gnnbench-mnist", "--out", "{tmp}/file.txt"], 2, "is a file, not a folder"),
    (["train-gnn", "--data", "no-such-set"], 2, "mnist-superpixels"),
    (["train-gnn", "--data", "digits", "--graph", "patches"], 2, "--graph: not used by the colour GNN"),
    (
        ["finetune", "--data", "digits", "--n-segments", "10", "--graph", "patches"],
        2,
        "--n-segments, --graph: not used by a fine-tuned CNN head (arm B); leave them out, "
        "or add --head graph",
    ),
    (["train-gnn", "--data", "gnnbench-mnist", "--segmentation", "slic"], 2, "--segmentation: not used with"),
    (["train-gnn", "--data", "gnnbench-mnist", "--graph", "patches"], 2, "--graph: not used with the graph"),
    (["train-gnn", "--data", "gnnbench-mnist", "--strategy", "bogus"], 2, "'bogus' (--strategy) is not a"),
    (["graphs", "--data", "digits", "--cache", "{tmp}/file.txt"], 2, "--cache '{tmp}/file.txt' is a file"),
    (["graphs", "--data", "digits", "--workers", "-1"], 2, "--workers -1: use 0"),
    (["graphs", "--data", "digits", "--backbone", "resnet19"], 2, "unknown backbone 'resnet19'"),
    (["graphs", "--data", "digits", "--split", "train"], 2, "--split only applies to downloaded"),
    (["show", "coffee", "--out", "{tmp}/dir"], 2, "--out '{tmp}/dir' is a folder"),
    (["show", "coffee", "--out", "{tmp}/g.txt"], 2, "use a file name ending in .png"),
    (["show", "coffee", "--out", "{tmp}/file.txt/g.png"], 2, "file.txt' is a file, not a folder"),
    (["show", "coffee", "--out", "{tmp}/g.png", "--graphml", "{tmp}/file.txt/g.graphml"], 2, "--graphml"),
    (["show", "coffee", "--out", "{tmp}/g.png", "--graphml", "{tmp}/g.gml"], 2, "ending in .graphml"),
    (["show", "{tmp}/nope.png", "--out", "{tmp}/g.png"], 2, "does not exist"),
    (["show", "coffee", "--n-segments", "0"], 2, "expected a positive integer"),
    (["explain", "chelsea", "--out", "{tmp}/file.txt"], 2, "is a file, not a folder"),
    (["explain", "chelsea", "--backbone", "resnet19", "--out", "{tmp}/x"], 2, "unknown backbone"),
    (["explain", "chelsea", "--weights", "{tmp}/w.pth", "--out", "{tmp}/x"], 2, "--weights '{tmp}/w.pth'"),
    (["data", "{tmp}/missing"], 2, "is not an existing folder or .csv manifest"),
    (["data", "gnnbench-mnist"], 2, "is a graph dataset; `pixgraph data` describes image datasets"),
    (["data", "digits", "--split", "train"], 2, "--split only applies to downloaded"),
    (["data", "digits", "--data-root", "{tmp}", "--split", "x"], 2, "--split and --data-root only apply"),
    (["data", "{tmp}/one"], 2, "1 class folder(s) ['cats']"),
    (["bogus-command"], 2, "invalid choice: 'bogus-command'"),
]


def _run(argv):
    """``main(argv)`` and its exit code, also when argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(("argv", "code", "fragment"), BAD, ids=[" ".join(r[0])[:60] for r in BAD])
def test_bad_input_exits_with_code_and_names_the_problem(argv, code, fragment, bad_inputs, capsys):
    tmp = str(bad_inputs)
    argv = [a.replace("{tmp}", tmp) for a in argv]
    assert _run(argv) == code
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())  # argparse wraps its usage lines
    assert fragment.replace("{tmp}", tmp) in err, err
    assert "Traceback" not in captured.err
    assert "error" not in captured.out.lower()  # errors go to stderr only
    assert not (bad_inputs / "file.txt").is_dir() and (bad_inputs / "file.txt").read_text() == "not a folder"
    left = sorted(p.name for p in bad_inputs.iterdir())
    assert left == ["data-cache", "dir", "empty", "file.txt", "one"] or left == [
        "dir",
        "empty",
        "file.txt",
        "one",
    ]


def test_user_errors_are_one_line(bad_inputs, capsys):
    code = main(["compare", "--data", "digits", "--gnn", "bogus"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("pixgraph: error:")


def test_a_missing_dataset_prints_its_whole_message_and_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["compare", "--data", "hymenoptera", "--no-download", "--data-root", str(tmp_path / "cache")]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixgraph: error:") and "Traceback" not in err
    assert "hymenoptera_data.zip" in err and str(tmp_path / "cache") in err
    assert len(err.splitlines()) > 1  # what to download, from where, into which folder
    assert not (out / "config.json").exists()  # a run that never started leaves no configuration


# ----------------------------------------------------------------------------------------------
# --resume: options given with it must match the stored configuration


def _stored_run(tmp_path, **fields):
    from bridge.compare.config import CompareConfig

    run = tmp_path / "run"
    run.mkdir()
    cfg = CompareConfig(data="digits", seeds=(0, 1), batch_size=8, **fields)
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    return run, cfg


@pytest.fixture
def fake_compare(monkeypatch):
    """Replaces the comparison itself: records the configuration, reports every arm as done."""
    import bridge.compare.run as run_module

    calls = []

    def compare(cfg, *, out=None, progress=True, log=None, download=True):
        calls.append((cfg, out, download, progress))
        return {"arms": {a: {"status": "ok"} for a in cfg.arms}, "out": str(out)}

    monkeypatch.setattr(run_module, "compare", compare)
    return calls


def test_resume_refuses_options_that_differ_and_lists_them(tmp_path, capsys, fake_compare):
    run, _ = _stored_run(tmp_path)
    code = main(["compare", "--resume", str(run), "--seeds", "7", "--arms", "finetune", "--gnn", "gcn"])
    err = capsys.readouterr().err
    assert code == 2 and not fake_compare
    assert "--seeds: stored [0, 1], given [7]" in err
    stored = '["linear_probe", "finetune", "gnn_cnn", "gnn_color", "e2e"]'
    assert f'--arms: stored {stored}, given ["finetune"]' in err
    assert "--gnn" not in err  # given, but equal to the stored value
    assert "start a new run with another --out" in err
    # the subcommand's own arm counts as given
    assert main(["finetune", "--resume", str(run)]) == 2
    assert "--arms: stored" in capsys.readouterr().err


def test_resume_with_matching_or_no_options_runs_the_stored_configuration(tmp_path, capsys, fake_compare):
    run, cfg = _stored_run(tmp_path)
    # batch_size 8 is stored; argparse's default (None) is not an option the user gave
    assert main(["compare", "--resume", str(run), "--seeds", "0,1", "--no-progress"]) == 0
    assert main(["compare", "--resume", str(run), "--no-download"]) == 0
    assert [c[0] for c in fake_compare] == [cfg, cfg]
    assert fake_compare[0][1] == run and fake_compare[1][2] is False
    assert capsys.readouterr().err == ""
    assert main(["compare", "--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "name different folders" in capsys.readouterr().err


def test_resume_of_an_older_config_uses_defaults_and_says_so(tmp_path, capsys, fake_compare):
    run, cfg = _stored_run(tmp_path)
    old = cfg.to_dict()
    del old["data_split"], old["data_root"]
    (run / "config.json").write_text(json.dumps(old))
    assert main(["compare", "--resume", str(run)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"pixgraph: {run / 'config.json'} is from an older version: using the defaults for "
        "data_split=None, data_root=None"
    ]
    assert fake_compare[0][0] == cfg


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("", "is empty"), ('{"data": "digits", "seeds": [0', "is not valid JSON"), ("[1, 2]", "holds a list")],
)
def test_a_corrupt_config_json_names_the_file_and_the_fix(tmp_path, capsys, content, fragment, fake_compare):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(content)
    assert main(["compare", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "config.json") in err and fragment in err and "start a new run" in err
    assert "Traceback" not in err and not fake_compare


# ----------------------------------------------------------------------------------------------
# Exit code of failed arms, show's all-or-none outputs, pixgraph data, graph datasets


@pytest.fixture
def scratch_registry(monkeypatch):
    from bridge.compare import registry

    registry.list_arms()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_a_failed_arm_makes_the_exit_code_1_and_the_report_is_written(tmp_path, capsys, scratch_registry):
    import torch

    from bridge.compare import result_cell

    @scratch_registry.register_arm("majority", title="M. majority class")
    def majority(bench, seed):
        d = bench.data
        preds = torch.full((len(d.test),), int(np.bincount(d.targets[d.train]).argmax()))
        return result_cell(
            bench, torch.nn.Linear(1, 1), {"train_acc": [0.1]}, preds, train_time=0.0, speed=1.0
        )

    @scratch_registry.register_arm("boom", title="X. always fails")
    def boom(bench, seed):
        raise RuntimeError("simulated failure")

    out = tmp_path / "run"
    argv = ["compare", "--data", "digits", "--arms", "majority,boom", "--seeds", "0", "--max-per-class", "4"]
    code = main([*argv, "--image-size", "16", "--n-segments", "4", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "[boom seed 0] FAILED: RuntimeError: simulated failure" in captured.err
    assert "pixgraph: arm boom failed: RuntimeError: simulated failure" in captured.err
    assert "1 of 2 arm(s) failed; report still written" in captured.err
    assert "FAILED" not in captured.out
    assert (out / "report.md").exists() and (out / "results.json").exists()


@pytest.mark.parametrize("method", ["slic", "slic_torch"])
def test_show_draws_a_graph(tmp_path, capsys, method):
    png, graphml = tmp_path / "g.png", tmp_path / "g.graphml"
    argv = ["show", "coffee", "--n-segments", "40", "--method", method, "--out", str(png)]
    assert main([*argv, "--graphml", str(graphml)]) == 0
    assert png.stat().st_size > 0 and graphml.stat().st_size > 0
    assert "nodes" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.graphml", "g.png"]  # no temporary files


def test_show_writes_both_files_or_none(tmp_path, capsys, monkeypatch):
    import bridge.nxgraph

    def fail(data, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bridge.nxgraph, "export_graphml", fail)
    png, graphml = tmp_path / "g.png", tmp_path / "g.graphml"
    code = main(["show", "coffee", "--n-segments", "20", "--out", str(png), "--graphml", str(graphml)])
    assert code == 2 and "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # the PNG was not left behind either


def test_data_describes_a_folder_with_an_unreadable_file(tmp_path, capsys):
    from cnn import write_image

    rng = np.random.default_rng(0)
    for cls, n in (("ants", 3), ("bees", 2)):
        for i in range(n):
            write_image(tmp_path / "photos" / cls / f"{i}.png", rng.integers(0, 255, (12, 10, 3), np.uint8))
    (tmp_path / "photos" / "bees" / "broken.png").write_bytes(b"not an image")
    assert main(["data", str(tmp_path / "photos")]) == 0
    out = capsys.readouterr().out
    assert "photos: 5 images in 2 classes (files)" in out
    assert "ants" in out and "60.0%" in out and "12x10 (height x width) for all" in out
    assert "unreadable files: 1 (left out)" in out and "broken.png" in out
    # a manifest of the same files
    (tmp_path / "list.csv").write_text("path,label\nphotos/ants/0.png,ant\nphotos/bees/0.png,bee\n")
    assert main(["data", str(tmp_path / "list.csv")]) == 0
    assert "list: 2 images in 2 classes" in capsys.readouterr().out


def test_a_tiny_class_is_named_by_its_folder(tmp_path, capsys):
    from cnn import write_image

    rng = np.random.default_rng(0)
    for cls, n in (("cats", 6), ("dogs", 1)):
        for i in range(n):
            write_image(tmp_path / "pets" / cls / f"{i}.png", rng.integers(0, 255, (20, 20, 3), np.uint8))
    argv = ["compare", "--data", str(tmp_path / "pets"), "--arms", "linear_probe", "--seeds", "0"]
    assert main([*argv, "--image-size", "16", "--n-segments", "4", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "class 'dogs' (label 1) has 1 item(s)" in err
    assert not (tmp_path / "r" / "config.json").exists()


def _fake_graphs(n_per_class, seed):
    import torch
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    graphs = []
    for label in (0, 1):
        for _ in range(n_per_class):
            x = torch.randn(5, 3, generator=g) + 2.0 * label
            edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])
            graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([label])))
    return graphs


def test_train_gnn_on_a_graph_dataset_uses_its_splits(tmp_path, capsys, monkeypatch):
    import gnn.datasets

    asked = []

    def load(name, *, root=None, split="train", download=True, pos_in_x=True):
        asked.append((name, split, download))
        if split == "val":
            raise ValueError("split='val' is not known for 'mnist-superpixels'")
        return _fake_graphs(10 if split == "train" else 4, seed=len(asked))

    monkeypatch.setattr(gnn.datasets, "load_graph_dataset", load)
    out = tmp_path / "gnn"
    argv = ["train-gnn", "--data", "mnist-superpixels", "--epochs", "2", "--seeds", "0", "--no-progress"]
    assert main([*argv, "--no-download", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train/val/test = 18/2/8 graphs, 3 node features, 2 classes, conv gcn" in printed
    assert "mnist-superpixels gcn: test accuracy" in printed
    assert {(s, d) for _, s, d in asked} == {("train", False), ("val", False), ("test", False)}
    res = json.loads((out / "results.json").read_text())
    assert res["split"] == {"train": 18, "val": 2, "test": 8} and 0.0 <= res["accuracy_mean"] <= 1.0


def test_train_gnn_offline_prints_what_to_download(tmp_path, capsys, monkeypatch):
    import gnn.datasets
    from engine.files import DatasetNotAvailableError

    def offline(name, **kw):
        raise DatasetNotAvailableError(
            f"graph dataset {name!r} is not in '/cache' and was not downloaded: no network.\n"
            "To use it offline, download\n  https://example.org/MNIST.zip\nand put it in /cache/raw",
            name=name,
            folder=tmp_path,
            urls=["https://example.org/MNIST.zip"],
        )

    monkeypatch.setattr(gnn.datasets, "load_graph_dataset", offline)
    assert main(["train-gnn", "--data", "gnnbench-mnist", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixgraph: error: graph dataset 'gnnbench-mnist' is not in")
    assert "https://example.org/MNIST.zip" in err and "/cache/raw" in err and "Traceback" not in err


def test_explain_prints_top5_and_writes_pictures(tmp_path, capsys):
    assert main(["explain", "chelsea", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("cat" in line for line in lines[:3])
    assert (tmp_path / "grad_cam.png").exists() and (tmp_path / "feature_maps.png").exists()


def test_explain_names_the_classes_stored_with_the_weights(tmp_path, capsys):
    from cnn.backbones import create_backbone
    from engine.checkpoints import save_checkpoint

    model = create_backbone("efficientnet_lite0", weights=None, num_classes=2)
    path = save_checkpoint(model, tmp_path / "lite0.pth", classes=["functional", "defective"])
    assert main(["explain", "chelsea", "--weights", str(path), "--out", str(tmp_path / "x")]) == 0
    top = capsys.readouterr().out.splitlines()[:3]
    assert any("functional" in line for line in top) and any("defective" in line for line in top)


def test_graphs_builds_then_reuses(tmp_path, capsys):
    argv = ["graphs", "--data", "digits", "--max-per-class", "3", "--n-segments", "10"]
    argv += ["--cache", str(tmp_path), "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    assert "30 graphs (built" in capsys.readouterr().out
    assert main(argv) == 0
    assert "30 graphs (reused" in capsys.readouterr().out


def test_graphs_with_a_backbone_fold_its_batchnorm(tmp_path, capsys):
    argv = ["graphs", "--data", "digits", "--max-per-class", "1", "--n-segments", "4"]
    argv += ["--cache", str(tmp_path), "--workers", "0", "--no-progress", "--backbone", "efficientnet_lite0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "10 graphs (built" in printed
    assert "node features: 480" in printed  # colour mean 3, std 3, centroid 2 + stages 40 + 112 + 320
    assert "backbone: efficientnet_lite0, 49 BatchNorm layers folded" in printed


def test_graphs_keep_a_backbone_whose_fold_fails(tmp_path, capsys, monkeypatch):
    import cnn.fusion

    def refuse(model, example=None, **kw):
        raise RuntimeError("folding the BatchNorm layers of Backbone changed output tensor 0 by 1")

    monkeypatch.setattr(cnn.fusion, "fold_batchnorm", refuse)
    argv = ["graphs", "--data", "digits", "--max-per-class", "1", "--n-segments", "4"]
    argv += ["--cache", str(tmp_path), "--workers", "0", "--no-progress", "--backbone", "efficientnet_lite0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "10 graphs (built" in printed
    assert "backbone: efficientnet_lite0, BatchNorm not folded (folding" in printed


def test_folder_of_photos_end_to_end(tmp_path, capsys):
    """A new user's layout: natural photos of two classes in sub-folders, compared with --quick."""
    from skimage import data

    from cnn import write_image

    rng = np.random.default_rng(0)
    for cls, photo in (("cat", data.chelsea()), ("coffee", data.coffee())):
        for i in range(8):
            y, x = rng.integers(0, 60, size=2)
            write_image(tmp_path / "photos" / cls / f"{i}.jpg", photo[y : y + 240, x : x + 320])
    out = tmp_path / "run"
    argv = ["compare", "--data", str(tmp_path / "photos"), "--quick", "--seeds", "0", "--image-size", "48"]
    assert main([*argv, "--n-segments", "16", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| A. linear probe" in printed and "report:" in printed
    assert (out / "report.md").exists() and (out / "results.json").exists()
    assert json.loads((out / "data.json").read_text())["n_images"] == 16


@pytest.mark.parametrize(
    "flags, out_tty, err_tty, bars",
    [
        ([], True, True, True),
        ([], False, True, False),  # `> run.log`: Lightning's bars would go to the file
        ([], True, False, False),  # `2> err.log`: the conversion's bars would
        (["--progress"], False, False, True),
        (["--no-progress"], True, True, False),
    ],
)
def test_progress_bars_only_on_a_terminal_unless_asked(
    tmp_path, monkeypatch, fake_compare, flags, out_tty, err_tty, bars
):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: out_tty)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: err_tty)
    assert main(["compare", "--data", "digits", "--out", str(tmp_path / "r"), *flags]) == 0
    assert fake_compare[-1][3] is bars


def test_progress_and_no_progress_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["graphs", "--data", "digits", "--progress", "--no-progress"])
    assert exc.value.code == 2
    assert "not allowed with argument --progress" in capsys.readouterr().err


def test_parser_keeps_argparse_defaults_apart_from_given_options():
    from bridge.cli import _explicit

    assert _explicit(["compare", "--resume", "r", "--seeds", "0"]) == {"resume", "seeds"}
    assert build_parser().parse_args(["compare"]).seeds is None
    assert os.environ.get("PIXGRAPH_DEBUG") is None


def test_faithfulness_options_reach_the_configuration(capsys):
    from bridge.cli import main

    assert main(["compare", "--data", "digits", "--faithfulness-images", "-1"]) == 2
    assert "faithfulness_images must be an int >= 0, got -1" in capsys.readouterr().err


def test_graph_and_parallel_options_reach_the_configuration(tmp_path, fake_compare):
    argv = ["compare", "--data", "digits", "--out", str(tmp_path / "r"), "--graph", "patches"]
    argv += ["--segmentation", "slic", "--devices", "2", "--num-nodes", "3", "--strategy", "ddp"]
    assert main(argv) == 0
    cfg = fake_compare[0][0]
    assert (cfg.graph, cfg.segmentation, cfg.devices, cfg.num_nodes) == ("patches", "slic", 2, 3)
    assert cfg.lightning_strategy == "ddp" and cfg.device == "auto"


def test_finetune_head_graph_runs_arm_e_and_freeze_picks_the_blocks(tmp_path, fake_compare):
    out = str(tmp_path / "r")
    assert main(["finetune", "--data", "digits", "--out", out, "--head", "graph"]) == 0
    assert fake_compare[-1][0].arms == ("e2e",)
    argv = ["finetune", "--data", "digits", "--out", out + "2", "--freeze", "fine_tuning", "--blocks", "2"]
    assert main(argv) == 0
    cfg = fake_compare[-1][0]
    assert cfg.arms == ("finetune",) and (cfg.strategy, cfg.trainable_blocks) == ("fine_tuning", 2)
    assert cfg.lightning_strategy == "auto"


def test_finetune_old_strategy_values_still_mean_the_freezing_with_a_warning(tmp_path, capsys, fake_compare):
    out = str(tmp_path / "r")
    assert main(["finetune", "--data", "digits", "--out", out, "--strategy", "full"]) == 0
    cfg = fake_compare[-1][0]
    assert cfg.strategy == "full" and cfg.lightning_strategy == "auto"
    assert "--strategy full is deprecated" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, strategy",
    [([], "auto"), (["--devices", "2"], "ddp_spawn"), (["--num-nodes", "2"], "ddp_spawn"),
     (["--devices", "2", "--strategy", "ddp"], "ddp")],
)  # fmt: skip
def test_train_gnn_on_a_graph_dataset_spawns_data_parallel_training(monkeypatch, extra, strategy):
    """With several devices or machines and --strategy auto, only training is spread (ddp_spawn, as in
    compare): plain DDP would start the whole command again in every process."""
    import gnn.datasets
    import gnn.training

    seen = {}

    def fit(model, *args, **kw):
        seen.update(kw)
        raise KeyboardInterrupt  # stop after the first call: the options are what this test reads

    monkeypatch.setattr(gnn.datasets, "load_graph_dataset", lambda name, **kw: _fake_graphs(6, seed=1))
    monkeypatch.setattr(gnn.training, "fit", fit)
    argv = [
        "train-gnn",
        "--data",
        "gnnbench-mnist",
        "--device",
        "cpu",
        "--seeds",
        "0",
        "--no-progress",
        *extra,
    ]
    assert main(argv) == 130
    assert seen["strategy"] == strategy and seen["accelerator"] == "cpu"


def test_train_gnn_refuses_one_named_gpu_with_several_devices(monkeypatch, capsys):
    import bridge.compare.config

    monkeypatch.setattr(bridge.compare.config, "check_device", lambda device, available=False: device)
    assert main(["train-gnn", "--data", "gnnbench-mnist", "--device", "cuda:1", "--devices", "2"]) == 2
    err = capsys.readouterr().err
    assert (
        "--device cuda:1 trains on that one GPU but --devices 2" in err and "--device cuda --devices 2" in err
    )


def test_compare_trains_on_two_cpu_processes(tmp_path):
    """`--devices 2` on the CPU: ddp_spawn hands the graphs to 2 spawned processes (with the default
    file-descriptor sharing, a few hundred graphs overflowed the descriptors a child may inherit:
    ValueError: bad value(s) in fds_to_keep) and the arm trains, tests and reports."""
    out = tmp_path / "run"
    argv = ["compare", "--data", "digits", "--quick", "--seeds", "0", "--arms", "gnn_color",
            "--device", "cpu", "--devices", "2", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    arm = json.loads((out / "results.json").read_text())["arms"]["gnn_color"]
    assert arm["status"] == "ok" and arm["errors"] == []
    run = arm["seeds"]["0"]
    assert run["test"]["n"] > 0 and len(run["history"]["train_loss"]) > 0
    assert json.loads((out / "config.json").read_text())["devices"] == 2
