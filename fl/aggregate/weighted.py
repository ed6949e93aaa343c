"""Order statistics where each row counts `votes` times: what the history rule's medians become
when a client's say is bought with stake instead of with a key.

A row with k votes counts exactly as k copies of it would (tests/fl/test_weighted.py checks
both functions against the replicated rows), so with one vote each these are the unweighted
`coordinate_median` and `lower_median`, and with equal votes they return the same values too:
both cases take the unweighted path, bit for bit.

With W the total votes, the lower weighted median is the first value (in sorted order) at which
the running vote total reaches half of W (2 * cum >= W), the upper one the first at which it
passes half (2 * cum > W); the coordinate median is the floor of their mean, which for one vote
each is the middle value (odd n) or the floor mean of the middle two (even n), as
`coordinate_median` computes.  Integers only: W <= n * VOTES_MAX <= 2**12 * 2**16 = 2**28.
"""

from collections.abc import Sequence

import numpy as np

from fl.aggregate.common import lower_median
from fl.aggregate.median import coordinate_median
from fl.errors import FLInvariantError
from fl.fixed import IntArray

VOTES_MAX = 1 << 16  # a client's votes are capped here (fl/economics/clients.py stake_votes)


def _check(votes: Sequence[int], rows: int) -> None:
    if len(votes) != rows or any(not 1 <= v <= VOTES_MAX for v in votes):
        raise FLInvariantError(f"weighted median needs one vote count in [1, {VOTES_MAX}] per row")


def weighted_coordinate_median(matrix: IntArray, votes: Sequence[int]) -> IntArray:
    """Per coordinate, the median of the column with row i counted votes[i] times."""
    _check(votes, matrix.shape[0])
    if len(set(votes)) <= 1:
        median: IntArray = coordinate_median(matrix)[0]
        return median
    order = np.argsort(matrix, axis=0, kind="stable")
    ordered = np.take_along_axis(matrix, order, axis=0)
    running = np.cumsum(np.asarray(votes, dtype=np.int64)[order], axis=0)
    total = int(sum(votes))
    columns = np.arange(matrix.shape[1])
    low = ordered[np.argmax(2 * running >= total, axis=0), columns]
    high = ordered[np.argmax(2 * running > total, axis=0), columns]
    out: IntArray = np.floor_divide(low + high, 2)
    return out


def weighted_lower_median(values: Sequence[int], votes: Sequence[int]) -> int:
    """The lower median of `values` with values[i] counted votes[i] times."""
    _check(votes, len(values))
    if len(set(votes)) <= 1:
        return lower_median(list(values))
    total = sum(votes)
    running = 0
    for value, count in sorted(zip(values, votes, strict=True)):
        running += count
        if 2 * running >= total:
            return value
    raise FLInvariantError("weighted_lower_median: no values")  # unreachable for n >= 1
