"""Tests for engine.training: BatchFormat, fit (learning, checkpoints, resume, NaN), evaluate, predict,
bind_format, and the validation of fit's options."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.files import CheckpointError, load_torch_file
from engine.history import History
from engine.training import BatchFormat, bind_format, evaluate, fit, num_classes_of, predict

PAIRS = BatchFormat(
    "vectors",
    split=lambda b: (b[0], b[1]),
    inputs=lambda b: b[0],
    shapes="    - vectors: ``(B, F)`` float; labels: ``(B,)`` int64.",
)
QUIET = {"progress": False, "accelerator": "cpu"}


def _separable(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes split by the sign of the first feature, with a margin of 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g)
    x[:, 0] = (2 * y - 1) * (1.0 + x[:, 0].abs())
    return x, y


def _loaders(n: int = 32, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    x, y = _separable(n, seed)
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=16)


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(2, 2)


class _StopAt(Callback):
    """Raise at the start of a 0-based epoch, as a crash in the middle of a run."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"crash at epoch index {self.epoch}")


class _NaNWeights(Callback):
    """Set every weight to NaN at the start of the second epoch."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(math.nan)


# ----------------------------------------------------------------------------------------------
# BatchFormat


def test_batch_format_over_tensor_dataset_pairs():
    x, y = _separable(8)
    batch = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    inputs, labels = PAIRS.split(batch)
    assert torch.equal(inputs, x[:4]) and torch.equal(labels, y[:4])
    assert torch.equal(PAIRS.inputs(batch), x[:4])
    loader = DataLoader(TensorDataset(x, y))
    assert PAIRS.as_loader(loader, "x") is loader  # default: unchanged
    assert PAIRS.check(nn.Linear(2, 2), loader, "x", 3) == 3  # default: no check
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAIRS.name = "other"  # type: ignore[misc]


def test_num_classes_of():
    assert num_classes_of(nn.Linear(3, 5), torch.zeros(2, 3)) == 5
    model = nn.Linear(3, 5)
    model.num_classes = 7  # the attribute wins over a forward pass
    assert num_classes_of(model, torch.zeros(2, 3)) == 7
    with pytest.raises(ValueError, match=r"returns \(2,\); a classifier returns logits"):
        num_classes_of(nn.Flatten(0), torch.zeros(2, 1))


# ----------------------------------------------------------------------------------------------
# fit


def test_fit_learns_and_writes_checkpoints(tmp_path):
    train, val = _loaders()
    model = _linear()
    model.eval()
    run = tmp_path / "run"
    hist = fit(model, train, val, batch_format=PAIRS, epochs=5, lr=0.1, checkpoint_dir=run, **QUIET)
    assert isinstance(hist, History) and len(hist) == 5
    assert all(len(v) == 5 for v in hist.to_dict().values())
    assert hist.val_acc[-1] == 1.0
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert all(t > 0 for t in hist.epoch_time)
    assert not model.training  # the mode it had before
    assert next(model.parameters()).device.type == "cpu"

    assert (run / "last.ckpt").is_file() and (run / "best.ckpt").is_file() and (run / "best.pth").is_file()
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
    assert History.from_csv(run / "logs" / "version_0" / "metrics.csv").val_acc == pytest.approx(hist.val_acc)

    # best.pth holds the weights of the epoch with the lowest val_loss
    best = load_torch_file(run / "best.pth")
    assert best["extra"]["epoch"] == hist.best_epoch
    assert best["extra"]["val_loss"] == pytest.approx(hist.val_loss[hist.best_epoch])
    best_ckpt = load_torch_file(run / "best.ckpt")
    for key, value in best["state_dict"].items():
        assert torch.equal(best_ckpt["state_dict"]["model." + key], value)
    # evaluate agrees with the History of the last epoch (the model ends with the last weights)
    result = evaluate(model, val, batch_format=PAIRS)
    assert result["accuracy"] == 1.0 and result["loss"] == pytest.approx(hist.val_loss[-1], rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_steps_equal_a_loop_over_tensors_to_the_bit(optimizer):
    """fit's optimizers update all tensors at once (``foreach``, also on the CPU); the weights equal
    those of a hand loop with torch's per-tensor optimizer, bit for bit."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(24, 4), torch.randint(0, 3, (24,))
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ref.load_state_dict(model.state_dict())
    kw = {"lr": 0.05, "weight_decay": 1e-3}
    if optimizer == "sgd":
        opt = torch.optim.SGD(ref.parameters(), momentum=0.9, foreach=False, **kw)
    else:
        opt = torch.optim.Adam(ref.parameters(), foreach=False, **kw)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
    fit(model, loader, batch_format=PAIRS, epochs=3, optimizer=optimizer, momentum=0.9, **kw, **QUIET)
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(a.detach(), b.detach()), name
    from engine.training import _Task

    task = _Task(
        model,
        PAIRS,
        optimizer=optimizer,
        lr=0.1,
        weight_decay=0.0,
        momentum=0.9,
        scheduler=None,
        epochs=1,
        classes=None,
    )
    assert task.configure_optimizers().defaults["foreach"] is True


