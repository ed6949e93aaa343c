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

from fl.client.attacks.view import FloatArray, Oracle


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
    votes = oracle.attacker_votes
    subset = replace(
        oracle,
        attacker_keys=tuple(oracle.attacker_keys[i] for i in shown),
        attacker_samples=tuple(oracle.attacker_samples[i] for i in shown),
        attacker_votes=tuple(votes[i] for i in shown) if votes else (),
    )
    return harm(subset.evaluate([deltas[i] for i in shown]).delta)
