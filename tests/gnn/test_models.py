"""Tests for gnn/models.py: GraphClassifier, the conv registry and the benchmark preset."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnn import models
from gnn.models import GraphClassifier, list_convs, list_presets, register_conv

CONVS = ["gat", "gcn", "gin", "sage"]


def _batch(make_random_graph, sizes=(6, 9, 4), features=5):
    return Batch.from_data_list(
        [make_random_graph(n, seed=i, features=features, label=i % 3) for i, n in enumerate(sizes)]
    )


def test_registry_lists_the_four_convs():
    assert list_convs() == CONVS
    assert list_presets() == ["benchmark"]


def test_unknown_conv_lists_known_ones():
    with pytest.raises(ValueError, match=r"conv must be one of \['gat', 'gcn', 'gin', 'sage'\]; got 'gcnn'"):
        GraphClassifier(5, 3, conv="gcnn")


@pytest.mark.parametrize("conv", CONVS)
def test_forward_shape_finite_and_gradients_reach_every_parameter(conv, make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=2, dropout=0.1)
    batch = _batch(make_random_graph)
    logits = model(batch)
    assert logits.shape == (3, 3)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, batch.y).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("conv", CONVS)
def test_tensor_call_equals_data_call(conv, make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=2).eval()
    batch = _batch(make_random_graph)
    by_data = model(batch)
    by_tensors = model(batch.x, batch.edge_index, batch.batch, batch.edge_weight)
    torch.testing.assert_close(by_data, by_tensors)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("norm", ["batch", "layer", "graph", None])
@pytest.mark.parametrize("case", ["no_edges", "single_node", "isolated_nodes"])
def test_degenerate_graphs_give_finite_logits_in_train_and_eval(conv, norm, case):
    torch.manual_seed(0)
    if case == "no_edges":
        graph = Data(x=torch.randn(4, 5), edge_index=torch.empty(2, 0, dtype=torch.long))
    elif case == "single_node":
        graph = Data(x=torch.randn(1, 5), edge_index=torch.empty(2, 0, dtype=torch.long))
    else:  # nodes 3 and 4 have no edges
        graph = Data(x=torch.randn(5, 5), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=3, norm=norm)
    for train in (True, False):
        model.train(train)
        for data in (graph, Batch.from_data_list([graph])):
            logits = model(data)
            assert logits.shape == (1, 3)
            assert torch.isfinite(logits).all()


def test_gcn_keeps_isolated_node_features_through_self_loops():
    torch.manual_seed(0)
    model = GraphClassifier(5, 2, conv="gcn", hidden=8, layers=2, residual=False, norm=None).eval()
    x = torch.randn(3, 5, requires_grad=True)
    edge_index = torch.tensor([[0, 1], [1, 0]])  # node 2 is isolated
    model(x, edge_index)[0, 0].backward()
    assert x.grad[2].abs().sum() > 0


def test_gcn_uses_edge_weight_and_one_dimensional_edge_attr(make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv="gcn", hidden=16, layers=2).eval()
    g = make_random_graph(8, seed=3)
    weighted = model(g)
    unweighted = model(Data(x=g.x, edge_index=g.edge_index))
    as_attr = model(Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_weight))
    wide_attr = model(Data(x=g.x, edge_index=g.edge_index, edge_attr=torch.rand(g.num_edges, 3)))
    assert not torch.allclose(weighted, unweighted)
    torch.testing.assert_close(as_attr, weighted)
    torch.testing.assert_close(wide_attr, unweighted)  # (E, 3) features are not weights: ignored


def test_gcn_with_edge_dim_one_takes_column_edge_attr(make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv="gcn", hidden=16, layers=2, edge_dim=1).eval()
    g = make_random_graph(8, seed=3)
    column = model(Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_weight.view(-1, 1)))
    torch.testing.assert_close(column, model(g))


@pytest.mark.parametrize("conv", ["gat", "gin"])
def test_edge_features_are_used_when_edge_dim_is_set(conv, make_random_graph):
    torch.manual_seed(0)
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=2, edge_dim=2).eval()
    g = make_random_graph(8, seed=4)
    a = model(Data(x=g.x, edge_index=g.edge_index, edge_attr=torch.rand(g.num_edges, 2)))
    b = model(Data(x=g.x, edge_index=g.edge_index, edge_attr=torch.rand(g.num_edges, 2)))
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"edge_dim=2 and needs data.edge_attr of shape \(E, 2\)"):
        model(Data(x=g.x, edge_index=g.edge_index))
    with pytest.raises(ValueError, match=r"edge_attr must have shape"):
        model(Data(x=g.x, edge_index=g.edge_index, edge_attr=torch.rand(g.num_edges, 3)))


def test_feature_width_mismatch_is_a_clear_error(make_random_graph):
    model = GraphClassifier(5, 3)
    with pytest.raises(ValueError, match=r"x has 7 features per node but the model was built with in_chann"):
        model(make_random_graph(6, seed=0, features=7))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=3), ValueError, "data.x is missing"),
        (Data(x=torch.randn(5), edge_index=torch.empty(2, 0, dtype=torch.long)), ValueError, "2-D tensor"),
        (Data(x=torch.ones(3, 5, dtype=torch.long), edge_index=torch.empty(2, 0, dtype=torch.long)),
         TypeError, "float tensor"),
        (Data(x=torch.randn(0, 5), edge_index=torch.empty(2, 0, dtype=torch.long)), ValueError, "0 nodes"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([0, 1])), ValueError, r"shape \(2, E\)"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([[0.0], [1.0]])), TypeError, "torch.long"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([[0], [1]]), edge_weight=torch.ones(4)),
         ValueError, r"edge weights must have shape \(1,\)"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([[0, -1], [1, 2]])),
         ValueError, r"index -1 \(edge 1\) but the graph has 3 nodes; expected indices 0\.\.2"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([[0, 1], [1, 5]])),
         ValueError, r"node index 5 \(edge 1\) but the graph has 3 nodes"),
        (Data(x=torch.randn(3, 5), edge_index=torch.tensor([[3], [3]])),
         ValueError, r"node index 3 \(edge 0\) but the graph has 3 nodes"),
    ],
    ids=["no-x", "1-d-x", "long-x", "no-nodes", "1-d-edges", "float-edges", "weights", "negative",
         "too-large", "self-loop-past-end"],
)  # fmt: skip
def test_bad_graphs_raise(data, error, match):
    with pytest.raises(error, match=match):
        GraphClassifier(5, 3)(data)


def test_data_with_extra_tensors_is_a_type_error(make_random_graph):
    g = make_random_graph(4, seed=0)
    with pytest.raises(TypeError, match="either a Data/Batch alone or tensors"):
        GraphClassifier(5, 3)(g, g.edge_index)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pool": "sum"}, r"pool must be one of \['add', 'max', 'mean'\]; got 'sum'"),
        ({"norm": "instance"}, r"norm must be one of"),
        ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\); got 1.0"),
        ({"layers": 0}, r"layers must be an integer >= 1; got 0"),
        (
            {"conv": "gat", "hidden": 30, "heads": 4},
            r"multiple of heads .* \(use hidden=28\)",
        ),
        ({"conv": "sage", "edge_dim": 2}, r"conv='sage' takes no edge values; got edge_dim=2"),
        ({"conv": "gcn", "edge_dim": 3}, r"one scalar weight per edge; got edge_dim=3"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GraphClassifier(5, 3, **kwargs)


def test_num_classes_below_two_is_an_error():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2; got 1"):
        GraphClassifier(5, 1)


@pytest.mark.parametrize("conv", CONVS)
def test_benchmark_preset_is_about_100k_parameters_and_4_layers(conv):
    model = GraphClassifier.preset("benchmark", 5, 10, conv=conv)
    n_params = sum(p.numel() for p in model.parameters())
    assert 90_000 <= n_params <= 100_000
    assert model.layers == 4 and len(model.convs) == 4
    assert model.pool == "mean" and model.residual and model.norm == "batch" and model.dropout == 0.0


def test_benchmark_gcn_matches_the_papers_width():
    # Benchmarking-GNNs MNIST GCN: hidden 146 for the 100k budget.
    assert GraphClassifier.preset("benchmark", 5, 10, conv="gcn").hidden == 146


def test_preset_overrides_and_unknown_name():
    model = GraphClassifier.preset("benchmark", 5, 10, conv="gcn", hidden=32, layers=2)
    assert (model.hidden, model.layers) == (32, 2)
    with pytest.raises(ValueError, match=r"preset name must be one of \['benchmark'\]; got 'tiny'"):
        GraphClassifier.preset("tiny", 5, 10)


def test_repr_shows_config_and_config_rebuilds_the_model():
    model = GraphClassifier(5, 3, conv="gat", hidden=16, layers=2, pool="max", heads=2)
    text = repr(model)
    assert text.startswith("GraphClassifier(in_channels=5, num_classes=3, conv='gat', hidden=16, layers=2")
    assert "pool='max'" in text and "heads=2" in text and "params=" in text
    clone = GraphClassifier(**model.config)
    clone.load_state_dict(model.state_dict())  # same architecture, key for key
    assert repr(clone) == text


def test_register_conv_adds_a_layer(monkeypatch, make_random_graph):
    monkeypatch.setattr(models, "_CONVS", dict(models._CONVS))
    from torch_geometric.nn import GraphConv

    @register_conv("graphconv", edge_input="weight", description="Morris et al. GraphConv")
    def _build(in_channels, out_channels, *, edge_dim, heads):
        return GraphConv(in_channels, out_channels)

    assert "graphconv" in list_convs()
    logits = GraphClassifier(5, 3, conv="graphconv", hidden=8, layers=1)(make_random_graph(5, seed=0))
    assert logits.shape == (1, 3)
    with pytest.raises(ValueError, match="edge_input must be"):
        register_conv("bad", edge_input="vector")


@pytest.mark.parametrize("conv", CONVS)
def test_edge_index_range_is_checked_for_every_conv_and_batch(conv, make_random_graph):
    model = GraphClassifier(5, 3, conv=conv, hidden=8, layers=1).eval()
    batch = _batch(make_random_graph)  # 19 nodes in 3 graphs
    assert model(batch).shape == (3, 3)  # a valid batch passes the check
    bad = batch.edge_index.clone()
    bad[1, -1] = 19
    with pytest.raises(
        ValueError, match=rf"node index 19 \(edge {bad.shape[1] - 1}\) but the graph has 19 nodes"
    ):
        model(batch.x, bad, batch.batch)
    with pytest.raises(
        ValueError, match=r"batch must have shape \(19,\), one graph index per node of x; got \(18"
    ):
        model(batch.x, batch.edge_index, batch.batch[:-1])


def test_gcn_built_with_edge_dim_needs_edge_weights(make_random_graph):
    g = make_random_graph(6, seed=0)
    model = GraphClassifier(5, 3, conv="gcn", hidden=8, layers=1, edge_dim=1)
    with pytest.raises(ValueError, match=r"edge_dim=1 and needs one weight per edge, data.edge_weight"):
        model(g.x, g.edge_index)
    assert model(g).shape == (1, 3)  # with data.edge_weight it runs
    GraphClassifier(5, 3, conv="gcn", hidden=8, layers=1)(g.x, g.edge_index)  # no edge_dim: unweighted


@pytest.mark.parametrize(
    ("kwargs", "field", "dtype"),
    [
        ({}, "x", torch.float64),
        ({}, "x", torch.float16),
        ({}, "x", torch.bfloat16),
        ({}, "edge_weight", torch.float64),
        ({}, "edge_attr", torch.float64),  # a 1-D edge_attr is GCN's edge weight
        ({"conv": "gat", "edge_dim": 2}, "edge_attr", torch.float64),
        ({"conv": "gin", "edge_dim": 2}, "edge_attr", torch.half),
        ({"global_channels": 4}, "u", torch.float64),
    ],
)
def test_float_input_of_another_dtype_is_a_type_error_naming_the_field(
    kwargs, field, dtype, make_random_graph
):
    g = make_random_graph(6, seed=0)
    data = Data(x=g.x, edge_index=g.edge_index, u=torch.rand(1, 4))
    if kwargs.get("edge_dim") == 2:
        data.edge_attr = torch.rand(g.num_edges, 2)
    elif field == "edge_attr":
        data.edge_attr = g.edge_weight
    else:
        data.edge_weight = g.edge_weight
    model = GraphClassifier(5, 3, hidden=8, layers=1, **kwargs)
    assert model(data).shape == (1, 3)
    data[field] = data[field].to(dtype)
    match = (
        rf"{field} has dtype {dtype} but the model's weights are torch.float32; convert it with"
        rf" data.{field} = data.{field}.float\(\)"
    )
    with pytest.raises(TypeError, match=match):
        model(data)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_a_fraction_p_and_rescales_the_rest(p):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = models.dropout(x, p)
    assert abs(float((y == 0).float().mean()) - p) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1.0 / (1.0 - p)))
    assert abs(float(y.mean()) - 1.0) < 0.03  # the expectation of F.dropout's output


def test_dropout_is_the_identity_out_of_training_and_zero_at_one():
    x = torch.randn(4, 3)
    assert models.dropout(x, 0.5, training=False) is x
    assert models.dropout(x, 0.0) is x
    assert torch.equal(models.dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        models.dropout(x, 1.5)


def test_dropout_gradient_is_its_mask_and_a_seed_repeats_it():
    x = torch.randn(1000, 8, requires_grad=True)
    torch.manual_seed(3)
    y = models.dropout(x, 0.4)
    y.sum().backward()
    mask = y.detach() / x.detach()
    assert torch.allclose(x.grad, torch.where(y.detach() == 0, torch.zeros_like(mask), mask))
    torch.manual_seed(3)
    assert torch.equal(models.dropout(x.detach(), 0.4), y.detach())


def test_dropout_example_runs():
    import doctest

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(models.dropout, "dropout", globs={"torch": torch, "dropout": models.dropout}):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0


def test_graph_classifier_with_dropout_is_random_in_training_only(make_random_graph):
    batch = _batch(make_random_graph)
    model = GraphClassifier(5, 3, conv="gcn", hidden=16, layers=2, dropout=0.5)
    a, b = model(batch), model(batch)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(batch), model(batch))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dropout_keeps_p_in_every_float_dtype(dtype):
    torch.manual_seed(0)
    y = models.dropout(torch.ones(400_000, dtype=dtype), 0.3)
    assert y.dtype == dtype
    # bfloat16 draws would compare with p rounded to 0.30078: about 6 standard errors (0.0007) too many
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.002


def _per_layer_reference(model: GraphClassifier) -> GraphClassifier:
    """The same model normalising the graph inside every GCN layer (PyG's default GCNConv path)."""
    import copy

    ref = copy.deepcopy(model)
    ref._prepare = None
    for conv in ref.convs:
        if isinstance(conv, models.GCNConv):  # GCNConv(normalize=False) also turns self loops off
            conv.normalize = conv.add_self_loops = True
    return ref


def _awkward_graph() -> Data:
    """Directed and repeated edges, a self loop with its own weight, an isolated node, weights."""
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 0, 4], [1, 0, 0, 3, 2, 1, 1, 0]])
    weight = torch.tensor([0.5, 1.0, 2.0, 0.3, 4.0, 1.5, 0.7, 0.2])
    return Data(
        x=torch.randn(6, 5, generator=torch.Generator().manual_seed(3)),
        edge_index=edge_index,
        edge_weight=weight,
        y=torch.tensor([1]),
    )


