"""Pure assertions over what the e2e runner collected from every node.

Each check returns a list of problems (empty = pass) so the runner can report all of them at
once, and so `test_checks.py` can prove each one fails on a broken chain.  Blocks are the JSON
summaries of `GET /blocks` (docs/api.md): `app_hash` is the state before the block, as a
Tendermint header carries it, and `result_app_hash` the state after it.
"""

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

Block = Mapping[str, Any]

# What every node must agree on at a height.  The commit signatures a node stored with its block
# (its "seen commit") may legitimately differ from node to node, so they are not compared.
HEADER_FIELDS = ("height", "hash", "time_ms", "proposer", "app_hash", "last_block_hash", "txs")


def header_view(block: Block) -> tuple[Any, ...]:
    return tuple(block.get(name) for name in HEADER_FIELDS)


def contiguous(node: str, blocks: Sequence[Block], first_height: int = 1) -> list[str]:
    """The node returned heights first_height, first_height + 1, ... without gaps."""
    problems = []
    for offset, block in enumerate(blocks):
        if block.get("height") != first_height + offset:
            problems.append(
                f"{node}: expected height {first_height + offset}, got {block.get('height')}"
            )
            break
    return problems


def identical_headers(chains: Mapping[str, Sequence[Block]]) -> list[str]:
    """Every node has the same header at every height all of them have."""
    if not chains:
        return ["no node returned any block"]
    names = sorted(chains)
    common = min(len(chains[name]) for name in names)
    if common == 0:
        return [f"{name}: no blocks" for name in names if not chains[name]]
    problems = []
    reference = names[0]
    for index in range(common):
        expected = header_view(chains[reference][index])
        for name in names[1:]:
            got = header_view(chains[name][index])
            if got != expected:
                fields = [f for f, a, b in zip(HEADER_FIELDS, expected, got, strict=True) if a != b]
                height = chains[reference][index].get("height")
                problems.append(
                    f"height {height}: {name} differs from {reference} in {', '.join(fields)}"
                )
    return problems


def app_hash_chain(node: str, blocks: Sequence[Block]) -> list[str]:
    """Each block's resulting app hash is the next header's AppHash; parents link by hash."""
    problems = []
    for before, after in itertools.pairwise(blocks):
        height = before.get("height")
        if before.get("result_app_hash") != after.get("app_hash"):
            problems.append(
                f"{node}: height {height} result_app_hash {before.get('result_app_hash')} != "
                f"height {after.get('height')} app_hash {after.get('app_hash')}"
            )
        if after.get("last_block_hash") != before.get("hash"):
            problems.append(
                f"{node}: height {after.get('height')} last_block_hash does not name block {height}"
            )
    return problems


def same_model(models: Mapping[str, tuple[int, str]]) -> list[str]:
    """models: node -> (model version, model hash) for one version asked of every node."""
    if not models:
        return ["no node answered for the model"]
    distinct = sorted(set(models.values()))
    if len(distinct) == 1:
        return []
    return ["model differs: " + "; ".join(f"{n}={models[n]}" for n in sorted(models))]


def tx_queryable(
    tx: str, height: int, answers: Mapping[str, Mapping[str, Any] | None]
) -> list[str]:
    """Every node reports the committed tx at the height whose block lists it."""
    problems = []
    for node in sorted(answers):
        answer = answers[node]
        if answer is None:
            problems.append(f"{node}: tx {tx[:16]} not found")
        elif answer.get("status") != "committed" or answer.get("height") != height:
            problems.append(
                f"{node}: tx {tx[:16]} is {answer.get('status')} at {answer.get('height')}, "
                f"block {height} lists it"
            )
    results = {(a.get("index"), a.get("code")) for a in answers.values() if a is not None}
    if len(results) > 1:
        problems.append(f"tx {tx[:16]}: nodes disagree on (index, code): {sorted(results)}")
    return problems


def same_update_record(tx: str, answers: Mapping[str, Any]) -> list[str]:
    """Every node returns the FL update record of a committed update tx (`GET /updates/{tx}`),
    and the same one.  answers: node -> the answer's "value", or None when it had none."""
    problems = [
        f"{node}: no update record for tx {tx[:16]}"
        for node in sorted(answers)
        if answers[node] is None
    ]
    values = {json.dumps(v, sort_keys=True) for v in answers.values() if v is not None}
    if len(values) > 1:
        problems.append(f"tx {tx[:16]}: nodes hold different update records")
    return problems


def caught_up(node: str, elapsed_s: float | None, limit_s: float) -> list[str]:
    """elapsed_s is None when the node never reached the others' height."""
    if elapsed_s is None:
        return [f"{node}: not caught up within {limit_s:.0f} s"]
    if elapsed_s > limit_s:
        return [f"{node}: caught up after {elapsed_s:.1f} s > {limit_s:.0f} s"]
    return []


def log_records(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The JSON objects among the lines (anything else, e.g. tracebacks, is skipped)."""
    records = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def event_name(record: Mapping[str, Any]) -> str:
    """The stable event name (the first word, should a logger have put fields after it)."""
    return str(record.get("event", "")).split(" ", 1)[0]


def events(lines: Sequence[str], name: str) -> list[dict[str, Any]]:
    return [r for r in log_records(lines) if event_name(r) == name]


def int_field(record: Mapping[str, Any], key: str) -> int:
    """Log fields may be numbers or decimal strings; anything else counts as 0."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def log_events(
    node: str, lines: Sequence[str], required: Sequence[str]
) -> tuple[dict[str, int], list[str]]:
    """Count JSON log events; every required event must appear and no traceback may.

    Returns the counts (for the report) and the problems.
    """
    counts: dict[str, int] = {}
    problems = []
    for line in lines:
        text = line.strip()
        if text.startswith("Traceback"):
            problems.append(f"{node}: traceback in the log: {text[:120]}")
    for record in log_records(lines):
        name = event_name(record)
        counts[name] = counts.get(name, 0) + 1
    for event in required:
        if counts.get(event, 0) == 0:
            problems.append(f"{node}: no {event!r} event in the log")
    return counts, problems
