"""Integer aggregation rules: the one place where many deltas become one.

Every rule gets the updates sorted by client key, so the result cannot depend on arrival order,
and works on an (n x d) int64 matrix with the bounds proven in `fl.fixed`: sums and products
stay exact, sorting integers is total, ties break on client key.  Each rule returns the
aggregate delta and, per client, a contribution score in permille and a flag reason ("" when
the update was used as sent); the round-close code hands these to the incentives layer.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl.aggregate.centered_clip import centered_clip
from fl.aggregate.common import Aggregate, ClientUpdate, Verdict, alignment_permille
from fl.aggregate.fedavg import fedavg
from fl.aggregate.krum import multi_krum
from fl.aggregate.median import coordinate_median
from fl.aggregate.trimmed import trimmed_mean
from fl.errors import FLInvariantError
from fl.params import Params

__all__ = ["Aggregate", "ClientUpdate", "Verdict", "aggregate", "canonical_order"]


@dataclass(frozen=True, slots=True)
class _Matrix:
    keys: tuple[bytes, ...]
    samples: tuple[int, ...]
    rows: np.ndarray


def canonical_order(updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
    ordered = sorted(updates, key=lambda u: u.client)
    for a, b in itertools.pairwise(ordered):
        if a.client == b.client:
            raise FLInvariantError("two updates from one client reached aggregation")
    return ordered


def aggregate(rule: str, updates: Sequence[ClientUpdate], params: Params) -> Aggregate:
    """Aggregate `updates` (any order, at least one, equal lengths) with the named rule."""
    if not updates:
        raise FLInvariantError("aggregate called with no updates")
    ordered = canonical_order(updates)
    size = ordered[0].delta.size
    if any(u.delta.size != size for u in ordered):
        raise FLInvariantError("updates of different lengths reached aggregation")
    matrix = np.empty((len(ordered), size), dtype=np.int64)
    for row, update in zip(matrix, ordered, strict=True):
        row[...] = update.delta  # widens int32 deltas in place: one copy, no temporaries
    weights = np.array([min(u.samples, params.sample_weight_max) for u in ordered], dtype=np.int64)
    keys = tuple(u.client for u in ordered)
    match rule:
        case "fedavg":
            delta, scores, flags = fedavg(matrix, weights)
        case "median":
            delta, scores, flags = coordinate_median(matrix)
        case "trimmed_mean":
            delta, scores, flags = trimmed_mean(matrix, params.trim_permille)
        case "multi_krum":
            delta, scores, flags = multi_krum(
                matrix, params.krum_byzantine_permille, params.krum_keep_permille
            )
        case "centered_clip":
            delta, scores, flags = centered_clip(
                matrix,
                params.clip_iterations,
                params.clip_radius_permille,
                params.clip_drop_permille,
            )
        case _:
            raise FLInvariantError(f"unknown aggregation rule {rule!r} passed validation")
    if scores is None:
        scores = alignment_permille(matrix, delta)
    verdicts = tuple(
        Verdict(key, int(samples), score, flag)
        for key, samples, score, flag in zip(
            keys, (u.samples for u in ordered), scores, flags, strict=True
        )
    )
    return Aggregate(delta=delta, verdicts=verdicts)
