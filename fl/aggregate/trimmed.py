"""Trimmed mean: per coordinate drop the b lowest and b highest values, average the rest."""

import numpy as np

from fl.aggregate.common import RuleResult, floor_mean
from fl.fixed import IntArray


def trimmed_mean(matrix: IntArray, trim_permille: int) -> RuleResult:
    n = matrix.shape[0]
    b = n * trim_permille // 1000  # trim_permille < 500, so n - 2b >= 1
    if b == 0:
        return floor_mean(matrix), None, [""] * n
    # After partitioning at ranks b and n-b-1, rows b..n-b-1 hold exactly the kept values.
    middle = np.partition(matrix, [b, n - b - 1], axis=0)
    delta = floor_mean(middle[b : n - b])
    return delta, None, [""] * n
