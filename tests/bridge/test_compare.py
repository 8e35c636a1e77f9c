"""bridge.compare: the whole comparison on a tiny digits run, resume (also of an old run folder), failures."""

import importlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bridge.compare import ARMS, CompareConfig, compare, quick_config, summary_table
from bridge.compare import registry as registry_module
from bridge.slic import VERSION as slic_version

compare_module = importlib.import_module("bridge.compare")  # the package exports the function `compare`


def _tiny(**kw):
    base = dict(
        data="digits",
        seeds=(0, 1),
        max_per_class=8,
        image_size=32,
        epochs_probe=3,
        epochs_finetune=1,
        epochs_gnn=3,
        n_segments=12,
        hidden=16,
        layers=2,
        n_explain=1,
    )
    base.update(kw)
    return quick_config(**base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "cmp"
    logs = []
    res = compare(_tiny(), out=out, progress=False, log=logs.append)
    return out, res, logs


def test_all_four_arms_report_numbers(finished):
    out, res, _ = finished
    assert sorted(res["arms"]) == sorted(ARMS)
    for arm, entry in res["arms"].items():
        assert entry["status"] == "ok", (arm, entry["errors"])
        s = entry["summary"]
        assert 0.0 <= s["accuracy_mean"] <= 1.0 and s["n_seeds"] == 2
        assert 0 < s["trainable_params"] <= s["total_params"]
        assert s["images_per_s"] > 0
        # every arm's rounds also timed the frozen backbone; its ratio is the mean of the seeds' medians
        seeds = entry["seeds"].values()
        assert all(c["backbone_images_per_s"] > 0 and c["vs_backbone"] > 0 for c in seeds)
        assert s["vs_backbone"] == pytest.approx(float(np.mean([c["vs_backbone"] for c in seeds])))
    assert "timed in the same rounds" in "\n".join(finished[2])  # the line printed at the end
    # the frozen arms train a small part of what they run; the colour-only GNN has no backbone
    a, d = res["arms"]["linear_probe"]["summary"], res["arms"]["gnn_color"]["summary"]
    assert a["trainable_params"] < a["total_params"] / 10
    assert d["trainable_params"] == d["total_params"]


def test_run_folder_has_report_results_and_pictures(finished):
    out, res, _ = finished
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["seeds"] == [0, 1] and saved["data"]["n_images"] == 80
    assert set(saved["versions"]) >= {"torch", "torch-geometric", "timm", "python"}
    # what decides the last bits of a training run: CPU, torch's instruction set and threads
    assert saved["versions"]["torch threads"] == str(torch.get_num_threads())
    assert saved["versions"]["torch cpu capability"] == torch.backends.cpu.get_cpu_capability()
    assert saved["versions"]["cpu"]
    # which version of the segmentation back-end built the graphs
    assert saved["config"]["segmentation"] == "slic_torch"
    assert saved["versions"]["segmentation"] == f"slic_torch version {slic_version}"
    report = (out / "report.md").read_text()
    for arm in ARMS:
        assert compare_module.ARM_TITLES[arm] in report
    assert "## Configuration" in report and "## Versions" in report
    for fig in (
        "accuracy_curves.png",
        "confusion_matrices.png",
        "predictions_finetune.png",
        "predictions_gnn_cnn.png",
        "faithfulness.png",
        "explanations.png",
    ):
        assert (out / "figures" / fig).stat().st_size > 0, fig
        assert f"figures/{fig}" in report
    assert not (out / ".lock").exists()


def test_same_split_for_every_arm(finished):
    out, res, _ = finished
    n_test = res["data"]["split"]["test"]
    for arm in ARMS:
        cell = json.loads((out / "cells" / f"{arm}-seed0.json").read_text())
        assert len(cell["test_preds"]) == n_test == cell["test"]["n"]


def test_rerun_reuses_finished_cells(finished):
    out, res, _ = finished
    logs = []
    again = compare(_tiny(), out=out, progress=False, log=logs.append)
    assert sum("already finished" in m for m in logs) == len(ARMS) * 2
    for arm in ARMS:
        assert again["arms"][arm]["summary"]["accuracy_mean"] == res["arms"][arm]["summary"]["accuracy_mean"]


def test_interrupted_run_resumes_only_missing_cells(finished, tmp_path):
    out, _, _ = finished
    # simulate a run killed after some cells: copy the folder, drop two cells
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "cells" / "gnn_color-seed1.json").unlink()
    (copy / "cells" / "linear_probe-seed1.json").unlink()
    logs = []
    compare(_tiny(), out=copy, progress=False, log=logs.append)
    trained = [m for m in logs if m.endswith("training ...")]
    assert sorted(trained) == ["[gnn_color seed 1] training ...", "[linear_probe seed 1] training ..."]


