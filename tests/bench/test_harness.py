"""The benchmark harness itself (not timed): both sides must run the identical workload.

The Flower side and the fedchain side share `bench.workload`; these tests pin what that
sharing promises (same partition, same initial model, same per-client training) and that the
chain, fed the harness's signed updates, computes what Flower's float FedAvg computes, up to
the documented fixed-point quantization.
"""

from typing import Any

import numpy as np
import pytest
from bench.compare import compare
from bench.fedchain_side import Answers, app_state, bench_params, client_key, signed_update
from bench.rows import fl_vs_flower
from bench.stats import Recorder, percentile_nearest_rank, summarize
from bench.workload import Prepared, Workload, fingerprint, prepare

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.client.sdk import fetch_model
from fl.client.transport import InProcessTransport

SMALL = Workload(clients=6, rounds=2, seed=3)


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    return prepare(SMALL)


def test_partition_is_a_disjoint_cover_of_the_training_split(prepared: Prepared) -> None:
    joined = np.concatenate(prepared.parts)
    assert len(prepared.parts) == SMALL.clients
    assert sorted(joined.tolist()) == list(range(len(prepared.data.y_train)))


def test_fingerprint_is_reproducible_and_names_the_workload(prepared: Prepared) -> None:
    assert fingerprint(prepare(SMALL)) == fingerprint(prepared)
    assert fingerprint(prepare(Workload(clients=6, rounds=2, seed=4))) != fingerprint(prepared)
    assert fingerprint(prepare(Workload(clients=7, rounds=2, seed=3))) != fingerprint(prepared)


def test_local_training_depends_only_on_client_round_and_weights(prepared: Prepared) -> None:
    w = prepared.initial
    first = prepared.local_train(2, 1, w)
    assert np.array_equal(prepared.local_train(2, 1, w.copy()), first)
    assert not np.array_equal(prepared.local_train(2, 0, w), first)
    assert not np.array_equal(prepared.local_train(3, 1, w), first)


def _chain(prepared: Prepared) -> InProcessTransport:
    genesis = Genesis(
        chain_id="bench-test",
        validators=(GenesisValidator(PrivateKey.from_label("bench-test-v").public_key, 1),),
        app_state=app_state(prepared),
    )
    return InProcessTransport(genesis)


def _flower_fedavg(
    prepared: Prepared, round_number: int, weights: np.ndarray
) -> tuple[np.ndarray, float]:
    """What Flower's FedAvg makes of the same local training (the sample-weighted mean), and
    the largest coordinate of any client's delta."""
    trained = np.stack(
        [prepared.local_train(c, round_number, weights) for c in range(SMALL.clients)]
    )
    samples = np.array([prepared.samples(c) for c in range(SMALL.clients)], dtype=np.float64)
    out: np.ndarray = np.tensordot(samples / samples.sum(), trained, axes=1)
    return out, float(np.max(np.abs(trained - weights)))


def test_chain_fedavg_of_harness_updates_matches_float_fedavg(prepared: Prepared) -> None:
    chain = _chain(prepared)
    params = bench_params(SMALL.clients)
    assert chain.app.state.params == params
    model = fetch_model(chain)
    assert np.array_equal(model.weights, prepared.initial)  # both sides start identically
    for r in range(SMALL.rounds):
        model = fetch_model(chain)
        assert model.round == r
        for c in range(SMALL.clients):
            tx = signed_update(prepared, client_key(c), "bench-test", c, model, params)
            result = chain.submit(tx)
            assert result.accepted, result.reason
        chain.wait_for_round(r + 1, blocks_max=2)
        expected, peak = _flower_fedavg(prepared, r, model.weights)
        got = fetch_model(chain).weights
        # int16 deltas with a power-of-two scale: a step is at most 2 * peak / 32767 and
        # stochastic rounding moves a coordinate by less than one step; the chain's model unit
        # is 2**-16 and its division floors.  Anything beyond that is a harness or chain bug.
        bound = 2 * peak / 32767 + 2 * 2**-16
        assert float(np.max(np.abs(got - expected))) <= bound
    final = fetch_model(chain).weights
    assert abs(prepared.accuracy(final) - prepared.accuracy(expected)) <= 0.01


def test_answers_transport_parses_like_the_live_one(prepared: Prepared) -> None:
    chain = _chain(prepared)
    answers = Answers("bench-test", {p: chain.query(p) for p in ("model", "round")})
    a, b = fetch_model(answers), fetch_model(chain)
    assert (a.round, a.version, a.hash, a.shapes) == (b.round, b.version, b.hash, b.shapes)
    assert np.array_equal(a.weights, b.weights)


def test_nearest_rank_percentile_and_summary() -> None:
    samples = [float(v) for v in range(20, 0, -1)]
    assert percentile_nearest_rank(samples, 95.0) == 19.0
    assert percentile_nearest_rank(samples, 100.0) == 20.0
    assert percentile_nearest_rank([3.0], 50.0) == 3.0
    s = summarize(samples)
    assert (s.count, s.median_s, s.min_s, s.max_s) == (20, 10.5, 1.0, 20.0)
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_recorder_round_times_exclude_evaluation() -> None:
    rec = Recorder(model_at_s=[0.0, 1.5, 2.5], eval_done_s=[0.5, 1.75, 2.6])
    assert rec.round_times_s() == [1.0, 0.75]


def _side(times: list[float], accuracy: float) -> dict[str, Any]:
    return {"round_times_s": times, "accuracy_by_round": [0.1, accuracy]}


def test_compare_drops_round_one_and_judges_both_targets() -> None:
    flower = _side([9.0, 0.2, 0.2, 0.4], 0.930)
    chain = _side([0.5, 0.3, 0.3, 0.3], 0.925)
    cmp = compare(flower, chain)
    assert cmp["flower"]["round1_s"] == 9.0
    assert cmp["median_ratio"] == pytest.approx(1.5)
    assert cmp["p95_ratio"] == pytest.approx(0.75)
    assert cmp["accuracy_points"] == pytest.approx(-0.5)
    assert cmp["meets_time_target"]
    assert cmp["meets_accuracy_target"]
    slow = compare(flower, _side([0.5, 0.31, 0.31, 0.31], 0.90))
    assert not slow["meets_time_target"]
    assert not slow["meets_accuracy_target"]


def test_doc_rows_say_when_a_target_is_missed() -> None:
    flower = _side([9.0, 0.2, 0.2, 0.2], 0.93)
    chain = _side([0.5, 0.6, 0.6, 0.6], 0.93)
    report = {
        "machine": {
            "date_utc": "2026-11-25 06:10 UTC",
            "background_busy_before": 0.02,
            "load_average_1_5_15": [0.1, 0.2, 0.3],
        },
        "runs": [
            {
                "clients": 30,
                "workload": {"rounds": 4},
                "fedchain": {"commit_timeout_ms": 10},
                "comparison": compare(flower, chain),
            }
        ],
    }
    time_row, accuracy_row = fl_vs_flower(report, "cmd")
    assert "**3.00x**" in time_row
    assert "**missed**" in time_row
    assert "otherwise idle" in time_row
    assert "within 1 point: met" in accuracy_row
