"""Model-poisoning attacks from the literature, written from the papers' descriptions.

Min-max and min-sum (Shejwalkar & Houmansadr, "Manipulating the Byzantine", NDSS 2021, the
AGR-agnostic attacks): every attacker sends mu + gamma * p, mu the mean of the benign updates
and p a perturbation direction -- the inverse unit vector -mu/|mu| ("uv"), the inverse standard
deviation -sigma ("std") or the inverse sign -sign(mu) ("sgn") -- with the largest gamma for which
  min-max: max_i |m - g_i|       <= max_{i,j} |g_i - g_j|
  min-sum: sum_i |m - g_i|^2     <= max_i sum_j |g_i - g_j|^2
found by the paper's halving search: start at gamma_init, move up after a success and down after
a failure by half the step, halve the step, stop when the last success and the current gamma are
within tau.  The paper's first step is gamma_init / 2, which can only reach [gamma_init / 2,
3 gamma_init / 2]; ours is gamma_init, so the search covers (0, 2 gamma_init), and gamma_init
is 2 * max_{i,j} |g_i - g_j| / |p|, where the min-max condition is sure to fail.

Fang et al. ("Local model poisoning attacks to Byzantine-robust federated learning", USENIX
Security 2020), full knowledge, the attack on trimmed mean (also used against the median): s_j is
the sign of the benign change of coordinate j; attackers send values beyond the benign extreme on
the other side, each drawn uniformly from [w_min/b, w_min] (w_min > 0) or [b * w_min, w_min]
(s_j > 0), and from [w_max, b * w_max] (w_max > 0) or [w_max, w_max / b] (s_j <= 0), b = 2.

Mimic (Karimireddy, He & Jaggi, "Byzantine-robust learning on heterogeneous datasets via
bucketing", ICLR 2022): every attacker sends an exact copy of one honest client's update, the
client whose update lies farthest along the top principal direction z of the honest updates
(i* = argmax_i |<z, x_i - mu>|, z by power iteration), the same client every round.  Nothing
it sends is out of the honest distribution; on non-IID data it over-weights one client's label
mix.  On a chain it is also a framing attack: copies of a public update make the copied client
look like a colluder.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DIRECTIONS = ("uv", "std", "sgn")
GAMMA_TAU_RELATIVE = 1e-5  # the search stops when gamma is known to this share of gamma_init
FANG_B = 2.0
POWER_ITERATIONS = 50


def perturbation(honest: FloatArray, direction: str) -> FloatArray:
    mu = honest.mean(axis=0)
    match direction:
        case "uv":
            norm = float(np.linalg.norm(mu))
            out: FloatArray = -mu / norm if norm > 0 else np.zeros_like(mu)
        case "std":
            out = -honest.std(axis=0)
        case "sgn":
            out = -np.sign(mu)
        case _:
            raise ValueError(f"unknown perturbation direction {direction!r}")
    return out


def _squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    # From the differences, not |a|^2 + |b|^2 - 2ab: that expansion leaves a BLAS-dependent
    # residue (1e-12 here, 0 on another machine) where two updates are equal, and the search
    # must see exactly 0 there.
    out: FloatArray = np.square(a[:, None, :] - b[None, :, :]).sum(axis=2)
    return out


def min_max_holds(candidate: FloatArray, honest: FloatArray) -> bool:
    pair = _squared_distances(honest, honest)
    dist = _squared_distances(candidate[None, :], honest)[0]
    return bool(dist.max() <= pair.max())


def min_sum_holds(candidate: FloatArray, honest: FloatArray) -> bool:
    pair = _squared_distances(honest, honest)
    dist = _squared_distances(candidate[None, :], honest)[0]
    return bool(dist.sum() <= pair.sum(axis=1).max())


def gamma_search(honest: FloatArray, p: FloatArray, objective: str) -> float:
    """The largest gamma (to within tau) for which mu + gamma * p meets the objective's bound."""
    holds = min_max_holds if objective == "min_max" else min_sum_holds
    p_norm = float(np.linalg.norm(p))
    if p_norm == 0.0 or len(honest) < 2:
        return 0.0
    mu = honest.mean(axis=0)
    spread = float(np.sqrt(_squared_distances(honest, honest).max()))
    gamma_init = 2.0 * max(spread, 1e-12) / p_norm
    tau = GAMMA_TAU_RELATIVE * gamma_init
    gamma, step, success = gamma_init, gamma_init, 0.0
    # The paper stops when |success - gamma| <= tau; the step bound also ends a search whose
    # every probe fails (success stays 0 while gamma converges to gamma_init / 2).
    while abs(success - gamma) > tau and step > tau:
        if holds(mu + gamma * p, honest):
            success = gamma
            gamma += step / 2.0
        else:
            gamma -= step / 2.0
        step /= 2.0
    return success


def shejwalkar(honest: FloatArray, direction: str, objective: str) -> FloatArray:
    """The one vector every attacker sends (min-max or min-sum, one perturbation direction)."""
    p = perturbation(honest, direction)
    out: FloatArray = honest.mean(axis=0) + gamma_search(honest, p, objective) * p
    return out


def fang(honest: FloatArray, n_attackers: int, rng: np.random.Generator) -> list[FloatArray]:
    """Fang et al.'s full-knowledge trimmed-mean / median attack: one vector per attacker."""
    s = np.sign(honest.mean(axis=0))
    w_max, w_min = honest.max(axis=0), honest.min(axis=0)
    b = FANG_B
    # below the minimum where the benign change is positive, above the maximum elsewhere
    low_lo = np.where(w_min > 0, w_min / b, w_min * b)
    high_hi = np.where(w_max > 0, w_max * b, w_max / b)
    out: list[FloatArray] = []
    for _ in range(n_attackers):
        u = rng.random(honest.shape[1])
        below = low_lo + u * (w_min - low_lo)
        above = w_max + u * (high_hi - w_max)
        out.append(np.where(s > 0, below, above))
    return out


def mimic_target(honest: FloatArray) -> int:
    """The index of the honest update farthest along the honest updates' top principal direction."""
    centred = honest - honest.mean(axis=0)
    z = np.ones(honest.shape[1]) / np.sqrt(honest.shape[1])
    for _ in range(POWER_ITERATIONS):
        z = centred.T @ (centred @ z)
        norm = float(np.linalg.norm(z))
        if norm == 0.0:
            return 0  # every honest update is the same: any one is the target
        z /= norm
    return int(np.argmax(np.abs(centred @ z)))
