"""The colluding attackers of `fedchain eval` for the attacks that need the whole round.

  min_max_{uv,std,sgn}  Shejwalkar & Houmansadr's min-max, one perturbation direction each
  min_sum_{uv,std,sgn}  ... and min-sum (fl/client/attacks/literature.py)
  fang                  Fang et al.'s full-knowledge attack on trimmed mean / median
  adaptive              search through the chain's rule for the update that moves the aggregate
                        farthest from the honest mean (directions uv/std/sgn, identical or
                        camouflaged colluders), flagged or not (fl/client/attacks/adaptive.py)
  adaptive_unflagged    the same, keeping only candidates the rule flags none of
  backdoor_slow         train with the trigger, then push the backdoor direction every round as
                        far as the rule lets an unflagged update go (no boosting past it)
  backdoor_pgd          train with the trigger and send mu + r * unit(own - mu): projected onto
                        the honest radius r, without asking the rule (Wang et al.'s PGD idea)
  drift                 one direction fixed in the first round (towards predicting the target
                        class for everything), pushed every round as far as stays unflagged
  mimic                 every attacker copies one honest client's update, the same client
                        every round (Karimireddy et al.; fl/client/attacks/literature.py)
  free_ride             train nothing: send the global model's last change plus Gaussian noise
                        of FREE_RIDE_NOISE x the honest spread, so no two riders look alike
                        (the "delta weights" free rider of Lin et al., arXiv 1911.12560,
                        disguised with noise as Fraboni et al., AISTATS 2021): what it earns
                        is the incentive failure
  free_ride_fixed       the same, each rider keeping one disguise direction for the whole run:
                        fresh noise leaves a rider's trace short (its deviations do not add
                        up across rounds, an honest client's do), a kept direction does not
  copy_on_off           min-max's vector from every key (near-copies, slashing evidence)
                        whenever no attacker's next copy would take its public evidence to the
                        slashing bound, else each attacker's own trained update: the most
                        copying rounds that go unslashed (fl/economics/clients.py)

An `Adversary` lives for a whole run: drift remembers its direction, mimic its victim, the fixed
free riders their disguises.

Attacks implemented outside fedchain (another library's, driven by a script such as
scripts/eval_byzfl.py) join through `register_external`: they see the same `RoundView` and their
deltas are realized like ours, so "defend the class, not the instance" can be checked against
code we did not write.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fl.client.attacks import adaptive, literature
from fl.client.attacks.basic import ATTACKS, Collusion
from fl.client.attacks.view import RoundView, realize
from fl.client.errors import ClientError
from fl.economics.clients import next_evidence

FloatArray = npt.NDArray[np.float64]

COORDINATED = (
    "min_max_uv",
    "min_max_std",
    "min_max_sgn",
    "min_sum_uv",
    "min_sum_std",
    "min_sum_sgn",
    "fang",
    "adaptive",
    "adaptive_unflagged",
    "backdoor_slow",
    "backdoor_pgd",
    "drift",
    "mimic",
    "free_ride",
    "free_ride_fixed",
    "copy_on_off",
)
EVAL_ATTACKS = ATTACKS + COORDINATED
BACKDOORS = ("backdoor", "backdoor_slow", "backdoor_pgd")
# Of the honest spread: the riders' best of 0.05-3.0 (digits, alpha 0.5, 30 rounds, seeds 0-2):
# at 0.5 they are never flagged and earn 1.36x an honest client; at 0.3 the default rule flags a
# sixth of them as alike (all at 0.05), from 2.0 some as outliers (all at 3.0); see
# docs/robustness.md, "Free riders".
FREE_RIDE_NOISE = 0.5

# One delta per attacker from what the colluders see of the round.
Crafter = Callable[[RoundView, np.random.Generator], list[FloatArray]]
_EXTERNAL: dict[str, Crafter] = {}


def register_external(name: str, crafter: Crafter) -> None:
    """Makes `name` a coordinated attack of `fedchain eval` run by `crafter` (a process-wide
    registry: register before `--jobs` forks its workers)."""
    if name in EVAL_ATTACKS or not name or "," in name:
        raise ClientError(f"cannot register attack {name!r}: empty, has a comma or is built in")
    _EXTERNAL[name] = crafter


def eval_attacks() -> tuple[str, ...]:
    """Every attack `fedchain eval` knows: the built-in ones, then the registered ones."""
    return EVAL_ATTACKS + tuple(_EXTERNAL)


def is_coordinated(attack: str) -> bool:
    return attack in COORDINATED or attack in _EXTERNAL


def check_eval(attack: str) -> None:
    if attack not in eval_attacks():
        raise ClientError(f"unknown attack {attack!r}: one of {', '.join(eval_attacks())}")


@dataclass(slots=True)
class Adversary:
    attack: str
    collusion: Collusion
    drift_direction: FloatArray | None = field(default=None)
    mimic_victim: bytes | None = field(default=None)
    ride_directions: FloatArray | None = field(default=None)

    def craft(self, view: RoundView, rng: np.random.Generator) -> list[FloatArray]:
        """One delta per attacker, each already as the chain will decode it."""
        norm_max = view.norm_max_units
        m = view.n_attackers
        honest = view.honest
        mu = honest.mean(axis=0)
        external = _EXTERNAL.get(self.attack)
        if external is not None:
            crafted = external(view, rng)
            if len(crafted) != m:
                raise ClientError(f"{self.attack!r} crafted {len(crafted)} deltas for {m}")
            return [realize(np.asarray(v, dtype=np.float64), norm_max) for v in crafted]
        match self.attack.split("_", 2):
            case ["min", kind, direction] if direction in literature.DIRECTIONS:
                one = realize(literature.shejwalkar(honest, direction, f"min_{kind}"), norm_max)
                return [one for _ in range(m)]
            case ["fang"]:
                return [realize(v, norm_max) for v in literature.fang(honest, m, rng)]
            case ["adaptive", *rest]:
                unflagged = rest == ["unflagged"]
                noise = adaptive.camouflage_noise(honest, m, rng)
                found: list[adaptive.Candidate | None] = []
                for direction in literature.DIRECTIONS:
                    u = literature.perturbation(honest, direction)
                    found.append(adaptive.along(view, u, None, unflagged))
                    found.append(adaptive.along(view, u, noise, unflagged))
                found += adaptive.literature_candidates(view, unflagged)
                best = adaptive.best_of(found)
                return list(best.deltas) if best is not None else adaptive.fallback(view)
            case ["backdoor", "slow"]:
                best = _push_unflagged(view, view.own.mean(axis=0) - mu, rng)
                return list(best.deltas) if best is not None else adaptive.fallback(view)
            case ["backdoor", "pgd"]:
                radius = adaptive.honest_spread(honest)
                return [
                    realize(mu + radius * adaptive.unit(own - mu), norm_max) for own in view.own
                ]
            case ["drift"]:
                if self.drift_direction is None:
                    self.drift_direction = adaptive.unit(view.own.mean(axis=0) - mu)
                best = _push_unflagged(view, self.drift_direction, rng)
                return list(best.deltas) if best is not None else adaptive.fallback(view)
            case ["free", "ride", "fixed"]:
                last = _last_change(view)
                if self.ride_directions is None or self.ride_directions.shape != (m, mu.size):
                    raw = rng.normal(0.0, 1.0, (m, mu.size))
                    self.ride_directions = raw / np.linalg.norm(raw, axis=1, keepdims=True)
                scale = FREE_RIDE_NOISE * adaptive.honest_spread(honest)
                return [realize(last + scale * d, norm_max) for d in self.ride_directions]
            case ["free", "ride"]:
                last = _last_change(view)
                sigma = FREE_RIDE_NOISE * adaptive.honest_spread(honest) / np.sqrt(mu.size)
                return [realize(last + rng.normal(0.0, sigma, mu.size), norm_max) for _ in range(m)]
            case ["copy", "on", "off"]:
                if _copy_is_safe(view):
                    one = realize(literature.shejwalkar(honest, "uv", "min_max"), norm_max)
                    return [one for _ in range(m)]
                return [realize(own, norm_max) for own in view.own]
            case ["mimic"]:
                return [realize(self._mimic(view), norm_max)] * m
            case _:
                raise ClientError(f"{self.attack!r} is not a coordinated attack")

    def _mimic(self, view: RoundView) -> FloatArray:
        """The victim's update as the chain decoded it (chosen once, among the updates the
        attackers know; chosen again only if the victim stops submitting)."""
        known = [u.client for u in view.oracle.honest]
        if self.mimic_victim not in known:
            self.mimic_victim = known[literature.mimic_target(view.honest)]
        victim: FloatArray = view.honest[known.index(self.mimic_victim)]
        return victim


def _last_change(view: RoundView) -> FloatArray:
    """The global model's last change, what free riders echo (zero before the first one)."""
    if view.last_change is None:
        return np.zeros(view.honest.shape[1])
    return view.last_change


def _copy_is_safe(view: RoundView) -> bool:
    """Whether one more fully suspect round leaves every attacker's evidence below the bound."""
    bound = view.econ.evidence_slash_permille
    return all(next_evidence(e, 1000, view.econ) < bound for e in view.evidence)


def _push_unflagged(
    view: RoundView, u: FloatArray, rng: np.random.Generator
) -> adaptive.Candidate | None:
    """The farthest unflagged push along u: identical colluders, or camouflaged ones when a
    rule flags look-alikes (or when camouflage simply gets further)."""
    noise = adaptive.camouflage_noise(view.honest, view.n_attackers, rng)
    return adaptive.best_of(
        [
            adaptive.along(view, u, None, unflagged=True, objective=-u),
            adaptive.along(view, u, noise, unflagged=True, objective=-u),
        ]
    )
