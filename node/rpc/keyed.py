"""The app's query answers as keyed JSON for the RPC (`/round`, `/params`, `/updates/...`).

The FL app answers queries in canonical msgpack arrays (fixed order, for hashing and for
clients that verify); people and dashboards want names.  Each known path has its field names
here, in the app's order; an answer whose length differs from the table is an error the RPC
reports (502), never a silently shifted object, and tests/node/test_rpc_keyed.py holds every
table against a live FLApp, so a change in the app's layout fails a test instead of a dashboard.
Paths without a table (econ/...) keep the positional form.
"""

from typing import Any

from consensus.codec import Value

ROUND = (
    "round",
    "opened_height",
    "deadline_ms",
    "updates_per_round",
    "pending_updates",
    "model_version",
    "model_hash",
    "last_outcome",
)
OUTCOME = (
    "round",
    "height",
    "rule",
    "cause",
    "model_version",
    "model_hash",
    "accepted",
    "flagged",
)
ACCEPTED = ("client", "samples", "score", "tx")
FLAGGED = ("client", "reason", "tx")
ACCOUNT = ("next_nonce",)
UPDATE = ("round", "client", "samples", "status", "score", "flag")
TALLY = ("yes", "no", "abstain", "veto", "total_bonded")
PROPOSAL_SUMMARY = (
    "id",
    "kind",
    "content",
    "status",
    "submit_height",
    "voting_end_ms",
    "deposit",
    "proposer",
    "tally",
    "note",
)
PROPOSAL = (
    "id",
    "proposer",
    "content",
    "deposit",
    "submit_height",
    "voting_end_ms",
    "status",
    "votes",
    "tally",
    "note",
)


class ShapeError(Exception):
    """The app answered with another layout than the RPC's table (a version mismatch)."""


def to_json(value: Value) -> Any:
    """Canonical msgpack value -> JSON value (bytes as hex strings), positions kept."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def keyed(path: str, value: Value) -> Any:
    """The JSON for one app query answer: named fields where the path has a table."""
    match path.split("/"):
        case ["round"]:
            fields = named(value, ROUND, "round")
            last = _items(value, "round")[ROUND.index("last_outcome")]
            fields["last_outcome"] = None if last is None else _outcome(last)
            return fields
        case ["params"]:
            return {str(name): to_json(v) for name, v in _pairs(value, "params")}
        case ["account", _]:
            return named(value, ACCOUNT, "account")
        case ["update", _]:
            return named(value, UPDATE, "update")
        case ["gov", "proposals"]:
            return [_proposal(p, PROPOSAL_SUMMARY) for p in _items(value, "gov/proposals")]
        case ["gov", "proposal", _]:
            proposal = _proposal(value, PROPOSAL)
            proposal["votes"] = {str(voter): option for voter, option in proposal["votes"]}
            return proposal
        case _:
            return to_json(value)


def named(value: Value, names: tuple[str, ...], what: str) -> dict[str, Any]:
    items = _items(value, what)
    if len(items) != len(names):
        raise ShapeError(
            f"the app's {what!r} answer has {len(items)} fields, expected {len(names)}"
        )
    return {name: to_json(item) for name, item in zip(names, items, strict=True)}


def _outcome(value: Value) -> dict[str, Any]:
    fields = named(value, OUTCOME, "round outcome")
    items = _items(value, "round outcome")
    fields["accepted"] = [named(a, ACCEPTED, "accepted") for a in _items(items[6], "accepted")]
    fields["flagged"] = [named(f, FLAGGED, "flagged") for f in _items(items[7], "flagged")]
    return fields


def _proposal(value: Value, names: tuple[str, ...]) -> dict[str, Any]:
    fields = named(value, names, "proposal")
    fields["tally"] = named(_items(value, "proposal")[names.index("tally")], TALLY, "tally")
    return fields


def _items(value: Value, what: str) -> list[Value]:
    if not isinstance(value, list | tuple):
        raise ShapeError(f"the app's {what!r} answer is not an array")
    return list(value)


def _pairs(value: Value, what: str) -> list[tuple[Value, Value]]:
    pairs = []
    for item in _items(value, what):
        entry = _items(item, what)
        if len(entry) != 2:
            raise ShapeError(f"the app's {what!r} entries are not [name, value] pairs")
        pairs.append((entry[0], entry[1]))
    return pairs
