"""Multi-Krum (Blanchard et al. 2017) with exact integer distances.

Score of update i = sum of its n - f - 2 smallest squared distances to the others (Python ints,
so the sum cannot overflow).  The m lowest scores are kept, ties broken by position in the
client-key order; the kept updates are averaged with equal weight (self-reported sample counts
would let an attacker buy weight).  Updates not kept are flagged.
"""

import numpy as np

from fl.aggregate import flags as flag
from fl.aggregate.common import RuleResult
from fl.aggregate.gram import squared_distances
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


def multi_krum(matrix: IntArray, byzantine_permille: int, keep_permille: int) -> RuleResult:
    n = matrix.shape[0]
    kept = krum_selection(matrix, byzantine_permille, keep_permille)
    mask = np.zeros((n, 1), dtype=bool)
    mask[kept] = True
    # Sum the kept rows where they lie (fancy indexing would copy half the matrix first).
    delta: IntArray = np.floor_divide(matrix.sum(axis=0, where=mask, dtype=np.int64), len(kept))
    kept_set = frozenset(kept)
    flags = ["" if i in kept_set else flag.not_selected("multi_krum") for i in range(n)]
    return delta, None, flags
