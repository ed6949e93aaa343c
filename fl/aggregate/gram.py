"""Exact pairwise squared distances of int64 rows, computed with float64 BLAS in limbs.

Multi-Krum needs the n x n matrix of squared distances.  An int64 matmul has no BLAS kernel
(about 1 GMAC/s here); float64 BLAS is ~50x faster but rounds, and its summation order varies
with the library and the thread count.  Splitting every coordinate into two 10-bit limbs makes
every product and every partial sum an integer below 2**53, where float64 addition and
multiplication (with or without FMA, in any order) are exact, so the result is the same integer
on every machine:

  u = hi * 2**10 + lo,   lo in [0, 2**10),   |hi| <= 2**10      (since |u| <= 2**20)
  every limb product <= 2**20; a dot product of d <= 2**20 of them <= 2**40 < 2**53
  <u, v> = 2**20 <hi_u, hi_v> + 2**10 (<hi_u, lo_v> + <lo_u, hi_v>) + <lo_u, lo_v>

The limb dot products are converted back to int64 (exactly, they are integers) and combined in
int64: |<u, v>| <= 2**60 and |u - v|**2 <= 2**62 by the bounds in fl.fixed.  `exact_gram_int64`
is the slow reference the tests compare against.
"""

import numpy as np

from fl.errors import FLInvariantError
from fl.fixed import DELTA_ABS_MAX, PARAMS_MAX, IntArray

LIMB_BITS = 10
BLOCK_ELEMENTS = 1 << 21  # limb elements per column block (16 MiB of float64)


def exact_gram(rows: IntArray) -> IntArray:
    if rows.shape[1] > PARAMS_MAX or (rows.size and int(np.abs(rows).max()) > DELTA_ABS_MAX):
        raise FLInvariantError("rows outside the bounds that make the limb products exact")
    n, d = rows.shape
    hh = np.zeros((n, n))
    hl = np.zeros((n, n))
    ll = np.zeros((n, n))
    # Column blocks keep the float limbs small (no 2 x 8 x n x d bytes of temporaries); the
    # running sums are partial sums of the bounded totals above, so they stay exact too.
    width = max(1024, BLOCK_ELEMENTS // max(1, n))
    for start in range(0, d, width):
        block = rows[:, start : start + width]
        hi = (block >> LIMB_BITS).astype(np.float64)
        lo = (block & ((1 << LIMB_BITS) - 1)).astype(np.float64)
        hh += hi @ hi.T
        hl += hi @ lo.T
        ll += lo @ lo.T
    hh_i, hl_i, ll_i = hh.astype(np.int64), hl.astype(np.int64), ll.astype(np.int64)
    gram: IntArray = (hh_i << (2 * LIMB_BITS)) + ((hl_i + hl_i.T) << LIMB_BITS) + ll_i
    return gram


def exact_gram_int64(rows: IntArray) -> IntArray:
    out: IntArray = rows @ rows.T
    return out


def squared_distances(rows: IntArray) -> IntArray:
    gram = exact_gram(rows)
    diag = np.diagonal(gram)
    out: IntArray = diag[:, None] + diag[None, :] - 2 * gram
    return out
