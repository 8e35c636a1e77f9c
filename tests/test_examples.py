"""Every example runs with --quick and prints/returns what it promises."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "strategy",
    ["feature_extraction", pytest.param("fine_tuning", marks=pytest.mark.slow)],  # ~30 s: `make test-all`
)
def test_transfer_learning_example(tmp_path, strategy, capsys):
    result = _load("cnn_transfer_learning").main(
        ["--quick", "--data", "digits", "--strategy", strategy, "--out", str(tmp_path)]
    )
    assert 0.0 <= result["accuracy"] <= 1.0 and result["n"] > 0
    out = capsys.readouterr().out
    assert "first batch: images (32, 3, 96, 96)" in out
    for name in ("first_batch.png", "accuracy.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert list(tmp_path.glob("*.pth")), "the trained model was not saved"


def test_explain_example(tmp_path):
    top = _load("cnn_explain").main(["--quick", "--out", str(tmp_path)])
    assert any("cat" in name for name, _ in top[:3])
    assert (tmp_path / "grad_cam.png").exists() and (tmp_path / "feature_maps.png").exists()


def test_image_to_graph_example(tmp_path, capsys):
    result = _load("bridge_image_to_graph").main(["--quick", "--n-segments", "30", "--out", str(tmp_path)])
    assert result["nodes"] > 1 and result["edges"] >= result["nodes"] - 1
    assert "symmetric: True" in capsys.readouterr().out
    assert (tmp_path / "graph.png").exists() and (tmp_path / "graph.graphml").exists()


def test_convert_dataset_example(tmp_path, capsys):
    result = _load("bridge_convert_dataset").main(["--quick", "--cache", str(tmp_path), "--workers", "0"])
    assert result["graphs"] == 100 and result["reused"] == 1.0
    out = capsys.readouterr().out
    assert "run 1: 100 graphs built" in out and "run 2: 100 graphs loaded from cache" in out


def test_convert_dataset_example_with_cnn_features(tmp_path, capsys):
    argv = ["--quick", "--cnn", "--cache", str(tmp_path), "--workers", "0"]
    result = _load("bridge_convert_dataset").main(argv)
    assert result["graphs"] == 100 and result["reused"] == 1.0
    # colour 3 + centroid 2 + the last 3 stages of the (folded) efficientnet_lite0: 40 + 112 + 320
    assert "node features: 477" in capsys.readouterr().out


# -- options given explicitly win over --quick's smaller values ---------------------------------------


def test_transfer_learning_explicit_options_win_over_quick(tmp_path, capsys):
    argv = ["--quick", "--data", "digits", "--epochs", "2", "--max-per-class", "5", "--image-size", "64"]
    _load("cnn_transfer_learning").main([*argv, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "digits: 50 images" in out  # 5 per class, not --quick's 20
    assert "trained 2 epochs" in out  # not --quick's 1
    assert "first batch: images (30, 3, 64, 64)" in out  # not --quick's 96 px


def test_convert_dataset_explicit_options_win_over_quick(tmp_path, capsys):
    argv = [
        "--quick",
        "--max-per-class",
        "3",
        "--n-segments",
        "10",
        "--cache",
        str(tmp_path),
        "--workers",
        "0",
    ]
    result = _load("bridge_convert_dataset").main(argv)
    assert result["graphs"] == 30  # 3 per class, not --quick's 10
    assert result["mean_nodes"] < 12  # about 10 superpixels asked, not --quick's 20
    assert "run 1: 30 graphs built" in capsys.readouterr().out
