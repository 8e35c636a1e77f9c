"""bridge.compare.registry: one function per arm, names in order, errors that list the known arms."""

import pytest

import bridge.compare as compare_pkg
from bridge.compare import registry
from bridge.compare.config import CompareConfig
from bridge.compare.registry import arm_titles, get_arm, list_arms, register_arm

BUILTIN = ("linear_probe", "finetune", "gnn_cnn", "gnn_color", "e2e")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Arms registered in a test disappear after it."""
    list_arms()  # built-ins loaded before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtin_arms_in_report_order():
    assert list_arms()[:5] == BUILTIN
    assert compare_pkg.ARMS[:5] == BUILTIN
    assert [t[:2] for t in arm_titles().values()][:4] == ["A.", "B.", "C.", "D."]
    spec = get_arm("gnn_cnn")
    assert spec.name == "gnn_cnn" and spec.run.__name__ == "gnn_cnn"


def test_unknown_arm_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="unknown arm 'svm'; known arms: linear_probe, finetune, gnn_cnn, gnn_color"
    ):
        get_arm("svm")
    with pytest.raises(
        ValueError, match=r"arms=\['svm'\]: unknown or empty; choose from linear_probe, finetune"
    ):
        CompareConfig(arms=("svm",))
    with pytest.raises(ValueError, match="duplicates"):
        CompareConfig(arms=("finetune", "finetune"))


def test_a_new_arm_is_one_function_and_one_line(scratch_registry):
    @register_arm("knn_probe", title="F. nearest neighbours")
    def knn_probe(bench, seed):
        return {"seed": seed}

    assert list_arms() == (*BUILTIN, "knn_probe")
    assert (
        compare_pkg.ARMS[-1] == "knn_probe" and compare_pkg.ARM_TITLES["knn_probe"] == "F. nearest neighbours"
    )
    assert get_arm("knn_probe").run(None, 7) == {"seed": 7}
    assert CompareConfig().arms == (*BUILTIN, "knn_probe")  # the default runs every registered arm
    assert register_arm("knn_probe", title="again")(knn_probe) is knn_probe  # same function: no-op


def test_register_arm_checks_its_arguments(scratch_registry):
    with pytest.raises(ValueError, match="arm name 'Bad-Name' must be lower-case snake_case"):
        register_arm("Bad-Name", title="x")
    with pytest.raises(TypeError, match="title must be a non-empty string"):
        register_arm("fine", title=" ")
    with pytest.raises(TypeError, match="decorates a function"):
        register_arm("fine", title="F")(42)
    with pytest.raises(ValueError, match="arm 'finetune' is already registered"):
        register_arm("finetune", title="B'")(lambda bench, seed: {})
    assert get_arm("finetune").title == "B. fine-tuned CNN (last blocks + head)"


def test_importing_the_registry_is_cheap():
    import subprocess
    import sys

    code = "import sys, bridge.compare.registry as r; r.list_arms(); print(sorted(m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("lightning", "matplotlib", "torch_geometric"):
        assert f"'{heavy}'" not in out, heavy
