"""Can a committee's held-out score tell attackers from honest clients? (a measuring tool)

    python -m tests.fl.committee_probe ATTACK ALPHA SEEDS [ROUNDS] [VALIDATORS]
    e.g. python -m tests.fl.committee_probe sign_flip 0.5 0,1,2 50

Runs `fedchain eval`'s cell (digits, 30 clients, 30% attackers, the default rule) with a
committee of VALIDATORS (default 4, as `--committee 4`: 45 held-out samples each) and records,
for every update, two scores per validator on its held-out part: "gain", the committee's own
score (fl/client/committee.py), and
"cosine", FLTrust's trust signal (Cao et al., NDSS 2021): the cosine of the update with the
validator's own update trained from the same base model on its held-out part.  Per client it
takes the mean over rounds of the validators' median and prints one JSON line per seed: how
many honest clients score at or below the best-scoring attacker, and how many attackers at or
above the worst-scoring honest client (0 and 0: a threshold on the mean separates them).
"""

import json
import sys

import numpy as np
import numpy.typing as npt

from fl.client import simulation
from fl.client.committee import score_delta, update_delta
from fl.client.datasets import load
from fl.client.quantize import FloatArray
from fl.client.simulation import EvalConfig
from fl.client.trainers import Trainer
from fl.params import DEFAULT_RULE
from fl.txs import SignedTx
from tests.fl.probes import eval_clients, separation

VALIDATORS_DEFAULT = 4


class _Recorder:
    def __init__(self) -> None:
        self.scores: dict[bytes, list[tuple[float, float]]] = {}
        self._references: dict[tuple[bytes, bytes], FloatArray] = {}

    def score_tx(
        self,
        trainer: Trainer,
        weights: FloatArray,
        tx: SignedTx,
        x: FloatArray,
        y: npt.NDArray[np.int64],
    ) -> int:
        delta = update_delta(tx)
        key = (weights.tobytes(), x.tobytes())
        if key not in self._references:
            self._references = {}  # one base model and one validator at a time
            trained = trainer.train(weights, x, y, np.random.default_rng(0))
            self._references[key] = trained - weights
        reference = self._references[key]
        cosine = float(
            delta @ reference / max(1e-12, float(np.linalg.norm(delta) * np.linalg.norm(reference)))
        )
        gain = score_delta(trainer, weights, delta, x, y)
        self.scores.setdefault(tx.sender, []).append((gain, cosine))
        return gain


def probe(
    attack: str, alpha: float, seed: int, rounds: int, validators: int = VALIDATORS_DEFAULT
) -> dict[str, object]:
    recorder = _Recorder()
    original = simulation.__dict__["score_tx"]
    setattr(simulation, "score_tx", recorder.score_tx)  # noqa: B010 (the scorer the run calls)
    try:
        config = EvalConfig(alpha=alpha, seed=seed, rounds=rounds, committee=validators)
        result = simulation.run(config, DEFAULT_RULE, attack, load("digits", seed))
    finally:
        setattr(simulation, "score_tx", original)  # noqa: B010
    keys, attackers = eval_clients(config)
    out: dict[str, object] = {"attack": attack, "alpha": alpha, "seed": seed}
    out["validators"] = validators
    out["accuracy"] = round(result.accuracy, 4)
    for column, name in enumerate(("gain", "cosine")):
        means = {}
        for i, key in enumerate(keys):
            rows = np.array([s[column] for s in recorder.scores[key]]).reshape(-1, validators)
            means[i] = float(np.median(rows, axis=1).mean())
        out[name] = separation(means, attackers)
    return out


def main(argv: list[str]) -> None:
    attack, alpha, seeds = argv[0], float(argv[1]), [int(s) for s in argv[2].split(",")]
    rounds = int(argv[3]) if len(argv) > 3 else 50
    validators = int(argv[4]) if len(argv) > 4 else VALIDATORS_DEFAULT
    for seed in seeds:
        print(json.dumps(probe(attack, alpha, seed, rounds, validators)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