def _old_config_json() -> dict:
    """config.json exactly as the single-module bridge/compare.py (before the arm registry) wrote it."""
    return {
        "data": "digits",
        "backbone": "efficientnet_lite0",
        "weights": "imagenet",
        "seeds": [0, 1],
        "arms": ["linear_probe", "gnn_color"],
        "val": 0.15,
        "test": 0.15,
        "split_seed": 0,
        "max_per_class": 8,
        "similarity": None,
        "strategy": None,
        "trainable_blocks": None,
        "image_size": 32,
        "batch_size": 32,
        "epochs_probe": 3,
        "epochs_finetune": 1,
        "epochs_gnn": 3,
        "lr_probe": 0.001,
        "lr_finetune": 0.001,
        "lr_gnn": 0.001,
        "n_segments": 12,
        "compactness": 10.0,
        "gnn": "gcn",
        "hidden": 16,
        "layers": 2,
        "device": "cpu",
        "n_explain": 1,
    }


def _old_cell(arm: str, seed: int, accuracy: float, preds: list[int]) -> dict:
    """A finished cell as the old code wrote it (keys of _finish_cell + status/arm/seed/wall_time_s)."""
    return {
        "test": {"accuracy": accuracy, "macro_f1": accuracy / 2, "n": len(preds)},
        "test_preds": preds,
        "history": {
            "train_loss": [2.0, 1.5],
            "train_acc": [0.3, 0.6],
            "val_loss": [2.1, 1.9],
            "val_acc": [0.2, 0.4],
        },
        "train_time_s": 1.25,
        "images_per_s": 321.0,
        "trainable_params": 1290,
        "total_params": 3_400_000,
        "shared_prep_time_s": 0.5,
        "status": "ok",
        "arm": arm,
        "seed": seed,
        "wall_time_s": 2.0,
    }


def test_an_old_run_folder_resumes_without_recomputing_finished_cells(tmp_path):
    from cnn.datasets import load_dataset, split

    ds = load_dataset("digits", max_per_class=8, seed=0)
    _, _, test = split(np.array(ds.targets), val=0.15, test=0.15, seed=0)
    y_test = [int(ds.targets[i]) for i in test]
    out = tmp_path / "old-run"
    (out / "cells").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(_old_config_json(), indent=1))
    cells = {
        "linear_probe-seed0": _old_cell("linear_probe", 0, 0.5, y_test),
        "linear_probe-seed1": _old_cell("linear_probe", 1, 0.75, y_test),
        "gnn_color-seed0": _old_cell("gnn_color", 0, 0.25, y_test),
        "gnn_color-seed1": {  # a failed cell of the old run is trained again
            "status": "failed",
            "error": "RuntimeError: out of memory",
            "traceback": "Traceback ...",
            "arm": "gnn_color",
            "seed": 1,
            "wall_time_s": 0.1,
        },
    }
    for name, cell in cells.items():
        (out / "cells" / f"{name}.json").write_text(json.dumps(cell, indent=1))
    finished_names = ("linear_probe-seed0.json", "linear_probe-seed1.json", "gnn_color-seed0.json")
    before = {name: (out / "cells" / name).read_bytes() for name in finished_names}

    logs = []
    cfg = CompareConfig.from_dict(json.loads((out / "config.json").read_text()))  # as `--resume` reads it
    res = compare(cfg, out=out, progress=False, log=logs.append)

    assert f"resuming {out}" in logs
    assert [m for m in logs if m.endswith("training ...")] == ["[gnn_color seed 1] training ..."]
    assert sum("already finished" in m for m in logs) == 3
    probe = res["arms"]["linear_probe"]["summary"]
    assert probe["accuracy_mean"] == pytest.approx(0.625) and probe["accuracy_std"] == pytest.approx(
        0.25 / 2**0.5
    )
    assert probe["macro_f1_mean"] == pytest.approx(0.3125) and probe["trainable_params"] == 1290
    assert res["arms"]["gnn_color"]["status"] == "ok"
    assert res["arms"]["gnn_color"]["seeds"]["0"]["test"]["accuracy"] == 0.25
    assert json.loads((out / "cells" / "gnn_color-seed1.json").read_text())["status"] == "ok"
    for name, content in before.items():  # finished cells are read, never rewritten
        assert (out / "cells" / name).read_bytes() == content, name
    assert json.loads((out / "config.json").read_text()) == _old_config_json()


