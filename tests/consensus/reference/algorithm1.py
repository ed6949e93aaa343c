"""Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic, arXiv
1807.04938) for one process p, as upon-rules over a message log.

Read it beside the paper: the variables are L1-L9, StartRound is L11-L21, every upon-rule is a
method named after its line (`_l22`, `_l28`, ...) whose body is the rule's guard followed by its
action, and the timeout functions are L57-L67.  Nothing here knows about blocks, signatures,
bytes on a wire or the engine under test: values are opaque ids; timely(proposal), getValue()
and proposer(h, r) are functions the caller supplies, and valid(v) arrives as an event (D6).

Execution.  An upon-rule fires whenever its condition holds; after every event (a message, a
timeout) `_run` fires enabled rules until none is.  When several are enabled at once the paper
allows any order, and a deterministic reference must pick one: (i) a decision (L49, the lowest
round first), (ii) then a round skip (L55, straight to the highest round with f+1 senders),
(iii) then the current round's rules in line order.  (i) and (ii) leave the round, so taking
them first never sends a message the abandoned round would have needed; jumping to the highest
round of (ii) is what repeated L55 firings would end in, minus the rounds in between.

Voting power.  "2f+1 messages" means messages whose distinct senders hold more than 2/3 of the
total power and "f+1" more than 1/3; with a total of 3f+1 (the paper's setting) these are
exactly 2f+1 and f+1.  For "*" (L34, L47) and for f+1 (L55) a sender counts once; for a value it
counts if it sent that value, so an equivocator counts for each of its values, as the paper
counts messages.

Deviations from the paper.  Each is a deliberate choice of the engine under test, stated in
docs/ARCHITECTURE.md or in consensus/engine/engine.py's comments (D3 only in its code; the
ARCHITECTURE paragraph on this test now names it); modelling each here, by name, keeps the
comparison exact instead of silently looser:
  D1  The log keeps the first PROPOSAL of a (h, r) from proposer(h, r) and drops later ones and
      proposals from anyone else.  The paper would keep an equivocating proposer's two
      proposals and let L22 pick either; the engine keeps the first ("the first one stands"),
      as CometBFT does, and rejects a wrong proposer's message as misbehaviour.
  D2  The log keeps at most two different votes of one sender for one (h, r, type): the
      engine keeps an equivocator's second vote and counts it towards its own value, but no
      third (ARCHITECTURE: "VoteSet.conflicting, at most one"), so its memory is bounded.
  D3  L49 takes v from a PROPOSAL of any round of h_p, not only from round r: 2f+1 precommits
      fix id(v), and the proposal only delivers v itself.  The engine decides on any block it
      learned from a proposal (its L49 looks the block up among all proposals' blocks).
  D4  L21 is scheduled on the proposer too: the engine's getValue() is asynchronous (the app
      prepares the block), so it keeps a timer in case the app never answers.  On the proposer
      the timer is harmless: p prevotes its own proposal at once (L22 or L28), and L58 then
      finds step_p != propose.
  D5  L52-L53 happen at the decision, but L54 (StartRound(0) of the next height) waits for
      `next_height()`: the engine starts h+1 only after the app executed the decided block.
  D6  valid(v) is learned, not computed on the spot: the engine asks the app
      (process_proposal) and "a rule needing valid(v) waits for the app" (engine.py).  The
      caller reports each verdict with `validated(v, ok)`; until then no rule that reads
      valid(v) (L22, L28, L36, L49-L50) is enabled.  Meanwhile other rules may fire first (a
      round skip, say), which the paper allows as one of its orders.  getValue()'s values are
      valid (the app made them).
  PBTS  L23 also requires timely(proposal), as in proposer-based timestamps (CometBFT's PBTS
      spec: only a fresh proposal, vr = -1, is judged on its time).  The caller supplies timely.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Value = bytes
NIL = None  # the nil value of a vote

PROPOSE = "propose"
PREVOTE = "prevote"
PRECOMMIT = "precommit"
_STEP_ORDER = {PROPOSE: 0, PREVOTE: 1, PRECOMMIT: 2}


@dataclass(frozen=True, slots=True)
class Proposal:
    """<PROPOSAL, h, r, v, vr> from `sender`."""

    height: int
    round: int
    value: Value
    valid_round: int
    sender: int


@dataclass(frozen=True, slots=True)
class Vote:
    """<PREVOTE, h, r, id(v)> or <PRECOMMIT, h, r, id(v)> (value NIL for nil) from `sender`."""

    kind: str
    height: int
    round: int
    value: Value | None
    sender: int


Message = Proposal | Vote


@dataclass(frozen=True, slots=True)
class Timer:
    """schedule OnTimeout<kind>(height, round) to be executed after duration_ms."""

    kind: str
    height: int
    round: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Timeouts:
    """timeoutX(r) = initTimeoutX + r * timeoutDeltaX (the paper's growing timeouts)."""

    propose_ms: int
    propose_delta_ms: int
    prevote_ms: int
    prevote_delta_ms: int
    precommit_ms: int
    precommit_delta_ms: int

    def duration_ms(self, kind: str, round_: int) -> int:
        if kind == PROPOSE:
            return self.propose_ms + round_ * self.propose_delta_ms
        if kind == PREVOTE:
            return self.prevote_ms + round_ * self.prevote_delta_ms
        return self.precommit_ms + round_ * self.precommit_delta_ms


class Process:
    """Process p.  Observable: the variables, `broadcasts`, `timers` and `decisions`."""

    def __init__(
        self,
        p: int,
        powers: Mapping[int, int],
        proposer: Callable[[int, int], int],
        timely: Callable[[Proposal], bool],
        get_value: Callable[[int, int], Value],
        timeouts: Timeouts,
        height: int = 1,
    ) -> None:
        self.p = p
        self.powers = dict(powers)
        self.total = sum(self.powers.values())
        self.proposer = proposer
        self.validity: dict[Value, bool] = {}  # valid(v), as far as it is known (D6)
        self.timely = timely
        self.get_value = get_value
        self.timeouts = timeouts
        # L1-L9.  decisions[h] also names the round whose precommits decided, for observers.
        self.h = height
        self.round = 0
        self.step = PROPOSE
        self.decisions: dict[int, tuple[Value, int]] = {}
        self.locked_value: Value | None = NIL
        self.locked_round = -1
        self.valid_value: Value | None = NIL
        self.valid_round = -1
        # The message log: proposals by (h, r) (D1); votes by (kind, h, r, sender) (D2).
        self.proposals: dict[tuple[int, int], Proposal] = {}
        self.votes: dict[tuple[str, int, int, int], list[Value | None]] = {}
        # "for the first time" of L34, L36 and L47: (line, h, r) where the rule fired.
        self.fired: set[tuple[int, int, int]] = set()
        self.started = False  # L10 / L54 done for h
        self.broadcasts: list[Message] = []
        self.timers: list[Timer] = []
        self.lines: list[int] = []  # the action lines executed, in order (for coverage)

    # ---- events --------------------------------------------------------------------------------

    def start(self) -> None:
        """L10: upon start do StartRound(0)."""
        self.started = True
        self._start_round(0)
        self._run()

    def next_height(self) -> None:
        """L54, deferred (D5)."""
        self.started = True
        self._start_round(0)
        self._run()

    def receive(self, message: Message) -> None:
        self._log(message)
        self._run()

    def validated(self, value: Value, ok: bool) -> None:
        """valid(value) is now known (D6)."""
        self.validity.setdefault(value, ok)
        self._run()

    def on_timeout_propose(self, height: int, round_: int) -> None:
        if height == self.h and round_ == self.round and self.step == PROPOSE:  # L58
            self._broadcast(Vote(PREVOTE, self.h, self.round, NIL, self.p))  # L59
            self.step = PREVOTE  # L60
            self.lines.append(59)
        self._run()

    def on_timeout_prevote(self, height: int, round_: int) -> None:
        if height == self.h and round_ == self.round and self.step == PREVOTE:  # L62
            self._broadcast(Vote(PRECOMMIT, self.h, self.round, NIL, self.p))  # L63
            self.step = PRECOMMIT  # L64
            self.lines.append(63)
        self._run()

    def on_timeout_precommit(self, height: int, round_: int) -> None:
        if height == self.h and round_ == self.round and self.started:  # L66
            self.lines.append(67)
            self._start_round(self.round + 1)  # L67
        self._run()

    # ---- the message log ----------------------------------------------------------------------

    def _log(self, message: Message) -> None:
        match message:
            case Proposal(height, round_, _, _, sender):
                if sender != self.proposer(height, round_):
                    return  # D1: no rule reads it
                self.proposals.setdefault((height, round_), message)  # D1: the first stands
            case Vote(kind, height, round_, value, sender):
                values = self.votes.setdefault((kind, height, round_, sender), [])
                if value not in values and len(values) < 2:  # D2
                    values.append(value)

    def _broadcast(self, message: Message) -> None:
        """broadcast reaches every process, p included."""
        self.broadcasts.append(message)
        self._log(message)

    def _schedule(self, kind: str, round_: int) -> None:
        self.timers.append(Timer(kind, self.h, round_, self.timeouts.duration_ms(kind, round_)))

    def _proposal(self, round_: int) -> Proposal | None:
        """<PROPOSAL, h_p, round, v, *> from proposer(h_p, round), if any (D1: at most one)."""
        return self.proposals.get((self.h, round_))

    def _voters(self, kind: str, round_: int) -> set[int]:
        """Senders of <kind, h_p, round, *>."""
        return {s for (k, h, r, s) in self.votes if (k, h, r) == (kind, self.h, round_)}

    def _voters_for(self, kind: str, round_: int, value: Value | None) -> set[int]:
        """Senders of <kind, h_p, round, id(value)>."""
        return {
            s
            for (k, h, r, s), values in self.votes.items()
            if (k, h, r) == (kind, self.h, round_) and value in values
        }

    def _senders(self, round_: int) -> set[int]:
        """Senders of <*, h_p, round, *, *> (any message type)."""
        senders = self._voters(PREVOTE, round_) | self._voters(PRECOMMIT, round_)
        proposal = self._proposal(round_)
        if proposal is not None:
            senders.add(proposal.sender)
        return senders

    def _power(self, senders: Iterable[int]) -> int:
        return sum(self.powers[s] for s in set(senders))

    def _two_f_plus_one(self, senders: Iterable[int]) -> bool:
        return 3 * self._power(senders) > 2 * self.total

    def _f_plus_one(self, senders: Iterable[int]) -> bool:
        return 3 * self._power(senders) > self.total

    # ---- StartRound and the upon-rules --------------------------------------------------------

    def _start_round(self, round_: int) -> None:
        self.round = round_  # L12
        self.step = PROPOSE  # L13
        if self.proposer(self.h, round_) == self.p:  # L14
            if self.valid_value is not NIL:  # L15
                proposal = self.valid_value  # L16
            else:
                proposal = self.get_value(self.h, round_)  # L18
                self.validity.setdefault(proposal, True)
            self._broadcast(Proposal(self.h, round_, proposal, self.valid_round, self.p))  # L19
            self.lines.append(16 if self.valid_round >= 0 else 18)
        self._schedule(PROPOSE, round_)  # L21 (D4: on the proposer too)

    def _run(self) -> None:
        while self.started and self._fire_one():
            pass

    def _fire_one(self) -> bool:
        """Fire one enabled rule, in the order the module docstring gives; False if none is."""
        return (
            self._l49()
            or self._l55()
            or self._l22()
            or self._l28()
            or self._l34()
            or self._l36()
            or self._l44()
            or self._l47()
        )

    def _l22(self) -> bool:
        proposal = self._proposal(self.round)
        if proposal is None or proposal.valid_round != -1 or self.step != PROPOSE:
            return False
        v = proposal.value
        if v not in self.validity:
            return False  # D6
        if (
            self.validity[v]
            and self.timely(proposal)
            and (self.locked_round == -1 or self.locked_value == v)
        ):  # L23 (+ PBTS)
            self._broadcast(Vote(PREVOTE, self.h, self.round, v, self.p))  # L24
            self.lines.append(24)
        else:
            self._broadcast(Vote(PREVOTE, self.h, self.round, NIL, self.p))  # L26
            self.lines.append(26)
        self.step = PREVOTE  # L27
        return True

    def _l28(self) -> bool:
        proposal = self._proposal(self.round)
        if proposal is None or self.step != PROPOSE:
            return False
        v, vr = proposal.value, proposal.valid_round
        if not (0 <= vr < self.round and self._two_f_plus_one(self._voters_for(PREVOTE, vr, v))):
            return False
        if v not in self.validity:
            return False  # D6
        if self.validity[v] and (self.locked_round <= vr or self.locked_value == v):  # L29
            self._broadcast(Vote(PREVOTE, self.h, self.round, v, self.p))  # L30
            self.lines.append(30)
        else:
            self._broadcast(Vote(PREVOTE, self.h, self.round, NIL, self.p))  # L32
            self.lines.append(32)
        self.step = PREVOTE  # L33
        return True

    def _l34(self) -> bool:
        if (
            self.step != PREVOTE
            or (34, self.h, self.round) in self.fired
            or not self._two_f_plus_one(self._voters(PREVOTE, self.round))
        ):
            return False
        self.fired.add((34, self.h, self.round))
        self._schedule(PREVOTE, self.round)  # L35
        self.lines.append(35)
        return True

    def _l36(self) -> bool:
        proposal = self._proposal(self.round)
        if proposal is None or (36, self.h, self.round) in self.fired:
            return False
        v = proposal.value
        if not (
            self.validity.get(v, False)  # D6: unknown is not yet valid
            and _STEP_ORDER[self.step] >= _STEP_ORDER[PREVOTE]
            and self._two_f_plus_one(self._voters_for(PREVOTE, self.round, v))
        ):
            return False
        self.fired.add((36, self.h, self.round))
        if self.step == PREVOTE:  # L37
            self.locked_value = v  # L38
            self.locked_round = self.round  # L39
            self._broadcast(Vote(PRECOMMIT, self.h, self.round, v, self.p))  # L40
            self.step = PRECOMMIT  # L41
            self.lines.append(38)
        else:
            self.lines.append(42)  # valid value updated without locking
        self.valid_value = v  # L42
        self.valid_round = self.round  # L43
        return True

    def _l44(self) -> bool:
        if self.step != PREVOTE or not self._two_f_plus_one(
            self._voters_for(PREVOTE, self.round, NIL)
        ):
            return False
        self._broadcast(Vote(PRECOMMIT, self.h, self.round, NIL, self.p))  # L45
        self.step = PRECOMMIT  # L46
        self.lines.append(45)
        return True

    def _l47(self) -> bool:
        if (47, self.h, self.round) in self.fired or not self._two_f_plus_one(
            self._voters(PRECOMMIT, self.round)
        ):
            return False
        self.fired.add((47, self.h, self.round))
        self._schedule(PRECOMMIT, self.round)  # L48
        self.lines.append(48)
        return True

    def _l49(self) -> bool:
        if self.h in self.decisions:
            return False
        known = {p.value for (h, _), p in self.proposals.items() if h == self.h}  # D3
        rounds = sorted({r for (k, h, r, _) in self.votes if (k, h) == (PRECOMMIT, self.h)})
        for r in rounds:
            for v in sorted(known):
                if self.validity.get(v, False) and self._two_f_plus_one(
                    self._voters_for(PRECOMMIT, r, v)
                ):  # L50 (D6: a value whose validity is unknown waits)
                    self.decisions[self.h] = (v, r)  # L51
                    self.h += 1  # L52
                    self.locked_value, self.locked_round = NIL, -1  # L53
                    self.valid_value, self.valid_round = NIL, -1
                    self.started = False  # L54 waits for next_height() (D5)
                    self.lines.append(51)
                    return True
        return False

    def _l55(self) -> bool:
        rounds = {r for (_, h, r, _) in self.votes if h == self.h}
        rounds |= {r for (h, r) in self.proposals if h == self.h}
        higher = [r for r in rounds if r > self.round and self._f_plus_one(self._senders(r))]
        if not higher:
            return False
        self.lines.append(56)
        self._start_round(max(higher))  # L56
        return True
