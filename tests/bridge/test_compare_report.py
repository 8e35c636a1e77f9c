"""bridge.compare: arm B's plan, the configuration checks and report.md, on configurations and fake cells
(no training)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bridge.compare import cell as cell_module
from bridge.compare.arms import fine_tuning_plan
from bridge.compare.config import CompareConfig, quick_config
from bridge.compare.report import paired_differences, summarise, write_report
from bridge.compare.run import check_runnable, compare
from bridge.compare.rundir import RunFolder


def _plan_bench(cfg: CompareConfig, n_train: int) -> SimpleNamespace:
    return SimpleNamespace(cfg=cfg, data=SimpleNamespace(train=np.arange(n_train)))


def _report(tmp_path, cfg, arms, pairs=None, data=None) -> str:
    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir(exist_ok=True)
    write_report(folder, cfg, data, arms, [], {}, pairs)
    return (folder.root / "report.md").read_text()


def _cell(accuracy: float, preds: list[int], val_acc: list[float], **extra) -> dict:
    """A finished cell with the keys of ``result_cell`` (validation history of three epochs)."""
    return {
        "status": "ok",
        "test": {"accuracy": accuracy, "macro_f1": accuracy, "n": len(preds)},
        "test_preds": preds,
        "history": {"train_loss": [1.0, 0.8, 0.7], "val_loss": [0.9, 0.5, 0.7], "val_acc": val_acc},
        "train_time_s": 1.0,
        "images_per_s": 10.0,
        "trainable_params": 10,
        "total_params": 100,
        **extra,
    }


# -- dataset names in any case (arm B's similarity to ImageNet, elpv's licence) -------------------------


def test_a_dataset_name_in_capitals_is_that_dataset(tmp_path):
    upper = quick_config(data="DIGITS")
    assert upper.data == "digits" and upper == quick_config(data="digits")
    # digits is not like ImageNet: 112 images, low similarity -> fine-tuning of 3 blocks, as for "digits"
    assert fine_tuning_plan(_plan_bench(upper, 112))[:2] == ("fine_tuning", 3)
    assert CompareConfig.from_dict({**upper.to_dict(), "data": "Digits"}) == upper  # a stored config.json
    report = _report(tmp_path, CompareConfig(data="ELPV", arms=("linear_probe",)), {})
    assert "licensed CC-BY-NC-SA-4.0" in report
    folder = tmp_path / "Photos"  # a folder keeps its name as given
    assert CompareConfig(data=str(folder)).data == str(folder)


# -- arm B with strategy "full" ------------------------------------------------------------------------


def test_full_fine_tuning_trains_every_layer_and_the_report_says_so(tmp_path):
    user = fine_tuning_plan(_plan_bench(quick_config(data="digits", strategy="full"), 112))
    assert user == ("full", None, "chosen by the user")
    auto = fine_tuning_plan(_plan_bench(quick_config(data="mnist", similarity="low"), 42_000))
    assert auto[:2] == ("full", None) and "cnn.choose_strategy" in auto[2]
    assert fine_tuning_plan(_plan_bench(quick_config(data="digits", strategy="fine_tuning"), 112))[1] == 2
    cfg = quick_config(data="digits", strategy="full", arms=("finetune",), seeds=(0,))
    for stored_blocks in (None, 2):  # 2: what a cell of an earlier version stored for "full"
        cell = _cell(0.5, [0, 1], [0.5, 0.5, 0.5])
        cell["strategy"] = {"name": "full", "trainable_blocks": stored_blocks, "reason": "chosen by the user"}
        report = _report(tmp_path, cfg, summarise(cfg, {("finetune", 0): cell}))
        line = next(line for line in report.splitlines() if line.startswith("Arm B trained"))
        assert line == "Arm B trained every layer of the backbone and the head (full): chosen by the user."


# -- configuration checks ------------------------------------------------------------------------------


def test_one_named_gpu_with_several_devices_is_refused():
    with pytest.raises(ValueError, match=r"device='cuda:1' \(--device\) names one GPU but devices=2"):
        CompareConfig(device="cuda:1", devices=2)
    with pytest.raises(ValueError, match=r"use --device cuda --devices 2 .* or --device cuda:1 --devices 1"):
        CompareConfig(device="cuda:1", devices=2)
    assert CompareConfig(device="cuda", devices=2).devices == 2
    assert CompareConfig(device="cuda:1", devices=1).device == "cuda:1"


def test_a_patch_graph_of_one_patch_is_refused_before_any_work(tmp_path):
    # resnet18's second-deepest stage has stride 16: a 16 x 16 view is one patch, so k = 0 neighbours
    cfg = quick_config(data="digits", backbone="resnet18", graph="patches", image_size=16, n_segments=16)
    with pytest.raises(ValueError, match=r"graph='patches' \(--graph\) with image_size=16 \(--image-size\)"):
        check_runnable(cfg)
    fix = r"gives 1 patch .* use --image-size \d+ or more, or --graph superpixels"
    with pytest.raises(ValueError, match=fix):
        compare(cfg, out=tmp_path / "r", log=lambda m: None)
    assert not (tmp_path / "r").exists()
    check_runnable(quick_config(data="digits", backbone="resnet18", graph="patches", image_size=32))
    # without arms C and E the patch graph is never built: nothing to refuse
    check_runnable(
        quick_config(
            data="digits",
            backbone="resnet18",
            graph="patches",
            image_size=16,
            n_segments=16,
            arms=("linear_probe", "gnn_color"),
        )
    )


# -- report.md -----------------------------------------------------------------------------------------


def _faithfulness(images: int) -> dict:
    auc = [0.5] * images
    return {
        "method": "Grad-CAM, deepest stage",
        "fill": "blur",
        "steps": 4,
        "images": images,
        "seconds": 1.0,
        "deletion_auc": auc,
        "insertion_auc": auc,
        "random_deletion_auc": auc,
        "random_insertion_auc": auc,
    }


def test_the_report_counts_the_test_images_actually_explained(tmp_path):
    cfg = quick_config(data="digits", arms=("linear_probe",), seeds=(0,), faithfulness_images=32)
    cell = _cell(0.5, [0, 1, 0], [0.5, 0.5, 0.5], faithfulness=_faithfulness(3))  # a test split of 3
    report = _report(tmp_path, cfg, summarise(cfg, {("linear_probe", 0): cell}))
    assert "on the first 3 test images" in report and "first 32 test images" not in report


def test_device_record_names_the_gpu(monkeypatch):
    assert cell_module.device_record(torch.device("cpu")) == {"device": "cpu"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Fake GPU {index}")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    cuda = cell_module.device_record(torch.device("cuda"))
    assert cuda == {"device": "cuda:0", "device_name": "Fake GPU 0"}
    assert cell_module.device_record(torch.device("cuda:1"))["device_name"] == "Fake GPU 1"


def test_the_report_names_the_device_the_speeds_were_measured_on(tmp_path):
    cfg = quick_config(data="digits", arms=("linear_probe", "finetune"), seeds=(0,))  # device "auto"
    gpu = {"device": "cuda:0", "device_name": "Fake GPU"}
    cells = {(a, 0): _cell(0.5, [0, 1], [0.5, 0.5, 0.5], **gpu) for a in cfg.arms}
    report = _report(tmp_path, cfg, summarise(cfg, cells))
    assert "threads, device cuda:0 (Fake GPU); the fastest" in report and "device auto" not in report
    # cells of an older version did not record it: the configured device, said to be only that
    old = {(a, 0): _cell(0.5, [0, 1], [0.5, 0.5, 0.5]) for a in cfg.arms}
    report = _report(tmp_path, cfg, summarise(cfg, old))
    assert "device auto as configured (the device used was not recorded)" in report
    mixed = {**old, ("finetune", 0): cells[("finetune", 0)]}
    report = _report(tmp_path, cfg, summarise(cfg, mixed))
    assert "for linear_probe; cuda:0 (Fake GPU) for finetune" in report


def test_the_best_graph_and_cnn_arms_are_paired_by_validation_accuracy_not_test(tmp_path):
    cfg = CompareConfig(data="digits", seeds=(0,), arms=("linear_probe", "finetune", "gnn_cnn", "gnn_color"))
    labels = np.array([0, 1] * 5)
    right = labels.tolist()

    def preds(n_right: int) -> list[int]:
        return right[:n_right] + [1 - y for y in right[n_right:]]

    # the kept epoch is the second (lowest val loss); by test accuracy D and B would be paired
    cells = {
        ("linear_probe", 0): _cell(0.5, preds(5), [0.1, 0.70, 0.95]),
        ("finetune", 0): _cell(0.8, preds(8), [0.1, 0.80, 0.2]),
        ("gnn_cnn", 0): _cell(0.6, preds(6), [0.1, 0.90, 0.1]),
        ("gnn_color", 0): _cell(1.0, preds(10), [0.99, 0.50, 0.99]),
    }
    arms = summarise(cfg, cells)
    pairs = paired_differences(cfg, cells, labels, arms)
    assert [p["name"] for p in pairs] == ["C - A", "C - B"]
    assert pairs[1]["val_accuracy"] == {"gnn_cnn": 0.9, "finetune": 0.8} and "val_accuracy" not in pairs[0]
    assert pairs[1]["diff"] == pytest.approx(-0.2)
    report = _report(tmp_path, cfg, arms, pairs)
    assert "picked by mean validation accuracy over seeds" in report and "never by test accuracy" in report
    assert "- C - B: " in report
    picked = "(best graph arm vs best CNN arm by mean validation accuracy: gnn_cnn 0.900, finetune 0.800)"
    assert picked in report


# -- inference speed against the frozen backbone timed in the same rounds ------------------------------


def test_speeds_over_the_backbone_timed_beside_them_give_c_over_b(tmp_path):
    """B was timed in a fast minute, C in a slow one: their img/s say 0.4x, their ratios to the
    backbone timed in the same rounds 0.8x, and the report states the latter: each cell's median
    ratio, averaged over the seeds."""
    from bridge.compare.report import speed_line

    cfg = quick_config(data="digits", arms=("finetune", "gnn_cnn", "gnn_color"), seeds=(0, 1))
    cells = {}
    for seed in (0, 1):
        fast = {"images_per_s": 200.0, "backbone_images_per_s": 200.0, "vs_backbone": 1.0}
        cells[("finetune", seed)] = _cell(0.9, [0], [0.5] * 3, **fast)
        slow = {"images_per_s": 80.0, "backbone_images_per_s": 100.0, "vs_backbone": [0.7, 0.9][seed]}
        cells[("gnn_cnn", seed)] = _cell(0.9, [0], [0.5] * 3, **slow)
        d = {"images_per_s": 300.0, "backbone_images_per_s": 120.0, "vs_backbone": [3.0, 2.0][seed]}
        cells[("gnn_color", seed)] = _cell(0.8, [0], [0.5] * 3, **d)
    arms = summarise(cfg, cells)
    assert arms["gnn_cnn"]["summary"]["images_per_s"] / arms["finetune"]["summary"]["images_per_s"] == 0.4
    assert arms["finetune"]["summary"]["vs_backbone"] == 1.0
    assert arms["gnn_cnn"]["summary"]["vs_backbone"] == pytest.approx(0.8)  # the medians, not 80 / 100
    assert arms["gnn_color"]["summary"]["vs_backbone"] == pytest.approx(
        (3.0 + 2.0) / 2
    )  # per seed, then mean
    line = speed_line(arms)
    assert line == (
        "Inference over the frozen backbone timed in the same rounds: B 1.00x, C 0.80x, D 2.50x; C / B 0.80x"
    )
    report = _report(tmp_path, cfg, arms)
    assert line + "." in report.splitlines()
    assert (
        "the fastest of 5 rounds over up to 64 test images" in report and "median over its rounds" in report
    )


def test_cells_without_a_backbone_speed_give_no_ratio(tmp_path):
    """A run folder from before the backbone was timed beside each arm: no ratio, the old sentence."""
    from bridge.compare.report import speed_line

    cfg = quick_config(data="digits", arms=("finetune", "gnn_cnn"), seeds=(0, 1))
    cells = {(a, s): _cell(0.9, [0], [0.5] * 3) for a in cfg.arms for s in (0, 1)}
    cells[("gnn_cnn", 1)]["vs_backbone"] = 0.5  # one seed with it is not enough for a mean
    arms = summarise(cfg, cells)
    assert all("vs_backbone" not in e["summary"] for e in arms.values())
    assert speed_line(arms) is None
    report = _report(tmp_path, cfg, arms)
    assert "the fastest of 3 passes over up to 64 test images." in report and "same rounds" not in report
