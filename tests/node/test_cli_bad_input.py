"""Every command meets bad input with a message and a non-zero status, never a traceback."""

import json
from pathlib import Path

import pytest

from node.cli import COMMANDS, main

GOOD_KEY = "ab" * 32


def bad_inputs(tmp: Path) -> list[list[str]]:
    bad_genesis = tmp / "bad_genesis.json"
    bad_genesis.write_text(
        json.dumps(
            {
                "chain_id": "x",
                "validators": [{"public_key": GOOD_KEY, "power": 1}],
                "app_state": "00ff",  # not the FL app's encoding
            }
        )
    )
    home = tmp / "home"
    (home).mkdir()
    (home / "config.toml").write_text("moniker = 5\n")
    return [
        ["start", "--home", str(tmp / "missing")],
        ["start", "--home", str(home)],
        ["status", "--rpc", "ftp://x"],
        ["keys", "show", str(tmp / "missing.json")],
        ["tx", "submit", "zz", "--rpc", "127.0.0.1:1"],
        ["client", "run", "--home", str(tmp / "missing")],
        ["demo", "--validators", "0"],
        ["eval", "--rules", "nope"],
        ["sim", "--validators", "0"],
        ["gov", "vote", "1", "yes"],
        ["stake", "bond"],
        ["committee", "run", "--key", str(tmp / "missing.json")],
        ["testnet", "--out", str(tmp / "t"), "--validators", "0"],
        ["init", "--home", str(tmp / "h"), "--p2p-laddr", "nope"],
        ["genesis", "validate", str(bad_genesis)],
        ["genesis", "show", str(tmp / "missing.json")],
        ["genesis", "add-account", "--genesis", str(bad_genesis), "--key", "zz"],
    ]


def test_the_table_covers_every_command(tmp_path: Path) -> None:
    cases = bad_inputs(tmp_path)
    assert {case[0] for case in cases} == set(COMMANDS)
    assert len(cases) == CASES


def test_a_missing_client_key_names_the_command_that_creates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "client0"
    home.mkdir()
    (home / "client.toml").write_text('rpc = "http://127.0.0.1:1"\nindex = 0\nclients = 1\n')
    assert main(["client", "run", "--home", str(home)]) == 1
    assert f"fedchain keys new {home / 'client_key.json'}" in capsys.readouterr().err


CASES = 17


@pytest.mark.parametrize("index", range(CASES))
def test_bad_input_gets_a_message_not_a_traceback(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = bad_inputs(tmp_path)[index]
    code: int | str | None
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's usage errors
        code = exited.code
    # Any other exception propagates out of main() and fails this test: that is a traceback.
    assert code not in (0, None), argv
    err = capsys.readouterr().err
    assert err.strip(), f"{argv}: no message"
    assert "Traceback" not in err
