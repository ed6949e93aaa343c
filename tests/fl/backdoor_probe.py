"""Slow-backdoor variants that `fedchain eval` does not ship (a measuring tool, not a test).

    python -m tests.fl.backdoor_probe VARIANT SEEDS [FRACTION] [ALPHA] [ROUNDS]
    e.g. python -m tests.fl.backdoor_probe fixed_camo 0,1,2 0.3

Runs `fedchain eval`'s `backdoor_slow` cell (digits, 30 clients, the default rule) with the
attackers' crafting replaced.  Both variants train on their data plus the triggered copy, as
`backdoor_slow` does, and keep only candidates the rule flags none of (omniscient: the exact rule
with the chain's `rule_history` is the oracle); they differ in what hides the shared push:

  fixed_camo   mu + lambda * u + c_k, u = unit(mean of the attackers' deltas - mu) as in
               backdoor_slow, but each attacker's camouflage c_k keeps one random direction for
               the whole run (length: the honest per-coordinate spread, as backdoor_slow's fresh
               noise).  Fresh noise averages out of the per-client traces; a fixed direction does
               not, so the colluders' traces stay as unlike as lambda allows.
  sign_aware   fixed_camo against the sign vote (hist_sign_permille, fl/aggregate/sign_vote.py),
               knowing it: u is kept only on coordinates where enough honest clients already
               push u's way that the attackers' own votes lift the support to the threshold
               (count >= threshold * n - m; the honest mean's signs are public); elsewhere the
               attackers send the honest mean plus their camouflage.
  scale        mu + g * (own_k - mu): each attacker's own poisoned delta, scaled by the largest
               unflagged g on a grid (Bagdasaryan et al.'s constrain-and-scale with the rule as
               the anomaly detector; the attackers' own label mixes are the camouflage).

Environment OVR="name=value,..." sets governable parameters.
"""

import os
import sys

import numpy as np

from fl.client.attacks import adaptive
from fl.client.attacks import adversary as adversary_module
from fl.client.attacks.view import RoundView, realize
from fl.client.simulation import EvalConfig, run

SCALES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0)
VARIANTS = ("fixed_camo", "sign_aware", "scale")


def _scale_attack(view: RoundView) -> list[np.ndarray]:
    mu = view.honest.mean(axis=0)
    u = adaptive.unit(view.own.mean(axis=0) - mu)
    best: tuple[float, tuple[np.ndarray, ...]] | None = None
    for g in SCALES:
        deltas = tuple(realize(mu + g * (own - mu), view.norm_max_units) for own in view.own)
        outcome = view.oracle.evaluate(deltas)
        if any(outcome.attackers_flagged):
            continue
        value = float(np.dot(outcome.delta - mu, u))
        if best is None or value > best[0]:
            best = (value, deltas)
    return list(best[1]) if best is not None else adaptive.fallback(view)


def _sign_aware(threshold_permille: int) -> None:
    push = adversary_module._push_unflagged

    def masked(view: RoundView, u: np.ndarray, rng: np.random.Generator) -> object:
        n = view.honest.shape[0] + view.n_attackers
        backing = (np.sign(view.honest) == np.sign(u)[None, :]).sum(axis=0)
        reachable = backing * 1000 >= threshold_permille * n - 1000 * view.n_attackers
        return push(view, np.where(reachable, u, 0.0), rng)

    adversary_module._push_unflagged = masked  # type: ignore[assignment]


def install(variant: str, threshold_permille: int = 500) -> None:
    """Patch the harness's backdoor_slow for this process."""
    if variant == "sign_aware":
        _sign_aware(threshold_permille)
        variant = "fixed_camo"
    if variant == "fixed_camo":
        fresh = adaptive.camouflage_noise
        directions: dict[str, np.ndarray] = {}

        def fixed(honest: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
            noise = fresh(honest, m, rng)
            norms = np.maximum(1e-12, np.linalg.norm(noise, axis=1))[:, None]
            if "d" not in directions:
                directions["d"] = noise / norms
            out: np.ndarray = directions["d"] * norms
            return out

        adaptive.camouflage_noise = fixed
    elif variant == "scale":
        craft = adversary_module.Adversary.craft

        def scaled(
            self: adversary_module.Adversary, view: RoundView, rng: np.random.Generator
        ) -> list[np.ndarray]:
            if self.attack == "backdoor_slow":
                return _scale_attack(view)
            return craft(self, view, rng)

        adversary_module.Adversary.craft = scaled  # type: ignore[method-assign]
    else:
        raise SystemExit(f"variant one of {VARIANTS}")


def main(argv: list[str]) -> None:
    variant, seeds = argv[0], [int(s) for s in argv[1].split(",")]
    fraction = float(argv[2]) if len(argv) > 2 else 0.3
    alpha = float(argv[3]) if len(argv) > 3 else 0.5
    rounds = int(argv[4]) if len(argv) > 4 else 30
    overrides = tuple(
        (k, int(v)) for k, v in (kv.split("=") for kv in os.environ.get("OVR", "").split(",") if kv)
    )
    install(variant, dict(overrides).get("hist_sign_permille", 500))
    accuracy, success = [], []
    for seed in seeds:
        config = EvalConfig(
            seed=seed, rounds=rounds, attacker_fraction=fraction, alpha=alpha, overrides=overrides
        )
        result = run(config, "history_clip", "backdoor_slow")
        accuracy.append(100 * result.accuracy)
        success.append(100 * result.backdoor_success)
        print(
            f"seed {seed}: accuracy {accuracy[-1]:.1f}, backdoor success {success[-1]:.1f}%, "
            f"honest slashed {result.slashed_honest}",
            flush=True,
        )
    print(
        f"{variant} fraction {fraction} alpha {alpha} rounds {rounds} seeds {seeds}: "
        f"accuracy {np.mean(accuracy):.1f}, backdoor success {np.mean(success):.1f}%"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
