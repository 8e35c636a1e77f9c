"""Tests for engine.history: append/to_dict/from_dict, best_epoch, from_csv (Lightning's CSVLogger layout)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.history import METRICS, History
from engine.training import BatchFormat, fit


def test_append_and_to_dict():
    h = History()
    assert len(h) == 0 and h.best_epoch is None
    h.append({"train_loss": 0.9, "train_acc": 0.5, "val_loss": 0.8, "val_acc": 0.4, "epoch_time": 1.5})
    h.append(
        {"train_loss": 0.5, "train_acc": 0.75, "val_loss": 0.6, "val_acc": 0.7, "epoch_time": 1.0, "lr": 3}
    )
    d = h.to_dict()
    assert list(d) == list(METRICS)
    assert d == {
        "train_loss": [0.9, 0.5],
        "train_acc": [0.5, 0.75],
        "val_loss": [0.8, 0.6],
        "val_acc": [0.4, 0.7],
        "epoch_time": [1.5, 1.0],
    }
    assert len(h) == 2
    d["train_loss"].append(7.0)  # a copy: History is unchanged
    assert h.train_loss == [0.9, 0.5]


def test_append_converts_tensors_to_float():
    h = History()
    h.append({"train_loss": torch.tensor(0.25), "train_acc": torch.tensor(1.0)})
    assert h.train_loss == [0.25] and type(h.train_loss[0]) is float and h.val_loss == []


def test_append_needs_train_loss():
    with pytest.raises(ValueError, match="needs 'train_loss'; got keys \\['val_loss'\\]"):
        History().append({"val_loss": 0.3})


def test_round_trip_through_json():
    h = History(train_loss=[1.0, 0.5], train_acc=[0.5, 0.9], val_loss=[0.7, 0.8], val_acc=[0.6, 0.6])
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back == h
    assert History.from_dict({**h.to_dict(), "unknown": [1]}) == h
    assert History.from_dict({"train_loss": [1]}).train_loss == [1.0]


def test_best_epoch_by_val_loss_then_train_loss():
    with_val = History(train_loss=[0.9, 0.2, 0.1], val_loss=[0.5, 0.3, 0.4])
    assert with_val.best_epoch == 1  # lowest val_loss, not lowest train_loss
    no_val = History(train_loss=[0.9, 0.2, 0.3])
    assert no_val.best_epoch == 1
    ties = History(train_loss=[0.3, 0.2, 0.2])
    assert ties.best_epoch == 1  # first of equal losses


def test_from_csv_lightning_layout(tmp_path):
    # CSVLogger writes validation metrics and training metrics on separate rows of the same epoch,
    # plus step rows with no epoch-level metrics.
    text = (
        "epoch,epoch_time,step,train_acc,train_loss,val_acc,val_loss\n"
        "0,,3,,,0.5,0.69\n"
        "0,0.12,3,0.625,0.7,,\n"
        "1,,7,,,0.75,0.5\n"
        "1,0.11,7,0.875,0.45,,\n"
        ",,8,,,,\n"
    )
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    h = History.from_csv(path)
    assert h.to_dict() == {
        "train_loss": [0.7, 0.45],
        "train_acc": [0.625, 0.875],
        "val_loss": [0.69, 0.5],
        "val_acc": [0.5, 0.75],
        "epoch_time": [0.12, 0.11],
    }


def test_from_csv_skips_epoch_without_train_loss(tmp_path):
    # an interrupted epoch: validation logged, training not finished
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,train_acc,val_loss\n0,3,0.5,0.8,\n0,3,,,0.6\n1,7,,,0.4\n")
    h = History.from_csv(path)
    assert len(h) == 1 and h.val_loss == [0.6] and h.train_acc == [0.8]


def test_from_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        History.from_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"metrics.csv' is empty; expected a Lightning CSVLogger metrics.csv"),
        ("a,b\n1,2\n", r"metrics.csv' has no 'epoch' column \(its header is 'a,b'\)"),
        (
            "epoch,train_loss\n0,0.5\n1,abc\n",
            r"metrics.csv' line 3, column 'train_loss': 'abc' is not a number",
        ),
        ("epoch,train_loss\nx,0.5\n", r"line 2, column 'epoch': 'x' is not a number"),
        ("epoch,train_loss\n1.5,0.5\n", r"line 2, column 'epoch': '1.5' is not an epoch number"),
    ],
)
def test_from_csv_refuses_what_is_not_a_metrics_csv(tmp_path, text, match):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        History.from_csv(path)


def test_from_csv_header_only_is_an_empty_history(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n")  # a run stopped before its first epoch ended
    assert History.from_csv(path).to_dict()["train_loss"] == []


def test_from_csv_equals_history_of_fit(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)
    pairs = BatchFormat("vectors", split=lambda b: (b[0], b[1]), inputs=lambda b: b[0])
    hist = fit(
        nn.Linear(3, 2),
        DataLoader(data, batch_size=8, shuffle=True),
        DataLoader(data, batch_size=16),
        batch_format=pairs,
        epochs=2,
        checkpoint_dir=tmp_path / "run",
        progress=False,
        accelerator="cpu",
    )
    assert len(hist) == 2 and len(hist.val_loss) == 2 and len(hist.epoch_time) == 2
    from_log = History.from_csv(tmp_path / "run" / "logs" / "version_0" / "metrics.csv")
    for name in METRICS:
        assert getattr(from_log, name) == pytest.approx(getattr(hist, name), rel=1e-6), name


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_best_epoch_never_picks_a_non_finite_loss(bad):
    assert History(train_loss=[0.9, 0.5, 0.4], val_loss=[bad, 0.5, 0.3]).best_epoch == 2
    assert History(train_loss=[bad, 0.5, 0.7]).best_epoch == 1


def test_from_csv_keeps_a_sparsely_logged_metric_aligned_by_epoch(tmp_path):
    """Validation in epochs 1 and 3 only: val_loss is NaN in epochs 0 and 2, and the best is epoch 3."""
    path = tmp_path / "metrics.csv"
    rows = [
        "epoch,step,train_loss,val_loss",
        "0,1,0.9,",
        "1,2,0.8,",
        "1,2,,0.7",
        "2,3,0.6,",
        "3,4,0.5,",
        "3,4,,0.1",
    ]
    path.write_text("\n".join(rows) + "\n")
    h = History.from_csv(path)
    assert h.train_loss == [0.9, 0.8, 0.6, 0.5]
    assert len(h.val_loss) == 4 and h.val_loss[1::2] == [0.7, 0.1]
    assert all(v != v for v in h.val_loss[0::2])  # NaN
    assert h.best_epoch == 3 and h.train_acc == []  # never logged: stays empty
