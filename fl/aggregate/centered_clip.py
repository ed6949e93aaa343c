"""Centered clipping (Karimireddy, He and Jaggi 2021) in integers, started at the median.

    v_0 = coordinate median
    repeat L times:  tau = radius_permille/1000 * median_i |u_i - v|
                     K   = { i : |u_i - v| <= drop_permille/1000 * tau }   (all if drop = 0)
                     v  += floor_mean_{i in K}( (u_i - v) * min(1, tau / |u_i - v|) )

Norms are exact integer square roots (math.isqrt); the clip factor is applied as
dev * tau // norm, exact because |dev| * tau <= 2**21 * 2**31 (fl.fixed).  An update that
lies farther than tau from the centre moves it only by tau / n, whatever its size, which bounds
what scaled or sign-flipped updates can do; starting at the median keeps the centre inside the
honest cloud when a minority colludes.  Dropping updates far outside the radius (they are
flagged) removes boosted model-replacement updates, whose direction clipping alone would keep.
Scores: permille of the update that survived clipping in
the last iteration; an update clipped to under half its length is flagged.

With stake `votes` (fl/economics/clients.py `stake_votes`) row i counts votes[i] times: in the
starting median, in the median distance that sets tau, and in the mean, exactly as votes[i]
copies of it would; equal votes take the one-vote path, bit for bit.
"""

import math
from collections.abc import Sequence

import numpy as np

from fl.aggregate import flags as flag
from fl.aggregate.common import RuleResult
from fl.aggregate.weighted import uniform, weighted_coordinate_median, weighted_lower_median
from fl.fixed import IntArray

FLAG_BELOW_PERMILLE = 500


def centered_clip(
    matrix: IntArray,
    iterations: int,
    radius_permille: int,
    drop_permille: int = 0,
    votes: Sequence[int] | None = None,
) -> RuleResult:
    n = matrix.shape[0]
    counts = [1] * n if votes is None or uniform(votes, n) else list(votes)
    centre = weighted_coordinate_median(matrix, counts)
    kept_permille = [1000] * n
    dropped = [False] * n
    for _ in range(iterations):
        deviations = matrix - centre
        norms = [math.isqrt(int(x)) for x in np.einsum("ij,ij->i", deviations, deviations)]
        tau = max(1, weighted_lower_median(norms, counts) * radius_permille // 1000)
        for i, norm in enumerate(norms):
            kept_permille[i] = 1000 if norm <= tau else tau * 1000 // norm
            # norm * 1000 > drop * tau  <=>  the deviation exceeds drop/1000 radii
            dropped[i] = drop_permille > 0 and norm * 1000 > drop_permille * tau
        if all(dropped):  # a tiny radius times drop factor can put everyone outside: keep all
            dropped = [False] * n
        # Clip (or zero, when dropped) the deviations in place: no second n x d buffer.
        for i, norm in enumerate(norms):
            if dropped[i]:
                deviations[i] = 0
            elif norm > tau:
                deviations[i] = np.floor_divide(deviations[i] * tau, norm)
            if counts[i] > 1:
                deviations[i] *= counts[i]  # after the clip: counts[i] clipped copies
        kept_votes = sum(c for c, drop in zip(counts, dropped, strict=True) if not drop)
        centre = centre + np.floor_divide(deviations.sum(axis=0), kept_votes)
    flags = [
        flag.dropped("centered_clip")
        if drop
        else ("" if kept >= FLAG_BELOW_PERMILLE else flag.clipped("centered_clip", kept))
        for kept, drop in zip(kept_permille, dropped, strict=True)
    ]
    scores = [0 if drop else kept for kept, drop in zip(kept_permille, dropped, strict=True)]
    return centre, scores, flags
