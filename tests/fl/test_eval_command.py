"""`fedchain eval` end to end through the CLI dispatcher."""

import json

import pytest

from node.cli import main


def test_eval_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval",
            "--rules",
            "fedavg,median",
            "--attacks",
            "none,sign_flip_x10",
            "--clients",
            "10",
            "--rounds",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| rule | none | sign_flip_x10 | mean | worst |" in out
    assert "| fedavg |" in out
    assert "| median |" in out


def test_eval_json_has_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval",
            "--rules",
            "centered_clip",
            "--attacks",
            "ipm",
            "--clients",
            "10",
            "--rounds",
            "2",
            "--set",
            "clip_drop_permille=2000",
            "--json",
        ]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["config"]["overrides"] == [["clip_drop_permille", 2000]]
    cell = document["rows"][0]["cells"]["ipm"]
    assert 0.0 <= cell["accuracy"] <= 1.0
    assert len(cell["model_hashes"]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--rules", "bogus"],
        ["eval", "--attacks", "bogus"],
        ["eval", "--set", "nonsense"],
        ["eval", "--set", "trim_permille=900"],
    ],
)
def test_eval_refuses_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "fedchain eval:" in capsys.readouterr().err


def test_eval_reports_fairness_and_slashing_for_coordinated_attacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "eval",
            "--rules",
            "centered_clip",
            "--attacks",
            "none,adaptive_unflagged,backdoor_slow",
            "--clients",
            "10",
            "--rounds",
            "2",
            "--fraction",
            "0.4",
            "--alpha",
            "0.1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| rule | none | adaptive_unflagged | backdoor_slow | mean | worst |" in out
    assert "backdoor success under centered_clip: backdoor_slow" in out
    assert "| attack | accuracy | worst seed | worst class | worst honest client" in out
    assert "(4 attackers under attack)" in out


def test_eval_jobs_give_the_same_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--attacks", "fang", "--clients", "10", "--rounds", "2", "--seeds", "0,1"]
    assert main([*argv, "--json"]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json", "--jobs", "2"]) == 0
    parallel = json.loads(capsys.readouterr().out)
    assert serial["rows"] == parallel["rows"]


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--fraction", "0.5"],
        ["eval", "--jobs", "0"],
    ],
)
def test_eval_refuses_out_of_range_settings(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "fedchain eval:" in capsys.readouterr().err


def test_eval_runs_mnist1d_with_the_cnn_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--dataset", "mnist1d", "--attacks", "none", "--clients", "10"]
    assert main([*argv, "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "mnist1d, cnn, 10 clients" in out


def test_mnist1d_is_split_like_the_others_and_leaves_global_generators_alone() -> None:
    import random

    import numpy as np

    from fl.client.datasets import load

    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    ds = load("mnist1d", 0)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert random.getstate() == before_py
    assert ds.n_features == 40
    assert ds.n_classes == 10
    assert len(ds.y_train) + len(ds.y_test) == 5000
    assert ds.x_train.min() >= 0.0
    assert ds.x_train.max() <= 1.0


def test_eval_runs_a_committee_and_takes_incentives_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["eval", "--attacks", "gaussian", "--clients", "10", "--rounds", "2", "--json"]
    code = main([*argv, "--committee", "2", "--set", "evidence_low_permille=500"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["config"]["committee"] == 2
    assert document["config"]["overrides"] == [["evidence_low_permille", 500]]


def test_knowledge_worst_keeps_the_worse_of_this_and_the_last_rounds_updates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An attacker who sees the round can play either strategy, so the table keeps the worse
    for the model per coordinated attack; a per-client attack runs once."""
    base = ["eval", "--attacks", "adaptive,sign_flip", "--clients", "10", "--rounds", "3"]
    cells = {}
    for knowledge in ("current", "past", "worst"):
        assert main([*base, "--knowledge", knowledge, "--json"]) == 0
        cells[knowledge] = json.loads(capsys.readouterr().out)["rows"][0]["cells"]
    worst = cells["worst"]["adaptive"]
    both = [cells["current"]["adaptive"], cells["past"]["adaptive"]]
    assert worst["accuracy"] == min(c["accuracy"] for c in both)
    assert worst["model_hashes"] in [c["model_hashes"] for c in both]
    assert worst["knowledge"] in ("current", "past")
    assert cells["worst"]["sign_flip"]["knowledge"] == "current"
    assert (
        cells["worst"]["sign_flip"]["model_hashes"] == cells["current"]["sign_flip"]["model_hashes"]
    )
