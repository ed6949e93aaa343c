"""fedchain / Flower: the ratios and verdicts the report states.

Round 1 carries Flower's Ray actor start-up (and fedchain's first-connection costs), so the
median and p95 are over rounds 2..R on both sides and round 1 is reported apart.
"""

from typing import Any

from bench.stats import summarize

TARGET_RATIO = 1.5
ACCURACY_POINTS_MAX = 1.0


def digest(side: dict[str, Any]) -> dict[str, Any]:
    times = side["round_times_s"]
    return {
        "round1_s": times[0],
        "warm": summarize(times[1:]).as_dict(),
        "accuracy": side["accuracy_by_round"][-1],
    }


def compare(flower: dict[str, Any], fedchain: dict[str, Any]) -> dict[str, Any]:
    f, c = digest(flower), digest(fedchain)
    median_ratio = c["warm"]["median_s"] / f["warm"]["median_s"]
    p95_ratio = c["warm"]["p95_s"] / f["warm"]["p95_s"]
    accuracy_points = 100.0 * (c["accuracy"] - f["accuracy"])
    return {
        "flower": f,
        "fedchain": c,
        "median_ratio": median_ratio,
        "p95_ratio": p95_ratio,
        "accuracy_points": accuracy_points,
        "meets_time_target": median_ratio <= TARGET_RATIO,
        "meets_accuracy_target": abs(accuracy_points) <= ACCURACY_POINTS_MAX,
    }
