"""Round lifecycle: when a round closes, and what closing it does.

Round r opens at the end of block h0 (the block that closed r - 1, or genesis) and names the
current model as its base.  Updates for r are accepted in blocks h0+1 ... until either the round
holds `updates_per_round` updates (it closes at the end of that block) or the block at height
h0 + `round_deadline_blocks` ends.  Closing aggregates the pending updates with the configured
rule, applies the aggregate to the model (saturating), bumps the model version, records each
update's verdict, and opens r + 1.  A round that reaches its deadline with fewer than
`updates_min` updates keeps the model and just reopens, so a stalled round never blocks the chain.

`close_round` returns a `RoundOutcome`: the accepted contributions and the flagged updates, the
hook the incentives layer settles rewards and penalties from.
"""

from dataclasses import dataclass

from consensus.app import Event
from consensus.codec import Value
from fl.aggregate import ClientUpdate, aggregate
from fl.fixed import apply_delta
from fl.model import ModelVersion
from fl.state import MODEL_HISTORY_MAX, RECORD_ROUNDS, FLState, UpdateRecord


@dataclass(frozen=True, slots=True)
class Contribution:
    client: bytes
    samples: int
    score: int  # permille, from the aggregation rule
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class Flagged:
    client: bytes
    reason: str
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    round: int
    height: int
    rule: str
    cause: str  # "quorum" | "deadline" | "deadline_too_few"
    model_version: int
    model_hash: bytes
    accepted: tuple[Contribution, ...]  # sorted by client key
    flagged: tuple[Flagged, ...]  # sorted by client key

    def encode(self) -> Value:
        return [
            self.round,
            self.height,
            self.rule,
            self.cause,
            self.model_version,
            self.model_hash,
            [[c.client, c.samples, c.score, c.tx_hash] for c in self.accepted],
            [[f.client, f.reason, f.tx_hash] for f in self.flagged],
        ]

    def event(self) -> Event:
        return Event(
            "fl_round_closed",
            (
                ("round", str(self.round)),
                ("cause", self.cause),
                ("rule", self.rule),
                ("model_version", str(self.model_version)),
                ("model_hash", self.model_hash.hex()),
                ("accepted", str(len(self.accepted))),
                ("flagged", str(len(self.flagged))),
            ),
        )


def due(state: FLState, height: int) -> str:
    """Why the open round must close at the end of block `height`, or "" if it stays open."""
    if len(state.pending) >= state.params.updates_per_round:
        return "quorum"
    if height >= state.round_deadline_height():
        return "deadline" if len(state.pending) >= state.params.updates_min else "deadline_too_few"
    return ""


def close_round(state: FLState, height: int, cause: str) -> RoundOutcome:
    params = state.params
    accepted: list[Contribution] = []
    flagged: list[Flagged] = []
    tx_of = {p.client: p.tx_hash for p in state.pending}
    if cause == "deadline_too_few":
        for p in sorted(state.pending, key=lambda p: p.client):
            state.records[p.tx_hash] = UpdateRecord(
                state.round, p.client, p.samples, "unused", 0, "round closed with too few updates"
            )
    else:
        result = aggregate(
            params.rule,
            [ClientUpdate(p.client, p.samples, p.delta, p.squared_norm) for p in state.pending],
            params,
        )
        weights = apply_delta(state.model.weights, result.delta)
        state.model = ModelVersion.build(state.model.version + 1, state.shapes, weights)
        state.history = [*state.history, state.model][-MODEL_HISTORY_MAX:]
        for v in result.verdicts:
            tx_hash = tx_of[v.client]
            status = "flagged" if v.flag else "accepted"
            state.records[tx_hash] = UpdateRecord(
                state.round, v.client, v.samples, status, v.score, v.flag
            )
            if v.flag:
                flagged.append(Flagged(v.client, v.flag, tx_hash))
            else:
                accepted.append(Contribution(v.client, v.samples, v.score, tx_hash))
    outcome = RoundOutcome(
        state.round,
        height,
        params.rule,
        cause,
        state.model.version,
        state.model.hash,
        tuple(accepted),
        tuple(flagged),
    )
    state.last_outcome = outcome.encode()
    state.round += 1
    state.round_opened_height = height
    state.pending = []
    state.pending_by_client = {}
    oldest_kept = state.round - RECORD_ROUNDS
    state.records = {h: r for h, r in state.records.items() if r.round >= oldest_kept}
    return outcome
