"""Attacks that search through the chain's own aggregation rule.

The colluding attackers send mu + lambda * u (+ camouflage), mu the mean of the honest updates
they know and u a unit direction, and choose lambda by running the chain's integer rule on the
honest updates plus their candidates (`Oracle`): a geometric grid of lambda in units of the honest
spread (the median distance of an honest update from mu), then a finer pass around the best grid
point.  The objective is the attackers' loss on their own clean data after the model takes
the candidate aggregate (`RoundView.harm`), or without data how far the aggregate was pulled
back from the honest progress: <mu - agg, unit(mu)>.  The min-max and min-sum vectors are
candidates too, so the search is never weaker than those attacks in a round.
Identical vectors also inflate a median-based radius (they are many equal deviations), so the
search finds "just inside the drop radius" by itself instead of being told where it is.
With `unflagged`, a candidate counts only if the rule flags none of the attackers.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.client.attacks.view import RoundView, realize

FloatArray = npt.NDArray[np.float64]

GRID = (0.125, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
REFINE_POINTS = 6


@dataclass(frozen=True, slots=True)
class Candidate:
    value: float  # the objective (larger is worse for the honest clients)
    scale: float  # lambda
    deltas: tuple[FloatArray, ...]  # one realized delta per attacker


def unit(v: FloatArray) -> FloatArray:
    norm = float(np.linalg.norm(v))
    out: FloatArray = v / norm if norm > 0 else np.zeros_like(v)
    return out


def honest_spread(honest: FloatArray) -> float:
    mu = honest.mean(axis=0)
    return float(np.median(np.linalg.norm(honest - mu, axis=1))) or 1e-6


def along(
    view: RoundView,
    direction: FloatArray,
    camouflage: FloatArray | None = None,
    unflagged: bool = False,
    objective: FloatArray | None = None,
) -> Candidate | None:
    """The best lambda for mu + lambda * direction (+ camouflage[k] for attacker k), or None
    when no candidate passes (only possible with `unflagged`).  The value of a candidate is its
    `score` (harm), or with `objective` (a direction the attackers want to move the model
    against) how far it moved the aggregate that way: <mu - agg, unit(objective)>."""
    mu = view.honest.mean(axis=0)
    u = unit(direction)
    progress = unit(mu) if objective is None else unit(objective)
    use_harm = objective is None
    m = view.n_attackers
    norm_max = view.norm_max_units

    def attempt(scale: float) -> Candidate | None:
        if camouflage is None:
            one = realize(mu + scale * u, norm_max)
            deltas = tuple(one for _ in range(m))
        else:
            deltas = tuple(realize(mu + scale * u + camouflage[k], norm_max) for k in range(m))
        outcome = view.oracle.evaluate(deltas)
        if unflagged and any(outcome.attackers_flagged):
            return None
        return Candidate(score(view, outcome.delta, mu, progress, use_harm), scale, deltas)

    spread = honest_spread(view.honest)
    scales = [spread * g for g in GRID]
    tried = [attempt(s) for s in scales]
    best_i = max(
        (i for i, c in enumerate(tried) if c is not None),
        key=lambda i: tried[i].value,  # type: ignore[union-attr]
        default=None,
    )
    if best_i is None:
        return None
    best = tried[best_i]
    lo = scales[best_i - 1] if best_i > 0 else 0.0
    hi = scales[best_i + 1] if best_i + 1 < len(scales) else scales[best_i] * 2.0
    for s in np.linspace(lo, hi, REFINE_POINTS + 2)[1:-1]:
        c = attempt(float(s))
        if c is not None and best is not None and c.value > best.value:
            best = c
    return best


def score(
    view: RoundView, agg: FloatArray, mu: FloatArray, progress: FloatArray, use_harm: bool = True
) -> float:
    """Harm on the attackers' own data when they have it, else the progress taken back."""
    if use_harm and view.harm is not None:
        return view.harm(agg)
    return float(np.dot(mu - agg, progress))


def literature_candidates(view: RoundView, unflagged: bool) -> list[Candidate | None]:
    """The min-max and min-sum vectors of every direction, scored like the search's own."""
    from fl.client.attacks import literature

    mu = view.honest.mean(axis=0)
    out: list[Candidate | None] = []
    for direction in literature.DIRECTIONS:
        for kind in ("min_max", "min_sum"):
            one = realize(literature.shejwalkar(view.honest, direction, kind), view.norm_max_units)
            deltas = tuple(one for _ in range(view.n_attackers))
            outcome = view.oracle.evaluate(deltas)
            if unflagged and any(outcome.attackers_flagged):
                out.append(None)
                continue
            value = score(view, outcome.delta, mu, unit(mu))
            out.append(Candidate(value, float(np.linalg.norm(one - mu)), deltas))
    return out


def camouflage_noise(honest: FloatArray, m: int, rng: np.random.Generator) -> FloatArray:
    """Per-attacker noise with the honest per-coordinate spread, so colluders are not equal."""
    sigma = honest.std(axis=0)
    out: FloatArray = rng.normal(0.0, 1.0, (m, honest.shape[1])) * sigma
    return out


def best_of(candidates: list[Candidate | None]) -> Candidate | None:
    found = [c for c in candidates if c is not None]
    return max(found, key=lambda c: c.value) if found else None


def fallback(view: RoundView) -> list[FloatArray]:
    """What an attacker that found nothing admissible sends: the honest mean."""
    mu = realize(view.honest.mean(axis=0), view.norm_max_units)
    return [mu for _ in range(view.n_attackers)]
