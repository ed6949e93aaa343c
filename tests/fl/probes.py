"""What the measuring probes (committee_probe, reward_probe, trace_probe) share: which clients
a `fedchain eval` run made attackers, whether a per-client score separates them from the
honest, and the command line."""

import json
from collections.abc import Callable

import numpy as np

from consensus.crypto import PrivateKey
from fl.client import simulation
from fl.client.datasets import load
from fl.client.simulation import EvalConfig, EvalResult
from fl.params import DEFAULT_RULE


def eval_clients(config: EvalConfig) -> tuple[list[bytes], set[int]]:
    """The run's client keys by index and the attackers' indices, as simulation.run draws them
    (the first draw of the seed's generator)."""
    keys = [PrivateKey.from_label(f"eval-client-{i}").public_key for i in range(config.clients)]
    chosen = np.random.default_rng(config.seed).permutation(config.clients)[: config.attackers]
    return keys, set(chosen.tolist())


def separation(means: dict[int, float], attackers: set[int]) -> dict[str, float | int]:
    """Medians and extremes of a per-client score, and how many on each side cross the other's
    extreme (0 and 0: a threshold on the score would separate them)."""
    honest = [m for i, m in means.items() if i not in attackers]
    bad = [means[i] for i in attackers]
    return {
        "honest_median": round(float(np.median(honest)), 3),
        "attacker_median": round(float(np.median(bad)), 3),
        "honest_min": round(min(honest), 3),
        "attacker_max": round(max(bad), 3),
        "honest_at_or_below_best_attacker": sum(m <= max(bad) for m in honest),
        "attackers_at_or_above_worst_honest": sum(m >= min(honest) for m in bad),
    }


def run_patched(
    module: object, name: str, replacement: object, config: EvalConfig, attack: str
) -> EvalResult:
    """`fedchain eval`'s cell (`config.dataset`, digits unless set) with the default rule,
    `module.name` replaced for the run (how a probe records what the chain computes)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        return simulation.run(config, DEFAULT_RULE, attack, load(config.dataset, config.seed))
    finally:
        setattr(module, name, original)


Probe = Callable[[str, float, int, int], dict[str, object]]


def run_over_seeds(probe: Probe, argv: list[str]) -> None:
    """`python -m tests.fl.<probe> ATTACK ALPHA SEEDS [ROUNDS]`: one JSON line per seed."""
    attack, alpha, seeds = argv[0], float(argv[1]), [int(s) for s in argv[2].split(",")]
    rounds = int(argv[3]) if len(argv) > 3 else 30
    for seed in seeds:
        print(json.dumps(probe(attack, alpha, seed, rounds)), flush=True)