def test_fit_without_checkpoint_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, _ = _loaders()
    hist = fit(_linear(), train, batch_format=PAIRS, epochs=2, optimizer="sgd", scheduler="cosine", **QUIET)
    assert len(hist) == 2 and hist.val_loss == [] and hist.val_acc == []
    assert hist.best_epoch == min(range(2), key=lambda i: hist.train_loss[i])
    assert list(tmp_path.iterdir()) == []


def test_fit_is_repeatable_with_a_seed():
    train, _ = _loaders()
    a, b = _linear(1), _linear(2)
    ha = fit(a, train, batch_format=PAIRS, epochs=1, seed=3, **QUIET)
    b.load_state_dict(_linear(1).state_dict())
    hb = fit(b, train, batch_format=PAIRS, epochs=1, seed=3, **QUIET)
    assert ha.train_loss == hb.train_loss and ha.train_acc == hb.train_acc
    assert torch.equal(a.weight, b.weight)


def test_resume_after_a_crash(tmp_path):
    train, val = _loaders()
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash at epoch index 1"):
        fit(
            _linear(),
            train,
            val,
            batch_format=PAIRS,
            epochs=3,
            checkpoint_dir=run,
            callbacks=[_StopAt(1)],
            **QUIET,
        )
    assert (run / "last.ckpt").is_file()
    first = History.from_csv(run / "logs" / "version_0" / "metrics.csv")
    assert len(first) == 1

    hist = fit(_linear(5), train, val, batch_format=PAIRS, epochs=3, checkpoint_dir=run, **QUIET)
    assert len(hist) == 3 and len(hist.val_acc) == 3
    assert hist.train_loss[0] == pytest.approx(first.train_loss[0])  # epoch 1 restored, not retrained
    assert (run / "logs" / "version_1" / "metrics.csv").is_file()
    assert len(History.from_csv(run / "logs" / "version_1" / "metrics.csv")) == 2  # only the new epochs

    more = fit(_linear(6), train, val, batch_format=PAIRS, epochs=4, checkpoint_dir=run, **QUIET)
    assert len(more) == 4 and more.train_loss[:3] == pytest.approx(hist.train_loss)
    assert (run / "logs" / "version_2").is_dir()


def test_resume_false_starts_over(tmp_path):
    train, _ = _loaders()
    run = tmp_path / "run"
    fit(_linear(), train, batch_format=PAIRS, epochs=2, checkpoint_dir=run, **QUIET)
    hist = fit(_linear(), train, batch_format=PAIRS, epochs=1, checkpoint_dir=run, resume=False, **QUIET)
    assert len(hist) == 1
    assert len(load_torch_file(run / "best.pth")["extra"]["history"]["train_loss"]) == 1


