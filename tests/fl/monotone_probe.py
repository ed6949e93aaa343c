"""Do sign flippers ascend their own loss where honest clients descend it? (a measuring tool)

    python -m tests.fl.monotone_probe ATTACK ALPHA SEEDS [ROUNDS]
    e.g. python -m tests.fl.monotone_probe sign_flip 0.1 0,1,2 30

An honest client's update is u(w) = T(w) - w, T its local training from the global model w.
For a convex local loss and a small enough step, T is non-expansive, so between two rounds it
took part in, <u(w') - u(w), w' - w> = <T(w') - T(w), w' - w> - |w' - w|**2 <= 0 (up to the
noise of a different shuffle each round).  A sign flipper sends -u(w), so the same product is
>= 0.  This probe runs `fedchain eval`'s digits cell (30 clients, 30% attackers, the default
rule) through the chain, records each update as the chain decoded it and the model it was
trained on (rounds.close_round), and prints per seed how the per-client mean of
cos(u_t - u_{t-1}, w_t - w_{t-1}), and the share of rounds in which it is positive, separate
attackers from the honest.
"""

import sys
from dataclasses import dataclass, field

import numpy as np

from fl import rounds
from fl.client.quantize import FloatArray
from fl.client.simulation import EvalConfig
from fl.fixed import ONE
from fl.rounds import RoundOutcome
from fl.state import FLState
from tests.fl.probes import eval_clients, run_over_seeds, run_patched

_CLOSE_ROUND = rounds.close_round


@dataclass(slots=True)
class _Record:
    last: dict[bytes, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    cosines: dict[bytes, list[float]] = field(default_factory=dict)
    relative: dict[bytes, list[float]] = field(default_factory=dict)


_RECORD = _Record()


def _cos(a: FloatArray, b: FloatArray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else 0.0


def _closing(state: FLState, height: int, cause: str) -> RoundOutcome:
    """rounds.close_round, recording each update with the model it was trained on."""
    model = state.model.weights.astype(np.float64) / ONE
    this_round: dict[bytes, float] = {}
    for p in state.pending:
        u = p.delta.astype(np.float64) / ONE
        before = _RECORD.last.get(p.client)
        if before is not None:
            u_prev, w_prev = before
            this_round[p.client] = _cos(u - u_prev, model - w_prev)
        _RECORD.last[p.client] = (u, model)
    if this_round:  # also relative to the round: minus its median client's cosine
        middle = float(np.median(list(this_round.values())))
        for client, c in this_round.items():
            _RECORD.cosines.setdefault(client, []).append(c)
            _RECORD.relative.setdefault(client, []).append(c - middle)
    return _CLOSE_ROUND(state, height, cause)


def _split(values: dict[int, float], attackers: set[int]) -> dict[str, float | int]:
    """Here the attackers are the high side: how many honest clients reach the lowest attacker
    and how many attackers sit at or below the highest honest client (0 and 0: a threshold
    separates them)."""
    honest = [v for i, v in values.items() if i not in attackers]
    bad = [values[i] for i in attackers] or [float("nan")]
    return {
        "honest_median": round(float(np.median(honest)), 3),
        "honest_max": round(max(honest), 3),
        "attacker_median": round(float(np.median(bad)), 3),
        "attacker_min": round(min(bad), 3),
        "honest_at_or_above_lowest_attacker": sum(v >= min(bad) for v in honest),
        "attackers_at_or_below_highest_honest": sum(v <= max(honest) for v in bad),
    }


def probe(attack: str, alpha: float, seed: int, n_rounds: int) -> dict[str, object]:
    _RECORD.last, _RECORD.cosines, _RECORD.relative = {}, {}, {}
    config = EvalConfig(alpha=alpha, seed=seed, rounds=n_rounds)
    result = run_patched(rounds, "close_round", _closing, config, attack)
    keys, attackers = eval_clients(config)
    attackers = attackers if attack != "none" else set()
    cosines = {i: _RECORD.cosines.get(k, [0.0]) for i, k in enumerate(keys)}
    return {
        "attack": attack,
        "alpha": alpha,
        "seed": seed,
        "accuracy": round(result.accuracy, 4),
        "mean_cosine": _split({i: float(np.mean(c)) for i, c in cosines.items()}, attackers),
        "share_of_rounds_positive": _split(
            {i: float(np.mean([x > 0 for x in c])) for i, c in cosines.items()}, attackers
        ),
        "mean_relative_to_round_median": _split(
            {i: float(np.mean(_RECORD.relative.get(k, [0.0]))) for i, k in enumerate(keys)},
            attackers,
        ),
        "ewma_17_max_honest_min_attacker": _ewma_extremes(keys, attackers),
    }


def _ewma_extremes(keys: list[bytes], attackers: set[int]) -> list[float]:
    """The largest value any honest client's EWMA (weight 0.06, as slashing evidence) of its
    round-relative cosine reaches after 10 rounds, and the smallest final value of an
    attacker's."""
    honest_peak, attacker_final = -1.0, 1.0
    for i, k in enumerate(keys):
        e, peak = 0.0, -1.0
        for n, x in enumerate(_RECORD.relative.get(k, [])):
            e = 0.94 * e + 0.06 * x
            if n >= 10:
                peak = max(peak, e)
        if i in attackers:
            attacker_final = min(attacker_final, e)
        else:
            honest_peak = max(honest_peak, peak)
    return [round(honest_peak, 3), round(attacker_final, 3)]


if __name__ == "__main__":
    run_over_seeds(probe, sys.argv[1:])
