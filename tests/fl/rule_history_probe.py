"""Adaptive probes against any rule through the real app (a measuring tool, not a test).

    python -m tests.fl.rule_history_probe MODE RULES SEEDS [FRACTION] [ALPHA]
    e.g. python -m tests.fl.rule_history_probe ortho history_clip,centered_clip 0,1,2 0.3 0.5

Runs `fedchain eval`'s clean simulation and, at each round close, replaces the updates of the
first FRACTION of the clients in key order by vectors crafted from that round's honest updates
(omniscient), chosen by running the exact rule with the exact history it carries (the state's
`rule_history`) on every candidate.  The attackers push u = -mu (the honest mean reversed;
`drift`: the first round's, kept); the objective is <aggregate - mu, u>.
Modes: clean (no attack), collude (identical mu + lambda * spread * u), unflagged (the same,
only candidates the rule does not flag), camo (plus fresh per-round noise of 0.5-2 spreads per
attacker), ortho (plus a fixed direction of each attacker's own, scaled so the colluders'
pairwise cosine is c in 0.1..0.6: the camouflage that defeats similarity detection), drift.
Environment OVR="name=value,..." sets governable parameters for history_clip only.
"""

import os
import sys
from collections.abc import Sequence

import numpy as np

import fl.rounds
from fl.aggregate import Aggregate, ClientUpdate, RuleHistory
from fl.aggregate import aggregate as real_aggregate
from fl.client.simulation import EvalConfig, run
from fl.params import Params

GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
COSINES = (0.1, 0.2, 0.3, 0.45, 0.6)
BOUND = 1 << 20


class Probe:
    def __init__(self, mode: str, fraction: float) -> None:
        self.mode = mode
        self.fraction = fraction
        self.drift: np.ndarray | None = None
        self.own: np.ndarray | None = None

    def aggregate(
        self,
        rule: str,
        updates: Sequence[ClientUpdate],
        params: Params,
        history: RuleHistory | None = None,
    ) -> Aggregate:
        return real_aggregate(rule, self.craft(updates, params, history), params, history)

    def craft(
        self, updates: Sequence[ClientUpdate], params: Params, history: RuleHistory | None
    ) -> list[ClientUpdate]:
        ordered = sorted(updates, key=lambda u: u.client)
        m = round(len(ordered) * self.fraction)
        if self.mode == "clean" or m == 0:
            return ordered
        attackers, honest = ordered[:m], ordered[m:]
        h = np.array([u.delta for u in honest], dtype=np.float64)
        mu = h.mean(axis=0)
        spread = float(np.median(np.linalg.norm(h - mu, axis=1))) or 1.0
        u = -mu / (float(np.linalg.norm(mu)) or 1.0)
        if self.mode == "drift":
            if self.drift is None:
                self.drift = u
            u = self.drift
        rng = np.random.default_rng([len(ordered), int(np.abs(mu).sum()) % 100_000])
        if self.own is None or self.own.shape != (m, mu.size):
            own = np.random.default_rng(99).normal(0, 1, (m, mu.size))
            self.own = own / np.linalg.norm(own, axis=1, keepdims=True)
        shapes: list[np.ndarray] = []  # per candidate family: (m, d) offsets per unit lambda
        match self.mode:
            case "collude" | "unflagged" | "drift":
                shapes = [np.tile(u, (m, 1))]
            case "camo":
                for sigma in (0.5, 1.0, 2.0):
                    noise = rng.normal(0, 1, (m, mu.size)) * (sigma / np.sqrt(mu.size))
                    shapes.append(np.tile(u, (m, 1)) + noise)
            case "ortho":
                shapes = [u + np.sqrt(1 / c - 1) * self.own for c in COSINES]
            case _:
                raise SystemExit(f"unknown mode {self.mode}")
        own_keys = {a.client for a in attackers}
        best, best_value = ordered, -np.inf
        for shape in shapes:
            for g in GRID:
                rows = np.clip(np.round(mu + g * spread * shape), -BOUND, BOUND).astype(np.int64)
                candidate = [
                    ClientUpdate(a.client, a.samples, row)
                    for a, row in zip(attackers, rows, strict=True)
                ] + honest
                result = real_aggregate(params.rule, candidate, params, history)
                if self.mode == "unflagged" and any(
                    v.flag for v in result.verdicts if v.client in own_keys
                ):
                    continue
                value = float(np.dot(result.delta - mu, u))
                if value > best_value:
                    best, best_value = candidate, value
        return best


def main(argv: list[str]) -> None:
    mode, rules, seeds = argv[0], argv[1].split(","), [int(s) for s in argv[2].split(",")]
    fraction = float(argv[3]) if len(argv) > 3 else 0.3
    alpha = float(argv[4]) if len(argv) > 4 else 0.5
    overrides = tuple(
        (kv.split("=")[0], int(kv.split("=")[1]))
        for kv in os.environ.get("OVR", "").split(",")
        if kv
    )
    for rule in rules:
        accuracy, worst = [], []
        for seed in seeds:
            probe = Probe(mode, fraction)
            fl.rounds.aggregate = probe.aggregate  # type: ignore[assignment]
            config = EvalConfig(
                seed=seed, alpha=alpha, overrides=overrides if rule == "history_clip" else ()
            )
            result = run(config, rule, "none")
            accuracy.append(100 * result.accuracy)
            worst.append(100 * result.worst_client_accuracy)
        print(
            f"{mode} fraction={fraction} alpha={alpha} {rule}: accuracy {np.mean(accuracy):.1f} "
            f"{[round(a, 1) for a in accuracy]} worst honest client {np.mean(worst):.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
