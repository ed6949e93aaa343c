"""Summaries of round-time samples: median and p95 the way the report states them.

p95 is the nearest-rank percentile (the smallest sample with at least 95% of samples at or below
it), so with 19 warm rounds it is the largest one: a pessimistic but honest tail figure.
"""

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    median_s: float
    p95_s: float
    mean_s: float
    min_s: float
    max_s: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "median_s": self.median_s,
            "p95_s": self.p95_s,
            "mean_s": self.mean_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
        }


def percentile_nearest_rank(samples: Sequence[float], q: float) -> float:
    if not samples:
        raise ValueError("no samples")
    if not 0.0 < q <= 100.0:
        raise ValueError(f"percentile {q} outside (0, 100]")
    ordered = sorted(samples)
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[rank - 1]


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    return Summary(
        count=len(samples),
        median_s=statistics.median(samples),
        p95_s=percentile_nearest_rank(samples, 95.0),
        mean_s=statistics.fmean(samples),
        min_s=min(samples),
        max_s=max(samples),
    )


def gaps(stamps: Sequence[float]) -> list[float]:
    """Round times from the instants each new model became available (first one = start)."""
    return [b - a for a, b in itertools.pairwise(stamps)]


@dataclass(slots=True)
class Recorder:
    """What the server saw: when each global model appeared, and its test accuracy."""

    model_at_s: list[float] = field(default_factory=list)
    eval_done_s: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    def round_times_s(self) -> list[float]:
        # round r = from the end of evaluating model r-1 to the appearance of model r
        return [b - a for a, b in zip(self.eval_done_s, self.model_at_s[1:], strict=False)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "round_times_s": self.round_times_s(),
            "accuracy_by_round": self.accuracy,
        }
