"""What a coordinated attacker sees of a round, and the chain's own rule as an oracle.

On this chain every update and the rule are public, so the attackers of `fedchain eval` know
the honest updates exactly as the chain decoded them (model units) and can run the real integer
aggregation on any candidate set before they sign.  `realize` turns a float delta into exactly
the units the chain will decode from it (the client's clip, a deterministic int16 quantization,
the chain's decoding), so what the oracle judged is what the chain will aggregate.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.aggregate import ClientUpdate, RuleHistory, aggregate
from fl.client.quantize import clip_delta, quantize
from fl.economics.params import EconParams
from fl.fixed import ONE, IntArray, delta_from_wire
from fl.params import Params

DEFAULT_ECON = EconParams()
COLLUSION_PERMILLE = DEFAULT_ECON.collusion_permille  # the chain's default copy test

FloatArray = npt.NDArray[np.float64]
BITS = 16  # the honest clients' width: an attacker sending another would stand out


def realize(delta: FloatArray, norm_max_units: int) -> FloatArray:
    """The real-valued delta the chain will see when this one is sent with `BITS` and no
    stochastic rounding (sending the result again gives the same units)."""
    q = quantize(clip_delta(delta, norm_max_units), BITS, None)
    units = delta_from_wire(q.data, q.bits, q.scale_exp, q.count)
    out: FloatArray = units.astype(np.float64) / ONE
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    delta: FloatArray  # the aggregate, real units
    attackers_flagged: tuple[bool, ...]
    honest_flagged: int


# How the oracle aggregates: the rule without history (unit tests), or `ChainAggregator`.
Aggregator = Callable[[Sequence[ClientUpdate], Params], tuple[IntArray, dict[bytes, str]]]


def stateless_aggregator(
    updates: Sequence[ClientUpdate], params: Params
) -> tuple[IntArray, dict[bytes, str]]:
    # The default chain: single-phase rounds, the attackers' updates included after the honest.
    result = aggregate(
        params.rule, updates, params, originals_first=True, collusion_permille=COLLUSION_PERMILLE
    )
    return result.delta, {v.client: v.flag for v in result.verdicts}


@dataclass(frozen=True, slots=True)
class ChainAggregator:
    """The rule as close_round runs it, with the history the chain carries into this round
    (public state, like every update): what the omniscient attacker optimises against."""

    history: RuleHistory
    # As close_round: single-phase rounds (no commit-reveal), the economics' default copy test.
    originals_first: bool = True
    collusion_permille: int = COLLUSION_PERMILLE

    def __call__(
        self, updates: Sequence[ClientUpdate], params: Params
    ) -> tuple[IntArray, dict[bytes, str]]:
        result = aggregate(
            params.rule,
            updates,
            params,
            self.history,
            originals_first=self.originals_first,
            collusion_permille=self.collusion_permille,
        )
        return result.delta, {v.client: v.flag for v in result.verdicts}


@dataclass(frozen=True, slots=True)
class Oracle:
    """Runs the chain's rule on the honest updates plus candidate attacker deltas."""

    params: Params
    honest: tuple[ClientUpdate, ...]
    attacker_keys: tuple[bytes, ...]
    attacker_samples: tuple[int, ...]
    aggregator: Aggregator = stateless_aggregator
    # The attackers' stake votes in history_clip (public: stake is chain state); the honest
    # updates carry theirs.  Empty: one each, as on a chain without bonds.
    attacker_votes: tuple[int, ...] = ()

    def evaluate(self, deltas: Sequence[FloatArray]) -> Outcome:
        """`deltas` (one per attacker, already `realize`d) as the chain would aggregate them."""
        updates = list(self.honest)
        votes = self.attacker_votes or (1,) * len(self.attacker_keys)
        for key, samples, vote, delta in zip(
            self.attacker_keys, self.attacker_samples, votes, deltas, strict=True
        ):
            units = np.round(delta * ONE).astype(np.int64)
            updates.append(ClientUpdate(key, samples, units, None, vote))
        agg, flags = self.aggregator(updates, self.params)
        honest_flagged = sum(1 for u in self.honest if flags.get(u.client))
        return Outcome(
            agg.astype(np.float64) / ONE,
            tuple(bool(flags.get(k)) for k in self.attacker_keys),
            honest_flagged,
        )


@dataclass(frozen=True, slots=True)
class RoundView:
    """One round as the colluding attackers see it."""

    round: int
    honest: FloatArray  # (h, d): the honest updates the attackers know, real units
    own: FloatArray  # (m, d): each attacker's trained delta (after its data poisoning)
    # The rule run on the honest updates the attackers know (this round's, or the last round's
    # when updates are committed before they are revealed).
    oracle: Oracle
    norm_max_units: int
    # The attackers' loss of the current model moved by a candidate aggregate, on their own
    # clean data: what "harm to accuracy" means to an attacker without the test set.
    harm: Callable[[FloatArray], float] | None = None
    # The global model's change in the last round (public chain state; None in round 0).
    last_change: FloatArray | None = None
    # Each attacker's slashing evidence and the economics parameters (public chain state).
    evidence: tuple[int, ...] = ()
    econ: EconParams = DEFAULT_ECON

    @property
    def n_attackers(self) -> int:
        return int(self.own.shape[0])
