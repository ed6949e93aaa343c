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
from typing import Any

import numpy as np
import numpy.typing as npt

from fl.aggregate.gram import exact_gram

# Pending deltas are int32, aggregation matrices int64: both are welcome.
DeltaArray = npt.NDArray[np.signedinteger[Any]]

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


COPY_DISTANCE_DIVISOR = 100  # a near-copy lies within r / 100 of another update (see below)
COPY_NORM_DIVISOR = 20  # ... and both updates are at least r / 20 long


def near_copies(
    updates: Sequence[tuple[bytes, DeltaArray]], permille: int, originals_first: bool = False
) -> set[bytes]:
    """Clients whose update is a near-copy of another update of the round: cosine >= `permille`
    / 1000 with it AND distance <= r / COPY_DISTANCE_DIVISOR, r the round's lower median
    distance of an update from the coordinate median (the honest spread while colluders are a
    minority; they can shrink it, which only makes the test stricter, but not inflate it).

    Cosine alone is no evidence on a low-rank task: two-class softmax updates are nearly
    parallel or antiparallel (breast_cancer, clean: honest pairs up to 0.996, which slashed
    8-45 honest clients per three runs), and no cosine bar separates them from jittered
    copies.  What no two honest clients do is send the same vector: each trains on its own
    disjoint shard with its own minibatches, so their updates differ by at least their own
    sampling noise.  Measured smallest honest pair distance in any round, relative to r:
    0.051 (breast_cancer, Dirichlet 0.1 and 0.5, seeds 0-2, 50 rounds), 0.28 (digits 0.1),
    0.38 (digits 0.5), 0.47 (mnist1d 0.1), so r / 100 leaves a factor of 5 below anything
    honest, and slashing needs a copy in most rounds of a window, not one.  Colluders who
    optimise one vector against the public rule send it from every key (ALIE, IPM, min-max,
    min-sum, the adaptive search: distance 0).  Colluders who add jitter of a sizeable share
    of r (Fang's per-attacker draws: 0.26-0.8 r) are not copies here: they are as far apart
    as honest clients are, and bounding what they do is the aggregation rule's job.

    Both updates must also be at least r / 20 long.  A client whose data the model already
    fits sends a near-zero update, and its sampling noise vanishes with it: when a collapsed
    model predicts one class (breast_cancer under the adaptive attacks), the clients holding
    only that class sent updates of 0.01-0.02 r that agreed to within 0.0001 r, and six honest
    clients were slashed.  Colluders' copies measured 0.12 r and up (IPM, the smallest:
    -0.5 x the honest mean; ALIE, min-max, the adaptive search 0.26-1.3 r); a copy shorter
    than r / 20 is not evidence.

    Who copied whom.  When the round's updates are public before it closes (no commit-reveal),
    anyone can copy an honest update from the mempool and send it under a second key: naming
    both would let colluders frame an honest client (Karimireddy et al.'s mimic attack, copying
    one honest client every round, did slash its victim).  With `originals_first` the updates
    come in the order the chain included them and, of each near-copy pair, only the later one
    is named: a copy can only be sent after its original was seen.  What remains is a Byzantine
    proposer (or a copier that outraces the original to an honest one) putting the copy first in
    the blocks it orders; slashing needs copies in most rounds of a window, more than a proposer
    holding a third of the power orders.  With commit-reveal a round's updates are unknown until
    every commitment is in, so a near-copy is collusion or a prediction to r/100, and both are
    named (`originals_first` False; the order is then moot).

    Exact: the Gram matrix of the updates and the median row is the limb-exact integer one
    Multi-Krum uses (fl/aggregate/gram.py); both tests compare Python integers
    (g_ij * 10**6 >= p**2 g_ii g_jj with g_ij > 0, |u_i - u_j|**2 * 100**2 <= r**2 and
    |u|**2 * 20**2 >= r**2 for both).
    O(n**2 d), as Multi-Krum."""
    ordered = sorted(updates, key=lambda u: u[0])
    n = len(ordered)
    if n < 2 or permille <= 0:
        return set()
    matrix = np.empty((n + 1, ordered[0][1].size), dtype=np.int64)
    for target, (_, delta) in zip(matrix[:n], ordered, strict=True):
        target[...] = delta
    middle = (n - 1) // 2
    matrix[n] = np.partition(matrix[:n], middle, axis=0)[middle]  # the lower coordinate median
    gram = exact_gram(matrix).tolist()
    g_mm = int(gram[n][n])
    spread_sq = sorted(int(gram[i][i]) - 2 * int(gram[i][n]) + g_mm for i in range(n))[middle]
    found: set[bytes] = set()
    position = {client: i for i, (client, _) in enumerate(updates)}
    limit = permille * permille
    divisor_sq = COPY_DISTANCE_DIVISOR * COPY_DISTANCE_DIVISOR
    long_enough = [int(gram[i][i]) * COPY_NORM_DIVISOR**2 >= spread_sq for i in range(n)]
    for i in range(n):
        g_ii = int(gram[i][i])
        for j in range(i + 1, n):
            g, g_jj = int(gram[i][j]), int(gram[j][j])
            if (
                long_enough[i]
                and long_enough[j]
                and g > 0
                and g * g * 1_000_000 >= limit * g_ii * g_jj
                and (g_ii + g_jj - 2 * g) * divisor_sq <= spread_sq
            ):
                a, b = ordered[i][0], ordered[j][0]
                if not originals_first:
                    found.update((a, b))
                else:
                    found.add(a if position[a] > position[b] else b)
    return found
