"""Selective reveal: the one choice a committed attacker keeps once the honest reveals are public.

Under commit-reveal (`commit_blocks` > 0) each attacker's update is fixed by its commitment
before any honest update is public.  Once the honest reveals are public, an attacker can only
reveal what it committed or withhold it, and a withheld commitment costs it a flagged round's
evidence and the round's reward, never its stake (fl/economics/clients.py).  `choose_reveals`
plays that choice with full knowledge of the round: starting from revealing everything, it
withholds, one at a time, the commitment whose absence most raises the harm (run through the
chain's own rule on this round's honest updates), until no single withholding raises it.
"""

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from fl.aggregate import ClientUpdate
from fl.client.attacks.view import FloatArray, Oracle, RoundView, realize
from fl.fixed import ONE


def choose_reveals(
    oracle: Oracle, deltas: Sequence[FloatArray], harm: Callable[[FloatArray], float]
) -> tuple[bool, ...]:
    """Which of the attackers' committed `deltas` (realized, one per `oracle` attacker) to
    reveal, for the largest `harm` of the aggregate greedy withholding finds."""
    reveal = [True] * len(deltas)
    best = _harm_of(oracle, deltas, reveal, harm)
    while True:
        choice: tuple[float, int] | None = None
        for i in (i for i, shown in enumerate(reveal) if shown):
            trial = [shown and j != i for j, shown in enumerate(reveal)]
            value = _harm_of(oracle, deltas, trial, harm)
            if value > best and (choice is None or value > choice[0]):
                choice = (value, i)
        if choice is None:
            return tuple(reveal)
        best, withheld = choice
        reveal[withheld] = False


def _harm_of(
    oracle: Oracle,
    deltas: Sequence[FloatArray],
    reveal: Sequence[bool],
    harm: Callable[[FloatArray], float],
) -> float:
    shown = [i for i, r in enumerate(reveal) if r]
    return harm(only(oracle, shown).evaluate([deltas[i] for i in shown]).delta)


def only(oracle: Oracle, attackers: Sequence[int]) -> Oracle:
    """`oracle` with only the attackers at these indices (their keys, samples and votes)."""
    votes = oracle.attacker_votes
    return replace(
        oracle,
        attacker_keys=tuple(oracle.attacker_keys[i] for i in attackers),
        attacker_samples=tuple(oracle.attacker_samples[i] for i in attackers),
        attacker_votes=tuple(votes[i] for i in attackers) if votes else (),
    )


def reveals_now(
    view: RoundView,
    honest_now: tuple[ClientUpdate, ...],
    crafted: Sequence[FloatArray],
    norm_max_units: int,
) -> list[bool]:
    """Which of the attackers' `crafted` updates to reveal once this round's honest updates are
    public: `choose_reveals` by the attackers' own harm (without one, by how far the aggregate
    falls short of this round's honest mean)."""
    if not honest_now:
        return [True] * len(crafted)
    oracle = replace(view.oracle, honest=honest_now)
    harm = view.harm
    if harm is None:
        mean = np.mean([u.delta.astype(np.float64) / ONE for u in honest_now], axis=0)

        def harm(agg: FloatArray) -> float:
            return -float(np.dot(agg, mean))

    realized = [realize(d, norm_max_units) for d in crafted]
    return list(choose_reveals(oracle, realized, harm))