def test_a_failing_arm_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    """A new arm is one function + one registry line; one that raises fails alone."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    register_arm = compare_module.register_arm

    @register_arm("majority", title="M. majority class of the train split")
    def majority(bench, seed):
        import torch

        d = bench.data
        winner = int(np.bincount(d.targets[d.train]).argmax())
        preds = torch.full((len(d.test),), winner)
        model = torch.nn.Linear(1, 1)
        return compare_module.result_cell(
            bench, model, {"train_acc": [0.1]}, preds, train_time=0.0, speed=1.0
        )

    @register_arm("boom", title="X. always fails")
    def boom(bench, seed):
        raise RuntimeError("simulated failure")

    assert compare_module.ARMS[-2:] == ("majority", "boom")
    res = compare(
        _tiny(seeds=(0,), arms=("majority", "boom")),
        out=tmp_path / "r",
        progress=False,
        log=lambda m: None,
    )
    assert res["arms"]["majority"]["status"] == "ok"
    d_test = res["data"]["split"]["test"]
    assert res["arms"]["majority"]["seeds"]["0"]["test"]["n"] == d_test
    assert res["arms"]["majority"]["summary"]["trainable_params"] == 2
    assert res["arms"]["boom"]["status"] == "failed"
    assert "simulated failure" in res["arms"]["boom"]["errors"][0]
    table = summary_table(res["arms"])
    assert "| M. majority class of the train split |" in table
    assert "failed: RuntimeError: simulated failure" in table


def test_a_folder_with_another_configuration_is_refused(finished):
    out, _, _ = finished
    with pytest.raises(ValueError, match="another configuration"):
        compare(_tiny(n_segments=13), out=out, progress=False, log=lambda m: None)


def test_two_runs_never_share_a_folder(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / ".lock").write_text(str(holder.pid))
        with pytest.raises(RuntimeError, match=f"pid {holder.pid}"):
            compare(_tiny(), out=out, progress=False, log=lambda m: None)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "config.json").exists()  # refused before writing anything


def test_device_cuda_without_a_gpu_fails_before_any_work(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False"):
        compare(_tiny(device="cuda"), out=tmp_path / "r", log=lambda m: None)
    assert not (tmp_path / "r").exists()


def test_a_corrupt_cell_stops_the_resume_before_any_work(finished, tmp_path):
    out, _, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cell = copy / "cells" / "gnn_cnn-seed1.json"
    cell.write_text(cell.read_text()[:100])
    logs = []
    with pytest.raises(
        ValueError, match=rf"{cell}' is not valid JSON .*delete {cell} to recompute that cell"
    ):
        compare(_tiny(), out=copy, progress=False, log=logs.append)
    assert not any("training" in m for m in logs)


def _write_photos(root, rng, n=6):
    from cnn import write_image

    for cls in ("round", "square"):
        for i in range(n):
            write_image(root / cls / f"{i}.png", rng.integers(0, 255, (20, 20, 3), np.uint8))


def test_changed_data_is_refused_on_resume(tmp_path, monkeypatch):
    """Same file names, new pixels: the old cells were computed on other data, so the run is refused."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @compare_module.register_arm("majority", title="M. majority class of the train split")
    def majority(bench, seed):
        import torch

        d = bench.data
        preds = torch.full((len(d.test),), int(np.bincount(d.targets[d.train]).argmax()))
        return compare_module.result_cell(
            bench, torch.nn.Linear(1, 1), {"train_acc": [0.1]}, preds, train_time=0.0, speed=1.0
        )

    photos, out = tmp_path / "photos", tmp_path / "run"
    _write_photos(photos, np.random.default_rng(0))
    cfg = _tiny(
        data=str(photos), seeds=(0,), arms=("majority",), max_per_class=None, image_size=16, n_segments=4
    )
    compare(cfg, out=out, progress=False, log=lambda m: None)
    stored = json.loads((out / "data.json").read_text())
    assert stored["n_images"] == 12 and stored["classes"] == ["round", "square"]
    logs = []
    compare(cfg, out=out, progress=False, log=logs.append)  # unchanged data: resumes
    assert "[majority seed 0] already finished: reused" in logs
    _write_photos(photos, np.random.default_rng(1))  # same names, new pixels
    with pytest.raises(
        ValueError, match="same images and labels counts, but the pixels or labels changed.*new run"
    ):
        compare(cfg, out=out, progress=False, log=lambda m: None)
    _write_photos(photos, np.random.default_rng(1), n=7)  # images added
    with pytest.raises(
        ValueError, match=r"images: 12 then, 14 now; images per class: \[6, 6\] then, \[7, 7\]"
    ):
        compare(cfg, out=out, progress=False, log=lambda m: None)
    assert json.loads((out / "data.json").read_text()) == stored  # the record of the old data is kept


