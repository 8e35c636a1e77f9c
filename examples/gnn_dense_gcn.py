"""The GCN layer from the adjacency matrix A and the feature matrix X, step by step.

1. Write down a small graph as A (who is connected to whom) and X (one feature row per node).
2. Compute relu(D^-1/2 (A + I) D^-1/2 X W) by hand with DenseGCN and check that PyTorch
   Geometric's GCNConv, which works on an edge list, gives the same numbers.
3. Train a tiny graph classifier made of three DenseGCN layers on padded batches of (A, X):
   rings of 8-14 nodes with three red nodes, label 1 when two red nodes are neighbours.

Run:
    python examples/gnn_dense_gcn.py            # about 10 s on a laptop CPU
    python examples/gnn_dense_gcn.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.utils import dense_to_sparse

from gnn import DenseGCN, normalized_adjacency


def lecture_graph() -> tuple[Tensor, Tensor]:
    """Six nodes: a triangle 0-1-2, a tail 2-3-4 and node 5 on its own (isolated).

    Features: [degree, is-in-the-triangle, 1].
    """
    edges = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4)]
    adj = torch.zeros(6, 6)
    for i, j in edges:
        adj[i, j] = adj[j, i] = 1.0  # undirected: A is symmetric
    x = torch.stack([adj.sum(1), torch.tensor([1.0, 1, 1, 0, 0, 0]), torch.ones(6)], dim=1)
    return adj, x


def ring_dataset(n: int, *, seed: int, max_nodes: int = 14) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded dense batch: A (n, M, M), X (n, M, 2) one-hot red/blue, mask (n, M), labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    adj = torch.zeros(n, max_nodes, max_nodes)
    x = torch.zeros(n, max_nodes, 2)
    mask = torch.zeros(n, max_nodes, dtype=torch.bool)
    labels = torch.zeros(n, dtype=torch.long)
    i = 0
    while i < n:
        size = int(torch.randint(8, max_nodes + 1, (1,), generator=g))
        red = torch.zeros(size, dtype=torch.bool)
        red[torch.randperm(size, generator=g)[:3]] = True
        nodes = torch.arange(size)
        label = int((red & red.roll(-1)).any())  # node k and k+1 (mod size) are neighbours
        if label != i % 2:  # keep the classes balanced
            continue
        adj[i, nodes, (nodes + 1) % size] = 1.0
        adj[i, (nodes + 1) % size, nodes] = 1.0
        x[i, :size] = torch.stack([red.float(), (~red).float()], dim=1)
        mask[i, :size] = True
        labels[i] = label
        i += 1
    return adj, x, mask, labels


class DenseGraphClassifier(nn.Module):
    """Three DenseGCN layers, max pooling over each graph's real nodes, a linear classifier.

    Why three: GCN averages a node with its neighbours using the same weight, so after one layer
    a red node next to a red node (R-R) and a blue node between two red ones (R-B-R) look alike;
    it takes further hops to tell them apart (two layers stall near 0.9 accuracy).

    Shapes:
        - adj: (B, M, M); x: (B, M, F); mask: (B, M).
        - output: (B, num_classes).
    """

    def __init__(self, in_channels: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.gcn1 = DenseGCN(in_channels, hidden)
        self.gcn2 = DenseGCN(hidden, hidden)
        self.gcn3 = DenseGCN(hidden, hidden)
        self.classify = nn.Linear(hidden, num_classes)

    def forward(self, adj: Tensor, x: Tensor, mask: Tensor) -> Tensor:
        h = self.gcn1(adj, x, mask=mask)
        h = self.gcn2(adj, h, mask=mask)
        h = self.gcn3(adj, h, mask=mask)
        pooled = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.classify(pooled)


def accuracy(model: nn.Module, adj: Tensor, x: Tensor, mask: Tensor, labels: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        _, preds = torch.max(model(adj, x, mask), 1)
    return preds.eq(labels).sum().item() / labels.numel()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256/128 train/test graphs instead of 1024/512, 15 epochs unless --epochs is given (smoke run)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 30; quick: 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs = args.epochs if args.epochs is not None else (15 if args.quick else 30)
    n_train, n_test = (256, 128) if args.quick else (1024, 512)
    torch.manual_seed(args.seed)
    torch.set_printoptions(precision=3, sci_mode=False)

    print("== 1. The graph as matrices ==")
    adj, x = lecture_graph()
    print("A =\n", adj)
    print("X = [degree, in triangle, 1] =\n", x)
    degrees = (adj + torch.eye(6)).sum(1)
    print("degrees of A + I:", degrees.tolist(), "(node 5 is isolated: its self loop gives degree 1)")
    print("D^-1/2 (A + I) D^-1/2 =\n", normalized_adjacency(adj))

    print("\n== 2. DenseGCN from (A, X) against GCNConv from the edge list ==")
    conv = GCNConv(3, 4)
    layer = DenseGCN(3, 4, activation=None)
    layer.load_state_dict(conv.state_dict())  # same parameter names: lin.weight, bias
    edge_index, _ = dense_to_sparse(adj)
    dense_out = layer(adj, x)
    sparse_out = conv(x, edge_index)
    print("edge_index (source row, target row) =\n", edge_index)
    print("D^-1/2 (A+I) D^-1/2 X W + b =\n", dense_out.detach())
    diff = (dense_out - sparse_out).abs().max().item()
    verdict = "equal" if diff < 1e-5 else "DIFFERENT"
    print(f"max |DenseGCN - GCNConv| = {diff:.2e}  ->  {verdict} (tolerance 1e-5)")
    print("with ReLU (the lecture formula):\n", torch.relu(dense_out).detach())

    print("\n== 3. A tiny dense GCN classifier: are two red nodes neighbours? ==")
    train = ring_dataset(n_train, seed=args.seed)
    test = ring_dataset(n_test, seed=args.seed + 1)
    model = DenseGraphClassifier(2, 32, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch_size = 64
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n_train)
        total = 0.0
        for start in range(0, n_train, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(
                model(train[0][idx], train[1][idx], train[2][idx]), train[3][idx]
            )
            loss.backward()
            optimizer.step()
            total += loss.item() * idx.numel()
        if epoch == 1 or epoch == epochs or epoch % 10 == 0:
            print(
                f"epoch {epoch:3d}  train loss {total / n_train:.4f}  train acc {accuracy(model, *train):.3f}"
            )
    test_acc = accuracy(model, *test)
    print(f"test accuracy: {test_acc:.3f} on {n_test} graphs (chance 0.5)")


if __name__ == "__main__":
    main()
