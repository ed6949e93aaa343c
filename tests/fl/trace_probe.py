"""Do a client's deviations add up across rounds?  (a measuring tool)

    python -m tests.fl.trace_probe ATTACK ALPHA SEEDS [ROUNDS]
    e.g. python -m tests.fl.trace_probe free_ride 0.5 0,1,2 30

Runs `fedchain eval`'s cell (digits, 30 clients, 30% attackers, the default rule) and records,
after every round, each client's history_clip trace norm relative to the round's median trace
norm (1.0: as long as the median client's).  A trace is the decaying sum of a client's unit
deviations from the round's centre (fl/aggregate/history.py), so it grows like 1 / (1 - keep)
when the client deviates the same way round after round (an honest client's own data) and like
1 / sqrt(1 - keep**2) when its deviations are fresh noise.  Per client it takes the mean over
rounds 10 to the end (the traces are full by then) and prints one JSON line per seed with the
separation (tests.fl.probes.separation) of the attackers from the honest clients.
"""

import math
import sys

import numpy as np

from fl.aggregate import history
from fl.client.simulation import EvalConfig
from fl.fixed import IntArray
from tests.fl.probes import eval_clients, run_over_seeds, run_patched, separation

FULL_FROM = 10  # the first round whose traces are averaged
_NEXT_HISTORY = history._next_history
_RELATIVE: list[dict[bytes, float]] = []  # per round: client -> trace norm / median


def _recording(
    before: history.RuleHistory,
    keys: tuple[bytes, ...],
    vectors: IntArray,
    alignment: list[int],
    radius: int,
    p: history.HistoryParams,
) -> history.RuleHistory:
    """history._next_history, recording each client's relative trace norm first."""
    norms = [math.sqrt(float(v @ v)) for v in vectors.astype(np.float64)]
    median = float(np.median(norms)) or 1.0
    _RELATIVE.append({key: norm / median for key, norm in zip(keys, norms, strict=True)})
    return _NEXT_HISTORY(before, keys, vectors, alignment, radius, p)


def probe(attack: str, alpha: float, seed: int, n_rounds: int) -> dict[str, object]:
    _RELATIVE.clear()
    config = EvalConfig(alpha=alpha, seed=seed, rounds=n_rounds)
    result = run_patched(history, "_next_history", _recording, config, attack)
    keys, attackers = eval_clients(config)
    full = _RELATIVE[FULL_FROM:]
    means = {i: float(np.mean([r[k] for r in full if k in r])) for i, k in enumerate(keys)}
    return {
        "attack": attack,
        "alpha": alpha,
        "seed": seed,
        "accuracy": round(result.accuracy, 4),
        "relative_trace_norm": separation(means, attackers),
    }


if __name__ == "__main__":
    run_over_seeds(probe, sys.argv[1:])
