"""Trimmed mean: per coordinate drop the b lowest and b highest values, average the rest."""

import numpy as np

from fl.aggregate.common import RuleResult, floor_mean
from fl.fixed import IntArray


def trimmed_mean(matrix: IntArray, trim_permille: int) -> RuleResult:
    n = matrix.shape[0]
    b = n * trim_permille // 1000  # trim_permille < 500, so n - 2b >= 1
    ordered = np.sort(matrix, axis=0)
    delta = floor_mean(ordered[b : n - b])
    return delta, None, [""] * n
