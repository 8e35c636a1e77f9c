"""Tests for cnn.training: fit on Lightning, checkpoints and resume, evaluate/predict, DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from cnn.backbones import create_backbone
from cnn.freezing import freeze
from cnn.training import History, evaluate, fit, predict
from engine.checkpoints import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
QUIET = {"progress": False, "accelerator": "cpu"}


def _bright_dark(n: int, *, seed: int, size: int = 8) -> TensorDataset:
    """Class 1 images are bright, class 0 dark (plus noise): separable by construction."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 3, size, size, generator=g) * 0.5 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    return TensorDataset(images, labels)


def _tiny_cnn(num_classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


def _loader(ds, batch_size: int = 8, shuffle: bool = True) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


class _Crash(Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


class _EpochRecorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append(trainer.current_epoch)


def test_fit_learns_a_separable_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, val = _bright_dark(32, seed=0), _bright_dark(16, seed=1)
    model = _tiny_cnn()
    hist = fit(model, _loader(train), _loader(val, shuffle=False), epochs=6, lr=0.05, **QUIET)
    assert isinstance(hist, History) and len(hist) == 6
    assert all(len(v) == 6 for v in hist.to_dict().values())
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.val_acc[-1] == 1.0
    assert hist.best_epoch == min(range(6), key=hist.val_loss.__getitem__)
    result = evaluate(model, _loader(val, shuffle=False))
    assert result["accuracy"] == 1.0 and result["correct"] == result["n"] == 16
    assert result["loss"] == pytest.approx(hist.val_loss[-1], rel=1e-4)
    assert list(tmp_path.iterdir()) == []  # no lightning_logs or checkpoints in the working directory


class _Interrupt(Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_raises_keyboard_interrupt_and_restores_the_handler(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="call fit again with the same checkpoint_dir"):
        fit(_tiny_cnn(), _loader(_bright_dark(8, seed=0)), epochs=3, callbacks=[_Interrupt()], **QUIET)
    assert signal.getsignal(signal.SIGINT) == handler


def test_fit_is_repeatable_with_a_seed():
    ds = _bright_dark(16, seed=0)
    a = fit(_tiny_cnn(), _loader(ds), epochs=2, seed=3, **QUIET)
    b = fit(_tiny_cnn(), _loader(ds), epochs=2, seed=3, **QUIET)
    assert a.train_loss == b.train_loss


def test_fit_trains_only_unfrozen_parameters_and_keeps_frozen_batchnorm():
    torch.manual_seed(0)
    model = freeze(create_backbone("resnet18", weights=None, num_classes=2), "feature_extraction")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = _bright_dark(8, seed=0, size=32)
    fit(model, _loader(ds, batch_size=4), epochs=1, optimizer="sgd", lr=0.1, **QUIET)
    after = model.state_dict()
    head = {f"model.fc.{k}" for k in ("weight", "bias")}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == head  # BN running stats and num_batches_tracked included: unchanged


def test_fit_trains_in_train_mode_and_keeps_the_models_mode():
    model = _tiny_cnn().eval()  # backbones come in eval mode
    bn = model[1]
    before = bn.running_mean.clone()
    fit(model, _loader(_bright_dark(8, seed=0)), epochs=1, **QUIET)
    assert not torch.equal(bn.running_mean, before)  # BatchNorm trained in train mode
    assert not model.training and not bn.training


def test_checkpoints_and_resume_after_a_crash(tmp_path):
    train, val = _bright_dark(16, seed=0), _bright_dark(8, seed=1)
    ckpt_dir = tmp_path / "run"
    model = _tiny_cnn()
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(
            model,
            _loader(train),
            _loader(val, shuffle=False),
            epochs=4,
            checkpoint_dir=ckpt_dir,
            callbacks=[_Crash(1)],
            **QUIET,
        )
    last = ckpt_dir / "last.ckpt"
    assert last.is_file() and sorted(p.name for p in ckpt_dir.iterdir()) == [
        "best.ckpt",
        "best.pth",
        "last.ckpt",
        "logs",
    ]
    saved = torch.load(last, weights_only=True)  # our additions keep the checkpoint weights_only-safe
    first_epoch = saved["state_dict"]["_extra_state"]["train_loss"]
    assert len(first_epoch) == 1

    recorder = _EpochRecorder()
    resumed = _tiny_cnn(seed=9)  # a fresh process would build a fresh model
    hist = fit(
        resumed,
        _loader(train),
        _loader(val, shuffle=False),
        epochs=4,
        checkpoint_dir=ckpt_dir,
        callbacks=[recorder],
        **QUIET,
    )
    assert recorder.epochs == [1, 2, 3]  # counts on from the checkpoint, does not restart
    assert len(hist) == 4 and len(hist.val_loss) == 4 and len(hist.epoch_time) == 4
    assert hist.train_loss[0] == pytest.approx(first_epoch[0])

    best = load_checkpoint(ckpt_dir / "best.pth", _tiny_cnn(seed=5))
    assert best["extra"]["val_loss"] == pytest.approx(min(hist.val_loss))
    assert best["extra"]["epoch"] == hist.best_epoch

    # Asking for no more epochs than done trains nothing and returns the stored History.
    recorder = _EpochRecorder()
    again = fit(
        resumed,
        _loader(train),
        _loader(val, shuffle=False),
        epochs=4,
        checkpoint_dir=ckpt_dir,
        callbacks=[recorder],
        **QUIET,
    )
    assert recorder.epochs == [] and again.train_loss == hist.train_loss
    # resume=False starts over
    fresh = fit(_tiny_cnn(), _loader(train), epochs=1, checkpoint_dir=ckpt_dir, resume=False, **QUIET)
    assert len(fresh) == 1


def test_resume_refuses_a_different_freezing(tmp_path):
    torch.manual_seed(0)
    ds = _bright_dark(4, seed=0, size=32)
    model = freeze(create_backbone("resnet18", weights=None, num_classes=2), "feature_extraction")
    fit(model, _loader(ds, batch_size=4), epochs=1, checkpoint_dir=tmp_path, **QUIET)
    freeze(model, "fine_tuning", trainable_blocks=1)
    with pytest.raises(ValueError, match="freeze the model as in the first run"):
        fit(model, _loader(ds, batch_size=4), epochs=2, checkpoint_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        fit(model, _loader(ds, batch_size=4), epochs=2, checkpoint_dir=tmp_path, optimizer="sgd", **QUIET)


def test_early_stopping_stops_before_epochs():
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 2, (16,), generator=g))
    val = TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 2, (16,), generator=g))
    hist = fit(
        _tiny_cnn(), _loader(train), _loader(val, shuffle=False), epochs=40, lr=0.1, patience=2, **QUIET
    )
    assert 3 <= len(hist) < 40  # random labels: val_loss stops improving
    best = hist.best_epoch
    assert best is not None and len(hist) - 1 - best == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of 'adam', 'sgd', got 'rmsprop'"),
        ({"patience": 3}, "patience needs a val_loader"),
        ({"classes": ["a", "b", "c"]}, r"one name per class \(2\)"),
    ],
)
def test_fit_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(_tiny_cnn(), _loader(_bright_dark(4, seed=0)), **QUIET, **kwargs)


