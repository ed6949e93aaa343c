"""Value types shared by the aggregation rules, and the generic integer contribution score."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.fixed import IntArray

PERMILLE = 1000
BLOCK_COLUMNS = 1 << 15  # 32k int64 = 256 KiB: a column block of the accumulator stays in cache

# One update per row: an (n x d) int64 matrix, or the updates' own int32/int64 vectors.
Rows = npt.NDArray[np.int64] | npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    client: bytes
    samples: int
    delta: npt.NDArray[np.int32] | IntArray  # model units, |coordinate| <= DELTA_ABS_MAX
    squared_norm: int | None = None  # of delta, if already known (saves a pass at close)
    votes: int = 1  # the client's stake-bought say in the robust rules (fl/economics/clients.py)


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
    # The history rule's state for the next round (fl.aggregate.history.RuleHistory); None for
    # the rules that keep none.  Typed loosely here so this module does not import the rule.
    history: object = None
    # Near-copy pairs (earlier, later included) when looked for (fl.aggregate.copies).
    copy_pairs: tuple[tuple[bytes, bytes], ...] = ()


# (delta, per-row scores or None for the generic score, per-row flags)
RuleResult = tuple[IntArray, list[int] | None, list[str]]


def floor_mean(rows: IntArray) -> IntArray:
    """Coordinate-wise floor of the mean of rows (exact: the column sums fit int64)."""
    out: IntArray = np.floor_divide(rows.sum(axis=0, dtype=np.int64), rows.shape[0])
    return out


def alignment_permille(
    rows: Sequence[Rows] | Rows, delta: IntArray, known_norms_sq: Sequence[int | None] = ()
) -> list[int]:
    """max(0, 1000 * cos(update, aggregate)) with exact integers; 0 if either is zero.

    `known_norms_sq[i]`, where given, is row i's squared norm (computed when it was checked)."""
    # each |dot| <= 2**20 * 2**20 * 2**20 = 2**60; block sums are added as Python ints
    dots = [0] * len(rows)
    known = list(known_norms_sq) or [None] * len(rows)
    norms_sq = [0 if k is None else k for k in known]
    for start in range(0, delta.size, BLOCK_COLUMNS):
        agg_block = delta[start : start + BLOCK_COLUMNS]
        for i, row in enumerate(rows):
            block = row[start : start + BLOCK_COLUMNS].astype(np.int64)
            dots[i] += int(np.dot(block, agg_block))
            if known[i] is None:
                norms_sq[i] += int(np.dot(block, block))
    agg_sq = int(np.dot(delta, delta))
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
