"""scripts/bench_consensus.py runs the daemon's driver: a short run decides every height, with
real signatures, without penalizing anyone (its ports raise on a penalty)."""

from bench_consensus import report


def test_driver_and_engine_runs_decide_the_heights_asked_for() -> None:
    results = report(12, 3, ["with_signature_checks", "engine_alone"])
    assert results["with_signature_checks"]["heights"] == 12
    assert results["engine_alone"]["heights"] == 12
    assert results["with_signature_checks"]["process_cpu_ms_per_height"] > 0