def test_gcn_adjacency_is_the_dense_normalised_matrix_with_repeated_edges_and_self_loops():
    g = _awkward_graph()
    (adj,) = models.gcn_adjacency(g.edge_index, g.edge_weight, 6)
    assert adj.layout == torch.sparse_csr
    a = torch.zeros(6, 6)
    a.index_put_((g.edge_index[1], g.edge_index[0]), g.edge_weight, accumulate=True)  # a[target, source]
    diag = torch.diagonal(a)
    diag[diag == 0] = 1.0  # PyG adds a unit self loop only where none is given
    deg = a.sum(1)
    want = deg.rsqrt().view(-1, 1) * a * deg.rsqrt().view(1, -1)
    torch.testing.assert_close(adj.to_dense(), want)
    # rows sorted, one entry per (target, source)
    assert int(adj.col_indices().numel()) == int((a != 0).sum())


def test_gcn_adjacency_keeps_the_gradient_of_edge_weights_that_need_one():
    g = _awkward_graph()
    conv_sparse = models.GCNConv(5, 4, normalize=False)
    conv_ref = models.GCNConv(5, 4)
    conv_ref.load_state_dict(conv_sparse.state_dict())
    w1 = g.edge_weight.clone().requires_grad_(True)
    w2 = g.edge_weight.clone().requires_grad_(True)
    graph = models.gcn_adjacency(g.edge_index, w1, 6)
    assert len(graph) == 2  # an edge list that autograd follows, not a sparse matrix
    conv_sparse(g.x, *graph).sum().backward()
    conv_ref(g.x, g.edge_index, w2).sum().backward()
    assert w1.grad is not None and w1.grad.abs().sum() > 0
    torch.testing.assert_close(w1.grad, w2.grad)


