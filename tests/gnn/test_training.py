"""Tests for gnn/training.py: fit on the Lightning engine, resume, evaluate, predict."""

from __future__ import annotations

import signal

import lightning as L
import pytest
import torch
from sklearn.metrics import f1_score
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from gnn.models import GraphClassifier
from gnn.training import History, evaluate, fit, load_checkpoint, macro_f1, predict

QUIET = {"progress": False, "accelerator": "cpu"}


@pytest.fixture
def task(make_red_edge_graphs):
    return make_red_edge_graphs(256, seed=0), make_red_edge_graphs(200, seed=1)


def _small_model(seed: int = 0, **kwargs) -> GraphClassifier:
    torch.manual_seed(seed)
    return GraphClassifier(2, 2, hidden=kwargs.pop("hidden", 16), layers=kwargs.pop("layers", 2), **kwargs)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("conv", ["gat", "gcn", "gin", "sage"])
def test_every_conv_learns_the_red_edge_task(conv, task):
    # Without edges the best these models reach on this task is about 0.64 (graph size leaks a little).
    train, test = task
    model = _small_model(conv=conv, hidden=32, pool="max")
    history = fit(model, DataLoader(train, batch_size=32, shuffle=True), epochs=15, lr=5e-3, seed=0, **QUIET)
    assert len(history) == 15
    result = evaluate(model, DataLoader(test, batch_size=100))
    assert result["accuracy"] >= 0.9, result


def test_history_has_one_entry_per_epoch_and_round_trips(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory
    train, test = task
    history = fit(
        _small_model(), DataLoader(train[:64], batch_size=16), DataLoader(test[:32]), epochs=3, **QUIET
    )
    d = history.to_dict()
    assert set(d) == {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time"}
    assert all(len(v) == 3 for v in d.values())
    assert all(t > 0 for t in history.epoch_time)
    assert all(0.0 <= a <= 1.0 for a in history.train_acc + history.val_acc)
    assert History.from_dict(d) == history
    assert list(tmp_path.iterdir()) == []


def test_training_reduces_the_loss_and_val_lists_stay_empty_without_val(task):
    history = fit(
        _small_model(), DataLoader(task[0], batch_size=32, shuffle=True), epochs=6, lr=5e-3, **QUIET
    )
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_loss == [] and history.val_acc == []


def test_lists_of_batches_and_of_single_graphs_are_accepted(task):
    train = task[0][:64]
    batches = [Batch.from_data_list(train[i : i + 16]) for i in range(0, 64, 16)]
    assert len(fit(_small_model(), batches, batches[:1], epochs=2, **QUIET).val_loss) == 2
    assert len(fit(_small_model(), train[:8], epochs=1, **QUIET)) == 1


def test_same_seed_same_history(task):
    loader = DataLoader(task[0][:96], batch_size=16, shuffle=True)
    runs = [fit(_small_model(seed=3, dropout=0.2), loader, epochs=2, seed=7, **QUIET) for _ in range(2)]
    assert runs[0].train_loss == pytest.approx(runs[1].train_loss, rel=1e-5)


def _labelled(y: int, features: int = 2) -> Data:
    return Data(x=torch.rand(3, features), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([y]))


@pytest.mark.parametrize(
    ("graphs", "match"),
    [
        ([_labelled(0), _labelled(2)], r"train_loader has label 2 outside the class range \[0, 2\)"),
        ([_labelled(0), _labelled(-1)], r"train_loader has label -1 outside the class range"),
        ([_labelled(0), _labelled(1, features=3)], r"item 1: x has 3 features per node but the model has"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.tensor([[0], [5]]), y=torch.tensor([0]))],
         r"edge_index refers to node 5 .* the graph has 2 nodes"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.empty(2, 0, dtype=torch.long))], r"labels y are missing"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.empty(2, 0, dtype=torch.long), y=torch.tensor([0.0]))],
         r"integer class indices"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.empty(2, 0, dtype=torch.long), y=torch.tensor([0, 1]))],
         r"expected one label per graph \(1\)"),
        ([Data(x=torch.rand(0, 2), edge_index=torch.empty(2, 0, dtype=torch.long), y=torch.tensor([0]))],
         r"0 nodes"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.tensor([[0], [1]]), edge_weight=torch.tensor([-1.0]),
               y=torch.tensor([0]))], r"edge_weight has negative values"),
        ([_labelled(0), Data(x=torch.rand(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]),
                             edge_attr=torch.tensor([1.0, -1.0]), y=torch.tensor([1]))],
         r"item 1: edge_attr has negative values and the model's layers read it as edge weights"),
        ([Data(x=torch.rand(2, 2), edge_index=torch.tensor([[0], [1]]),
               edge_weight=torch.tensor([float("nan")]), y=torch.tensor([0]))],
         r"item 0: edge_weight holds NaN or inf"),
    ],
)  # fmt: skip
def test_bad_data_is_rejected_before_training_starts(graphs, match):
    model = _small_model()
    before = _weights(model)
    with pytest.raises(ValueError, match=match):
        fit(model, DataLoader(graphs, batch_size=2), epochs=1, **QUIET)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_fields_are_refused_when_the_layers_read_them_and_only_then():
    inf_attr = [
        Data(
            x=torch.rand(2, 2),
            edge_index=torch.tensor([[0], [1]]),
            edge_attr=torch.tensor([[float("inf")]]),
            y=torch.tensor([i % 2]),
        )
        for i in range(2)
    ]
    nan_u = [Data(x=torch.rand(2, 2), edge_index=torch.tensor([[0], [1]]), u=torch.tensor([[float("nan")]]),
                  y=torch.tensor([i % 2])) for i in range(2)]  # fmt: skip
    with pytest.raises(ValueError, match=r"item 0: edge_attr holds NaN or inf"):
        fit(_small_model(edge_dim=1), DataLoader(inf_attr, batch_size=2), epochs=1, **QUIET)
    with pytest.raises(ValueError, match=r"item 0: u holds NaN or inf"):
        fit(_small_model(global_channels=1), DataLoader(nan_u, batch_size=2), epochs=1, **QUIET)
    # fields the layers never read may hold anything, as before
    assert len(fit(_small_model(), DataLoader(inf_attr, batch_size=2), epochs=1, **QUIET)) == 1
    assert len(fit(_small_model(), DataLoader(nan_u, batch_size=2), epochs=1, **QUIET)) == 1


