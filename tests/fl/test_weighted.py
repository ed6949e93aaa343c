"""Weighted order statistics and robust rules count a row with k votes exactly as k copies of it."""

from dataclasses import replace

import numpy as np
import pytest

from fl.aggregate import ClientUpdate, aggregate
from fl.aggregate.centered_clip import centered_clip
from fl.aggregate.common import lower_median
from fl.aggregate.krum import krum_copies, krum_selection, multi_krum
from fl.aggregate.median import coordinate_median
from fl.aggregate.trimmed import trimmed_mean
from fl.aggregate.weighted import (
    VOTES_MAX,
    weighted_coordinate_median,
    weighted_lower_median,
    weighted_trimmed_mean,
)
from fl.errors import FLInvariantError
from fl.params import Params


@pytest.mark.parametrize("seed", range(20))
def test_a_row_with_k_votes_counts_as_k_copies(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    matrix = rng.integers(-50, 50, size=(n, 7), dtype=np.int64)  # small range: many ties
    votes = [int(v) for v in rng.integers(1, 6, size=n)]
    replicated = np.repeat(matrix, votes, axis=0)
    expected = coordinate_median(replicated)[0]
    assert np.array_equal(weighted_coordinate_median(matrix, votes), expected)
    norms = [int(x) for x in rng.integers(0, 30, size=n)]
    copies = [x for x, k in zip(norms, votes, strict=True) for _ in range(k)]
    assert weighted_lower_median(norms, votes) == lower_median(copies)


def test_equal_votes_are_the_unweighted_statistics() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.integers(-(1 << 20), 1 << 20, size=(10, 33), dtype=np.int64)
    for k in (1, 3):
        assert np.array_equal(
            weighted_coordinate_median(matrix, [k] * 10), coordinate_median(matrix)[0]
        )
        assert weighted_lower_median(list(range(10)), [k] * 10) == lower_median(list(range(10)))


def test_a_heavy_row_is_the_median() -> None:
    matrix = np.array([[0], [1], [2], [100]], dtype=np.int64)
    assert weighted_coordinate_median(matrix, [1, 1, 1, 4]).tolist() == [100]
    assert weighted_coordinate_median(matrix, [1, 1, 1, 3]).tolist() == [51]  # (2 + 100) // 2
    assert weighted_lower_median([0, 1, 2, 100], [1, 1, 1, 3]) == 2


def test_votes_out_of_range_are_refused() -> None:
    matrix = np.zeros((2, 3), dtype=np.int64)
    for votes in ([1], [0, 1], [1, VOTES_MAX + 1]):
        with pytest.raises(FLInvariantError):
            weighted_coordinate_median(matrix, votes)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("trim_permille", [0, 100, 250, 499])
def test_the_weighted_trimmed_mean_is_the_trimmed_mean_of_the_copies(
    seed: int, trim_permille: int
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    matrix = rng.integers(-50, 50, size=(n, 7), dtype=np.int64)
    votes = [int(v) for v in rng.integers(1, 6, size=n)]
    expected = trimmed_mean(np.repeat(matrix, votes, axis=0), trim_permille)[0]
    assert np.array_equal(weighted_trimmed_mean(matrix, votes, trim_permille), expected)


@pytest.mark.parametrize("seed", range(20))
def test_weighted_centered_clipping_is_centered_clipping_of_the_copies(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    matrix = rng.integers(-(1 << 16), 1 << 16, size=(n, 9), dtype=np.int64)
    matrix[0] *= 8  # one far row, so that clipping and dropping both happen
    votes = [int(v) for v in rng.integers(1, 6, size=n)]
    replicated = np.repeat(matrix, votes, axis=0)
    delta, scores, flags = centered_clip(matrix, 3, 1000, 3000, votes)
    want_delta, want_scores, want_flags = centered_clip(replicated, 3, 1000, 3000)
    assert np.array_equal(delta, want_delta)
    starts = np.cumsum([0, *votes[:-1]])
    assert scores == [want_scores[s] for s in starts]  # type: ignore[index]
    assert flags == [want_flags[s] for s in starts]


@pytest.mark.parametrize("seed", range(20))
def test_weighted_multi_krum_is_multi_krum_of_the_copies(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    matrix = rng.integers(-(1 << 16), 1 << 16, size=(n, 9), dtype=np.int64)  # no distance ties
    votes = [int(v) for v in rng.integers(1, 6, size=n)]
    replicated = np.repeat(matrix, votes, axis=0)
    delta, _, flags = multi_krum(matrix, 300, 500, votes)
    want_delta, _, want_flags = multi_krum(replicated, 300, 500)
    assert np.array_equal(delta, want_delta)
    # A row is flagged when none of its copies is kept.
    copies = np.split(np.array(want_flags), np.cumsum(votes)[:-1])
    assert [bool(f) for f in flags] == [all(bool(x) for x in group) for group in copies]


@pytest.mark.parametrize("rule", ["median", "centered_clip"])
def test_equal_votes_leave_the_median_rules_bit_for_bit(rule: str) -> None:
    """Scaling every vote alike changes no median and cancels in every mean.  (The trimmed mean
    and Multi-Krum count their cuts in votes, so equal votes above one are their rule on the
    copies instead: the replication tests above.)"""
    rng = np.random.default_rng(11)
    updates = [
        ClientUpdate(bytes([i]) * 32, 10, rng.integers(-(1 << 18), 1 << 18, 40, dtype=np.int64))
        for i in range(13)
    ]
    params = replace(Params(), rule=rule)
    one = aggregate(rule, updates, params)
    seven = aggregate(rule, [replace(u, votes=7) for u in updates], params)
    assert np.array_equal(one.delta, seven.delta)
    assert one.verdicts == seven.verdicts


@pytest.mark.parametrize("seed", range(10))
def test_krum_counting_copies_with_one_vote_each_is_krum(seed: int) -> None:
    """The weighted selection and the one-vote fast path are one rule: with one vote each they
    keep the same rows (the fast path is what every chain without unequal stakes runs)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 14))
    matrix = rng.integers(-(1 << 16), 1 << 16, size=(n, 9), dtype=np.int64)
    kept = set(krum_selection(matrix, 300, 500))
    assert krum_copies(matrix, [1] * n, 300, 500) == [int(i in kept) for i in range(n)]