def test_fit_data_errors_come_before_training(tmp_path):
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="train_loader is empty"):
        fit(_tiny_cnn(), empty, **QUIET)
    ds = _bright_dark(8, seed=0)
    bad = TensorDataset(ds.tensors[0], torch.tensor([0, 1, 0, 1, 0, 1, 0, 5]))
    with pytest.raises(ValueError, match=r"train_loader has label 5 outside the class range \[0, 2\)"):
        fit(_tiny_cnn(), _loader(bad), checkpoint_dir=tmp_path / "never", **QUIET)
    assert not (tmp_path / "never").exists()  # failed before anything was written
    with pytest.raises(ValueError, match="val_loader has label -1"):
        neg = TensorDataset(ds.tensors[0][:2], torch.tensor([0, -1]))
        fit(_tiny_cnn(), _loader(ds), _loader(neg), **QUIET)
    # labels read from a Subset: index 7 (label 5) is outside the subset, so it is fine
    fit(_tiny_cnn(), _loader(Subset(bad, list(range(7)))), epochs=1, **QUIET)
    with pytest.raises(ValueError, match="labels of dtype torch.float32"):
        fit(_tiny_cnn(), _loader(TensorDataset(ds.tensors[0], ds.tensors[1].float())), **QUIET)
    with pytest.raises(TypeError, match=r"must yield \(images, labels\) pairs"):
        fit(_tiny_cnn(), _loader(TensorDataset(ds.tensors[0])), **QUIET)
    with pytest.raises(TypeError, match="must be a DataLoader"):
        fit(_tiny_cnn(), ds, **QUIET)
    with pytest.raises(TypeError, match="got a list"):
        fit(_tiny_cnn(), [ds.tensors], **QUIET)


