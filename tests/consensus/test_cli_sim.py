"""`fedchain sim`: summary line, JSON fields, non-zero exit with the seed on a violation,
`--seed` replaying that run exactly, the mutant list and the shape flags."""

import argparse
import json

import pytest

from consensus.engine.config import MUTANT_DESCRIPTIONS
from consensus.sim.byzantine import BEHAVIOURS
from node.cli import main
from node.commands.sim import add_arguments, config_for


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


def test_list_mutants_one_per_line_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sim", "--list-mutants"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(MUTANT_DESCRIPTIONS)
    for line, description in zip(lines, MUTANT_DESCRIPTIONS.values(), strict=True):
        assert line.endswith(description)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("mutant", list(MUTANT_DESCRIPTIONS))
def test_every_mutant_is_selectable(mutant: str) -> None:
    assert config_for(_args("--mutant", mutant), 0).mutant == mutant


def test_byzantine_rotates_over_every_behaviour() -> None:
    args = _args("--byzantine", "2", "--validators", "7")
    seen = {b for seed in range(len(BEHAVIOURS)) for b in config_for(args, seed).byzantine}
    assert seen == set(BEHAVIOURS)


def test_shape_flags_reach_the_config() -> None:
    config = config_for(
        _args(
            "--crash-points",
            "--validators",
            "4",
            "--powers",
            "3,3,3,4",
            "--validator-changes",
            "--stall-rounds",
            "12",
            "--after-heal-delay-ms",
            "1500",
            "--isolate-deciders",
        ),
        0,
    )
    assert config.crash_points
    assert config.powers == (3, 3, 3, 4)
    assert config.validator_changes
    assert config.stall_rounds == 12
    assert config.after_heal_delay_ms_max == 1500
    assert config.isolate_deciders


def test_bad_powers_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "1", "--powers", "1,2"]) == 2
    assert "powers" in capsys.readouterr().err


def test_campaign_and_hunt_shapes_replay_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """`--campaign --seed S` is the campaign's run S (seed 9112 stalled before the relay fix);
    `--hunt M --mutant M` prints a replay line that names the hunt, and without --mutant the
    hunt's shape passes."""
    assert main(["sim", "--campaign", "--seed", "9112"]) == 0
    assert "0 with violations" in capsys.readouterr().out
    hunt = ["sim", "--hunt", "valid_only_on_lock", "--seed", "5"]
    assert main([*hunt, "--mutant", "valid_only_on_lock"]) == 1
    out = capsys.readouterr().out
    assert "replay: fedchain sim --hunt valid_only_on_lock --mutant valid_only_on_lock" in out
    assert main(hunt) == 0
