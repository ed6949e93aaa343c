"""Can any geometric score of an update tell free riders from honest clients? (a measuring tool)

    python -m tests.fl.reward_probe ATTACK ALPHA SEEDS [ROUNDS]
    e.g. python -m tests.fl.reward_probe free_ride 0.5 0,1,2 30

Runs `fedchain eval`'s cell (digits, 30 clients, 30% attackers, the default rule) and records,
for every update u of every closed round, with agg the round's aggregate, lc the last round's
aggregate (public before the round opens) and others = (n agg - u) / (n - 1) (the aggregate
without u's own share, so no score rewards a client for agreeing with itself):
  agreement    cos(u, agg)                   what a consensus-agreement reward pays for
  loo          cos(u, others)                ... leaving u out
  innovation   cos(u - lc, others - lc)      agreement of what u adds to the public trend
Per client it takes the mean over rounds and prints one JSON line per seed: how many honest
clients score at or below the best-scoring attacker, and how many attackers at or above the
worst-scoring honest client (0 and 0: a threshold on the mean would separate them), with the
tokens each group earned.
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
from tests.fl.probes import eval_clients, run_over_seeds, run_patched, separation

SCORES = ("agreement", "loo", "innovation")
_CLOSE_ROUND = rounds.close_round


def _cos(a: FloatArray, b: FloatArray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else 0.0


@dataclass(slots=True)
class _Record:
    scores: dict[bytes, list[tuple[float, float, float]]] = field(default_factory=dict)
    last_change: FloatArray | None = None


_RECORD = _Record()


def _closing(state: FLState, height: int, cause: str) -> RoundOutcome:
    """rounds.close_round, recording the closed round's updates and aggregate into _RECORD."""
    before = state.model.weights.astype(np.float64)
    pending = [(p.client, p.delta.astype(np.float64) / ONE) for p in state.pending]
    outcome = _CLOSE_ROUND(state, height, cause)
    agg = (state.model.weights.astype(np.float64) - before) / ONE
    lc, n = _RECORD.last_change, len(pending)
    if lc is not None and n > 1:
        for client, u in pending:
            others = (n * agg - u) / (n - 1)
            row = (_cos(u, agg), _cos(u, others), _cos(u - lc, others - lc))
            _RECORD.scores.setdefault(client, []).append(row)
    _RECORD.last_change = agg
    return outcome


def probe(attack: str, alpha: float, seed: int, n_rounds: int) -> dict[str, object]:
    _RECORD.scores, _RECORD.last_change = {}, None
    config = EvalConfig(alpha=alpha, seed=seed, rounds=n_rounds)
    result = run_patched(rounds, "close_round", _closing, config, attack)  # finalize_block's
    keys, attackers = eval_clients(config)
    out: dict[str, object] = {"attack": attack, "alpha": alpha, "seed": seed}
    out["reward_per_client_attackers_honest"] = [
        round(result.reward_attackers),
        round(result.reward_honest),
    ]
    for column, name in enumerate(SCORES):
        means = {
            i: float(np.mean([s[column] for s in _RECORD.scores[k]])) for i, k in enumerate(keys)
        }
        out[name] = separation(means, attackers)
    return out


if __name__ == "__main__":
    run_over_seeds(probe, sys.argv[1:])