@pytest.mark.parametrize("conv", ["gcn", "gin"])
@pytest.mark.parametrize("dynamic_k", [None, 2])
def test_adjacency_once_per_forward_equals_the_edge_list_in_every_layer(conv, dynamic_k, make_random_graph):
    torch.manual_seed(0)
    graphs = [make_random_graph(n, seed=i, features=5, label=i % 3) for i, n in enumerate((6, 9, 4))]
    batch = Batch.from_data_list([*graphs, _awkward_graph()])
    model = GraphClassifier(5, 3, conv=conv, hidden=16, layers=3, dynamic_k=dynamic_k)
    ref = _per_layer_reference(model)
    for m in (model, ref):
        m.train()
    x1 = batch.x.clone().requires_grad_(True)
    x2 = batch.x.clone().requires_grad_(True)
    out = model(x1, batch.edge_index, batch.batch, batch.edge_weight)
    want = ref(x2, batch.edge_index, batch.batch, batch.edge_weight)
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    want.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    # in float64 too (the adjacency takes the model's dtype when the edges carry no weights)
    model64, ref64 = model.double().eval(), ref.double().eval()
    torch.testing.assert_close(
        model64(batch.x.double(), batch.edge_index, batch.batch),
        ref64(batch.x.double(), batch.edge_index, batch.batch),
    )