def test_a_model_of_its_own_may_cast_float64_features_itself():
    from torch_geometric.nn import global_mean_pool

    class Casting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, data):
            return global_mean_pool(self.lin(data.x.float()), data.batch)

    graphs = [Data(x=torch.rand(3, 2, dtype=torch.float64), edge_index=torch.tensor([[0], [1]]),
                   y=torch.tensor([i % 2])) for i in range(4)]  # fmt: skip
    assert len(fit(Casting(), DataLoader(graphs, batch_size=2), epochs=1, **QUIET)) == 1


def test_negative_column_edge_attr_read_as_gcn_weights_is_rejected_but_edge_features_are_not():
    def graphs(values: torch.Tensor) -> list[Data]:
        ei = torch.tensor([[0, 1], [1, 2]])
        return [
            Data(x=torch.rand(3, 2), edge_index=ei, edge_attr=values, y=torch.tensor([i % 2]))
            for i in range(4)
        ]

    column = torch.tensor([[1.0], [-1.0]])
    with pytest.raises(ValueError, match=r"item 0: edge_attr has negative values"):
        fit(_small_model(edge_dim=1), graphs(column), epochs=1, **QUIET)  # GCN reads (E, 1) as weights
    # GAT reads edge_attr as edge features: negative values are fine
    assert len(fit(_small_model(conv="gat", edge_dim=1, hidden=8), graphs(column), epochs=1, **QUIET)) == 1


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("x", {}),
        ("edge_weight", {}),
        ("edge_attr", {"conv": "gat", "edge_dim": 2}),
        ("u", {"global_channels": 3}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_float_data_of_another_dtype_than_the_model_is_rejected_before_training(field, kwargs, dtype):
    ei = torch.tensor([[0, 1], [1, 2]])
    good = [
        Data(x=torch.rand(3, 2), edge_index=ei, edge_weight=torch.rand(2), edge_attr=torch.rand(2, 2),
             u=torch.rand(1, 3), y=torch.tensor([i % 2]))
        for i in range(3)
    ]  # fmt: skip
    bad = good[2].clone()
    bad[field] = bad[field].to(dtype)
    model = _small_model(**kwargs)
    before = _weights(model)
    match = (
        rf"train_loader item 2: {field} has dtype {dtype} but the model's weights are torch.float32;"
        rf" convert it with data.{field} = data.{field}.float\(\)"
    )
    with pytest.raises(TypeError, match=match):
        fit(model, [*good[:2], bad], epochs=1, **QUIET)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_validation_labels_are_rejected_before_training(task):
    with pytest.raises(ValueError, match=r"val_loader has label 5 outside the class range \[0, 2\)"):
        fit(_small_model(), DataLoader(task[0][:8]), [_labelled(5)], epochs=1, **QUIET)


def test_model_without_num_classes_attribute_is_checked_by_a_dry_run(task):
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _small_model()

        def forward(self, data):
            return self.inner(data)

    with pytest.raises(ValueError, match=r"label 2 outside the class range \[0, 2\)"):
        fit(Wrapper(), [_labelled(0), _labelled(2)], epochs=1, **QUIET)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int, got 0"),
        ({"lr": 0.0}, ValueError, "lr must be a positive number, got 0.0"),
        ({"patience": 2}, ValueError, "patience needs a val_loader"),
        ({"scheduler": "plateau"}, ValueError, "scheduler='plateau' needs a val_loader"),
        (
            {"scheduler": "step"},
            ValueError,
            r"scheduler must be one of \['cosine', 'plateau', None\], got 'step'",
        ),
        ({"resume": "missing.ckpt"}, FileNotFoundError, "resume='missing.ckpt' is not a file"),
    ],
)
def test_bad_fit_arguments(kwargs, error, match, task):
    with pytest.raises(error, match=match):
        fit(_small_model(), DataLoader(task[0][:8]), **kwargs, **QUIET)


