"""`fedchain gov`: argument parsing into proposal contents, and the list/show rendering of what
the application answers (real FLApp query bytes, decoded as the command decodes them)."""

import argparse

import pytest

from consensus.codec import decode, encode
from fl.economics.layer import Incentives
from fl.governance.proposals import decode_content
from fl.params import Params
from node.cli import build_parser
from node.commands.gov import GovCommandError, format_list, format_proposal, proposal_content

from .helpers import ALICE, BLOCK_MS, VALS, make


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(only="gov").parse_args(["gov", *argv])


@pytest.mark.parametrize(
    ("argv", "content"),
    [
        (["--param", "rule=multi_krum"], ["param", "rule", "multi_krum"]),
        (["--param", "updates_per_round=12"], ["param", "updates_per_round", 12]),
        (["--ban", "ab" * 32], ["client_ban", bytes.fromhex("ab" * 32)]),
        (["--admit-validator", "01" * 32], ["validator_admit", bytes.fromhex("01" * 32)]),
        (["--admit-client", "02" * 32], ["client_admit", bytes.fromhex("02" * 32)]),
        (["--remove-client", "03" * 32], ["client_remove", bytes.fromhex("03" * 32)]),
        (["--text", "hello", "--description", "world"], ["text", "hello", "world"]),
    ],
)
def test_propose_arguments_become_valid_contents(argv: list[str], content: list[object]) -> None:
    built = proposal_content(parse("propose", *argv))
    assert built == content
    decode_content(built)  # the chain would accept the shape


@pytest.mark.parametrize("argv", [[], ["--param", "rule"], ["--ban", "zz"], ["--param", "=3"]])
def test_bad_propose_arguments_say_why(argv: list[str]) -> None:
    with pytest.raises(GovCommandError):
        proposal_content(parse("propose", *argv))


def test_list_and_show_render_the_apps_answers() -> None:
    inc: Incentives = make()
    inc.execute(
        Params(), "gov_propose", ALICE, [["param", "rule", "median"], 1_000], 1, 1 * BLOCK_MS, True
    )
    for v in VALS:
        inc.execute(Params(), "gov_vote", v, [1, "yes"], 2, 2 * BLOCK_MS, True)
    listing = format_list(inc.query(["gov", "proposals"]))
    assert "param rule = 'median'" in listing
    assert "(voting)" in listing
    shown = format_proposal(decode(encode(inc.query(["gov", "proposal", "1"]))))
    assert shown.startswith("proposal 1: voting")
    assert shown.count("  vote      ") == 4
    assert format_list([]) == "no proposals"
