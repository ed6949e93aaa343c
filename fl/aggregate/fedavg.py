"""FedAvg: the sample-weighted mean, floor-divided.  No defence; the baseline."""

import numpy as np

from fl.aggregate.common import RuleResult
from fl.fixed import IntArray


def fedavg(matrix: IntArray, weights: IntArray) -> RuleResult:
    # sum_i w_i * u_i <= 2**12 * 2**20 * 2**20 = 2**52 per coordinate.
    total = int(weights.sum())
    weighted: IntArray = np.einsum("i,ij->j", weights, matrix)  # no BLAS for ints; einsum is 2x
    delta: IntArray = np.floor_divide(weighted, total)
    return delta, None, [""] * matrix.shape[0]