def test_config_is_validated_before_any_work():
    with pytest.raises(
        ValueError, match="unknown or empty; choose from linear_probe, finetune, gnn_cnn, gnn_color"
    ):
        CompareConfig(arms=("linear_probe", "svm"))
    with pytest.raises(ValueError, match="seeds is empty"):
        CompareConfig(seeds=())
    with pytest.raises(ValueError, match="epochs_gnn must be a positive int"):
        CompareConfig(epochs_gnn=0)
    with pytest.raises(ValueError, match=r"is neither a dataset name \(cats-vs-dogs, cifar10"):
        compare(CompareConfig(data="no/such/folder"), out="unused", log=lambda m: None)
    with pytest.raises(ValueError, match=r"gnn='bogus' \(--gnn\) is not a known graph convolution"):
        compare(CompareConfig(data="digits", gnn="bogus"), out="unused", log=lambda m: None)
    with pytest.raises(ValueError, match=r"weights='no.pth' \(--weights\): no such file"):
        compare(CompareConfig(data="digits", weights="no.pth"), out="unused", log=lambda m: None)
    with pytest.raises(ValueError, match=r"image_size=8 \(--image-size\) is too small"):
        CompareConfig(image_size=8)
    with pytest.raises(ValueError, match=r"n_segments=75 \(--n-segments\) does not fit"):
        CompareConfig(image_size=16)
    with pytest.raises(ValueError, match=r"device='tpu' \(--device\) is not understood"):
        CompareConfig(device="tpu")
    with pytest.raises(ValueError, match="unknown backbone"):
        compare(CompareConfig(data="digits", backbone="resnet19"), out="unused", log=lambda m: None)
    cfg = CompareConfig(seeds=(3, 4))
    assert CompareConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"seeds": ("a",)}, r"seeds=\['a'\] \(--seeds\): 'a' \(str\) is not a seed"),
        ({"seeds": (-1,)}, r"seeds=\[-1\] \(--seeds\)"),
        ({"split_seed": "x"}, r"split_seed must be an int >= 0"),
        ({"val": 0.6, "test": 0.6}, r"val=0.6 \+ test=0.6 = 1.2 leaves nothing to train on"),
        ({"val": 0.0}, r"val=0.0 must be a fraction between 0 and 1"),
        ({"test": float("nan")}, r"test=nan must be a fraction"),
        ({"n_explain": -1}, r"n_explain must be a positive int, got -1"),
        ({"lr_gnn": -1.0}, r"lr_gnn must be a positive finite number \(e.g. 1e-3\), got -1.0"),
        ({"lr_probe": 0}, r"lr_probe must be a positive finite number"),
        ({"hidden": 0}, r"hidden must be a positive int, got 0"),
        ({"layers": 0}, r"layers must be a positive int, got 0"),
        ({"batch_size": True}, r"batch_size must be a positive int \(--batch-size\), got True"),
        ({"compactness": -1.0}, r"compactness must be a positive finite number"),
        ({"trainable_blocks": -2}, r"trainable_blocks=-2 \(--blocks\) must be a positive int"),
        (
            {"trainable_blocks": 2},
            r"trainable_blocks=2 \(--blocks\) applies only with strategy='fine_tuning'",
        ),
        ({"trainable_blocks": 2, "strategy": "full"}, r"applies only with .*got strategy='full'"),
    ],
)
def test_config_fields_are_checked_with_their_flag(kw, match):
    with pytest.raises(ValueError, match=match):
        CompareConfig(**kw)


