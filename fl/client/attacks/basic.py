"""Per-client attacks: what one colluding client does with its own data and delta.

Data poisoning changes what an attacker trains on; model poisoning changes the delta it sends.
Omniscient attacks (ALIE, IPM) see this round's honest deltas, the usual worst-case assumption.

  label_flip     train on label C-1-y
  sign_flip      send -delta               sign_flip_x10   send -10 * delta
  gaussian       send N(0, sigma^2) noise  (sigma = GAUSSIAN_SIGMA, real units)
  backdoor       train on a trigger patch -> target class, boosted by n / attackers
                 (model replacement)
  alie           mean - z * std of honest deltas, z from Baruah et al. ("A little is enough")
  ipm            -eps * mean of honest deltas (inner product manipulation, Xie et al.)
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from fl.client.errors import ClientError

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]

ATTACKS = (
    "none",
    "label_flip",
    "sign_flip",
    "sign_flip_x10",
    "gaussian",
    "backdoor",
    "alie",
    "ipm",
)
GAUSSIAN_SIGMA = 1.0
IPM_EPSILON = 0.5
BACKDOOR_TARGET = 0
TRIGGER_FEATURES = 6  # the last features are set to 1.0 as the trigger


@dataclass(frozen=True, slots=True)
class Collusion:
    n_clients: int
    n_attackers: int


def check(attack: str) -> None:
    if attack not in ATTACKS:
        raise ClientError(f"unknown attack {attack!r}: one of {', '.join(ATTACKS)}")


def add_trigger(x: FloatArray) -> FloatArray:
    out = x.copy()
    out[:, -TRIGGER_FEATURES:] = 1.0
    return out


def poison_data(
    attack: str, x: FloatArray, y: LabelArray, n_classes: int
) -> tuple[FloatArray, LabelArray]:
    match attack:
        case "label_flip":
            return x, (n_classes - 1 - y).astype(np.int64)
        case "backdoor" | "backdoor_slow" | "backdoor_pgd":
            triggered = add_trigger(x)
            return (
                np.concatenate([x, triggered]),
                np.concatenate([y, np.full(len(y), BACKDOOR_TARGET, dtype=np.int64)]),
            )
        case "drift":  # the direction a drift attacker pushes: every input -> the target
            return x, np.full(len(y), BACKDOOR_TARGET, dtype=np.int64)
        case _:
            return x, y


def alie_z(collusion: Collusion) -> float:
    n, m = collusion.n_clients, collusion.n_attackers
    s = n // 2 + 1 - m
    return NormalDist().inv_cdf(max(1e-6, min(1 - 1e-6, (n - s) / n)))


def craft(
    attack: str,
    own: FloatArray,
    honest: list[FloatArray],
    collusion: Collusion,
    rng: np.random.Generator,
) -> FloatArray:
    """The delta an attacker sends, given the delta it trained and this round's honest ones."""
    match attack:
        case "none" | "label_flip":
            return own
        case "sign_flip":
            return -own
        case "sign_flip_x10":
            return -10.0 * own
        case "gaussian":
            return rng.normal(0.0, GAUSSIAN_SIGMA, own.shape)
        case "backdoor":
            return own * (collusion.n_clients / max(1, collusion.n_attackers))
        case "alie":
            stack = np.stack(honest)
            out: FloatArray = stack.mean(axis=0) - alie_z(collusion) * stack.std(axis=0)
            return out
        case "ipm":
            ipm: FloatArray = -IPM_EPSILON * np.stack(honest).mean(axis=0)
            return ipm
        case _:
            raise ClientError(f"unknown attack {attack!r}")