def test_nan_input_in_first_batch_raises_before_training(tmp_path):
    from cnn.training import fit as cnn_fit

    x, y = _separable()
    x[0, 1] = math.nan
    model = _linear()
    before = model.weight.detach().clone()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(ValueError, match="train_loader: the first batch of images holds NaN"):
        cnn_fit(model, loader, epochs=1, checkpoint_dir=tmp_path / "run", **QUIET)
    assert torch.equal(model.weight, before) and not (tmp_path / "run").exists()


def test_failing_check_stops_before_training(tmp_path):
    def check(model, loader, name, num_classes):
        raise ValueError(f"{name} is bad")

    fmt = dataclasses.replace(PAIRS, check=check)
    train, val = _loaders()
    with pytest.raises(ValueError, match="train_loader is bad"):
        fit(_linear(), train, val, batch_format=fmt, epochs=1, checkpoint_dir=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()


def test_nan_loss_mid_training_names_the_epoch(tmp_path):
    train, _ = _loaders()
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="training loss became nan in epoch 2"):
        fit(
            _linear(),
            train,
            batch_format=PAIRS,
            epochs=3,
            checkpoint_dir=run,
            callbacks=[_NaNWeights()],
            **QUIET,
        )
    kept = load_torch_file(run / "last.ckpt")  # the checkpoint of epoch 1 is kept, with finite weights
    assert kept["epoch"] == 0
    weights = [v for v in kept["state_dict"].values() if isinstance(v, torch.Tensor)]
    assert len(weights) == 2 and all(bool(torch.isfinite(w).all()) for w in weights)
    assert kept["state_dict"]["_extra_state"]["train_loss"][0] > 0  # History travels in the checkpoint


def test_corrupt_last_ckpt_raises_before_training(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    train, _ = _loaders()
    with pytest.raises(
        CheckpointError, match="last.ckpt.*a Lightning checkpoint to resume from.*resume=False"
    ):
        fit(_linear(), train, batch_format=PAIRS, epochs=1, checkpoint_dir=run, **QUIET)
    assert sorted(p.name for p in run.iterdir()) == ["last.ckpt"]  # no logs: training never started


def test_torch_file_that_is_not_a_lightning_checkpoint(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, path)
    train, _ = _loaders()
    with pytest.raises(CheckpointError, match="weights.ckpt.*is not a Lightning checkpoint written by fit"):
        fit(_linear(), train, batch_format=PAIRS, epochs=1, resume=path, **QUIET)


def test_resume_argument_errors(tmp_path):
    train, _ = _loaders()
    with pytest.raises(FileNotFoundError, match="resume=.*missing.ckpt.* is not a file"):
        fit(_linear(), train, batch_format=PAIRS, resume=tmp_path / "missing.ckpt", **QUIET)
    with pytest.raises(TypeError, match="resume must be True, False or a checkpoint path, got int"):
        fit(_linear(), train, batch_format=PAIRS, resume=1, **QUIET)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of 'adam', 'sgd', got 'rmsprop'"),
        (
            {"scheduler": "step"},
            ValueError,
            r"scheduler must be one of \['cosine', 'plateau', None\], got 'step'",
        ),
        ({"scheduler": "plateau"}, ValueError, "scheduler='plateau' needs a val_loader"),
        ({"patience": 2}, ValueError, "patience needs a val_loader"),
        ({"patience": 0}, ValueError, "patience must be a positive int, got 0"),
        ({"epochs": 0}, ValueError, "epochs must be a positive int, got 0"),
        ({"epochs": 2.0}, ValueError, "epochs must be a positive int, got 2.0"),
        ({"lr": -0.1}, ValueError, "lr must be a positive number, got -0.1"),
        ({"lr": math.nan}, ValueError, "lr must be a positive number, got nan"),
        ({"weight_decay": -1}, ValueError, "weight_decay must be a number >= 0, got -1"),
        ({"momentum": True}, ValueError, "momentum must be a number >= 0, got True"),
        ({"num_nodes": 0}, ValueError, "num_nodes must be a positive int"),
        ({"batch_format": "pairs"}, TypeError, "batch_format must be a BatchFormat, got str"),
    ],
)
def test_fit_option_errors(options, error, match):
    train, _ = _loaders()
    kwargs = {"batch_format": PAIRS, **QUIET, **options}
    with pytest.raises(error, match=match):
        fit(_linear(), train, **kwargs)


