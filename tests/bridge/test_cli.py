import subprocess
import sys

import numpy as np
import pytest

from bridge.cli import build_parser, main

COMMANDS = ["compare", "finetune", "train-gnn", "graphs", "explain", "show"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: pixgraph " + command in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)


def test_importing_the_cli_loads_no_heavy_package():
    code = "import sys, bridge.cli; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("lightning", "matplotlib", "torch_geometric", "bridge.compare"):
        assert f"'{heavy}'" not in out, heavy


def test_compare_help_lists_the_registry(capsys, monkeypatch):
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


def test_unknown_arm_is_refused_with_the_known_ones(capsys):
    _one_line_error(
        capsys,
        ["compare", "--data", "digits", "--arms", "linear_probe,svm"],
        "choose from linear_probe, finetune, gnn_cnn, gnn_color",
    )


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("pixgraph: error:")
    assert match in err, err


def test_bad_arguments_give_one_line_and_exit_2(tmp_path, capsys):
    _one_line_error(capsys, ["compare", "--data", str(tmp_path / "missing")], "is not a folder")
    one = tmp_path / "one"
    (one / "cats").mkdir(parents=True)
    _one_line_error(capsys, ["compare", "--data", str(one)], "1 class folder(s) ['cats']")
    _one_line_error(
        capsys, ["compare", "--data", "digits", "--backbone", "resnet19"], "unknown backbone 'resnet19'"
    )
    _one_line_error(capsys, ["compare", "--resume", str(tmp_path)], "no config.json")
    _one_line_error(capsys, ["show", str(tmp_path / "nope.png")], "does not exist")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["compare", "--seeds", "a,b"])
    assert exc.value.code == 2


@pytest.mark.parametrize("method", ["slic", "slic_torch"])
def test_show_draws_a_graph(tmp_path, capsys, method):
    png, graphml = tmp_path / "g.png", tmp_path / "g.graphml"
    argv = ["show", "coffee", "--n-segments", "40", "--method", method, "--out", str(png)]
    assert main([*argv, "--graphml", str(graphml)]) == 0
    assert png.stat().st_size > 0 and graphml.stat().st_size > 0
    out = capsys.readouterr().out
    assert "nodes" in out


def test_explain_prints_top5_and_writes_pictures(tmp_path, capsys):
    assert main(["explain", "chelsea", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("cat" in line for line in lines[:3])
    assert (tmp_path / "grad_cam.png").exists() and (tmp_path / "feature_maps.png").exists()


def test_graphs_builds_then_reuses(tmp_path, capsys):
    argv = [
        "graphs",
        "--data",
        "digits",
        "--max-per-class",
        "3",
        "--n-segments",
        "10",
        "--cache",
        str(tmp_path),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "30 graphs (built" in capsys.readouterr().out
    assert main(argv) == 0
    assert "30 graphs (reused" in capsys.readouterr().out


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
    argv = [
        "compare",
        "--data",
        str(tmp_path / "photos"),
        "--quick",
        "--seeds",
        "0",
        "--image-size",
        "48",
        "--n-segments",
        "16",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| A. linear probe" in printed and "report:" in printed
    assert (out / "report.md").exists() and (out / "results.json").exists()
