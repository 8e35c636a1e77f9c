"""Tests for engine.metrics: lecture-notes accuracy, confusion matrix, macro-F1 equal to scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from engine.metrics import accuracy, classification_metrics, confusion_matrix, correct_count, macro_f1


def test_correct_count_is_torch_max_and_eq_sum():
    torch.manual_seed(0)
    outputs = torch.randn(50, 4)
    labels = torch.randint(0, 4, (50,))
    _, preds = torch.max(outputs, 1)
    expected = int(preds.eq(labels).sum())
    got = correct_count(outputs, labels)
    assert isinstance(got, torch.Tensor) and got.dim() == 0
    assert int(got) == expected


def test_correct_count_known_case():
    outputs = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 2])  # argmax 0, 1, 2, 0 -> two right
    assert int(correct_count(outputs, labels)) == 2


def test_accuracy_known_and_random():
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert accuracy(np.array([2, 2]), torch.tensor([2, 2])) == 1.0
    rng = np.random.default_rng(0)
    p, y = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    assert accuracy(p, y) == pytest.approx(float((p == y).mean()))


def test_accuracy_of_logits_matches_correct_count():
    torch.manual_seed(1)
    outputs, labels = torch.randn(40, 3), torch.randint(0, 3, (40,))
    _, preds = torch.max(outputs, 1)
    assert accuracy(preds, labels) == pytest.approx(int(correct_count(outputs, labels)) / 40)


def test_confusion_matrix_known_case():
    labels = [0, 0, 1, 2, 2, 2]
    preds = [0, 1, 1, 2, 0, 2]
    cm = confusion_matrix(preds, labels, 3)
    assert cm.dtype == torch.int64 and cm.shape == (3, 3)
    # rows = true class, columns = predicted class
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert int(cm.sum()) == 6


def test_confusion_matrix_extra_classes_are_zero_rows():
    cm = confusion_matrix([1, 1], [1, 1], 4)
    assert cm.tolist() == [[0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("seed", range(6))
def test_macro_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 6))
    n = int(rng.integers(1, 40))
    # sometimes leave classes out of both preds and labels
    high = num_classes if seed % 2 == 0 else max(1, num_classes - 2)
    p, y = rng.integers(0, high, n), rng.integers(0, high, n)
    expected = f1_score(y, p, average="macro", labels=np.union1d(p, y), zero_division=0)
    assert macro_f1(p, y, num_classes) == pytest.approx(expected)
    assert macro_f1(p, y, num_classes) == pytest.approx(f1_score(y, p, average="macro"))


def test_macro_f1_known_values():
    assert macro_f1([0, 1, 1], [0, 1, 0], 2) == pytest.approx(2 / 3)  # F1 2/3 for both classes
    assert macro_f1([0, 1, 2], [0, 1, 2], 3) == 1.0
    assert macro_f1([1, 0], [0, 1], 2) == 0.0


def test_classification_metrics_dict():
    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)
    assert set(m) == {"accuracy", "macro_f1"}
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == pytest.approx(f1_score([0, 1, 0, 0], [0, 1, 1, 0], average="macro"))


def test_length_mismatch():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0], [0, 1], 2)


def test_float_and_bool_labels_rejected():
    with pytest.raises(ValueError, match="labels must hold integer class indices.*float"):
        accuracy([0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match="preds must hold integer class indices.*bool"):
        accuracy(torch.tensor([True, False]), [1, 0])


def test_out_of_range_classes():
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\).*preds in \[0, 2\]"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match=r"labels in \[-1, 1\]"):
        macro_f1([0, 1], [-1, 1], 2)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_num_classes_validated(bad):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix([0], [0], bad)


def test_accuracy_of_nothing():
    empty = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="accuracy of 0 items is undefined"):
        accuracy(empty, empty)


def test_accuracy_of_empty_lists():
    with pytest.raises(ValueError, match="accuracy of 0 items is undefined"):
        accuracy([], [])
