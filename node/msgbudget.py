"""Per-peer budgets for consensus messages: what a correct peer can send, and what it cannot.

Theory of operation
-------------------
The fair inbox (node/fairinbox.py) stops one peer from delaying the others; it does not stop a
byzantine validator from spending our CPU.  Every message that reaches the driver costs a WAL
append, the engine's gates and often a signature check, while a flooder pays one signature per
*distinct* vote and may send far-round votes, which the engine drops only after all that, as fast
as its link allows (issue 13: the kv chain kept 42% of its block rate).  This module decides,
from a message's (height, round) and the peer's recent volume, before anything costly:

  ABUSE   no correct peer sends it: a round beyond peer_round_max, a height beyond
          future_heights_max, or more messages than the protocol lets a correct peer send.
          Dropped, and a strike: the shell penalizes each strike and bans at the
          `abusive_messages_max`-th (node/consensus_shell.py).
  IGNORE  a correct peer may send it but it cannot help us now (a previous height's commit
          relayed by a lagging peer, votes more than rounds_ahead_max rounds ahead of ours,
          evidence beyond its budget).  Dropped for free; the out-of-window kinds still count
          against a budget, so even these cost a flooder strikes.
  ACCEPT  queue it for the driver.

Budgets are sized from the protocol, per peer and per kind, as a token bucket that refills in
one second: a correct validator sends its own proposal, prevote and precommit per round, and
while its height is stalled it re-sends once a second (consensus/driver/relay.py) its own
messages of the height (3 per round), the others' votes of at most five rounds (both types,
conflicting ones included: 20 per validator) and the previous height's commit (1 per
validator).  So one second of a correct peer is at most 21 n + 3 (R + 2) votes and R + 2
proposals for n validators and our round R; a non-validator has no messages of its own.  The
bucket holds `margin` times that plus a floor, and every height or round we enter credits each
bucket with the messages a correct peer sends per step (a chain deciding faster than the relay
ticks never runs dry).  Buckets are integer milli-messages; the clock is an input (now_ms).

Strikes decay by one per `strike_decay_ms`, so a correct peer that somehow overshoots once is
never banned for it; a flooder collects `abusive_messages_max` of them within milliseconds.
"""

import enum
from dataclasses import dataclass, field
from typing import assert_never

from consensus.types import DuplicateVoteEvidence, Proposal, Vote

MILLI = 1_000
# A bucket's floor, whatever n and R: a few extra seconds of a small chain's traffic.
FLOOR_MESSAGES = 32
# What a correct peer sends per (height, round) step we enter: its prevote, precommit and
# proposal, twice over (the step's own and the next one's may both arrive before we move).
STEP_CREDIT_VOTES = 4
STEP_CREDIT_PROPOSALS = 2


class Verdict(enum.Enum):
    ACCEPT = "accept"
    IGNORE = "ignore"
    ABUSE = "abuse"


class Kind(enum.Enum):
    VOTE = "vote"
    PROPOSAL = "proposal"
    EVIDENCE = "evidence"
    # Votes and proposals we drop unseen (another height, or rounds the engine ignores).
    OUT_OF_WINDOW = "out_of_window"


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    # A peer may send `margin` times a correct peer's worst second (see the module docstring).
    margin: int = 2
    # Clearly abusive messages before the ban.
    abusive_messages_max: int = 10
    strike_decay_ms: int = 10_000
    # The engine's and the driver's windows (consensus/engine/config.py, driver.DriverConfig):
    # the budget drops what they would drop, before the WAL append and the engine see it.
    rounds_ahead_max: int = 64
    peer_round_max: int = 10_000
    future_heights_ahead: int = 2
    future_heights_max: int = 100_000


@dataclass(frozen=True, slots=True)
class View:
    """What the budget needs of our consensus state."""

    height: int
    round: int
    validators: int


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    kind: Kind
    reason: str = ""
    strikes: int = 0  # the peer's strikes after this message (ABUSE only)


@dataclass(slots=True)
class _Bucket:
    milli: int
    refilled_ms: int
    step: int


@dataclass(slots=True)
class _Peer:
    validator: bool
    buckets: dict[Kind, _Bucket] = field(default_factory=dict)
    strikes: int = 0
    struck_ms: int = 0


def honest_per_s(kind: Kind, view: View, validator: bool) -> int:
    """The most messages of `kind` a correct peer sends us in one second (see the docstring)."""
    n, own_rounds = view.validators, max(view.round, 0) + 2
    match kind:
        case Kind.VOTE | Kind.OUT_OF_WINDOW:
            return 21 * n + (3 * own_rounds if validator else 0)
        case Kind.PROPOSAL:
            return own_rounds if validator else 0
        case Kind.EVIDENCE:
            # Not a strike when exceeded (an honest peer relays the whole pool): only a cap.
            return 4 * n
        case _:
            assert_never(kind)


