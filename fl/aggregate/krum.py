"""Multi-Krum (Blanchard et al. 2017) with exact integer distances.

Score of update i = sum of its n - f - 2 smallest squared distances to the others (Python ints,
so the sum cannot overflow).  The m lowest scores are kept, ties broken by position in the
client-key order; the kept updates are averaged with equal weight (self-reported sample counts
would let an attacker buy weight).  Updates not kept are flagged.

With stake `votes` (fl/economics/clients.py `stake_votes`) row i counts as votes[i] copies of
it: n, f and m are counted in votes, a row's nearest neighbours include its own other copies
(at distance 0), and the kept copies are averaged; a row none of whose copies is kept is
flagged.  A stake split over many keys then buys neither more neighbours nor more places among
the kept.  One vote each is the one-vote rule, bit for bit; equal votes above one are not (n,
f and m count votes: fedchain's testnet, 1,000 bonded each, has ten votes per client).
"""

from collections.abc import Sequence

import numpy as np

from fl.aggregate import flags as flag
from fl.aggregate.common import RuleResult
from fl.aggregate.gram import squared_distances
from fl.aggregate.weighted import one_each
from fl.fixed import IntArray


def krum_selection(matrix: IntArray, byzantine_permille: int, keep_permille: int) -> list[int]:
    """Indices (ascending) of the updates Multi-Krum keeps."""
    n = matrix.shape[0]
    f = n * byzantine_permille // 1000
    neighbours = max(1, n - f - 2)
    keep = max(1, n * keep_permille // 1000)
    if n <= 2:
        return list(range(n))
    distances = squared_distances(matrix)
    scores = []
    for i in range(n):
        others = np.delete(distances[i], i)
        nearest = np.partition(others, min(neighbours, n - 1) - 1)[: min(neighbours, n - 1)]
        scores.append((sum(int(x) for x in nearest.tolist()), i))
    scores.sort()
    return sorted(i for _, i in scores[:keep])


def krum_copies(
    matrix: IntArray, votes: Sequence[int], byzantine_permille: int, keep_permille: int
) -> list[int]:
    """How many of row i's votes[i] copies Multi-Krum keeps, counting every row as its copies."""
    n = matrix.shape[0]
    total = sum(votes)
    f = total * byzantine_permille // 1000
    neighbours = min(max(1, total - f - 2), total - 1)
    keep = max(1, total * keep_permille // 1000)
    if total <= 2:
        return list(votes)
    distances = squared_distances(matrix).tolist()
    scores = []
    for i in range(n):
        # Row i's copies see each other at distance 0, and every other row votes[j] times.
        others = [(distances[i][j], votes[j]) for j in range(n) if j != i]
        near = sorted([(0, votes[i] - 1), *others])
        score, wanted = 0, neighbours
        for distance, count in near:
            taken = min(count, wanted)
            score, wanted = score + int(distance) * taken, wanted - taken
            if not wanted:
                break
        scores.append((score, i))
    scores.sort()
    copies = [0] * n
    for _, i in scores:
        copies[i] = min(votes[i], keep)
        keep -= copies[i]
        if not keep:
            break
    return copies


def multi_krum(
    matrix: IntArray,
    byzantine_permille: int,
    keep_permille: int,
    votes: Sequence[int] | None = None,
) -> RuleResult:
    n = matrix.shape[0]
    if votes is not None and not one_each(votes, n):
        copies = krum_copies(matrix, votes, byzantine_permille, keep_permille)
    else:
        copies = [0] * n
        for i in krum_selection(matrix, byzantine_permille, keep_permille):
            copies[i] = 1
    # Sum the kept rows where they lie (fancy indexing would copy half the matrix first);
    # a row kept k times counts k times (k * |u| <= 2**16 * 2**21, summed over 2**12 rows).
    weights = np.asarray(copies, dtype=np.int64)[:, None]
    if all(c <= 1 for c in copies):
        total = matrix.sum(axis=0, where=weights > 0, dtype=np.int64)
    else:
        total = (matrix * weights).sum(axis=0, dtype=np.int64)
    delta: IntArray = np.floor_divide(total, sum(copies))
    flags = ["" if c else flag.not_selected("multi_krum") for c in copies]
    return delta, None, flags
