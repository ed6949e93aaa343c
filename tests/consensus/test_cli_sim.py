"""`fedchain sim`: summary line, JSON fields, non-zero exit with the seed on a violation, and
`--seed` replaying that run exactly."""

import json

import pytest

from node.cli import main


def test_sim_json_has_the_promised_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["sim", "--seeds", "2", "--duration-ms", "20000", "--liveness-ms", "8000", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["seeds"] == 2
    assert out["violations"] == 0
    assert out["heights_committed"] > 0


def test_sim_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "sim",
            "--seeds",
            "1",
            "--duration-ms",
            "20000",
            "--liveness-ms",
            "8000",
            "--byzantine",
            "1",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[-1].startswith("sim: 1 seeds, 0 with violations")


def test_violation_exits_non_zero_names_the_seed_and_replays(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "sim",
        "--seeds",
        "3",
        "--first-seed",
        "5",
        "--duration-ms",
        "20000",
        "--mutant",
        "quorum2f",
    ]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "seed 5: " in out
    assert "--seed 5" in out
    first = [line for line in out.splitlines() if line.startswith("seed 5: ")]
    assert main([*args[:5], "--duration-ms", "20000", "--mutant", "quorum2f", "--seed", "5"]) == 1
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("seed 5: ")]
    assert again == first
