"""Weighted order statistics count a row with k votes exactly as k copies of it."""

import numpy as np
import pytest

from fl.aggregate.common import lower_median
from fl.aggregate.median import coordinate_median
from fl.aggregate.weighted import VOTES_MAX, weighted_coordinate_median, weighted_lower_median
from fl.errors import FLInvariantError


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
