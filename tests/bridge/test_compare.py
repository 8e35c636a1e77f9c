import importlib
import json
import subprocess
import sys

import pytest

from bridge.compare import ARMS, CompareConfig, compare, quick_config, summary_table

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
    # the frozen arms train a small part of what they run; the colour-only GNN has no backbone
    a, d = res["arms"]["linear_probe"]["summary"], res["arms"]["gnn_color"]["summary"]
    assert a["trainable_params"] < a["total_params"] / 10
    assert d["trainable_params"] == d["total_params"]


def test_run_folder_has_report_results_and_pictures(finished):
    out, res, _ = finished
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["seeds"] == [0, 1] and saved["data"]["n_images"] == 80
    assert set(saved["versions"]) >= {"torch", "torch-geometric", "timm", "python"}
    report = (out / "report.md").read_text()
    for arm in ARMS:
        assert compare_module.ARM_TITLES[arm] in report
    assert "## Configuration" in report and "## Versions" in report
    for fig in (
        "accuracy_curves.png",
        "confusion_matrices.png",
        "predictions_finetune.png",
        "predictions_gnn_cnn.png",
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
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "cells" / "gnn_color-seed1.json").unlink()
    (copy / "cells" / "linear_probe-seed1.json").unlink()
    logs = []
    compare(_tiny(), out=copy, progress=False, log=logs.append)
    trained = [m for m in logs if m.endswith("training ...")]
    assert sorted(trained) == ["[gnn_color seed 1] training ...", "[linear_probe seed 1] training ..."]


def test_a_failing_arm_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    def boom(self, seed):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(compare_module._Comparison, "_run_gnn_color", boom)
    res = compare(
        _tiny(seeds=(0,), arms=("linear_probe", "gnn_color")),
        out=tmp_path / "r",
        progress=False,
        log=lambda m: None,
    )
    assert res["arms"]["linear_probe"]["status"] == "ok"
    assert res["arms"]["gnn_color"]["status"] == "failed"
    assert "simulated failure" in res["arms"]["gnn_color"]["errors"][0]
    table = summary_table(res["arms"])
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
    assert compare_module.default_out_dir("digits", tmp_path) != compare_module.default_out_dir(
        "elpv", tmp_path
    )


def test_config_is_validated_before_any_work():
    with pytest.raises(ValueError, match="unknown or empty"):
        CompareConfig(arms=("linear_probe", "svm"))
    with pytest.raises(ValueError, match="seeds is empty"):
        CompareConfig(seeds=())
    with pytest.raises(ValueError, match="epochs_gnn must be a positive int"):
        CompareConfig(epochs_gnn=0)
    with pytest.raises(ValueError, match="neither a packaged dataset"):
        compare(CompareConfig(data="no/such/folder"), out="unused", log=lambda m: None)
    with pytest.raises(ValueError, match="unknown backbone"):
        compare(CompareConfig(data="digits", backbone="resnet19"), out="unused", log=lambda m: None)
    cfg = CompareConfig(seeds=(3, 4))
    assert CompareConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
