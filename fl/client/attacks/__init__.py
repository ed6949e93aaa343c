"""Attacks that colluding clients mount, used by `fedchain eval` to measure the rules.

`basic` holds the per-client attacks a single `fedchain client --attack` can run (label flip,
sign flip, gaussian, boosted backdoor, ALIE, IPM); `ATTACKS` names them.  The coordinated
attacks of the literature and the adaptive ones that search through the chain's own rule
(`literature`, `adaptive`) need the whole round in view and run in the evaluation harness
through an `Adversary`; `EVAL_ATTACKS` names every attack `fedchain eval` knows.
"""

from fl.client.attacks.adversary import (
    BACKDOORS,
    COORDINATED,
    EVAL_ATTACKS,
    Adversary,
    Crafter,
    check_eval,
    eval_attacks,
    is_coordinated,
    register_external,
)
from fl.client.attacks.basic import (
    ATTACKS,
    BACKDOOR_TARGET,
    GAUSSIAN_SIGMA,
    IPM_EPSILON,
    TRIGGER_FEATURES,
    Collusion,
    add_trigger,
    alie_z,
    check,
    craft,
    poison_data,
)
from fl.client.attacks.view import Oracle, Outcome, RoundView, realize

__all__ = [
    "ATTACKS",
    "BACKDOORS",
    "BACKDOOR_TARGET",
    "COORDINATED",
    "EVAL_ATTACKS",
    "GAUSSIAN_SIGMA",
    "IPM_EPSILON",
    "TRIGGER_FEATURES",
    "Adversary",
    "Collusion",
    "Crafter",
    "Oracle",
    "Outcome",
    "RoundView",
    "add_trigger",
    "alie_z",
    "check",
    "check_eval",
    "craft",
    "eval_attacks",
    "is_coordinated",
    "poison_data",
    "realize",
    "register_external",
]