def test_fit_model_errors(tmp_path):
    train, _ = _loaders()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        fit(lambda x: x, train, batch_format=PAIRS, **QUIET)
    frozen = _linear().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, train, batch_format=PAIRS, **QUIET)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir=.*file.* is a file; give a folder"):
        fit(_linear(), train, batch_format=PAIRS, checkpoint_dir=tmp_path / "file", **QUIET)


def test_fit_classes_must_match_num_classes():
    fmt = dataclasses.replace(PAIRS, check=lambda model, loader, name, n: 2 if n is None else n)
    train, _ = _loaders()
    with pytest.raises(ValueError, match=r"classes must list one name per class \(2\), got \['a'\]"):
        fit(_linear(), train, batch_format=fmt, classes=["a"], **QUIET)
    with pytest.raises(ValueError, match="classes must list one name per class"):
        fit(_linear(), train, batch_format=fmt, classes="ab", **QUIET)


# ----------------------------------------------------------------------------------------------
# evaluate and predict


def test_evaluate_counts_as_the_lecture_notes():
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    model = nn.Linear(4, 3)
    model.train()
    result = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5), batch_format=PAIRS)
    with torch.no_grad():
        out = model(x)
    _, preds = torch.max(out, 1)
    assert set(result) == {"accuracy", "loss", "correct", "n", "macro_f1"}
    assert result["n"] == 32 and result["correct"] == int(preds.eq(y).sum())
    assert isinstance(result["correct"], int) and isinstance(result["n"], int)
    assert result["accuracy"] == result["correct"] / result["n"]
    assert result["loss"] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert result["macro_f1"] == pytest.approx(f1_score(y.numpy(), preds.numpy(), average="macro"))
    assert model.training  # mode restored


def test_evaluate_identity_known_answer():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])  # argmax 0, 1, 0, 0 -> 2 right
    result = evaluate(nn.Identity(), [(logits, labels)], batch_format=PAIRS)
    assert (result["correct"], result["n"], result["accuracy"]) == (2, 4, 0.5)


def test_predict_probs_and_order():
    torch.manual_seed(0)
    x = torch.randn(20, 4)
    model = nn.Linear(4, 3)
    preds, probs = predict(model, DataLoader(TensorDataset(x), batch_size=6), batch_format=PAIRS)
    assert preds.shape == (20,) and preds.dtype == torch.int64 and probs.shape == (20, 3)
    assert probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(20), atol=1e-6)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.equal(preds, expected.argmax(1))


def test_nan_outputs_name_the_batch():
    x, y = _separable(24)
    x[10, 0] = math.nan  # in batch 1 of size 8
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(ValueError, match="loader batch 1: the model's outputs hold NaN or inf; the vectors"):
        evaluate(_linear(), loader, batch_format=PAIRS)
    with pytest.raises(ValueError, match="loader batch 1: the model's outputs hold NaN"):
        predict(_linear(), loader, batch_format=PAIRS)


