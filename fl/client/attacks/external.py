"""Glue for attacks written outside fedchain in the "honest vectors in, one vector out" style.

Libraries such as EPFL's ByzFL write an attack as a callable taking the honest updates (h, d) and
returning the one vector every Byzantine client sends; the optimising ones also take an
aggregator (called on all h + f rows) and search a factor against it.  `crafter` turns such a
callable into a `Crafter` for `register_external`; `ChainRule` is an aggregator that runs this
chain's rule, with the history it carries, through the round's oracle, so an outside search
optimises against exactly what the chain will do.  ByzFL's attackers all send one identical
vector, which similarity-weighting rules see at once; `camouflage=True` gives each attacker
fresh noise of its own at the honest spread (`adaptive.camouflage_noise`, ours) on top of the
library's vector, to check the attack's class and not only that instance.  Nothing here imports
an outside library: the script that registers one (scripts/eval_byzfl.py) does.
"""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from fl.client.attacks.adaptive import camouflage_noise
from fl.client.attacks.adversary import Crafter
from fl.client.attacks.view import RoundView, realize
from fl.client.errors import ClientError
from fl.fixed import DELTA_ABS_MAX, ONE

FloatArray = npt.NDArray[np.float64]

# An outside attack: the honest updates (h, d) in, the one vector the attackers send out.
VectorAttack = Callable[[FloatArray], object]
# Builds an optimising outside attack for one round from the rule to search against and f.
OptimisingFactory = Callable[["ChainRule", int], VectorAttack]
# Seeds an outside library's own global random state (ByzFL's Gaussian draws from np.random).
Reseed = Callable[[int], None]

_COORD_MAX = (DELTA_ABS_MAX - 1) / ONE


def sendable(vector: object) -> FloatArray:
    """An outside vector as float64 with what the wire cannot carry made finite: +-inf becomes
    the largest coordinate a client may send (+-(DELTA_ABS_MAX - 1) / ONE, just under 16 real
    units; `realize` then applies the client's L2 clip if the whole vector is longer than the
    norm bound), NaN becomes 0."""
    v = np.asarray(vector, dtype=np.float64)
    if v.ndim != 1:
        raise ClientError(f"an outside attack returned shape {v.shape}, expected one vector")
    out: FloatArray = np.nan_to_num(v, nan=0.0, posinf=_COORD_MAX, neginf=-_COORD_MAX)
    return out


def _draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**32 - 1))


def crafter(
    attack: VectorAttack, reseed: Reseed | None = None, camouflage: bool = False
) -> Crafter:
    """Every attacker sends the outside attack's one vector, as ByzFL's ByzantineClient does
    (with `camouflage`, plus fresh noise of its own at the honest per-coordinate spread, so the
    colluders are not identical); `reseed`, when given, seeds the library's global random state
    from the run's attack rng first, so one seed still gives one run."""

    def craft(view: RoundView, rng: np.random.Generator) -> list[FloatArray]:
        noise = camouflage_noise(view.honest, view.n_attackers, rng) if camouflage else None
        return _send(attack, view, rng, reseed, noise)

    return craft


def _send(
    attack: VectorAttack,
    view: RoundView,
    rng: np.random.Generator,
    reseed: Reseed | None,
    noise: FloatArray | None,
) -> list[FloatArray]:
    if reseed is not None:
        reseed(_draw_seed(rng))
    one = sendable(attack(view.honest.copy()))
    if one.shape != (view.honest.shape[1],):
        raise ClientError(
            f"an outside attack returned {one.shape[0]} values for {view.honest.shape[1]}"
        )
    if noise is None:
        return [one.copy() for _ in range(view.n_attackers)]
    return [one + row for row in noise]


class ChainRule:
    """An aggregator for an outside optimiser: given the honest rows followed by the f attacker
    rows, the aggregate this chain's rule (with its history) makes of the honest updates and
    those attacker rows as the chain would decode them (each plus its camouflage noise, when
    the attackers will add one)."""

    def __init__(self, view: RoundView, camouflage: FloatArray | None = None) -> None:
        self.view = view
        self.camouflage = camouflage
        self.calls = 0

    def __call__(self, vectors: Sequence[object] | FloatArray) -> FloatArray:
        rows = np.asarray(vectors, dtype=np.float64)
        h, m = self.view.honest.shape[0], self.view.n_attackers
        if rows.ndim != 2 or rows.shape[0] != h + m:
            raise ClientError(f"the rule got {rows.shape[0]} rows, expected {h} honest + {m}")
        self.calls += 1
        attackers = [sendable(r) for r in rows[h:]]
        if self.camouflage is not None:
            attackers = [a + c for a, c in zip(attackers, self.camouflage, strict=True)]
        realized = [realize(a, self.view.norm_max_units) for a in attackers]
        return self.view.oracle.evaluate(realized).delta


def optimising_crafter(
    factory: OptimisingFactory, reseed: Reseed | None = None, camouflage: bool = False
) -> Crafter:
    """An outside attack that searches against an aggregator, built afresh each round around
    `ChainRule` for that round (with the camouflage noise the attackers will add) and f = the
    number of attackers."""

    def craft(view: RoundView, rng: np.random.Generator) -> list[FloatArray]:
        noise = camouflage_noise(view.honest, view.n_attackers, rng) if camouflage else None
        attack = factory(ChainRule(view, noise), view.n_attackers)
        return _send(attack, view, rng, reseed, noise)

    return craft
