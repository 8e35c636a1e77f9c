"""Tests for engine.stats: exact McNemar with known p-values, the paired bootstrap, the summary line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.stats import compare_pair, format_pair, mcnemar_exact, paired_bootstrap


def _pair(n: int, a_only: int, b_only: int, both: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with known discordant counts: a_only items only A gets right, b_only only B."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:a_only] = True
    b[a_only : a_only + b_only] = True
    a[a_only + b_only : a_only + b_only + both] = True
    b[a_only + b_only : a_only + b_only + both] = True
    return a, b


@pytest.mark.parametrize(
    ("a_only", "b_only", "p"),
    [
        (10, 0, 2 / 2**10),  # all 10 discordant items favour A: 2 * 0.5^10
        (3, 3, 1.0),  # balanced: no evidence
        (1, 0, 1.0),  # one discordant item: 2 * 0.5 = 1
        (6, 1, 2 * (1 + 7) / 2**7),  # P(X <= 1) for Binomial(7, 1/2), doubled: 0.125
        (8, 2, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
    ],
)
def test_mcnemar_exact_known_p_values(a_only, b_only, p):
    a, b = _pair(40, a_only, b_only, both=20)
    r = mcnemar_exact(a, b)
    assert (r["b"], r["c"]) == (a_only, b_only)
    assert r["p"] == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact(b, a)["p"] == pytest.approx(p, rel=1e-12)  # symmetric


def test_mcnemar_matches_scipy_binomtest():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(60) < 0.7, rng.random(60) < 0.6
        r = mcnemar_exact(a, b)
        n = r["b"] + r["c"]
        expected = 1.0 if n == 0 else binomtest(r["b"], n, 0.5).pvalue
        assert r["p"] == pytest.approx(expected, rel=1e-9)


def test_no_disagreement_gives_p_one():
    a = np.array([True, False, True])
    assert mcnemar_exact(a, a) == {"b": 0, "c": 0, "p": 1.0}


def test_paired_bootstrap_interval_covers_the_difference_and_excludes_zero_when_clear():
    a, b = _pair(200, 30, 5, 100)
    r = paired_bootstrap(np.stack([a, a]), np.stack([b, b]), resamples=3000)
    assert r["diff"] == pytest.approx(25 / 200)
    assert r["low"] < r["diff"] < r["high"] and r["low"] > 0
    same = paired_bootstrap(a, a)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}


def test_paired_bootstrap_is_seeded_and_keeps_the_pairing():
    rng = np.random.default_rng(1)
    a = rng.random((3, 80)) < 0.8
    assert paired_bootstrap(a, a.copy(), seed=4) == paired_bootstrap(a, a.copy(), seed=4)
    # b is a shifted by one item: unpaired resampling would not give zero width for a vs a
    r = paired_bootstrap(a, a, seed=4)
    assert r["low"] == r["high"] == 0.0


def test_compare_pair_and_summary_line():
    y = np.array([0, 1] * 25)
    pa = np.stack([y, y])  # A is always right
    pb = pa.copy()
    pb[:, :10] = 1 - pb[:, :10]  # B is wrong on the first 10 items in both seeds
    r = compare_pair(pa, pb, y)
    assert r["diff"] == pytest.approx(0.2) and r["seeds"] == 2 and r["n"] == 50
    assert [m["b"] for m in r["mcnemar"]] == [10, 10]
    line = format_pair("A - B", r)
    assert line.startswith("A - B: +20.0 pts [") and "McNemar p = 0.002, 0.002 (per seed)" in line
    assert math.isclose(r["mcnemar"][0]["p"], 2 / 2**10)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mcnemar_exact([True, False], [True]), "must be 1-D of the same length"),
        (lambda: paired_bootstrap(np.zeros((2, 3), bool), np.zeros((2, 4), bool)), "the same shape"),
        (lambda: paired_bootstrap(np.zeros((1, 0), bool), np.zeros((1, 0), bool)), "no test items"),
        (lambda: paired_bootstrap([True], [True], level=1.5), r"level must be in \(0, 1\)"),
        (
            lambda: paired_bootstrap([True], [True], resamples=0),
            r"resamples must be a positive int \(e.g. the default 2000\), got 0",
        ),
        (lambda: compare_pair(np.zeros((2, 5)), np.zeros((2, 5)), np.zeros(4)), r"must both be \(seeds, 4\)"),
        # class indices where right/wrong flags belong: no silent answer
        (lambda: mcnemar_exact([0, 2, 3, 1], [1, 2, 0, 0]), r"correct_a must hold right/wrong flags"),
        (lambda: paired_bootstrap([[1, 0]], [[2, 0]]), r"correct_b must hold right/wrong flags"),
        (lambda: paired_bootstrap(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 4), bool)), "at most 2 dim"),
        (lambda: compare_pair([["3", "1"]], [["3", "3"]], [3, 1]), r"are not of one kind"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_object_arrays_of_ints_compare_with_ints():
    y = np.array([1, 0, 1], dtype=object)
    r = compare_pair(np.array([[1, 0, 1]]), np.array([[1, 1, 1]]), y)
    assert r["diff"] == pytest.approx(1 / 3)