def test_every_arm_scores_its_explanations_and_the_report_names_the_most_faithful(finished):
    out, res, _ = finished
    for arm, entry in res["arms"].items():
        f = entry["faithfulness"]
        assert f["n"] == 2 * 4, arm  # 4 explained test images x 2 seeds (quick_config)
        for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
            assert 0.0 <= f[f"{key}_mean"] <= 1.0, (arm, key)
        cell = json.loads((out / "cells" / f"{arm}-seed0.json").read_text())["faithfulness"]
        assert len(cell["deletion_auc"]) == 4 and len(cell["curves"]["deletion"]) == cell["steps"] + 1
    assert res["arms"]["finetune"]["faithfulness"]["method"] == "Grad-CAM, deepest stage"
    assert res["arms"]["gnn_color"]["faithfulness"]["method"] == "node saliency on superpixels"
    report = (out / "report.md").read_text()
    assert "## Explanation faithfulness" in report and "Most faithful explanations by deletion: **" in report


@pytest.mark.parametrize("arm", ["linear_probe", "finetune", "gnn_cnn", "gnn_color", "e2e"])
def test_explain_an_image_with_a_compared_arm(finished, arm, tmp_path, capsys):
    from bridge.cli import main

    out, res, _ = finished
    code = main(["explain", "coffee", "--model", str(out / "models" / f"{arm}.pth"), "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = printed.splitlines()
    probs = [float(line.split()[0]) for line in lines[:5]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    assert f"{arm} (" in printed and "deletion AUC" in printed and "insertion AUC" in printed
    assert (tmp_path / f"explain_{arm}.png").stat().st_size > 0


def test_explain_model_outside_a_run_folder_is_refused(tmp_path, capsys):
    from bridge.cli import main

    stray = tmp_path / "models" / "finetune.pth"
    stray.parent.mkdir()
    stray.write_bytes(b"")
    assert main(["explain", "coffee", "--model", str(stray), "--out", str(tmp_path / "o")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_report_says_what_arm_b_did_without_contradiction(finished):
    out, res, _ = finished
    report = (out / "report.md").read_text()
    strategy = res["arms"]["finetune"]["seeds"]["0"]["strategy"]
    line = next(line for line in report.splitlines() if line.startswith("Arm B trained"))
    assert f"the last {strategy['trainable_blocks']} block(s)" in line
    if "advised feature extraction" in strategy["reason"]:  # 56 tiny digits: choose_strategy says so
        assert "that is arm A, so arm B fine-tunes the smallest part" in line


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"segmentation": "watershed"}, r"segmentation='watershed' \(--segmentation\) is not a segmentation"),
        ({"graph": "pixels"}, r"graph='pixels' \(--graph\); use 'superpixels' or 'patches'"),
        ({"dynamic_knn": 1}, r"dynamic_knn must be True or False"),
        ({"gnn_regularisation": ()}, r"gnn_regularisation=\(\): give a non-empty tuple"),
        ({"gnn_regularisation": ((1.0, 0.0),)}, r"0 <= dropout < 1"),
        ({"probe_weight_decays": (-1.0,)}, r"probe_weight_decays=\(-1.0,\): give a non-empty tuple"),
        ({"lightning_strategy": "ddpp"}, r"'ddpp' \(--strategy\) is not a Lightning strategy"),
    ],
)
def test_graph_and_parallel_fields_are_checked_with_their_flag(kw, match):
    with pytest.raises(ValueError, match=match):
        CompareConfig(**kw)


def test_an_old_config_reads_with_what_those_runs_did():
    cfg = CompareConfig.from_dict(_old_config_json())
    assert cfg.gnn_regularisation == ((0.0, 0.0),) and cfg.probe_weight_decays == (0.0,)
    assert cfg.segmentation == "slic" and cfg.device == "cpu"
    # and a new one round-trips with its candidates and back-end
    new = CompareConfig(data="digits", gnn_regularisation=((0.1, 0.0), (0.5, 1e-4)), segmentation="grid")
    assert CompareConfig.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    assert CompareConfig().segmentation == "slic_torch" and CompareConfig().device == "auto"
    # a block count without strategy='fine_tuning' was accepted (and ignored) before 2026-12-07
    ignored = CompareConfig.from_dict({**_old_config_json(), "strategy": None, "trainable_blocks": 3})
    assert ignored.trainable_blocks is None and ignored.strategy is None
    kept = CompareConfig.from_dict({**_old_config_json(), "strategy": "fine_tuning", "trainable_blocks": 3})
    assert kept.trainable_blocks == 3


def test_select_on_val_keeps_the_candidate_with_the_lowest_validation_loss():
    from types import SimpleNamespace

    from bridge.compare.arms import select_on_val

    curves = {0.0: [0.9, 0.7, 0.8], 0.5: [0.8, 0.6, 0.65], 0.9: [0.7, 0.75, 0.9]}

    def train(c):
        losses = curves[c["dropout"]]
        return f"model-{c['dropout']}", SimpleNamespace(val_loss=losses, val_acc=[0.5, 0.6, 0.7])

    (model, _), selection = select_on_val([{"dropout": p} for p in curves], train)
    assert model == "model-0.5" and selection["chosen"] == {"dropout": 0.5}
    assert [t["best_epoch"] for t in selection["tried"]] == [2, 2, 1]
    assert [t["val_loss"] for t in selection["tried"]] == [0.7, 0.6, 0.7]


def test_report_and_results_pair_e_with_b_and_c_with_a(finished):
    out, res, _ = finished
    names = [p["name"] for p in res["paired"]]
    assert "C - A" in names and "E - B" in names
    for p in res["paired"]:
        assert p["low"] <= p["diff"] <= p["high"]
        assert len(p["mcnemar"]) == 2 and all(0.0 <= m["p"] <= 1.0 for m in p["mcnemar"])
    report = (out / "report.md").read_text()
    assert "- E - B: " in report and "- C - A: " in report
    assert "Regularisation chosen on validation" in report
    e = res["arms"]["e2e"]["seeds"]["0"]
    assert e["strategy"] == res["arms"]["finetune"]["seeds"]["0"]["strategy"]  # the same blocks train


def test_one_backbone_pass_gives_arm_c_its_node_features_and_u():
    from bridge.compare.workbench import FrozenView
    from bridge.convert import ImageToGraph
    from cnn.backbones import create_backbone
    from cnn.transforms import normalize_images

    torch.manual_seed(0)
    backbone = create_backbone("resnet18", weights=None).eval()
    view = FrozenView(backbone, 48)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    conv = ImageToGraph(n_segments=9, backbone=view, stages=(-1,))
    view.take()
    graphs = conv.batch_tensor(torch.from_numpy(imgs))
    u = view.take()
    with torch.no_grad():
        expected = backbone.embed(normalize_images(imgs, backbone.cfg.mean, backbone.cfg.std))
    torch.testing.assert_close(u, expected, rtol=1e-4, atol=1e-4)
    assert len(graphs) == 3 and view.take().numel() == 0  # take() forgets what it returned
    assert conv.config()["cnn"]["input_size"] == 48  # the maps come from the working size, not 224
    assert not backbone.training and not view.train().training  # a frozen view never trains


def test_report_titles_name_the_patch_graph_when_it_is_used():
    from bridge.compare.report import summarise

    titles = {a: e["title"] for a, e in summarise(CompareConfig(data="digits", graph="patches"), {}).items()}
    assert "patches" in titles["gnn_cnn"] and "superpixels" not in titles["gnn_cnn"]
    assert "patches" in titles["e2e"] and "superpixels" in titles["gnn_color"]  # D keeps superpixels
    plain = summarise(CompareConfig(data="digits"), {})
    assert "superpixels" in plain["gnn_cnn"]["title"]


def test_finetune_arm_depends_only_on_its_seed(tmp_path):
    # B's head init, shuffling and augmentation are seeded in its own cell: random numbers drawn before
    # it (by other arms, by graph building) must not change its training, on the same machine and threads
    import random

    from bridge.segmentation import superpixels

    cfg = _tiny(arms=("finetune",), seeds=(0,))
    first = compare(cfg, out=tmp_path / "a", progress=False, log=lambda _: None)
    torch.rand(1000)
    np.random.rand(1000)  # noqa: NPY002 (the global generator is the point)
    random.random()
    superpixels(np.random.default_rng(1).random((32, 32, 3)).astype(np.float32), n_segments=12)
    second = compare(cfg, out=tmp_path / "b", progress=False, log=lambda _: None)
    one, two = (r["arms"]["finetune"]["seeds"]["0"] for r in (first, second))
    assert one["history"]["train_loss"] == two["history"]["train_loss"]
    assert one["history"]["val_loss"] == two["history"]["val_loss"]
    assert one["test"] == two["test"]


def test_the_report_names_the_device_each_speed_was_measured_on(finished):
    out, res, _ = finished
    assert res["config"]["device"] == "auto"
    for arm, entry in res["arms"].items():
        assert entry["seeds"]["0"]["device"] == "cpu", arm  # "auto" resolved: no GPU here
    report = (out / "report.md").read_text()
    assert "threads, device cpu; the fastest" in report and "device auto" not in report


def test_a_loaded_explainer_runs_on_the_benchs_device(finished, monkeypatch):
    """Every model :func:`load_explainer` rebuilds is on ``bench.device``, as the frozen backbone is (the
    'meta' device stands for a GPU: anything but the CPU); arm C's ``u`` is computed there too."""
    from bridge.compare import explainers
    from bridge.compare.rundir import RunFolder
    from bridge.compare.workbench import Workbench

    out, _, _ = finished
    folder = RunFolder(out)
    cfg, _ = folder.read_config()
    bench = Workbench(cfg, folder, log=lambda m: None, progress=False)
    bench.__dict__["device"] = torch.device("meta")
    built = {}

    def cnn(arm, model, *args):
        built[arm] = (model, None)

    def graph(arm, model, *args, global_features=None):
        built[arm] = (model, global_features)

    monkeypatch.setattr(explainers, "cnn_explainer", cnn)
    monkeypatch.setattr(explainers, "graph_explainer", graph)
    for arm in ARMS:
        explainers.load_explainer(bench, folder.models_dir / f"{arm}.pth")
        model, global_features = built[arm]
        tensors = [*model.parameters(), *model.buffers()]
        assert {t.device.type for t in tensors} == {"meta"}, arm
    u = built["gnn_cnn"][1](bench.data.images[bench.data.test[:2]])
    assert u.device.type == "meta" and u.shape == (2, bench.frozen.num_features)


def test_arm_c_explainer_takes_u_from_the_conversions_backbone_pass(finished, monkeypatch):
    """The GNN explainer of arm C scores perturbed images with one backbone pass per batch: ``u`` comes
    from the embeddings the frozen view kept while converting them (the values of a pass of their own);
    rows left from elsewhere are dropped and ``u`` computed again."""
    from bridge.compare.explainers import graph_explainer
    from bridge.compare.rundir import RunFolder
    from bridge.compare.workbench import Workbench
    from gnn.models import GraphClassifier

    out, _, _ = finished
    folder = RunFolder(out)
    cfg, _ = folder.read_config()
    bench = Workbench(cfg, folder, log=lambda m: None, progress=False)
    imgs = bench.data.images[bench.data.test[:3]]
    conv = bench.converter(True, keep_segments=True)
    passes = []
    frozen = bench.frozen
    real_embed = frozen.embed
    monkeypatch.setattr(frozen, "embed", lambda x: passes.append(len(x)) or real_embed(x))
    want = bench.global_features(imgs)
    passes.clear()
    bench.frozen_view.take()
    graphs = conv.batch(list(imgs))
    u = bench.conversion_embeddings(imgs)
    torch.testing.assert_close(u, want, rtol=1e-5, atol=1e-6)
    assert passes == [] and bench.frozen_view.take().numel() == 0
    bench.frozen_view.embeddings.append(torch.zeros(1, u.shape[1]))  # a row left from another call
    conv.batch(list(imgs))
    torch.testing.assert_close(bench.conversion_embeddings(imgs), want, rtol=1e-5, atol=1e-6)
    assert passes == [3] and bench.frozen_view.take().numel() == 0
    model = GraphClassifier(graphs[0].x.shape[1], 2, hidden=8, global_channels=u.shape[1]).eval()
    gs = bench.graphs(True)
    explainer = graph_explainer(
        "gnn_cnn", model, conv, gs.mean, gs.std, global_features=bench.conversion_embeddings
    )
    passes.clear()
    bench.frozen_view.take()
    scorer = explainer.scorers(imgs[:1])[0]
    probs = scorer(np.stack([imgs[0]] * 4))
    assert probs.shape == (4, 2) and passes == []
    plain = graph_explainer("gnn_cnn", model, conv, gs.mean, gs.std, global_features=bench.global_features)
    torch.testing.assert_close(plain.scorers(imgs[:1])[0](np.stack([imgs[0]] * 4)), probs)
    assert passes == [1, 4]  # a pass of its own for the intact image and for the scored batch
