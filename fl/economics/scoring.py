"""Agreement scores: how well each update of a round agrees with the round's robust centre.

    agreement(i) = max(0, 1000 * cos(u_i, m))     m = coordinate-wise lower median of the round

The incentives layer judges maliciousness by this score rather than by the aggregation rule's
own score, because rule scores mean different things (Multi-Krum's is cosine with the mean of the
kept half, centered clipping's is the share that survived clipping and sits near 1000 for most
updates) and slashing must not change meaning when governance switches the rule.  The median
centre holds while a minority colludes, as the median rule itself does.

Exact integers: the median is an integer selection (np.partition along the contiguous rows of a
(columns x clients) block, several times faster than selecting along axis 0); dot products are
accumulated per block in int64, then across blocks in Python ints (|coordinate| <= 2**20, so a
block of 2,048 columns sums to < 2**51 per entry); norms use math.isqrt.  Each block is built
already transposed (every client's slice written as one column), which halved the time against
stacking rows and transposing; it stays in cache, where one whole-round matrix (400 MB at 1,000
x 100k) would cost more in page faults than the selection itself.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np

from fl.aggregate.copies import DeltaArray

COLUMNS_PER_CHUNK = 2048


def agreement_permille(
    updates: Sequence[tuple[bytes, DeltaArray]], known_norms_sq: Mapping[bytes, int] | None = None
) -> dict[bytes, int]:
    """Agreement score per client; clients are taken in key order, so input order is moot.

    `known_norms_sq` (every client's squared norm, computed when its update was checked) saves
    summing the squares again."""
    ordered = sorted(updates, key=lambda u: u[0])
    n = len(ordered)
    if n == 0:
        return {}
    size = ordered[0][1].size
    dots = [0] * n
    if known_norms_sq is not None and all(c in known_norms_sq for c, _ in ordered):
        norms_sq, known = [known_norms_sq[c] for c, _ in ordered], True
    else:  # summed block by block below
        norms_sq, known = [0] * n, False
    centre_sq = 0
    middle = (n - 1) // 2
    for start in range(0, size, COLUMNS_PER_CHUNK):
        stop = min(size, start + COLUMNS_PER_CHUNK)
        # int32 holds any delta coordinate; int64 aggregation matrices are narrowed here.
        block = np.stack([d[start:stop] for _, d in ordered], axis=1).astype(np.int32, copy=False)
        centre = np.partition(block, middle, axis=1)[:, middle].astype(np.int64)
        for i, dot in enumerate(np.einsum("ji,j->i", block, centre, dtype=np.int64).tolist()):
            dots[i] += int(dot)
        if not known:
            block_norms = np.einsum("ji,ji->i", block, block, dtype=np.int64).tolist()
            for i, norm in enumerate(block_norms):
                norms_sq[i] += int(norm)
        centre_sq += int(np.dot(centre, centre))
    scores: dict[bytes, int] = {}
    for (client, _), dot, norm_sq in zip(ordered, dots, norms_sq, strict=True):
        denominator = math.isqrt(norm_sq * centre_sq)
        scores[client] = 0 if dot <= 0 or denominator == 0 else min(1000, 1000 * dot // denominator)
    return scores