def test_single_graph_or_empty_list_as_loader_is_an_error(task):
    with pytest.raises(TypeError, match="got a single Data. Wrap it in a list"):
        fit(_small_model(), task[0][0], epochs=1, **QUIET)
    with pytest.raises(ValueError, match="train_loader is empty"):
        fit(_small_model(), [], epochs=1, **QUIET)


def test_resume_continues_up_to_the_requested_epochs(task, tmp_path):
    train, val = DataLoader(task[0][:64], batch_size=16, shuffle=True), DataLoader(task[1][:32])
    model = _small_model()
    first = fit(model, train, val, epochs=2, checkpoint_dir=tmp_path, **QUIET)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 8)
    second = fit(model, train, val, epochs=4, checkpoint_dir=tmp_path, **QUIET)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (3, 16)  # 2 more epochs of 4 steps, not 4 from scratch
    assert len(second) == 4
    assert second.train_loss[:2] == first.train_loss and second.val_loss[:2] == first.val_loss
    # Asking again for 4 epochs trains nothing and returns the stored History.
    assert fit(model, train, val, epochs=4, checkpoint_dir=tmp_path, **QUIET) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "best.pth", "last.ckpt", "logs"]


class _FailAt(L.Callback):
    def __init__(self, epoch: int, error: BaseException) -> None:
        self.epoch, self.error = epoch, error

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.error


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_run_resumes_from_the_last_finished_epoch(error, task, tmp_path):
    train = DataLoader(task[0][:64], batch_size=16)
    model = _small_model()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(type(error)):
        fit(model, train, epochs=4, checkpoint_dir=tmp_path, callbacks=[_FailAt(2, error)], **QUIET)
    assert signal.getsignal(signal.SIGINT) == handler  # Lightning's SIG_IGN is undone
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8 and len(ckpt["pixgraph"]["history"]["train_loss"]) == 2
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "best.pth", "last.ckpt", "logs"]
    history = fit(model, train, epochs=4, checkpoint_dir=tmp_path, **QUIET)
    assert len(history) == 4
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 16


