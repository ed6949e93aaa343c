"""Value types shared by the aggregation rules, and the generic integer contribution score."""

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.fixed import IntArray

PERMILLE = 1000


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    client: bytes
    samples: int
    delta: npt.NDArray[np.int32] | IntArray  # model units, |coordinate| <= DELTA_ABS_MAX


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rule made of one client's update: `score` in [0, 1000]; `flag` "" if clean."""

    client: bytes
    samples: int
    score: int
    flag: str


@dataclass(frozen=True, slots=True)
class Aggregate:
    delta: IntArray
    verdicts: tuple[Verdict, ...]  # sorted by client key


# (delta, per-row scores or None for the generic score, per-row flags)
RuleResult = tuple[IntArray, list[int] | None, list[str]]


def floor_mean(rows: IntArray) -> IntArray:
    """Coordinate-wise floor of the mean of rows (exact: the column sums fit int64)."""
    out: IntArray = np.floor_divide(rows.sum(axis=0, dtype=np.int64), rows.shape[0])
    return out


def alignment_permille(matrix: IntArray, delta: IntArray) -> list[int]:
    """max(0, 1000 * cos(update, aggregate)) with exact integers; 0 if either is zero."""
    dots = (matrix @ delta).tolist()  # each |dot| <= 2**20 * 2**20 * 2**20 = 2**60
    agg_sq = int(np.dot(delta, delta))
    norms_sq = np.einsum("ij,ij->i", matrix, matrix).tolist()
    scores = []
    for dot, norm_sq in zip(dots, norms_sq, strict=True):
        denominator = math.isqrt(int(norm_sq) * agg_sq)
        if dot <= 0 or denominator == 0:
            scores.append(0)
        else:
            scores.append(min(PERMILLE, PERMILLE * dot // denominator))
    return scores


def lower_median(values: list[int]) -> int:
    return sorted(values)[(len(values) - 1) // 2]
