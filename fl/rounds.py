"""Round lifecycle: when a round closes, and what closing it does.

Round r opens at the end of block h0 (the block that closed r - 1, or genesis) at chain time t0
(h0's BlockInfo.time_ms, the BFT time) and names the current model as its base.  Updates for r
are accepted in blocks h0+1 ... until either the round holds `updates_per_round` updates (it
closes at the end of that block) or a block whose time is at least t0 + `round_deadline_ms`
ends (chain time, not a block count: blocks may come 50 a second or one a minute).  Closing
aggregates the pending updates with the configured rule, applies the aggregate to the model
(saturating), bumps the model version, records each update's verdict, and opens r + 1.  A
round that reaches its deadline with fewer than `updates_min` updates keeps the model and just
reopens, so a stalled round never blocks the chain.

With commit-reveal (`commit_blocks` = C > 0, an incentives parameter) a round has two phases.
The commit phase takes commit_update transactions in blocks h0+1 ... and ends at the end of the
block where the round holds `updates_per_round` commitments or whose height is h0 + C; the
reveal phase opens there (at height hr) and takes reveal_update transactions that match a
commitment; the round closes at the end of the block where every commitment has been revealed,
or at the first block whose time reaches hr's time + `round_deadline_ms` (with the usual
`updates_min` rule).  Nobody sees an update
of the round before every update of the round is fixed.  A round whose commit phase ends with
no commitment reopens at once, as a stalled single-phase round does.

Aggregation weight is bounded by bond when `bond_per_weight` > 0 (fl/economics/clients.py
`weight_cap`): the samples a client claims count up to stake // bond_per_weight.

`close_round` returns a `RoundOutcome`: the accepted contributions and the flagged updates, the
hook the incentives layer settles rewards and penalties from.
"""

from dataclasses import dataclass

from consensus.app import Event
from consensus.codec import Value
from fl.aggregate import ClientUpdate, RuleHistory, aggregate
from fl.economics.clients import stake_votes, weight_cap
from fl.economics.state import EconState
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
    # The round's near-copy pairs (earlier, later included) as aggregation found them, for the
    # incentives layer; None when the round was not aggregated.  Not part of the encoding.
    copy_pairs: tuple[tuple[bytes, bytes], ...] | None = None

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
                # Why, for operators (metrics count flagged updates by reason); rule flags never
                # contain " | ".
                ("flagged_reasons", " | ".join(f.reason for f in self.flagged)),
            ),
        )


def due(state: FLState, height: int) -> str:
    """Why the open round must close at the end of block `height` (whose time is
    `state.time_ms`; "reveal": its commit phase ends instead), or "" if it stays open."""
    commit_blocks = state.incentives.econ.params.commit_blocks
    if commit_blocks > 0 and state.reveal_opened_height < 0:
        if len(state.commits) >= state.params.updates_per_round:
            return "reveal"
        if height >= state.round_opened_height + commit_blocks:
            return "reveal" if state.commits else "deadline_too_few"
        return ""
    if commit_blocks > 0 and state.commits and len(state.pending) >= len(state.commits):
        return "quorum"  # every commitment is revealed: nothing more can join this round
    if len(state.pending) >= state.params.updates_per_round:
        return "quorum"
    if state.time_ms >= state.round_deadline_ms():
        return "deadline" if len(state.pending) >= state.params.updates_min else "deadline_too_few"
    return ""


def open_reveal(state: FLState, height: int) -> Event:
    state.reveal_opened_height = height
    state.reveal_opened_ms = state.time_ms
    return Event(
        "fl_reveal_opened",
        (
            ("round", str(state.round)),
            ("commitments", str(len(state.commits))),
            ("deadline_ms", str(state.round_deadline_ms())),
        ),
    )


def unrevealed(state: FLState) -> list[bytes]:
    """Clients that committed in the open round but have not revealed, in key order."""
    return sorted(c for c in state.commits if c not in state.pending_by_client)


def close_round(state: FLState, height: int, cause: str) -> RoundOutcome:
    params = state.params
    accepted: list[Contribution] = []
    flagged: list[Flagged] = []
    tx_of = {p.client: p.tx_hash for p in state.pending}
    copy_pairs = None
    if cause == "deadline_too_few":
        for p in sorted(state.pending, key=lambda p: p.client):
            state.records[p.tx_hash] = UpdateRecord(
                state.round, p.client, p.samples, "unused", 0, "round closed with too few updates"
            )
    else:
        econ = state.incentives.econ
        result = aggregate(
            params.rule,
            [
                ClientUpdate(
                    p.client,
                    _weight(econ, p.client, p.samples),
                    p.delta,
                    p.squared_norm,
                    stake_votes(econ, p.client),
                )
                for p in state.pending
            ],
            params,
            state.rule_history,
            originals_first=econ.params.commit_blocks == 0,  # pending: in inclusion order
            collusion_permille=econ.params.collusion_permille,
        )
        copy_pairs = result.copy_pairs
        if isinstance(result.history, RuleHistory):  # only the history rule returns one
            state.rule_history = result.history
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
        copy_pairs,
    )
    state.last_outcome = outcome.encode()
    state.round += 1
    state.round_opened_height = height
    state.round_opened_ms = state.time_ms
    state.pending = []
    state.pending_by_client = {}
    state.commits = {}
    state.reveal_opened_height = -1
    state.reveal_opened_ms = -1
    oldest_kept = state.round - RECORD_ROUNDS
    state.records = {h: r for h, r in state.records.items() if r.round >= oldest_kept}
    return outcome


def _weight(econ: EconState, client: bytes, samples: int) -> int:
    """The samples the aggregation counts: at most what the client's bond buys, and at least 1
    (admission already charged `client_stake_min` for the key)."""
    cap = weight_cap(econ, client)
    return samples if cap is None else max(1, min(samples, cap))
