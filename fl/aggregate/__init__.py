"""Integer aggregation rules: the one place where many deltas become one.

Every rule gets the updates sorted by client key, so the result cannot depend on arrival order,
and works on an (n x d) int64 matrix with the bounds proven in `fl.fixed`: sums and products
stay exact, sorting integers is total, ties break on client key.  Each rule returns the
aggregate delta and, per client, a contribution score in permille and a flag reason ("" when
the update was used as sent); the round-close code hands these to the incentives layer.
"""

import itertools
from collections.abc import Sequence

import numpy as np

from fl.aggregate.centered_clip import centered_clip
from fl.aggregate.common import (
    Aggregate,
    ClientUpdate,
    Rows,
    RuleResult,
    Verdict,
    alignment_permille,
)
from fl.aggregate.copies import copy_pairs
from fl.aggregate.fedavg import fedavg
from fl.aggregate.history import HistoryParams, RuleHistory, history_clip
from fl.aggregate.krum import multi_krum
from fl.aggregate.sign_vote import MODES as SIGN_MODES
from fl.aggregate.weighted import weighted_coordinate_median, weighted_trimmed_mean
from fl.errors import FLInvariantError
from fl.fixed import IntArray
from fl.params import Params

__all__ = [
    "Aggregate",
    "ClientUpdate",
    "RuleHistory",
    "Verdict",
    "aggregate",
    "canonical_order",
    "history_params",
]


def canonical_order(updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
    ordered = sorted(updates, key=lambda u: u.client)
    for a, b in itertools.pairwise(ordered):
        if a.client == b.client:
            raise FLInvariantError("two updates from one client reached aggregation")
    return ordered


def aggregate(
    rule: str,
    updates: Sequence[ClientUpdate],
    params: Params,
    history: RuleHistory | None = None,
    *,
    originals_first: bool = False,
    collusion_permille: int = 0,
) -> Aggregate:
    """Aggregate `updates` (any order, at least one, equal lengths) with the named rule.

    `history` is what the history rule carried from the rounds before (the app state's
    `rule_history`; empty when omitted); `Aggregate.history` is its successor, or None when the
    rule keeps no history (the caller then keeps the old one unchanged).  With
    `originals_first`, `updates` come in the order the chain included them and were public
    before the round closed: the history rule then does not blame (score 0, flag) the
    first-included of a group of look-alikes, which may be the original that the others
    copied; the aggregate is the same either way (fl/aggregate/history.py).  With
    `collusion_permille` > 0 the round's near-copy pairs are found (fl/aggregate/copies.py,
    in the order of `updates`), returned in `Aggregate.copy_pairs`, and the history rule gives
    every update of a pair weight 0."""
    if not updates:
        raise FLInvariantError("aggregate called with no updates")
    ordered = canonical_order(updates)
    size = ordered[0].delta.size
    if any(u.delta.size != size for u in ordered):
        raise FLInvariantError("updates of different lengths reached aggregation")
    rows = [u.delta for u in ordered]
    weights = np.array([min(u.samples, params.sample_weight_max) for u in ordered], dtype=np.int64)
    keys = tuple(u.client for u in ordered)
    included: list[int] | None = None  # each key-ordered row's place in the inclusion order
    if originals_first:
        place = {u.client: i for i, u in enumerate(updates)}
        included = [place[key] for key in keys]
    pairs = tuple(copy_pairs([(u.client, u.delta) for u in updates], collusion_permille))
    next_history: RuleHistory | None = None
    scores: list[int] | None
    match rule:
        case "history_clip":
            delta, scores, flags, next_history = history_clip(
                _matrix(rows),
                keys,
                history or RuleHistory(),
                history_params(params),
                included,
                pairs,
                [u.votes for u in ordered],
            )
        case "fedavg":
            delta, scores, flags = fedavg(rows, weights)
        case _ if rule in MATRIX_RULES:
            votes = [u.votes for u in ordered]
            delta, scores, flags = _matrix_rule(rule, _matrix(rows), params, votes)
        case _:
            raise FLInvariantError(f"unknown aggregation rule {rule!r} passed validation")
    if scores is None:
        scores = alignment_permille(rows, delta, [u.squared_norm for u in ordered])
    verdicts = tuple(
        Verdict(key, int(samples), score, flag)
        for key, samples, score, flag in zip(
            keys, (u.samples for u in ordered), scores, flags, strict=True
        )
    )
    return Aggregate(delta=delta, verdicts=verdicts, history=next_history, copy_pairs=pairs)


def history_params(params: Params) -> HistoryParams:
    return HistoryParams(
        iterations=params.clip_iterations,
        radius_permille=params.clip_radius_permille,
        drop_permille=params.clip_drop_permille,
        growth_permille=params.hist_growth_permille,
        ema_permille=params.hist_ema_permille,
        sim_low_permille=params.hist_sim_low_permille,
        sim_high_permille=params.hist_sim_high_permille,
        trace_keep_permille=params.hist_trace_keep_permille,
        clients_max=params.hist_clients_max,
        stale_rounds=params.hist_stale_rounds,
        sim_rank=params.hist_sim_rank,
        sign_permille=params.hist_sign_permille,
        sign_mode=SIGN_MODES[params.hist_sign_mode],
    )


MATRIX_RULES = ("median", "trimmed_mean", "multi_krum", "centered_clip")


def _matrix(rows: list[Rows]) -> IntArray:
    matrix = np.empty((len(rows), rows[0].size), dtype=np.int64)
    for target, row in zip(matrix, rows, strict=True):
        target[...] = row  # widens int32 deltas in place: one copy, no temporaries
    return matrix


def _matrix_rule(rule: str, matrix: IntArray, params: Params, votes: list[int]) -> RuleResult:
    """The robust rules; each counts row i votes[i] times (stake votes, one each without
    bonds), so a stake split over many keys says no more than on one (fl/aggregate/weighted.py)."""
    n = matrix.shape[0]
    match rule:
        case "median":
            return weighted_coordinate_median(matrix, votes), None, [""] * n
        case "trimmed_mean":
            return weighted_trimmed_mean(matrix, votes, params.trim_permille), None, [""] * n
        case "multi_krum":
            return multi_krum(
                matrix, params.krum_byzantine_permille, params.krum_keep_permille, votes
            )
        case "centered_clip":
            return centered_clip(
                matrix,
                params.clip_iterations,
                params.clip_radius_permille,
                params.clip_drop_permille,
                votes,
            )
        case _:
            raise FLInvariantError(f"{rule!r} is not a matrix rule")
