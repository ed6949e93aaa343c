"""The soak benchmark's harness, run short with fast churn (scripts/bench_soak.py).

Real validator and client processes on loopback, real kills and restarts and one stranger
attack: the record must hold samples of every validator, the restarts it claims, and the
validators' agreement on the block and app hash at the end.  Timing is not asserted.
"""

from pathlib import Path

import pytest
from bench_soak import (
    Soak,
    SoakConfig,
    load_soak,
    plot,
    run_soak,
    summary,
    trend_slope,
    trends,
    window_minima,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SHORT = SoakConfig(
    minutes=1.0,
    clients=3,
    fl_attackers=1,
    churn_validators=(1, 2),
    validator_churn_s=12.0,
    validator_down_s=3.0,
    client_churn_s=10.0,
    client_down_s=1.0,
    attacks=("ping_flood",),
    attack_every_s=15.0,
    attack_s=5.0,
    sample_s=1.0,
    accuracy_every_s=20.0,
    warmup_s=10.0,
    restart_warmup_s=3.0,
    seed=7,
)


@pytest.mark.parametrize(
    ("points", "slope"),
    [
        ([(0.0, 1.0, 0), (1.0, 3.0, 0), (2.0, 5.0, 0)], 2.0),
        # A restart drops the level; within each lifetime it still rises by 1 per unit.
        ([(0.0, 10.0, 0), (1.0, 11.0, 0), (2.0, 0.0, 1), (3.0, 1.0, 1)], 1.0),
        ([(0.0, 4.0, 0), (1.0, 4.0, 0), (5.0, 4.0, 1)], 0.0),
        ([(0.0, 4.0, 0), (1.0, 2.0, 1)], None),  # no group with two times
    ],
)
def test_trend_slope_has_one_intercept_per_process_lifetime(
    points: list[tuple[float, float, int]], slope: float | None
) -> None:
    assert trend_slope(points) == slope


def test_window_minima_keep_the_floor_under_a_transient_peak() -> None:
    # A peak of 200 inside the first window, on a floor that rises by 1 per window.
    points = [(0.0, 80.0, 0), (1.0, 200.0, 0), (2.5, 81.0, 0), (3.0, 81.5, 0), (4.5, 82.0, 0)]
    floor = window_minima(points, 2.0)
    assert floor == [(0.0, 80.0, 0), (2.5, 81.0, 0), (4.5, 82.0, 0)]
    # Windows are per process lifetime: a restart's lower level starts its own windows.
    assert window_minima([(0.0, 90.0, 0), (1.0, 70.0, 1)], 2.0) == [
        (0.0, 90.0, 0),
        (1.0, 70.0, 1),
    ]


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Soak:
    import asyncio

    root: Path = tmp_path_factory.mktemp("soak")
    return asyncio.run(run_soak(SHORT, root, log=print))


def test_every_validator_is_sampled_with_rss_and_disk(soak: Soak) -> None:
    assert len(soak.samples) >= 2
    for s in soak.samples:
        assert sorted(s["validators"]) == ["0", "1", "2", "3"]
        assert len(s["load"]) == 3
    for i in ("0", "1", "2", "3"):
        rss = [s["validators"][i]["rss_bytes"] for s in soak.samples]
        assert sum(r is not None for r in rss) >= 2, f"validator {i} never sampled"
        assert soak.samples[-1]["validators"][i]["disk"]["blocks_dat"] > 0
        assert soak.trend[i]["disk_mib_end"] > 0
        heaps = [s["validators"][i]["heap"] for s in soak.samples if s["validators"][i]["heap"]]
        assert heaps, f"validator {i}: no heap figures from /metrics"
        assert all(h["in_use"] > 0 and h["python_blocks"] > 0 for h in heaps)
    # Node 0 is never churned: one lifetime, so its RSS slope is a plain fit.
    assert {s["validators"]["0"]["incarnation"] for s in soak.samples} == {0}
    assert soak.uptime
    assert "load average" in soak.uptime[0]["uptime"]


def test_churn_happened_and_restarted_validators_rejoined(soak: Soak) -> None:
    stopped = [e for e in soak.events if e["kind"] == "validator_stopped"]
    started = [e for e in soak.events if e["kind"] == "validator_started"]
    assert stopped, "no validator was restarted"
    assert all(e["target"] in SHORT.churn_validators for e in stopped)
    assert len(started) >= len(stopped)
    assert any(e["kind"] == "client_killed" for e in soak.events)
    assert not [e for e in soak.events if e["kind"] == "validator_crashed"]
    attacks = [e for e in soak.events if e["kind"] == "attack"]
    assert attacks
    assert attacks[0]["name"] == "ping_flood"
    restarted = {e["target"] for e in stopped}
    for i in restarted:
        assert max(s["validators"][str(i)]["incarnation"] for s in soak.samples) >= 1


def test_validators_agree_on_block_and_app_hash_at_the_end(soak: Soak) -> None:
    final = soak.final
    assert final["agree"], final
    assert len(final["blocks"]) == 4
    assert len({b["result_app_hash"] for b in final["blocks"].values()}) == 1
    assert final["common_height"] > 0
    assert set(final["exit_codes"].values()) == {0}
    assert soak.accuracy, "the chain's model was never evaluated"


def test_trends_are_computed_from_the_samples(soak: Soak) -> None:
    again = trends(soak)
    assert again == soak.trend
    for i in ("0", "1", "2", "3"):
        assert again[i]["rss_points"] > 0


def test_the_record_reads_back_and_draws(soak: Soak, tmp_path: Path) -> None:
    import json
    from dataclasses import asdict

    path = tmp_path / "soak.json"
    path.write_text(json.dumps(asdict(soak)))
    again = load_soak(path)
    assert again.samples == soak.samples
    assert again.trend == soak.trend
    assert any(
        "app hash agreement" in line and "all validators equal" in line for line in summary(again)
    )
    plot(again, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
