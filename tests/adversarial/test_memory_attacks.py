"""Memory attacks against a real node (`fedchain start`, one validator, loopback): the node's RSS
stays inside its p2p memory budget, the attacker is cut off, the chain keeps committing, and
memory comes back after the attacker leaves (issue 13, attacks 1 and 3).

Figures (RSS before/peak/after for each attack) are printed by

    .venv/bin/python -m tests.adversarial.test_memory_attacks

Bounds are relative to the node's own RSS before the attack and deliberately generous; nothing
here asserts a speed.  Every attack is bounded in count and in time.
"""

import asyncio
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.p2p.errors import P2PError
from tests.adversarial.attacks import big_frames, ping_flood, stalled_frames
from tests.adversarial.conftest import MiB, SoloNode, start_solo_node, stop_node

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.timeout(300)]

# The node's defaults (node/config.py [p2p]): what one stranger connection may hold.
STRANGER_CONNECTION_BYTES = 40 * MiB
# Python objects, allocator slack and the attack's own bookkeeping on top of the budget.
SLACK_BYTES = 48 * MiB
# After the attacker left: within this of where the node started.
RECOVERED_BYTES = 32 * MiB


@dataclass(slots=True)
class Outcome:
    baseline: int
    peak: int
    after: int
    disconnected_after_s: float | None
    height_before: int
    height_after: int


def settle(node: SoloNode, seconds: float = 3.0) -> int:
    time.sleep(seconds)
    return node.rss


def run_attack(node: SoloNode, attack: str, source: str) -> Outcome:
    baseline = settle(node, 1.0)
    height_before = node.height()
    match attack:
        case "big_frames":
            peak, cut = asyncio.run(big_frames(node, source))
        case "stalled_frames":
            peak, cut = asyncio.run(stalled_frames(node, source))
        case "ping_flood":
            peak, cut = asyncio.run(ping_flood(node, source))
        case _:
            raise AssertionError(attack)
    after = settle(node)
    return Outcome(baseline, peak, after, cut, height_before, node.height())


def misbehaviour_lines(node: SoloNode) -> int:
    return len(re.findall(r'"event":"peer_misbehaved"', node.log_text()))


def assert_node_held(node: SoloNode, outcome: Outcome, budget_bytes: int) -> None:
    assert node.alive(), node.log_text()[-2000:]
    assert outcome.peak <= outcome.baseline + budget_bytes + SLACK_BYTES, outcome
    assert outcome.after <= outcome.baseline + RECOVERED_BYTES, outcome
    assert outcome.height_after > outcome.height_before, "the chain must keep committing"


def test_streams_declaring_huge_messages_cost_the_attacker_not_the_node(
    solo_node: SoloNode,
) -> None:
    outcomes = []
    for round_ in range(3):  # connect, attack, leave; three times, from fresh addresses
        outcome = run_attack(solo_node, "big_frames", f"127.0.0.{10 + round_}")
        outcomes.append(outcome)
        assert outcome.disconnected_after_s is not None, "the attacker must be cut off"
        assert_node_held(solo_node, outcome, STRANGER_CONNECTION_BYTES)
    # Each attacker was banned after its first few oversized declarations.
    assert misbehaviour_lines(solo_node) <= 3 * 10
    # Memory does not ratchet up from round to round.
    assert outcomes[-1].after <= outcomes[0].baseline + RECOVERED_BYTES


def test_stalled_messages_under_the_cap_stay_inside_the_connection_budget(tmp_path: Path) -> None:
    """Messages declared within the stranger cap but never finished: the connection budget
    bounds what they hold, and each one that outlives message_timeout_ms costs the peer."""
    node = start_solo_node(tmp_path, message_timeout_ms=3_000)
    try:
        outcome = run_attack(node, "stalled_frames", "127.0.0.20")
        assert outcome.disconnected_after_s is not None, "timed-out messages must cost the peer"
        assert misbehaviour_lines(node) <= 10
        assert_node_held(node, outcome, STRANGER_CONNECTION_BYTES)
    finally:
        stop_node(node)


def test_a_ping_flood_whose_replies_are_never_read_is_cut_off(solo_node: SoloNode) -> None:
    outcome = run_attack(solo_node, "ping_flood", "127.0.0.30")
    assert outcome.disconnected_after_s is not None, "the flooder must be cut off"
    # Control replies owed to one peer are bounded (control_frames_max): no budget beyond slack.
    assert_node_held(solo_node, outcome, 0)


def main() -> None:
    import tempfile

    for attack in ("big_frames", "stalled_frames", "ping_flood"):
        root = Path(tempfile.mkdtemp(prefix="fedchain-attack-"))
        overrides = {"message_timeout_ms": 3_000} if attack == "stalled_frames" else {}
        node = start_solo_node(root, **overrides)
        try:
            for round_ in range(3 if attack == "big_frames" else 1):
                outcome = run_attack(node, attack, f"127.0.0.{10 + round_}")
                cut = outcome.disconnected_after_s
                print(
                    f"{attack:15s} round {round_}: RSS {outcome.baseline / MiB:.0f} -> peak "
                    f"{outcome.peak / MiB:.0f} -> after {outcome.after / MiB:.0f} MiB; "
                    f"disconnected: {'no' if cut is None else f'{cut:.2f} s'}; heights "
                    f"{outcome.height_before} -> {outcome.height_after}; alive {node.alive()}",
                    flush=True,
                )
        except (P2PError, OSError) as exc:
            print(f"{attack}: attacker failed: {exc}", file=sys.stderr)
        finally:
            stop_node(node)


if __name__ == "__main__":
    main()
