"""Where do an attack's updates sit relative to the honest ones? (a measuring tool)

    python -m tests.fl.isolation_probe ATTACK DATASET KNOWLEDGE SEEDS [ROUNDS]
    e.g. python -m tests.fl.isolation_probe adaptive_unflagged breast_cancer past 0,1,2 30

Runs `fedchain eval`'s cell (30 clients, 30% attackers, the default rule) through the chain,
records every round's updates as the chain decoded them (rounds.close_round), and prints per
seed, as medians over rounds 5 and later:
  isolation        an attacker's distance to its nearest honest update, over the median honest
                   update's distance to its nearest honest neighbour (1: as close as the honest
                   are to one another)
  attacker_cosine  an attacker's cosine with the honest mean (and the highest of them)
  honest_cosine    an honest client's cosine with the honest mean (and the lowest of them, and
                   how many of the honest are negative)
With ATTACK "none" the clients at the attackers' indices are honest: the baseline.
"""

import json
import sys

import numpy as np

from fl import rounds
from fl.client.quantize import FloatArray
from fl.client.simulation import EvalConfig
from fl.fixed import ONE
from fl.rounds import RoundOutcome
from fl.state import FLState
from tests.fl.probes import eval_clients, run_patched

_CLOSE_ROUND = rounds.close_round
_ROUNDS: list[list[tuple[bytes, FloatArray]]] = []
SKIP = 5  # the first rounds, before the model has moved, are left out


def _closing(state: FLState, height: int, cause: str) -> RoundOutcome:
    _ROUNDS.append([(p.client, p.delta.astype(np.float64) / ONE) for p in state.pending])
    return _CLOSE_ROUND(state, height, cause)


def _cosines(rows: FloatArray, direction: FloatArray) -> FloatArray:
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(direction)
    out: FloatArray = rows @ direction / np.maximum(norms, 1e-12)
    return out


def probe(attack: str, dataset: str, knowledge: str, seed: int, n_rounds: int) -> dict[str, object]:
    _ROUNDS.clear()
    config = EvalConfig(dataset=dataset, seed=seed, rounds=n_rounds, knowledge=knowledge)
    result = run_patched(rounds, "close_round", _closing, config, attack)
    keys, attackers = eval_clients(config)
    marked = {keys[i] for i in attackers}
    isolation, att_cos, att_high, hon_cos, hon_low, hon_neg = [], [], [], [], [], []
    for updates in _ROUNDS[SKIP:]:
        honest = np.array([u for c, u in updates if c not in marked])
        bad = np.array([u for c, u in updates if c in marked])
        if len(bad) == 0 or len(honest) < 2:
            continue
        between = np.linalg.norm(honest[:, None] - honest[None], axis=2)
        np.fill_diagonal(between, np.inf)
        to_honest = np.linalg.norm(bad[:, None] - honest[None], axis=2).min(axis=1)
        isolation.append(float(np.median(to_honest) / np.median(between.min(axis=1))))
        mean = honest.mean(axis=0)
        a, h = _cosines(bad, mean), _cosines(honest, mean)
        att_cos.append(float(np.median(a)))
        att_high.append(float(a.max()))
        hon_cos.append(float(np.median(h)))
        hon_low.append(float(h.min()))
        hon_neg.append(int((h < 0).sum()))
    return {
        "attack": attack,
        "dataset": dataset,
        "knowledge": knowledge,
        "seed": seed,
        "accuracy": round(result.accuracy, 4),
        "isolation": round(float(np.median(isolation)), 2),
        "attacker_cosine": [
            round(float(np.median(att_cos)), 2),
            round(float(np.median(att_high)), 2),
        ],
        "honest_cosine": [
            round(float(np.median(hon_cos)), 2),
            round(float(np.median(hon_low)), 2),
            int(np.median(hon_neg)),
        ],
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    for seed in (int(s) for s in args[3].split(",")):
        rounds_n = int(args[4]) if len(args) > 4 else 30
        print(json.dumps(probe(args[0], args[1], args[2], seed, rounds_n)), flush=True)
