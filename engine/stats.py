"""Paired comparisons of two classifiers evaluated on the same test items and seeds.

When two models are tested on the same split, their results are paired: what matters is where they
disagree. This module gives

* :func:`mcnemar_exact`: the exact McNemar test on one pair of prediction vectors (two-sided binomial
  test on the discordant items: ``b`` = A right and B wrong, ``c`` = A wrong and B right);
* :func:`paired_bootstrap`: the mean accuracy difference over seeds with a percentile interval from
  resampling the test items (the same resample for every seed and both models);
* :func:`compare_pair`: both, as one JSON-ready dict, and :func:`format_pair` for a summary line such as
  ``E - B: +0.8 pts [-0.5, +2.1], McNemar p = 0.31, 0.45, 0.12 (per seed)``.

Nothing here knows images or graphs: inputs are predictions and labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["compare_pair", "format_pair", "mcnemar_exact", "paired_bootstrap"]


def _correct(preds: Any, labels: Any, name: str) -> np.ndarray:
    p, y = np.asarray(preds), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"{name} and labels must have the same shape, got {p.shape} and {y.shape}")
    if (p.dtype.kind in "SU") != (y.dtype.kind in "SU"):  # '3' never equals 3: all would be wrong
        raise ValueError(
            f"{name} ({p.dtype}) and labels ({y.dtype}) are not of one kind: compare class indices with "
            "class indices (or names with names)"
        )
    return p == y


def _flags(values: Any, name: str, *, max_ndim: int) -> np.ndarray:
    """Right / wrong flags as a bool array: bools or 0/1 only (predictions are not flags)."""
    a = np.asarray(values)
    if a.dtype != bool:
        if a.dtype.kind not in "iuf" or (a.size and not np.isin(a, (0, 1)).all()):
            raise ValueError(
                f"{name} must hold right/wrong flags (bool or 0/1), got {a.dtype} values such as "
                f"{a.reshape(-1)[:3].tolist()}; pass preds == labels, or use compare_pair(preds_a, "
                "preds_b, labels)"
            )
        a = a.astype(bool)
    if a.ndim > max_ndim:
        raise ValueError(f"{name} must have at most {max_ndim} dimension(s), got shape {a.shape}")
    return a


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """Exact McNemar test of two classifiers on the same items.

    Args:
        correct_a: per item, whether model A was right.
        correct_b: the same for model B (same items, same order).

    Returns:
        ``{"b": A right & B wrong, "c": A wrong & B right, "p": two-sided p-value}``; ``p = 1`` when the
        models never disagree.

    Shapes:
        - correct_a, correct_b: ``(N,)`` bool.

    Example:
        >>> a = np.array([True] * 15)
        >>> b = np.array([False] * 10 + [True] * 5)
        >>> r = mcnemar_exact(a, b)
        >>> r["b"], r["c"], round(r["p"], 6)
        (10, 0, 0.001953)
    """
    a, b = _flags(correct_a, "correct_a", max_ndim=1), _flags(correct_b, "correct_b", max_ndim=1)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"correct_a and correct_b must be 1-D of the same length, got {a.shape} and {b.shape}"
        )
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    n = n01 + n10
    if n == 0:
        return {"b": n01, "c": n10, "p": 1.0}
    k = min(n01, n10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # P(X <= k), X ~ Binomial(n, 1/2)
    return {"b": n01, "c": n10, "p": min(1.0, 2.0 * tail)}


def paired_bootstrap(
    correct_a: Any, correct_b: Any, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean accuracy difference A - B over seeds, with a bootstrap interval over the test items.

    Each resample draws the test items with replacement once and uses that draw for every seed and both
    models, so the pairing is kept.

    Args:
        correct_a: ``(S, N)`` (or ``(N,)``) whether A was right, per seed and test item.
        correct_b: the same for B.
        resamples: bootstrap resamples.
        level: coverage of the interval.
        seed: seed of the resampling.

    Returns:
        ``{"diff", "low", "high"}`` as fractions (multiply by 100 for points).

    Shapes:
        - correct_a, correct_b: ``(S, N)`` bool.

    Example:
        >>> a = np.ones((3, 50), bool); b = a.copy(); b[:, :5] = False
        >>> r = paired_bootstrap(a, b)
        >>> round(r["diff"], 2), r["low"] > 0
        (0.1, True)
    """
    a = np.atleast_2d(_flags(correct_a, "correct_a", max_ndim=2))
    b = np.atleast_2d(_flags(correct_b, "correct_b", max_ndim=2))
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must have the same shape, got {a.shape} and {b.shape}")
    if a.shape[1] == 0:
        raise ValueError("no test items; the paired bootstrap needs at least one")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive int (e.g. the default 2000), got {resamples!r}")
    d = (a.astype(np.float64) - b).mean(axis=0)  # per item, averaged over seeds
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi)}


def compare_pair(
    preds_a: Any, preds_b: Any, labels: Any, *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Paired statistics of arms A and B on the same test items for every seed.

    Args:
        preds_a: ``(S, N)`` predictions of A, one row per seed.
        preds_b: ``(S, N)`` predictions of B.
        labels: ``(N,)`` true labels (the same split for every seed).
        resamples: bootstrap resamples.
        seed: seed of the bootstrap.

    Returns:
        ``{"diff", "low", "high", "mcnemar": [{"b", "c", "p"} per seed], "seeds", "n"}``.

    Example:
        >>> y = np.zeros(20, int); a = np.zeros((2, 20), int); b = a.copy(); b[:, :6] = 1
        >>> r = compare_pair(a, b, y)
        >>> round(r["diff"], 2), [m["c"] for m in r["mcnemar"]]
        (0.3, [0, 0])
    """
    pa, pb = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    y = np.asarray(labels).reshape(-1)
    if pa.shape != pb.shape or pa.shape[1] != y.size:
        raise ValueError(
            f"preds_a {pa.shape} and preds_b {pb.shape} must both be (seeds, {y.size}): one row of "
            "test predictions per seed, on the same test items as labels"
        )
    ca, cb = (
        _correct(pa, y[None, :].repeat(len(pa), 0), "preds_a"),
        _correct(pb, y[None].repeat(len(pb), 0), "preds_b"),
    )
    out: dict[str, Any] = paired_bootstrap(ca, cb, resamples=resamples, seed=seed)
    out["mcnemar"] = [mcnemar_exact(ca[s], cb[s]) for s in range(len(ca))]
    out["seeds"], out["n"] = int(len(ca)), int(y.size)
    return out


def format_pair(name: str, stats: dict[str, Any]) -> str:
    """One summary line: ``E - B: +0.8 pts [-0.5, +2.1], McNemar p = 0.31, 0.45 (per seed)``.

    Example:
        >>> format_pair("C - A", {"diff": 0.008, "low": -0.005, "high": 0.021, "mcnemar": [{"p": 0.31}]})
        'C - A: +0.8 pts [-0.5, +2.1], McNemar p = 0.31'
    """
    ps = ", ".join(f"{m['p']:.2g}" for m in stats["mcnemar"])
    per_seed = " (per seed)" if len(stats["mcnemar"]) > 1 else ""
    return (
        f"{name}: {100 * stats['diff']:+.1f} pts [{100 * stats['low']:+.1f}, {100 * stats['high']:+.1f}], "
        f"McNemar p = {ps}{per_seed}"
    )