def test_evaluate_and_predict_errors():
    x, y = _separable(8)
    with pytest.raises(ValueError, match="loader is empty .* evaluate needs labelled items"):
        evaluate(_linear(), [], batch_format=PAIRS)
    with pytest.raises(ValueError, match="loader is empty .* predict needs items"):
        predict(_linear(), [], batch_format=PAIRS)
    with pytest.raises(
        ValueError, match=r"loader batch 0 has labels in \[0, 2\] but the model has 2 classes"
    ):
        evaluate(_linear(), [(x, y * 2)], batch_format=PAIRS)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        evaluate(None, [(x, y)], batch_format=PAIRS)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        predict("model", [(x, y)], batch_format=PAIRS)
    for device in ("tpu9", "cuda:x", 1.5):
        with pytest.raises(ValueError, match=r"device=.* is not a device; use 'cpu', 'cuda', 'cuda:N'"):
            evaluate(_linear(), [(x, y)], batch_format=PAIRS, device=device)
    with pytest.raises(ValueError, match=r"device='tpu9' is not a device"):
        predict(_linear(), [(x, y)], batch_format=PAIRS, device="tpu9")


# ----------------------------------------------------------------------------------------------
# bind_format


@pytest.mark.parametrize("function", [fit, evaluate, predict])
def test_bind_format(function):
    bound = bind_format(function, PAIRS, module="mypkg.training", example="    >>> f(model, loader)")
    params = inspect.signature(bound).parameters
    assert "batch_format" not in params
    original = [p for p in inspect.signature(function).parameters.values() if p.name != "batch_format"]
    assert list(params.values()) == original
    assert bound.__name__ == function.__name__ and bound.__module__ == "mypkg.training"
    assert PAIRS.shapes in bound.__doc__ and "    >>> f(model, loader)" in bound.__doc__
    assert "batch_format:" not in bound.__doc__
    assert bound.__doc__.count("Shapes:") == 1
    assert not hasattr(bound, "__wrapped__")
    with pytest.raises(TypeError, match=r"has its batch format fixed \(vectors\)"):
        bound(nn.Identity(), [], batch_format=PAIRS)


def test_bound_predict_runs():
    bound = bind_format(predict, PAIRS, module=__name__, example="")
    preds, _ = bound(nn.Identity(), [(torch.tensor([[0.0, 2.0], [3.0, 1.0]]),)])
    assert preds.tolist() == [1, 0]


def test_cnn_and_gnn_share_signatures():
    import cnn
    import gnn

    for name in ("fit", "evaluate", "predict"):
        a, b = getattr(cnn, name), getattr(gnn, name)
        assert inspect.signature(a) == inspect.signature(b), name
        assert "batch_format" not in inspect.signature(a).parameters
    assert "images" in cnn.fit.__doc__ and "edge_index" in gnn.fit.__doc__


def test_resume_refuses_another_optimizer_or_freezing(tmp_path):
    train, _ = _loaders()
    run = tmp_path / "run"
    fit(_linear(), train, batch_format=PAIRS, epochs=1, checkpoint_dir=run, **QUIET)
    with pytest.raises(ValueError, match="trained with optimizer='adam', this call uses optimizer='sgd'"):
        fit(_linear(), train, batch_format=PAIRS, epochs=2, optimizer="sgd", checkpoint_dir=run, **QUIET)
    half_frozen = _linear()
    half_frozen.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="trained 2 parameter tensors, the model now has 1 trainable"):
        fit(half_frozen, train, batch_format=PAIRS, epochs=2, checkpoint_dir=run, **QUIET)


def test_num_classes_of_reads_the_attribute_without_touching_a_lazy_input():
    from engine.training import num_classes_of

    calls = []

    def batch():
        calls.append(1)
        return torch.zeros(2, 3)

    model = nn.Linear(3, 5)
    assert num_classes_of(model, batch) == 5 and calls == [1]  # no attribute: one forward pass
    model.num_classes = 7
    assert num_classes_of(model, batch) == 7 and calls == [1]  # the attribute: the input is never made


def _diverging() -> tuple[DataLoader, DataLoader]:
    """Training labels that validation contradicts: the longer the training, the worse val_loss."""
    x, y = _separable(32, 0)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    return train, DataLoader(TensorDataset(x, 1 - y), batch_size=16)