def test_resume_false_starts_over(task, tmp_path):
    train = DataLoader(task[0][:32], batch_size=16)
    fit(_small_model(), train, epochs=2, checkpoint_dir=tmp_path, **QUIET)
    history = fit(_small_model(), train, epochs=1, checkpoint_dir=tmp_path, resume=False, **QUIET)
    assert len(history) == 1
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2


def test_load_checkpoint_restores_weights_and_history(task, tmp_path):
    model = _small_model()
    history = fit(model, DataLoader(task[0][:32], batch_size=16), epochs=2, checkpoint_dir=tmp_path, **QUIET)
    fresh = _small_model(seed=1)
    assert load_checkpoint(tmp_path / "last.ckpt", fresh)["history"] == history
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v.cpu())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt", fresh)


def test_early_stopping_stops_when_val_loss_rises(make_red_edge_graphs):
    train = make_red_edge_graphs(128, seed=0)
    flipped = [Data(x=g.x, edge_index=g.edge_index, y=1 - g.y) for g in make_red_edge_graphs(64, seed=1)]
    train_loader, val_loader = DataLoader(train, batch_size=16, shuffle=True), DataLoader(flipped)
    model = _small_model(hidden=32, pool="max")
    history = fit(model, train_loader, val_loader, epochs=40, lr=5e-3, patience=2, **QUIET)
    assert 3 <= len(history) < 40
    best = min(range(len(history)), key=history.val_loss.__getitem__)
    assert len(history) == best + 3  # stopped after `patience` epochs without improvement


def test_cosine_scheduler_lowers_the_learning_rate(task):
    seen = []

    class RecordLR(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    loader = DataLoader(task[0][:16])
    fit(_small_model(), loader, epochs=4, lr=0.01, scheduler="cosine", callbacks=[RecordLR()], **QUIET)
    assert seen[0] == pytest.approx(0.01) and seen == sorted(seen, reverse=True) and seen[-1] < 0.01


def test_evaluate_matches_a_hand_count_and_sklearn(task):
    model = _small_model(hidden=32, pool="max")
    fit(model, DataLoader(task[0], batch_size=32, shuffle=True), epochs=2, lr=5e-3, **QUIET)
    model.train()
    loader = DataLoader(task[1], batch_size=64)
    result = evaluate(model, loader)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b) for b in loader])
    labels = torch.cat([b.y for b in loader])
    preds = logits.argmax(1)
    assert result["n"] == 200
    assert result["accuracy"] == pytest.approx((preds == labels).float().mean().item())
    assert result["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-6)
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)


def test_macro_f1_matches_sklearn_with_missing_classes():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (300,), generator=g)  # class 4 never occurs, class 5 only predicted
    preds = torch.where(torch.rand(300, generator=g) < 0.3, torch.randint(0, 6, (300,), generator=g), labels)
    assert macro_f1(preds, labels, 7) == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-6)


def test_predict_returns_classes_and_probabilities(task):
    model = _small_model()
    preds, probs = predict(model, DataLoader(task[1][:50], batch_size=16))
    assert preds.shape == (50,) and probs.shape == (50, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(50))
    assert torch.equal(preds, probs.argmax(1))


def test_evaluate_rejects_labels_outside_the_model_classes():
    with pytest.raises(
        ValueError, match=r"has labels in \[0, 3\] but the model has 2 classes; labels must be in \[0, 2\)"
    ):
        evaluate(_small_model(), [Batch.from_data_list([_labelled(0), _labelled(3)])])
