"""What the measuring probes (committee_probe, reward_probe) share: which clients a `fedchain
eval` run made attackers, and whether a per-client score separates them from the honest."""

import numpy as np

from consensus.crypto import PrivateKey
from fl.client.simulation import EvalConfig


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
