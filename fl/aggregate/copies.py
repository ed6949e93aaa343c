"""Near-copies: updates of one round that are the same vector sent under different keys.

No two honest clients send the same update (each trains on its own shard with its own
minibatches), so a near-copy is evidence: the incentives layer names copiers from it
(fl/economics/layer.py) and the history rule gives every update of a near-copy pair weight 0
(fl/aggregate/history.py).  The test is exact integer arithmetic on the limb-exact Gram matrix
(fl/aggregate/gram.py); see `copy_pairs` for what counts and why.
"""

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fl.aggregate.gram import exact_gram

# Pending deltas are int32, aggregation matrices int64: both are welcome.
DeltaArray = npt.NDArray[np.signedinteger[Any]]

COPY_DISTANCE_DIVISOR = 100  # a near-copy lies within r / 100 of another update (see below)
COPY_NORM_DIVISOR = 20  # ... and both updates are at least r / 20 long


def copy_pairs(
    updates: Sequence[tuple[bytes, DeltaArray]], permille: int
) -> list[tuple[bytes, bytes]]:
    """Every near-copy pair of the round as (earlier, later) in the order of `updates`, sorted.
    A pair: cosine >= `permille` / 1000 AND distance <= r / COPY_DISTANCE_DIVISOR, r the round's
    lower median distance of an update from the coordinate median (the honest spread while
    colluders are a minority; they can shrink it, which only makes the test stricter, but not
    inflate it).  `permille` 0: none are looked for.

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

    Who copied whom. When the round's updates are public before it closes (no commit-reveal),
    anyone can copy an honest update from the mempool and send it under a second key: naming
    both would let colluders frame an honest client (Karimireddy et al.'s mimic attack, copying
    one honest client every round, did slash its victim). So `near_copies` with
    `originals_first` (the updates in the order the chain included them) names only the later
    update of each pair: a copy can only be sent after its original was seen. What remains is a
    Byzantine proposer (or a copier that outraces the original to an honest one) putting the
    copy first in the blocks it orders; slashing needs copies in most rounds of a window, more
    than a proposer holding a third of the power orders. With commit-reveal a round's updates
    are unknown until every commitment is in, so a near-copy is collusion or a prediction to
    r/100, and both are named (`originals_first` False; the order is then moot).

    Exact: the Gram matrix of the updates and the median row is the limb-exact integer one
    Multi-Krum uses (fl/aggregate/gram.py); both tests compare Python integers
    (g_ij * 10**6 >= p**2 g_ii g_jj with g_ij > 0, |u_i - u_j|**2 * 100**2 <= r**2 and
    |u|**2 * 20**2 >= r**2 for both).
    O(n**2 d), as Multi-Krum."""
    ordered = sorted(updates, key=lambda u: u[0])
    n = len(ordered)
    if n < 2 or permille <= 0:
        return []
    matrix = np.empty((n + 1, ordered[0][1].size), dtype=np.int64)
    for target, (_, delta) in zip(matrix[:n], ordered, strict=True):
        target[...] = delta
    middle = (n - 1) // 2
    matrix[n] = np.partition(matrix[:n], middle, axis=0)[middle]  # the lower coordinate median
    gram = exact_gram(matrix).tolist()
    g_mm = int(gram[n][n])
    spread_sq = sorted(int(gram[i][i]) - 2 * int(gram[i][n]) + g_mm for i in range(n))[middle]
    found: list[tuple[bytes, bytes]] = []
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
                found.append((a, b) if position[a] < position[b] else (b, a))
    return sorted(found)


def near_copies(
    updates: Sequence[tuple[bytes, DeltaArray]], permille: int, originals_first: bool = False
) -> set[bytes]:
    """Clients named as copiers: with `originals_first` the later update of each near-copy pair
    (`updates` in inclusion order), else both."""
    return named_copies(copy_pairs(updates, permille), originals_first)


def named_copies(pairs: Iterable[tuple[bytes, bytes]], originals_first: bool) -> set[bytes]:
    """The clients of (earlier, later) near-copy pairs named as copiers (see `copy_pairs`)."""
    if originals_first:
        return {later for _, later in pairs}
    return {client for pair in pairs for client in pair}