@pytest.mark.parametrize("restore", [True, False])
def test_restore_best_ends_with_the_weights_of_the_lowest_val_loss(restore):
    train, val = _diverging()
    model = _linear(1)
    hist = fit(model, train, val, batch_format=PAIRS, epochs=6, lr=0.1, restore_best=restore, **QUIET)
    losses = list(hist.val_loss)
    assert min(losses) < losses[-1] - 0.05  # the run did get worse on validation
    final = evaluate(model, val, batch_format=PAIRS)["loss"]
    expected = min(losses) if restore else losses[-1]
    assert final == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_restore_best_needs_validation_data_and_a_bool():
    train, _ = _loaders()
    with pytest.raises(ValueError, match="restore_best=True needs a val_loader"):
        fit(_linear(), train, batch_format=PAIRS, epochs=1, restore_best=True, **QUIET)
    with pytest.raises(TypeError, match="restore_best must be True or False"):
        fit(_linear(), train, train, batch_format=PAIRS, epochs=1, restore_best="yes", **QUIET)


class _LearningRates(Callback):
    """The learning rate of the first parameter group at the start of every epoch."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_last_checkpoint_is_written_in_epochs_without_improvement(tmp_path):
    """val_loss rises after epoch 0: last.ckpt must still follow every epoch, so a resume neither trains
    an epoch again nor re-trains a finished run (Lightning >= 2.5 writes it only beside best.ckpt)."""
    train, val = _diverging()
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash at epoch index 2"):
        fit(_linear(1), train, val, batch_format=PAIRS, epochs=4, lr=0.1, checkpoint_dir=run,
            callbacks=[_StopAt(2)], **QUIET)  # fmt: skip
    last = load_torch_file(run / "last.ckpt")
    best = load_torch_file(run / "best.ckpt")
    assert (last["epoch"], best["epoch"]) == (1, 0)
    rates = _LearningRates()
    hist = fit(_linear(1), train, val, batch_format=PAIRS, epochs=4, lr=0.1, checkpoint_dir=run,
               callbacks=[rates], **QUIET)  # fmt: skip
    assert len(rates.lrs) == 2 and len(hist) == 4  # epochs 3 and 4 only
    again = _LearningRates()
    fit(_linear(1), train, val, batch_format=PAIRS, epochs=4, lr=0.1, checkpoint_dir=run, callbacks=[again],
        **QUIET)  # fmt: skip
    assert again.lrs == []  # a finished run is not trained again


def test_restore_best_after_a_resume_knows_the_epochs_before_it(tmp_path):
    """The best epoch (0) lies before the resume: the returned weights are its weights (from best.ckpt)."""
    train, val = _diverging()
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash at epoch index 2"):
        fit(_linear(1), train, val, batch_format=PAIRS, epochs=5, lr=0.1, checkpoint_dir=run,
            restore_best=True, callbacks=[_StopAt(2)], **QUIET)  # fmt: skip
    model = _linear(1)
    hist = fit(model, train, val, batch_format=PAIRS, epochs=5, lr=0.1, checkpoint_dir=run, restore_best=True,
               **QUIET)  # fmt: skip
    losses = list(hist.val_loss)
    assert losses.index(min(losses)) == 0 and min(losses) < losses[-1] - 0.05
    final = evaluate(model, val, batch_format=PAIRS)["loss"]
    assert final == pytest.approx(min(losses), rel=1e-4, abs=1e-5)


def test_cosine_schedule_of_a_run_extended_by_resume(tmp_path):
    """2 epochs, then resumed to 6: epochs 3..6 follow the cosine of a 6-epoch run (not a restart at 0)."""
    train, _ = _loaders()
    run = tmp_path / "run"
    kw = dict(batch_format=PAIRS, lr=0.1, scheduler="cosine", **QUIET)
    first, resumed, fresh = _LearningRates(), _LearningRates(), _LearningRates()
    fit(_linear(1), train, epochs=2, checkpoint_dir=run, callbacks=[first], **kw)
    fit(_linear(1), train, epochs=6, checkpoint_dir=run, callbacks=[resumed], **kw)
    fit(_linear(1), train, epochs=6, callbacks=[fresh], **kw)
    assert first.lrs == pytest.approx([0.1, 0.05])
    assert resumed.lrs == pytest.approx(fresh.lrs[2:]) and fresh.lrs[2] == pytest.approx(0.075)


def test_resume_refuses_other_settings_or_model_configuration(tmp_path):
    from gnn.models import GraphClassifier

    train, _ = _loaders()
    run = tmp_path / "run"
    fit(_linear(), train, batch_format=PAIRS, epochs=1, lr=0.1, checkpoint_dir=run, **QUIET)
    with pytest.raises(ValueError, match=r"other optimizer settings \(lr: 0.1 in the checkpoint, 0.01 now\)"):
        fit(_linear(), train, batch_format=PAIRS, epochs=2, lr=0.01, checkpoint_dir=run, **QUIET)
    with pytest.raises(ValueError, match="weight_decay: 0.0 in the checkpoint, 0.5 now"):
        fit(
            _linear(),
            train,
            batch_format=PAIRS,
            epochs=2,
            lr=0.1,
            weight_decay=0.5,
            checkpoint_dir=run,
            **QUIET,
        )

    class Wrapped(nn.Module):  # another class of model
        def __init__(self) -> None:
            super().__init__()
            self.inner = _linear()

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(ValueError, match="trained with a Linear, the model is a Wrapped"):
        fit(Wrapped(), train, batch_format=PAIRS, epochs=2, lr=0.1, checkpoint_dir=run, **QUIET)
    # a model with a config: every differing constructor argument is named
    saved = {"pixgraph": {"model_class": "GraphClassifier", "model_config": GraphClassifier(2, 2).config}}
    task_model = GraphClassifier(2, 2, pool="max", hidden=32)
    from engine.training import _Task

    task = _Task(task_model, PAIRS, optimizer="adam", lr=0.1, weight_decay=0.0, momentum=0.9, scheduler=None,
                 epochs=1, classes=None)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"hidden: 64 in the checkpoint, 32 now.*pool: 'mean' in the checkpoint, 'max'"
    ):
        task.on_load_checkpoint(saved)


def test_batchnorm_frozen_by_hand_keeps_its_statistics_in_training():
    """The lecture's freezing (requires_grad = False on every parameter, then a new head): fit trains the
    head only, and the frozen BatchNorm's running statistics stay the pretrained ones."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    for p in body.parameters():
        p.requires_grad = False
    stats = (body[1].running_mean.clone(), body[1].running_var.clone())
    model = nn.Sequential(body, nn.Linear(4, 2))  # the new head trains
    train, _ = _loaders()
    fit(model, train, batch_format=PAIRS, epochs=2, lr=0.1, **QUIET)
    assert torch.equal(body[1].running_mean, stats[0]) and torch.equal(body[1].running_var, stats[1])
    assert int(body[1].num_batches_tracked) == 0
    unfrozen = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))  # trainable: it moves
    fit(unfrozen, train, batch_format=PAIRS, epochs=1, lr=0.1, **QUIET)
    assert int(unfrozen[1].num_batches_tracked) > 0


def test_fit_takes_its_batchnorm_hooks_off_the_model_afterwards():
    """The model comes back as it came: after fit, a BatchNorm frozen by hand follows model.train()
    again (a caller may recompute its statistics, as swa_utils.update_bn does)."""
    body = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    for p in body.parameters():
        p.requires_grad = False
    model = nn.Sequential(body, nn.Linear(4, 2))
    train, _ = _loaders()
    fit(model, train, batch_format=PAIRS, epochs=1, **QUIET)
    assert not body[1]._forward_pre_hooks
    model.train()(torch.randn(8, 2))
    assert int(body[1].num_batches_tracked) == 1
