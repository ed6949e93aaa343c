"""`fedchain eval` against attacks we did not write: EPFL's ByzFL library (issue 14).

    python3.11 -m venv /tmp/byzvenv
    /tmp/byzvenv/bin/pip install -e '.[mnist1d]' byzfl          # byzfl pulls torch: own venv
    /tmp/byzvenv/bin/python scripts/eval_byzfl.py --attacks byzfl,none --seeds 0,1,2 --jobs 2

Registers ByzFL's attacks (byzfl/attacks/attacks.py, 0.0.11) as external attacks of `fedchain
eval` and runs the eval CLI with the remaining arguments; `--attacks byzfl` (alone or inside a
comma list) stands for every name below.  Each round the attackers see the honest updates as the
chain decoded them (real units), call the library's attack on them, and all of them send its one
vector, as ByzFL's own ByzantineClient does; the chain then clips, quantizes and aggregates it
like any update (fl/client/attacks/external.py).

  byzfl_signflip   SignFlipping()                                  -mean(honest)
  byzfl_ipm        InnerProductManipulation(tau=2.0)  (default)    -2 mean(honest)
  byzfl_opt_ipm    Optimal_InnerProductManipulation(agg=<our rule>, pre_agg_list=[], f=m)
  byzfl_alie       ALittleIsEnough(tau=1.5)           (default)    mean + 1.5 std (ddof 1)
  byzfl_opt_alie   Optimal_ALittleIsEnough(agg=<our rule>, pre_agg_list=[], f=m)
  byzfl_mimic      Mimic(epsilon=0)                   (default)    the first honest update
  byzfl_inf        Inf()                                           +inf everywhere (see below)
  byzfl_gaussian   Gaussian(mu=0.0, sigma=1.0)        (default)    N(0, 1) per coordinate

The Optimal_* attacks keep the library's search defaults (evals=20, start=0.0, delta=10.0,
ratio=0.8) and maximise its own objective, ||aggregate - mean(honest)||, but their `agg` is our
chain's rule with its history (`ChainRule`) instead of ByzFL's default Average, and the default
pre-aggregation [Clipping()] is replaced by [] because our rule does its own clipping.  Inf's
infinities cannot be sent over the int16 wire: they become the largest coordinate a client may
send, which the client's clip scales to the norm bound (all coordinates equal and positive).
Gaussian draws from numpy's global generator: it is seeded from the run's attack rng each round.

ByzFL's colluders send identical vectors, which our rule's similarity weights zero at once.  The
`_camo` variants (`--attacks byzfl_camo` for all of them) add fresh per-attacker noise at the
honest per-coordinate spread (our `adaptive.camouflage_noise`) to the library's vector, and the
Optimal_* ones search with that noise included, so what is measured is the attack's direction
and size rather than the duplicates:

  byzfl_signflip_camo, byzfl_ipm_camo, byzfl_alie_camo, byzfl_opt_ipm_camo, byzfl_opt_alie_camo
"""

import sys
from collections.abc import Callable

import byzfl
import numpy as np

from fl.client.attacks import register_external
from fl.client.attacks.external import ChainRule, VectorAttack, crafter, optimising_crafter
from node.cli import main as fedchain_main


def _optimal(kind: Callable[..., VectorAttack]) -> Callable[[ChainRule, int], VectorAttack]:
    def build(rule: ChainRule, f: int) -> VectorAttack:
        return kind(agg=rule, pre_agg_list=[], f=f)

    return build


SIMPLE: dict[str, VectorAttack] = {
    "byzfl_signflip": byzfl.SignFlipping(),
    "byzfl_ipm": byzfl.InnerProductManipulation(),
    "byzfl_alie": byzfl.ALittleIsEnough(),
    "byzfl_mimic": byzfl.Mimic(),
    "byzfl_inf": byzfl.Inf(),
}
OPTIMAL = {
    "byzfl_opt_ipm": _optimal(byzfl.Optimal_InnerProductManipulation),
    "byzfl_opt_alie": _optimal(byzfl.Optimal_ALittleIsEnough),
}
CAMOUFLAGED = ("byzfl_signflip", "byzfl_ipm", "byzfl_alie", "byzfl_opt_ipm", "byzfl_opt_alie")
NAMES = (*SIMPLE, *OPTIMAL, "byzfl_gaussian")
CAMO_NAMES = tuple(f"{name}_camo" for name in CAMOUFLAGED)


def register() -> None:
    for name, attack in SIMPLE.items():
        register_external(name, crafter(attack))
    for name, factory in OPTIMAL.items():
        register_external(name, optimising_crafter(factory))
    register_external("byzfl_gaussian", crafter(byzfl.Gaussian(), reseed=np.random.seed))
    for name in CAMOUFLAGED:
        if name in SIMPLE:
            register_external(f"{name}_camo", crafter(SIMPLE[name], camouflage=True))
        else:
            register_external(f"{name}_camo", optimising_crafter(OPTIMAL[name], camouflage=True))


def expand(argv: list[str]) -> list[str]:
    """`--attacks byzfl` / `byzfl_camo` (alone or inside its comma list) -> every ByzFL name /
    every camouflaged one."""
    out = list(argv)
    for i, arg in enumerate(out):
        prefix = "--attacks="
        if arg.startswith(prefix):
            out[i] = prefix + _expand_list(arg[len(prefix) :])
        elif arg == "--attacks" and i + 1 < len(out):
            out[i + 1] = _expand_list(out[i + 1])
    return out


def _expand_list(text: str) -> str:
    names: list[str] = []
    for item in text.split(","):
        groups = {"byzfl": NAMES, "byzfl_camo": CAMO_NAMES}
        names += groups.get(item.strip(), (item,))
    return ",".join(names)


if __name__ == "__main__":
    register()  # before the CLI parses --attacks and before --jobs forks its workers
    raise SystemExit(fedchain_main(["eval", *expand(sys.argv[1:])]))