class MsgBudget:
    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._peers: dict[object, _Peer] = {}
        self._step = 0
        self._mark = (-1, -1)
        self.dropped: dict[Verdict, int] = {Verdict.IGNORE: 0, Verdict.ABUSE: 0}

    def __len__(self) -> int:
        return len(self._peers)

    def classify(self, message: Vote | Proposal | DuplicateVoteEvidence, view: View) -> Kind | str:
        """The message's kind, or why no correct peer would send it."""
        if isinstance(message, DuplicateVoteEvidence):
            return Kind.EVIDENCE
        cfg = self.config
        height, round_ = message.height, message.round
        if round_ > cfg.peer_round_max:
            return f"round {round_} beyond peer_round_max {cfg.peer_round_max}"
        if height > view.height + cfg.future_heights_max:
            return f"height {height} beyond {view.height} + {cfg.future_heights_max}"
        if height < view.height or height > view.height + cfg.future_heights_ahead:
            return Kind.OUT_OF_WINDOW
        base = view.round if height == view.height else 0
        if round_ > base + cfg.rounds_ahead_max:
            return Kind.OUT_OF_WINDOW
        return Kind.PROPOSAL if isinstance(message, Proposal) else Kind.VOTE

    def admit(
        self,
        peer: object,
        message: Vote | Proposal | DuplicateVoteEvidence,
        view: View,
        validator: bool,
        now_ms: int,
    ) -> Decision:
        mark = (view.height, view.round)
        if mark != self._mark:
            self._mark = mark
            self._step += 1
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(validator)
        kind = self.classify(message, view)
        if isinstance(kind, str):
            return self._strike(state, Kind.OUT_OF_WINDOW, kind, now_ms)
        if self._take(state, kind, view, now_ms):
            if kind is Kind.OUT_OF_WINDOW:
                self.dropped[Verdict.IGNORE] += 1
                return Decision(Verdict.IGNORE, kind)
            return Decision(Verdict.ACCEPT, kind)
        if kind is Kind.EVIDENCE:
            self.dropped[Verdict.IGNORE] += 1
            return Decision(Verdict.IGNORE, kind)
        return self._strike(state, kind, f"{kind.value} messages beyond the peer's budget", now_ms)

    def forget(self, peer: object) -> None:
        self._peers.pop(peer, None)

    def strikes(self, peer: object) -> int:
        state = self._peers.get(peer)
        return 0 if state is None else state.strikes

    # ---- internals -----------------------------------------------------------------------------

    def capacity(self, kind: Kind, view: View, validator: bool) -> int:
        return self.config.margin * honest_per_s(kind, view, validator) + FLOOR_MESSAGES

    def _take(self, state: _Peer, kind: Kind, view: View, now_ms: int) -> bool:
        capacity = self.capacity(kind, view, state.validator) * MILLI
        bucket = state.buckets.get(kind)
        if bucket is None:
            bucket = state.buckets[kind] = _Bucket(capacity, now_ms, self._step)
        else:
            # Refilled in one second, plus what each of our steps since lets a correct peer send.
            # Out-of-window messages get the votes' credit too: a node block-syncing up to a
            # fast chain hears every height's votes as "ahead" while its own height races.
            credit = STEP_CREDIT_PROPOSALS if kind is Kind.PROPOSAL else STEP_CREDIT_VOTES
            if kind is Kind.EVIDENCE:
                credit = 0
            elapsed_ms = max(0, now_ms - bucket.refilled_ms)
            gained = elapsed_ms * capacity // 1_000 + (self._step - bucket.step) * credit * MILLI
            bucket.milli = min(capacity, bucket.milli + gained)
            bucket.refilled_ms = now_ms
            bucket.step = self._step
        if bucket.milli < MILLI:
            return False
        bucket.milli -= MILLI
        return True

    def _strike(self, state: _Peer, kind: Kind, reason: str, now_ms: int) -> Decision:
        decay = self.config.strike_decay_ms
        if state.strikes and decay > 0:
            healed = max(0, now_ms - state.struck_ms) // decay
            state.strikes = max(0, state.strikes - healed)
        state.strikes += 1
        state.struck_ms = now_ms
        self.dropped[Verdict.ABUSE] += 1
        return Decision(Verdict.ABUSE, kind, reason, state.strikes)
