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
