"""The e2e runner's assertions, shown to fail on broken chains (they run without Docker)."""

import json
from typing import Any

import pytest

from tests.e2e import checks


def chain(length: int, fork_at: int | None = None) -> list[dict[str, Any]]:
    """A linked chain of block summaries; from fork_at on, blocks hash differently."""
    blocks: list[dict[str, Any]] = []
    previous = ""
    for height in range(1, length + 1):
        tag = "f" if fork_at is not None and height >= fork_at else ""
        block: dict[str, Any] = {
            "height": height,
            "hash": f"h{height}{tag}",
            "time_ms": 1000 * height,
            "proposer": f"v{height % 4}",
            "app_hash": f"a{height - 1}",
            "result_app_hash": f"a{height}",
            "last_block_hash": previous,
            "txs": [],
            "commit": [f"signers-{height}"],
        }
        blocks.append(block)
        previous = block["hash"]
    return blocks


def test_identical_chains_pass_even_with_different_seen_commits() -> None:
    a, b = chain(5), chain(5)
    b[2]["commit"] = ["other signers"]
    assert checks.identical_headers({"v0": a, "v1": b}) == []


def test_a_forked_node_is_named_with_the_height_and_fields() -> None:
    problems = checks.identical_headers({"v0": chain(5), "v1": chain(5, fork_at=4)})
    assert problems[0].startswith("height 4: v1 differs from v0 in hash")
    assert len(problems) == 2


def test_headers_compare_only_the_heights_every_node_has() -> None:
    assert checks.identical_headers({"v0": chain(7), "v1": chain(5)}) == []
    assert checks.identical_headers({"v0": chain(3), "v1": []}) == ["v1: no blocks"]
    assert checks.identical_headers({}) == ["no node returned any block"]


def test_app_hash_must_carry_into_the_next_header() -> None:
    blocks = chain(4)
    assert checks.app_hash_chain("v0", blocks) == []
    blocks[2]["app_hash"] = "wrong"
    problems = checks.app_hash_chain("v0", blocks)
    assert problems == ["v0: height 2 result_app_hash a2 != height 3 app_hash wrong"]


def test_parent_hash_links_are_checked() -> None:
    blocks = chain(3)
    blocks[2]["last_block_hash"] = "nope"
    assert checks.app_hash_chain("v0", blocks) == [
        "v0: height 3 last_block_hash does not name block 2"
    ]


def test_gaps_in_heights_are_reported() -> None:
    blocks = chain(4)
    del blocks[1]
    assert checks.contiguous("v2", blocks) == ["v2: expected height 2, got 3"]


def test_models_must_agree() -> None:
    assert checks.same_model({"v0": (3, "ab"), "v1": (3, "ab")}) == []
    assert checks.same_model({"v0": (3, "ab"), "v1": (3, "cd")}) != []
    assert checks.same_model({}) == ["no node answered for the model"]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"v0": {"status": "committed", "height": 7, "index": 0, "code": 0}}, 0),
        ({"v0": None}, 1),
        ({"v0": {"status": "pending"}}, 1),
        ({"v0": {"status": "committed", "height": 8, "index": 0, "code": 0}}, 1),
        (
            {
                "v0": {"status": "committed", "height": 7, "index": 0, "code": 0},
                "v1": {"status": "committed", "height": 7, "index": 1, "code": 0},
            },
            1,
        ),
    ],
)
def test_tx_must_be_committed_at_its_block_on_every_node(
    answers: dict[str, dict[str, Any] | None], expected: int
) -> None:
    assert len(checks.tx_queryable("ab" * 32, 7, answers)) == expected


def test_catch_up_deadline() -> None:
    assert checks.caught_up("v1", 12.5, 30) == []
    assert checks.caught_up("v1", 31.0, 30) == ["v1: caught up after 31.0 s > 30 s"]
    assert checks.caught_up("v1", None, 30) == ["v1: not caught up within 30 s"]


def test_log_events_count_json_lines_and_flag_tracebacks() -> None:
    lines = [
        json.dumps({"event": "block_committed", "height": 1}),
        json.dumps({"event": "block_committed", "height": 2}),
        "not json {",
        json.dumps({"event": "slash", "height": 2}),
    ]
    counts, problems = checks.log_events("v0", lines, ["block_committed"])
    assert counts == {"block_committed": 2, "slash": 1}
    assert problems == []
    _, problems = checks.log_events("v0", [*lines, "Traceback (most recent call last):"], ["x"])
    assert problems == [
        "v0: traceback in the log: Traceback (most recent call last):",
        "v0: no 'x' event in the log",
    ]


def test_events_take_the_first_word_and_fields_may_be_strings() -> None:
    lines = [
        json.dumps({"event": "round_settled", "slashed": "1"}),
        json.dumps({"event": "round_settled", "slashed": 0}),
        json.dumps({"event": "p2p_listening addr=/ip4/0.0.0.0/tcp/1"}),
        "garbage",
    ]
    settled = checks.events(lines, "round_settled")
    assert [checks.int_field(e, "slashed") for e in settled] == [1, 0]
    assert checks.int_field({"slashed": True}, "slashed") == 0
    assert checks.int_field({"slashed": "-3"}, "slashed") == 0
    counts, _ = checks.log_events("v0", lines, [])
    assert counts == {"round_settled": 2, "p2p_listening": 1}


def test_update_records_must_exist_and_agree() -> None:
    record = [0, "ab", 134, "accepted", 1000, ""]
    assert checks.same_update_record("cd" * 32, {"v0": record, "v1": list(record)}) == []
    assert checks.same_update_record("cd" * 32, {"v0": record, "v1": None}) == [
        "v1: no update record for tx cdcdcdcdcdcdcdcd"
    ]
    flagged = [0, "ab", 134, "flagged", 0, "clipped"]
    assert checks.same_update_record("cd" * 32, {"v0": record, "v1": flagged}) == [
        "tx cdcdcdcdcdcdcdcd: nodes hold different update records"
    ]
