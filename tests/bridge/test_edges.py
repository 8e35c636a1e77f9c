import numpy as np
import pytest
import torch

from bridge.edges import knn_edges, region_adjacency, undirected
from bridge.segmentation import relabel


def quadrant_labels(h: int = 32, w: int = 32) -> np.ndarray:
    labels = np.zeros((h, w), np.int64)
    labels[: h // 2, w // 2 :] = 1
    labels[h // 2 :, : w // 2] = 2
    labels[h // 2 :, w // 2 :] = 3
    return labels


def brute_force_borders(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """Border length of every touching pair, from an explicit scan (test oracle)."""
    out: dict[tuple[int, int], int] = {}
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                yy, xx = y + dy, x + dx
                if yy < h and xx < w and labels[y, x] != labels[yy, xx]:
                    key = (int(min(labels[y, x], labels[yy, xx])), int(max(labels[y, x], labels[yy, xx])))
                    out[key] = out.get(key, 0) + 1
    return out


def assert_undirected_sorted(ei: torch.Tensor) -> None:
    assert ei.dtype == torch.long and ei.shape[0] == 2
    pairs = list(zip(ei[0].tolist(), ei[1].tolist()))
    assert pairs == sorted(set(pairs))  # sorted, no duplicates
    assert all(a != b for a, b in pairs)  # no self loops
    assert set(pairs) == {(b, a) for a, b in pairs}  # both directions


def test_quadrants_have_exactly_the_four_shared_borders():
    ei, border = region_adjacency(quadrant_labels(), return_attr=True)
    pairs = {(a, b) for a, b in zip(ei[0].tolist(), ei[1].tolist()) if a < b}
    assert pairs == {(0, 1), (0, 2), (1, 3), (2, 3)}  # no diagonals (0-3, 1-2) under 4-connectivity
    assert ei.shape == (2, 8)
    assert border.tolist() == [16.0] * 8
    assert_undirected_sorted(ei)


def test_matches_brute_force_on_random_regions():
    rng = np.random.default_rng(0)
    labels = relabel(np.kron(rng.integers(0, 6, (6, 7)), np.ones((3, 2), np.int64)))
    ei, border = region_adjacency(labels, return_attr=True)
    assert_undirected_sorted(ei)
    expected = brute_force_borders(labels)
    got = {(a, b): int(c) for a, b, c in zip(ei[0].tolist(), ei[1].tolist(), border.tolist()) if a < b}
    assert got == expected


def test_single_region_has_no_edges():
    ei, border = region_adjacency(np.zeros((5, 4), np.int64), return_attr=True)
    assert ei.shape == (2, 0) and border.shape == (0,)


def test_thin_label_maps():
    assert region_adjacency(np.array([[0, 1, 2]])).tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert region_adjacency(np.array([[0], [1]])).tolist() == [[0, 1], [1, 0]]


def test_accepts_tensor_labels():
    ei = region_adjacency(torch.from_numpy(quadrant_labels(4, 4)))
    assert ei.shape == (2, 8)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0, 0], [3, 3]]), r"holes in its ids.*relabel"),
        (np.array([[0, -1]]), "negative ids"),
        (np.zeros((2, 2, 1), np.int64), "2-D label map"),
        (np.zeros((2, 2)), "expected an integer label map"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        region_adjacency(labels)


def test_knn_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    ei, dist = knn_edges(points, 1)
    assert ei.tolist() == [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]
    assert dist.tolist() == [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    directed, ddist = knn_edges(points, 1, symmetric=False)
    # one edge j -> i into every node i (its nearest neighbour j)
    assert directed.tolist() == [[1, 0, 1, 2], [0, 1, 2, 3]]
    assert ddist.tolist() == [1.0, 1.0, 2.0, 4.0]


def test_knn_matches_brute_force():
    rng = np.random.default_rng(1)
    points = rng.random((40, 3)).astype(np.float32)
    k = 4
    ei, dist = knn_edges(points, k, chunk_size=7)  # several chunks
    assert_undirected_sorted(ei)
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    expected = {(int(j), i) for i in range(40) for j in nearest[i]}
    expected |= {(b, a) for a, b in expected}
    assert set(zip(ei[0].tolist(), ei[1].tolist())) == expected
    np.testing.assert_allclose(dist.numpy(), d[ei[0].numpy(), ei[1].numpy()], rtol=1e-5)
    directed, _ = knn_edges(points, k, symmetric=False)
    assert directed.shape == (2, 40 * k)
    assert (torch.bincount(directed[1], minlength=40) == k).all()


@pytest.mark.parametrize(
    ("points", "k", "match"),
    [
        (torch.rand(5, 2), 5, "k=5 but there are only 5 nodes; k must be at most N - 1 = 4"),
        (torch.rand(5, 2), 0, "k must be a positive int, got 0"),
        (torch.rand(5), 1, r"shape \(5,\); expected a non-empty \(N, D\)"),
        (torch.tensor([[0.0], [float("nan")]]), 1, "NaN"),
    ],
)
def test_knn_errors(points, k, match):
    with pytest.raises(ValueError, match=match):
        knn_edges(points, k)


def test_undirected_helper():
    ei = torch.tensor([[0, 1, 2, 2, 1], [1, 0, 2, 0, 0]])
    assert undirected(ei, 3).tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
