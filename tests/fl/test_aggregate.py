"""Aggregation rules: order independence, exact integer results at the declared bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.aggregate import ClientUpdate, aggregate
from fl.aggregate.centered_clip import centered_clip
from fl.aggregate.fedavg import fedavg
from fl.aggregate.gram import exact_gram, exact_gram_int64, squared_distances
from fl.aggregate.krum import krum_selection, multi_krum
from fl.aggregate.median import coordinate_median
from fl.aggregate.trimmed import trimmed_mean
from fl.errors import FLInvariantError
from fl.fixed import DELTA_ABS_MAX, PARAMS_MAX, ROUND_UPDATES_MAX, SAMPLES_MAX, squared_norm
from fl.params import RULES, Params

ORDERINGS = 1000


def _updates(seed: int, n: int = 12, d: int = 64) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    honest = rng.integers(-5000, 5000, size=(n, d))
    honest[-3:] *= -40  # a few outliers so robust rules flag and clip something
    return [
        ClientUpdate(bytes([i]) * 32, int(rng.integers(1, 500)), honest[i].astype(np.int64))
        for i in range(n)
    ]


@pytest.mark.parametrize("rule", RULES)
def test_a_thousand_orderings_give_identical_bytes(rule: str) -> None:
    params = Params(rule=rule)
    updates = _updates(seed=RULES.index(rule))
    reference = aggregate(rule, updates, params)
    rng = np.random.default_rng(99)
    for _ in range(ORDERINGS):
        shuffled = [updates[i] for i in rng.permutation(len(updates))]
        result = aggregate(rule, shuffled, params)
        assert result.delta.tobytes() == reference.delta.tobytes()
        assert result.verdicts == reference.verdicts


def test_robust_rules_flag_the_outliers() -> None:
    updates = _updates(seed=5)
    outliers = {u.client for u in updates[-3:]}

    def flagged(rule: str) -> set[bytes]:
        return {v.client for v in aggregate(rule, updates, Params(rule=rule)).verdicts if v.flag}

    assert flagged("centered_clip") == outliers
    assert outliers <= flagged("multi_krum")  # it keeps half, so it also drops some honest ones


def _as_object(a: np.ndarray) -> np.ndarray:
    return a.astype(object)


def test_fedavg_is_exact_at_the_bounds() -> None:
    # ROUND_UPDATES_MAX updates, every weight and coordinate at its bound: sums reach 2**52.
    rng = np.random.default_rng(1)
    signs = rng.choice([-1, 1], size=(ROUND_UPDATES_MAX, 4))
    matrix = (signs * DELTA_ABS_MAX).astype(np.int64)
    matrix[:, 0] = DELTA_ABS_MAX
    weights = np.full(ROUND_UPDATES_MAX, SAMPLES_MAX, dtype=np.int64)
    got, _, _ = fedavg(matrix, weights)
    total = int(weights.sum())
    want = (_as_object(weights) @ _as_object(matrix)) // total  # Python ints: no overflow
    assert got.tolist() == want.tolist()
    rows32, _, _ = fedavg(list(matrix.astype(np.int32)), weights)  # int32 rows, int64 sums
    assert rows32.tolist() == want.tolist()
    assert got[0] == DELTA_ABS_MAX


def test_median_and_trimmed_mean_are_exact_at_the_bounds() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.choice([-DELTA_ABS_MAX, DELTA_ABS_MAX - 1], size=(ROUND_UPDATES_MAX, 6))
    for rule_result in (
        (coordinate_median(matrix)[0], coordinate_median(_as_object(matrix))[0]),
        (trimmed_mean(matrix, 100)[0], trimmed_mean(_as_object(matrix), 100)[0]),
    ):
        got, want = rule_result
        assert got.tolist() == want.tolist()


def test_distances_at_the_bounds_reach_two_to_the_62_exactly() -> None:
    rows = np.stack(
        [np.full(PARAMS_MAX, DELTA_ABS_MAX), np.full(PARAMS_MAX, -DELTA_ABS_MAX)]
    ).astype(np.int64)
    distances = squared_distances(rows)
    assert int(distances[0, 1]) == 2**62
    assert int(distances[0, 0]) == 0


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    extreme=st.booleans(),
)
def test_limb_gram_equals_the_int64_reference(n: int, d: int, seed: int, extreme: bool) -> None:
    rng = np.random.default_rng(seed)
    if extreme:
        rows = rng.choice([-DELTA_ABS_MAX, DELTA_ABS_MAX, 0, 1, -1], size=(n, d)).astype(np.int64)
    else:
        rows = rng.integers(-DELTA_ABS_MAX, DELTA_ABS_MAX + 1, size=(n, d), dtype=np.int64)
    assert np.array_equal(exact_gram(rows), exact_gram_int64(rows))


def test_limb_gram_is_exact_for_a_large_model() -> None:
    rng = np.random.default_rng(3)
    rows = rng.integers(-DELTA_ABS_MAX, DELTA_ABS_MAX + 1, size=(4, 200_000), dtype=np.int64)
    exact = rows.astype(object) @ rows.T.astype(object)
    assert exact_gram(rows).tolist() == exact.tolist()


def test_gram_refuses_rows_outside_the_bounds() -> None:
    with pytest.raises(FLInvariantError):
        exact_gram(np.array([[DELTA_ABS_MAX + 1]], dtype=np.int64))


def test_centered_clip_is_exact_at_the_bounds() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.choice([-DELTA_ABS_MAX, DELTA_ABS_MAX], size=(7, 1 << 14)).astype(np.int64)
    matrix[:3] = DELTA_ABS_MAX
    got = centered_clip(matrix, 3, 1000, 3000)
    want = centered_clip(_as_object(matrix), 3, 1000, 3000)
    assert got[0].tolist() == want[0].tolist()
    assert got[1] == want[1]
    assert got[2] == want[2]


def test_krum_selection_keeps_the_cluster() -> None:
    cluster = np.zeros((7, 5), dtype=np.int64)
    far = np.full((3, 5), 10_000, dtype=np.int64)
    kept = krum_selection(np.concatenate([cluster, far]), 300, 500)
    assert kept == [0, 1, 2, 3, 4]  # equal scores broken by position (client-key order)


def test_aggregate_refuses_duplicate_clients_and_empty_input() -> None:
    one = ClientUpdate(b"\x01" * 32, 1, np.zeros(3, dtype=np.int64))
    with pytest.raises(FLInvariantError):
        aggregate("fedavg", [one, one], Params())
    with pytest.raises(FLInvariantError):
        aggregate("fedavg", [], Params())


def test_fedavg_weights_are_capped() -> None:
    a = ClientUpdate(b"\x01" * 32, 10**6, np.full(2, 1000, dtype=np.int64))
    b = ClientUpdate(b"\x02" * 32, 10, np.zeros(2, dtype=np.int64))
    capped = aggregate("fedavg", [a, b], Params(sample_weight_max=10))
    assert capped.delta.tolist() == [500, 500]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 30),
    trim=st.integers(0, 499),
    seed=st.integers(0, 2**32 - 1),
)
def test_partition_based_rules_equal_full_sort_references(
    n: int, d: int, trim: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-50, 50, size=(n, d)).astype(np.int64)  # many ties on purpose
    ordered = np.sort(matrix, axis=0)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) // 2
    assert coordinate_median(matrix)[0].tolist() == median.tolist()
    b = n * trim // 1000
    kept = ordered[b : n - b]
    assert trimmed_mean(matrix, trim)[0].tolist() == (kept.sum(axis=0) // len(kept)).tolist()


def test_centered_clip_never_drops_everyone() -> None:
    matrix = np.array([[5, 0], [0, 5], [-5, 0], [0, -5]], dtype=np.int64)
    delta, scores, flags = centered_clip(matrix, 3, 1, 1000)  # radius 1 permille: all outside
    assert scores is not None
    assert not any(flag.startswith("centered_clip: dropped") for flag in flags)
    assert delta.tolist() == [0, 0]


def test_multi_krum_averages_exactly_the_kept_updates() -> None:
    rng = np.random.default_rng(11)
    matrix = rng.integers(-1000, 1000, size=(10, 40)).astype(np.int64)
    matrix[7:] += 50_000
    delta, _, flags = multi_krum(matrix, 300, 500)
    kept = krum_selection(matrix, 300, 500)
    assert [i for i, f in enumerate(flags) if not f] == kept
    assert delta.tolist() == (matrix[kept].sum(axis=0) // len(kept)).tolist()


def test_fedavg_scores_are_the_same_with_norms_known_from_check_time() -> None:
    rng = np.random.default_rng(12)
    rows = [rng.integers(-(2**20), 2**20, 5000).astype(np.int32) for _ in range(6)]
    plain = [ClientUpdate(bytes([i]) * 32, 10 + i, r) for i, r in enumerate(rows)]
    known = [ClientUpdate(u.client, u.samples, u.delta, squared_norm(u.delta)) for u in plain]
    reference = aggregate("fedavg", plain, Params())
    with_norms = aggregate("fedavg", known, Params())
    assert with_norms.verdicts == reference.verdicts
    assert np.array_equal(with_norms.delta, reference.delta)
    wrong = [ClientUpdate(u.client, u.samples, u.delta, 1) for u in plain]
    assert (
        aggregate("fedavg", wrong, Params()).verdicts
        != aggregate("fedavg", plain, Params()).verdicts
    )