def test_fit_refuses_a_fully_frozen_model():
    model = _tiny_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, _loader(_bright_dark(4, seed=0)), **QUIET)


def test_evaluate_counts_like_the_lecture_notes():
    """Identity model: the inputs are the logits, so every number is known by construction."""
    logits = torch.tensor(
        [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    )
    labels = torch.tensor([0, 1, 1, 2, 1])  # right: rows 0, 1, 4 -> 3 of 5
    result = evaluate(nn.Identity(), DataLoader(TensorDataset(logits, labels), batch_size=2))
    assert result["correct"] == 3 and result["n"] == 5
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, labels).item())
    # per class F1: class 0: tp 1, fp 1, fn 0 -> 2/3; class 1: tp 2, fn 1 -> 0.8; class 2: tp 0 -> 0
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_evaluate_restores_mode_and_checks_labels():
    model = _tiny_cnn().train()
    ds = _bright_dark(4, seed=0)
    evaluate(model, _loader(ds))
    assert model.training and all(m.training for m in model.modules())
    bad = TensorDataset(ds.tensors[0], torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\] but the model has 2 classes"):
        evaluate(model, _loader(bad))
    with pytest.raises(ValueError, match="loader is empty"):
        evaluate(model, [])


def test_predict_preds_and_probs():
    logits = torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 0.0]])
    preds, probs = predict(nn.Identity(), DataLoader(TensorDataset(logits), batch_size=2))
    assert preds.dtype == torch.long and probs.dtype == torch.float32
    assert preds.tolist() == [1, 0, 0]
    assert torch.allclose(probs.sum(1), torch.ones(3))
    assert torch.allclose(probs, torch.softmax(logits, 1))
    preds2, _ = predict(nn.Identity(), DataLoader(TensorDataset(logits, torch.zeros(3)), batch_size=3))
    assert torch.equal(preds, preds2)
    with pytest.raises(ValueError, match="loader is empty"):
        predict(nn.Identity(), [])


_DDP_SCRIPT = """
import hashlib, json, os, sys
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from cnn.training import fit

OUT = sys.argv[1]


def state_hash(module):
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Report(Callback):
    def __init__(self):
        self.seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += batch[0].shape[0]

    def on_train_end(self, trainer, pl_module):
        info = {"rank": trainer.global_rank, "world": trainer.world_size, "seen": self.seen,
                "hash": state_hash(pl_module.model),
                "backend": torch.distributed.get_backend()}
        with open(os.path.join(OUT, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump(info, f)


if __name__ == "__main__":
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    initial = state_hash(model)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x = torch.randn(32, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    hist = fit(model, loader, epochs=2, accelerator="cpu", devices=2, strategy="ddp_fork",
               progress=False, callbacks=[Report()])
    with open(os.path.join(OUT, "main.json"), "w") as f:
        json.dump({"initial": initial, "final": state_hash(model), "epochs": len(hist)}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="ddp_fork needs os.fork (Linux, macOS)")
def test_ddp_two_cpu_processes_train_one_model(tmp_path):
    """Lightning DDP (fork launcher, gloo) with 2 CPU processes; fork avoids re-importing torch."""
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    env = dict(os.environ)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    main = json.loads((tmp_path / "main.json").read_text())
    assert [r["world"] for r in ranks] == [2, 2] and {r["backend"] for r in ranks} == {"gloo"}
    assert ranks[0]["hash"] == ranks[1]["hash"]  # both processes hold one model
    assert ranks[0]["hash"] != main["initial"]  # ... and training changed it
    assert main["final"] == ranks[0]["hash"]  # the trained weights came back to the caller
    assert main["epochs"] == 2  # and so did the History
    assert [r["seen"] for r in ranks] == [32, 32]  # each process saw half the data per epoch (2 epochs)
    assert not (tmp_path / "lightning_logs").exists()
