"""Order statistics and robust rules where each row counts `votes` times: what the robust rules
become when a client's say is bought with stake instead of with a key.

A row with k votes counts exactly as k copies of it would (tests/fl/test_weighted.py checks
every function against the replicated rows), so with one vote each these are the unweighted
statistics, bit for bit, and a stake split over keys that send one vector counts exactly as on
one key.  Medians are unchanged by scaling every vote alike, so with equal votes they take the
unweighted path too.  The trimmed mean's cut is counted in votes, and so cannot be: with ten
votes each, trimming 10% of 110 votes is not trimming 1 of 11 rows, and only the finer cut
makes ten keys of one vote the same as one key of ten.

With W the total votes, the lower weighted median is the first value (in sorted order) at which
the running vote total reaches half of W (2 * cum >= W), the upper one the first at which it
passes half (2 * cum > W); the coordinate median is the floor of their mean, which for one vote
each is the middle value (odd n) or the floor mean of the middle two (even n), as
`coordinate_median` computes.  The trimmed mean drops W * trim // 1000 votes from each end of
every column, part of a row's votes where the cut falls inside it, and averages the rest by
vote.  Integers only: W <= n * VOTES_MAX <= 2**12 * 2**16 = 2**28, and a column's vote-weighted
sum is at most 2**28 * 2**21 = 2**49.
"""

from collections.abc import Sequence

import numpy as np

from fl.aggregate.common import lower_median
from fl.aggregate.median import coordinate_median
from fl.aggregate.trimmed import trimmed_mean
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


def weighted_trimmed_mean(matrix: IntArray, votes: Sequence[int], trim_permille: int) -> IntArray:
    """Per coordinate, the mean of the column with row i counted votes[i] times after dropping
    the W * trim_permille // 1000 lowest and as many highest of those W values."""
    _check(votes, matrix.shape[0])
    if set(votes) == {1}:
        trimmed: IntArray = trimmed_mean(matrix, trim_permille)[0]
        return trimmed
    total = int(sum(votes))
    cut = total * trim_permille // 1000  # trim_permille < 500, so total - 2 cut >= 1
    order = np.argsort(matrix, axis=0, kind="stable")
    ordered = np.take_along_axis(matrix, order, axis=0)
    counted = np.asarray(votes, dtype=np.int64)[order]
    running = np.cumsum(counted, axis=0)
    # The votes of each sorted value that fall between the two cuts.
    kept = np.clip(np.minimum(running, total - cut) - np.maximum(running - counted, cut), 0, None)
    out: IntArray = np.floor_divide((ordered * kept).sum(axis=0), total - 2 * cut)
    return out


def uniform(votes: Sequence[int] | None, rows: int) -> bool:
    """Whether `votes` give every row the same say (None: one vote each): rules built on
    medians and means then equal their one-vote selves."""
    if votes is None:
        return True
    _check(votes, rows)
    return len(set(votes)) <= 1


def one_each(votes: Sequence[int] | None, rows: int) -> bool:
    """Whether every row has exactly one vote (None: one each): rules that count rows (a trim,
    Multi-Krum's f and m) equal their one-vote selves only then."""
    if votes is None:
        return True
    _check(votes, rows)
    return set(votes) <= {1}