@pytest.mark.parametrize("conv", ["gcn", "gin"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_layers_take_the_edge_list_and_match_it(conv, dtype, make_random_graph):
    torch.manual_seed(0)
    batch = Batch.from_data_list([make_random_graph(n, seed=i, features=5) for i, n in enumerate((6, 9))])
    model = GraphClassifier(5, 2, conv=conv, hidden=16, layers=2).eval()
    ref = _per_layer_reference(model)
    with torch.autocast("cpu", dtype=dtype):
        out, want = model(batch), ref(batch)
    assert out.dtype == dtype
    torch.testing.assert_close(out, want)
    assert models.gcn_adjacency(batch.edge_index, None, batch.num_nodes, sparse=False)[0].shape[0] == 2


def test_gcn_forward_leaves_the_warnings_registry_alone(make_random_graph):
    """A warning shown once stays shown once: the forward must not reset Python's registry of warnings
    already shown (``warnings.catch_warnings`` does, so it runs on the first CSR matrix only)."""
    import warnings

    batch = Batch.from_data_list([make_random_graph(6, seed=0)])
    model = GraphClassifier(5, 2, conv="gcn", hidden=8, layers=1).eval()
    model(batch)  # the first CSR matrix of the process may already have been made
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):
            warnings.warn("a warning of the training loop", UserWarning, stacklevel=1)
            model(batch)
    assert sum("training loop" in str(w.message) for w in seen) == 1


def test_csr_product_backward_equals_torchs_and_builds_the_transpose_once():
    gen = torch.Generator().manual_seed(5)
    g = _awkward_graph()
    (adj,) = models.gcn_adjacency(g.edge_index, g.edge_weight, 6)
    x1 = torch.randn(6, 4, generator=gen, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    up = torch.randn(6, 4, generator=gen)
    out = models._CSRProduct.apply(x1, adj)
    assert torch.equal(out, torch.sparse.mm(adj, x2.detach()))
    (out * up).sum().backward()
    (torch.sparse.mm(adj, x2) * up).sum().backward()  # torch's own backward
    assert torch.equal(x1.grad, x2.grad)
    t = adj._pixgraph_transposed
    torch.testing.assert_close(t.to_dense(), adj.to_dense().T)
    assert models._transposed(adj) is t  # kept with the matrix: later layers reuse it


def test_a_training_step_transposes_the_adjacency_once_and_inference_never(monkeypatch, make_random_graph):
    built = []
    csr = models._adjacency_csr

    def counting(edge_index, w, num_nodes):
        built.append(num_nodes)
        return csr(edge_index, w, num_nodes)

    monkeypatch.setattr(models, "_adjacency_csr", counting)
    batch = Batch.from_data_list([make_random_graph(n, seed=i, features=5) for i, n in enumerate((6, 9))])
    for conv in ("gcn", "gin"):
        model = GraphClassifier(5, 2, conv=conv, hidden=8, layers=3).train()
        built.clear()
        model(batch).sum().backward()
        assert len(built) == 2, conv  # the adjacency and, for all 3 layers' backward, its transpose
        built.clear()
        with torch.no_grad():
            model.eval()(batch)
        assert len(built) == 1, conv


def test_adjacency_values_that_need_a_gradient_keep_torchs_product():
    g = _awkward_graph()
    (adj,) = models.gcn_adjacency(g.edge_index, g.edge_weight, 6)
    values = adj.values().clone().requires_grad_(True)
    leaf = torch.sparse_csr_tensor(
        adj.crow_indices(), adj.col_indices(), values, adj.shape, check_invariants=True
    )
    conv = models._SharedGCNConv(5, 3, normalize=False)
    x = g.x.clone().requires_grad_(True)
    assert models._shared_product(leaf, x) is None  # the layer's own (torch's) product
    conv(x, leaf).sum().backward()
    assert values.grad is not None and values.grad.abs().sum() > 0 and x.grad is not None


def test_sum_adjacency_counts_repeated_edges_and_gine_keeps_its_edge_features(make_random_graph):
    g = _awkward_graph()
    (adj,) = models.sum_adjacency(g.edge_index, None, 6)
    a = torch.zeros(6, 6)
    a.index_put_((g.edge_index[1], g.edge_index[0]), torch.ones(g.edge_index.shape[1]), accumulate=True)
    torch.testing.assert_close(adj.to_dense(), a)  # [target, source] counts, the self loop kept as given
    assert models.sum_adjacency(g.edge_index, None, 6, sparse=False)[0] is g.edge_index
    # GINE (edge_dim set) reads edge features per edge: no adjacency is prepared for it
    torch.manual_seed(0)
    graph = make_random_graph(7, seed=1, features=5)
    graph.edge_attr = torch.rand(graph.edge_index.shape[1], 3)
    model = GraphClassifier(5, 2, conv="gin", hidden=8, layers=2, edge_dim=3).eval()
    out = model(graph)
    graph.edge_attr = graph.edge_attr * 5
    assert not torch.allclose(model(graph), out)
