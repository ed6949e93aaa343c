"""Coordinate-wise median: integer sort per coordinate; even n takes the floor of the middle two."""

import numpy as np

from fl.aggregate.common import RuleResult
from fl.fixed import IntArray


def coordinate_median(matrix: IntArray) -> RuleResult:
    n = matrix.shape[0]
    ordered = np.sort(matrix, axis=0)
    if n % 2:
        delta: IntArray = ordered[n // 2].copy()
    else:
        delta = np.floor_divide(ordered[n // 2 - 1] + ordered[n // 2], 2)
    return delta, None, [""] * n
