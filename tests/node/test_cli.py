"""The command line as an operator meets it: version, typos, RPC addresses, log timestamps."""

import argparse
import io
import json
import logging
from pathlib import Path

import pytest

from node.cli import fedchain_version, main
from node.commands.args import rpc_url
from node.logging import configure, iso_utc, log_event


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"fedchain {fedchain_version()}"
    assert fedchain_version() != "unknown"


def test_an_unknown_command_is_an_error_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["foo"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'foo'" in err
    assert "'start'" in err


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    assert "(default: http://127.0.0.1:26657)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:36001", "http://127.0.0.1:36001"),
        ("localhost:26657", "http://localhost:26657"),
        ("http://127.0.0.1:26657/", "http://127.0.0.1:26657"),
        ("https://node.example:443", "https://node.example:443"),
        ("http://validator0", "http://validator0"),
        (" 127.0.0.1:1 ", "http://127.0.0.1:1"),
    ],
)
def test_rpc_addresses_accept_host_port_and_urls(given: str, expected: str) -> None:
    assert rpc_url(given) == expected


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("ftp://127.0.0.1:21", "http:// or https://"),
        ("127.0.0.1:port", "not a number"),
        ("127.0.0.1:70000", "not a number"),
        ("127.0.0.1", "no port"),
        ("http://:26657", "no host"),
    ],
)
def test_bad_rpc_addresses_say_what_is_wrong(given: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        rpc_url(given)


def test_json_log_lines_carry_iso_utc_timestamps() -> None:
    stream = io.StringIO()
    configure("info", "json", stream)
    try:
        log_event(logging.getLogger("t"), "block_committed", height=5)
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "block_committed"
    assert line["ts"].endswith("Z")
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_796_299_200.5) == "2026-12-03T12:00:00.500Z"


def test_a_client_remembers_the_round_it_submitted_across_restarts(tmp_path: Path) -> None:
    """A restarted client must not send a second, different update for a round (equivocation,
    slashed): the round is recorded durably before the update is sent."""
    from node.commands.client import _last_submitted, _mark_submitted

    assert _last_submitted(tmp_path) == -1
    _mark_submitted(tmp_path, 5)
    assert _last_submitted(tmp_path) == 5
    _mark_submitted(tmp_path, 6)
    assert _last_submitted(tmp_path) == 6
