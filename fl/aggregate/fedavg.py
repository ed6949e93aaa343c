"""FedAvg: the sample-weighted mean, floor-divided.  No defence; the baseline.

It reads the (int32) rows where they are, one column block at a time, instead of first
widening them into an int64 matrix: the block of the accumulator stays in cache and the work is
one multiply-add per coordinate, close to the cost of a plain int64 sum.
"""

from collections.abc import Sequence

import numpy as np

from fl.aggregate.common import BLOCK_COLUMNS, Rows, RuleResult
from fl.fixed import IntArray


def fedavg(rows: Rows | Sequence[Rows], weights: IntArray) -> RuleResult:
    # sum_i w_i * u_i <= 2**12 * 2**20 * 2**20 = 2**52 per coordinate.
    total = int(weights.sum())
    size = rows[0].size
    acc: IntArray = np.empty(size, dtype=np.int64)
    for start in range(0, size, BLOCK_COLUMNS):
        block = acc[start : start + BLOCK_COLUMNS]
        block[...] = 0
        for weight, row in zip(weights.tolist(), rows, strict=True):
            # an np.int64 factor makes the product int64 even for int32 rows
            block += np.int64(weight) * row[start : start + BLOCK_COLUMNS]
    delta: IntArray = np.floor_divide(acc, total)
    return delta, None, [""] * len(rows)
