"""Model-based test: the engine, step by step, against an executable reference of Algorithm 1.

hypothesis (stateful testing) drives the real `Engine.apply` and the reference of
tests/consensus/reference (written from the paper, not from the engine) with the same inputs:
proposals from each round's proposer (fresh or re-proposed with a POL round, timely or not),
prevotes and precommits from the other validators for a few values or nil in any round
(earlier, current, later: L55's skips), byzantine validators' equivocations, the timeouts the
algorithm scheduled (in any order, also late) and timeouts of other rounds, and the app's
valid/invalid answers.  The validator under test is one of 4 or 7, with equal or unequal power;
signatures are real ed25519.  A decided block is executed at once and the run goes on at the
next height (L52-L54), whose blocks carry the engine's commit of the previous one.

After every input the two must agree on: the messages p sent (type, height, round, value, POL
round), the timeouts it scheduled (step, height, round, duration), the decisions (value and the
round of its precommits, per height), and height, round, step, lockedValue/lockedRound and
validValue/validRound.  A difference raises `Divergence` with both sides and a trace.

Inputs stay inside the engine's contract: the app answers at once (ValidateBlock ->
BlockValidated, RequestProposal -> ProposalContent), a timeout of p's current round fires only
if it was scheduled, p's own key never signs anything the driver makes up, at most f of the
power equivocates (so two values never both reach 2f+1 in one round), and no message is more
than `ROUNDS_AHEAD` (+ `PROPOSAL_SHIFT_MAX` for a proposal) rounds ahead: far below
rounds_ahead_max (checked), which the reference does not model.  Everything else the engine
does differently from the paper is modelled in the reference (its D1-D6 and PBTS's timely
predicate, which the driver decides per proposal).

The random search (`MAIN`) must reach every rule line and a few situations (REQUIRED); the
rarest lock paths are also driven by hand (SCENARIOS) through the same machine.  Checker
strength: every engine mutant but `noguard` must be caught by the same search.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from consensus.app import Genesis, GenesisValidator
from consensus.commit_verify import MemoVerifier
from consensus.crypto import PrivateKey, sha256
from consensus.engine import (
    MUTANTS,
    STEP_COMMIT,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    BlockExecuted,
    BlockValidated,
    Broadcast,
    ChainState,
    Decide,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    PeerMisbehaved,
    ProposalContent,
    ProposalReceived,
    RequestProposal,
    ScheduleTimeout,
    SignRefused,
    Start,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.kvapp import KVApp
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Block,
    Header,
    Proposal,
    Vote,
    commit_hash,
    evidence_hash,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)
from tests.consensus import reference as ref

CHAIN_ID = "mbt-chain"
GENESIS_TIME_MS = 1_000_000_000
# An untimely proposal arrives this long before its block's time: its proposer's clock is 10 s
# ahead.  Untimely for any round (PBTS's lower bound, time - PRECISION, does not grow).
EARLY_MS = 10_000
ROUNDS_AHEAD = 3
PROPOSAL_SHIFT_MAX = 8  # a proposal moves at most this many rounds on to find a free round
# Rounds relative to p's: mostly its own, where the rules act; also earlier and later ones.
AHEAD = st.sampled_from((0, 0, 0, 0, 0, 0, 1, -1, 2, ROUNDS_AHEAD, -2))
# A value index: below COHERENT means "the value already in play there" (the round's proposal
# for a vote, the POL round's proposal for a re-proposal), so quorums and POLs form often.
VALUE = st.integers(0, 15)
COHERENT = 8
# Powers in validator-key-label order.  The totals are 3f+1, so "more than 2/3" is the paper's
# 2f+1 exactly; the unequal sets have subsets of exactly f and 2f power (where wrong thresholds
# show) and weighted proposer rotation.
SHAPES: dict[str, tuple[int, ...]] = {
    "n4": (10, 10, 10, 10),
    "n4-unequal": (33, 33, 20, 14),
    "n7": (10, 10, 10, 10, 10, 10, 10),
    "n7-unequal": (1, 2, 3, 5, 8, 13, 17),
}
FIXED = ("A", "B", "C")  # proposable, structurally valid; the app's verdict is drawn per example
BAD = "X"  # proposable, structurally invalid (wrong app hash): the app is never asked
UNKNOWN = "D"  # only ever voted for, never proposed: p cannot decide it
STEP_NAMES = {
    STEP_PROPOSE: ref.PROPOSE,
    STEP_PREVOTE: ref.PREVOTE,
    STEP_PRECOMMIT: ref.PRECOMMIT,
    STEP_COMMIT: "commit",
}
STEP_OF_KIND = {ref.PROPOSE: STEP_PROPOSE, ref.PREVOTE: STEP_PREVOTE, ref.PRECOMMIT: STEP_PRECOMMIT}
TIMER_KINDS = (ref.PROPOSE, ref.PREVOTE, ref.PRECOMMIT)
VOTE_KIND = {PREVOTE: ref.PREVOTE, PRECOMMIT: ref.PRECOMMIT}
VOTE_TYPE = {ref.PREVOTE: PREVOTE, ref.PRECOMMIT: PRECOMMIT}
# Mutants this test cannot observe, and why.  Every other mutant must be caught.
UNOBSERVABLE = {
    "noguard": "the LastSigned guard only refuses after a restart; this test never restarts p",
}

# (step kind, height, round, value label, POL round or None): what p sent, comparable.
Sent = tuple[str, int, int, str, int | None]


class Divergence(AssertionError):
    """The engine and the reference disagree."""


@dataclass(frozen=True)
class World:
    """One height: its validator set (keys in set order, powers) and the values proposable."""

    chain: ChainState
    keys: tuple[PrivateKey, ...]
    powers: tuple[int, ...]
    blocks: dict[str, Block]

    @property
    def now_ms(self) -> int:
        """Every honest clock's reading during this height; the blocks carry it."""
        return self.chain.last_time_ms + 1_000

    def proposer(self, round_: int) -> int:
        index = self.chain.validators.index(self.chain.validators.proposer(round_))
        if index is None:
            raise AssertionError("proposer outside the set")
        return index


def _block(chain: ChainState, proposer: bytes, txs: tuple[bytes, ...], app_hash: bytes) -> Block:
    header = Header(
        chain_id=chain.chain_id,
        height=chain.height,
        time_ms=chain.last_time_ms + 1_000,
        last_block_id=chain.last_block_id,
        last_commit_hash=commit_hash(chain.last_commit),
        data_hash=txs_hash(txs),
        evidence_hash=evidence_hash(()),
        validators_hash=chain.validators.hash(),
        next_validators_hash=chain.next_validators.hash(),
        app_hash=app_hash,
        proposer=proposer,
    )
    return Block(header, txs, (), chain.last_commit)


def _world(chain: ChainState, keys: Iterable[PrivateKey]) -> World:
    """The world of `chain`'s height (at a later height, chain is the engine's after the
    block: it carries the previous commit, time and app hash that valid blocks must name)."""
    by_key = {k.public_key: k for k in keys}
    ordered = tuple(by_key[v.public_key] for v in chain.validators.validators)
    powers = tuple(v.power for v in chain.validators.validators)
    author = ordered[0].public_key
    h = chain.height
    blocks = {
        x: _block(chain, author, (f"{x}{h}=1".encode(),), chain.app_hash) for x in (*FIXED, UNKNOWN)
    }
    blocks[BAD] = _block(chain, author, (f"X{h}=1".encode(),), b"\x07" * 32)
    return World(chain, ordered, powers, blocks)


def _genesis_world(name: str) -> World:
    keys = [PrivateKey.from_label(f"mbt-{i}") for i in range(len(SHAPES[name]))]
    genesis = Genesis(
        CHAIN_ID,
        tuple(GenesisValidator(k.public_key, p) for k, p in zip(keys, SHAPES[name], strict=True)),
        genesis_time_ms=GENESIS_TIME_MS,
    )
    app_hash, _ = KVApp().init_chain(genesis)
    return _world(ChainState.from_genesis(genesis, app_hash), keys)


WORLDS = {name: _genesis_world(name) for name in SHAPES}
_SIGNATURES: dict[tuple[bytes, bytes], bytes] = {}
_VERIFIER = MemoVerifier()


def _sign(key: PrivateKey, message: bytes) -> bytes:
    signature = _SIGNATURES.get((key.public_key, message))
    if signature is None:
        signature = _SIGNATURES[(key.public_key, message)] = key.sign(message)
    return signature


def _fresh_txs(height: int, round_: int) -> tuple[bytes, ...]:
    return (f"fresh{height}.{round_}=1".encode(),)


def _received(proposal: Proposal, timely: bool) -> ProposalReceived:
    """The engine's input for a proposal arriving timely (at its block's time) or early."""
    time_ms = proposal.block.header.time_ms
    return ProposalReceived(proposal, received_ms=time_ms if timely else time_ms - EARLY_MS)


# Which rules of the reference the runs exercised, and a few situations worth reaching; the main
# test asserts it reached all of them, so a generator that stops producing them fails.
COVERAGE: Counter[str] = Counter()
REQUIRED = (
    *(f"L{line}" for line in (16, 18, 24, 26, 30, 35, 38, 45, 48, 51, 56, 59, 63, 67)),
    "prevoted nil on an untimely proposal",
    "equivocation received",
    "decided at a later height",
)
# The random search reaches these only now and then; each of SCENARIOS below reaches one.
RARELY = (
    "L32",
    "L42",
    "decided a round below the current one",
    "locked, then locked on another value",
    "prevoted nil on a proposal of another value than the lock",
    "prevoted a POL re-proposal while locked on another value",
)


class EngineVersusReference(RuleBasedStateMachine):
    """p = the engine under test and the reference process, fed identical inputs."""

    mutant = ""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[str] = []
        self.seen: set[str] = set()
        self.steps = 0

    # ---- setup ---------------------------------------------------------------------------------

    @initialize(
        shape=st.sampled_from(sorted(SHAPES)),
        me=st.integers(0, 6),
        app_valid=st.tuples(*(st.sampled_from((True, True, True, False)) for _ in FIXED)),
        byzantine=st.sets(st.integers(0, 6), max_size=3),
    )
    def setup(self, shape: str, me: int, app_valid: tuple[bool, ...], byzantine: set[int]) -> None:
        w = WORLDS[shape]
        n = len(w.keys)
        self.me = me % n
        self.others = [i for i in range(n) if i != self.me]
        # At most f of the power equivocates (fewer than a third, as the paper assumes).
        self.equivocators: set[int] = set()
        for i in sorted(b % n for b in byzantine):
            power = sum(w.powers[j] for j in self.equivocators) + w.powers[i]
            if i != self.me and 3 * power < sum(w.powers):
                self.equivocators.add(i)
        self.letter_valid = dict(zip(FIXED, app_valid, strict=True))  # the app, at any height
        self.label_of: dict[bytes, str] = {NIL: "nil"}
        self.app_valid: dict[bytes, bool] = {}
        self.worlds: dict[int, World] = {}
        self.trace.append(
            f"setup {shape}: p = v{self.me} (power {w.powers[self.me]}), powers {w.powers}, "
            f"equivocators {sorted(self.equivocators)}, app valid {self.letter_valid}"
        )
        self._enter(w)
        self.timely_of: dict[tuple[int, int, bytes, int], bool] = {}
        self.fresh: dict[tuple[int, int], bytes] = {}  # (h, r) -> p's fresh block there
        self.sent_by: dict[tuple[str, int, int, int], bytes] = {}  # honest senders vote once
        self.fired: set[tuple[str, int, int]] = set()
        self.app_events: list[tuple[bytes, bool] | None] = []  # None: a block was executed

        config = EngineConfig(mutant=self.mutant)
        if config.timestamp_precision_ms >= EARLY_MS:
            raise AssertionError("EARLY_MS must exceed the timestamp precision")
        if config.rounds_ahead_max <= ROUNDS_AHEAD + PROPOSAL_SHIFT_MAX:
            raise AssertionError("inputs must stay below rounds_ahead_max (not modelled)")
        self.engine = Engine(config, KeySigner(w.keys[self.me]), _VERIFIER)
        self.state = EngineState.for_height(w.chain)
        self.e_sent: list[Sent] = []
        self.e_timers: Counter[tuple[str, int, int, int]] = Counter()
        self.e_decisions: dict[int, tuple[str, int]] = {}
        self.e_problems: list[str] = []

        def timely(p: ref.Proposal) -> bool:
            return self.timely_of.get((p.height, p.round, p.value, p.valid_round), True)

        self.ref = ref.Process(
            p=self.me,
            powers=dict(enumerate(w.powers)),
            proposer=lambda h, r: self.worlds[h].proposer(r),
            timely=timely,
            get_value=self._get_value,
            timeouts=ref.Timeouts(
                config.propose_timeout_ms,
                config.propose_timeout_delta_ms,
                config.prevote_timeout_ms,
                config.prevote_timeout_delta_ms,
                config.precommit_timeout_ms,
                config.precommit_timeout_delta_ms,
            ),
            height=w.chain.height,
        )
        self._step("start", lambda: self._engine(Start()), self.ref.start)

    def _enter(self, w: World) -> None:
        """Height w.chain.height begins: its values, their labels and the app's verdicts."""
        self.h = w.chain.height
        self.worlds[self.h] = w
        self.world = w
        self.id_of = {x: b.id() for x, b in w.blocks.items()} | {"nil": NIL}
        self.label_of |= {b.id(): x for x, b in w.blocks.items()}
        self.app_valid |= {w.blocks[x].id(): ok for x, ok in self.letter_valid.items()}
        self.proposable = [*FIXED, BAD]
        self.votable = ["nil", *FIXED, BAD, UNKNOWN]
        proposers = [w.proposer(r) for r in range(8)]
        self.trace.append(f"height {self.h}: proposers of rounds 0-7 {proposers}")

    def _get_value(self, height: int, round_: int) -> bytes:
        """getValue() (L18): the block the app and p's clock produced in the engine.  If the
        engine proposed no fresh block there, a value it cannot have, so the reference's
        PROPOSAL shows up as the difference."""
        return self.fresh.get((height, round_), b"getValue: the engine proposed nothing fresh")

    # ---- the engine side: apply, answer the app at once, record what p did ---------------------

    def _engine(self, first: Input) -> None:
        pending = [first]
        while pending:
            inp = pending.pop(0)
            match inp:  # the reference learns the app's answers in the order the engine does
                case BlockValidated(_, block_id, valid):
                    self.app_events.append((block_id, valid))
                case BlockExecuted():
                    self.app_events.append(None)
            try:
                self.state, effects = self.engine.apply(self.state, inp)
            except Exception as exc:  # the reference never raises: report it as a divergence
                raise Divergence(self._report(f"the engine raised {exc!r} on {inp!r}")) from exc
            if self.state.chain.height != self.h:
                self._enter(_world(self.state.chain, self.world.keys))
            answers: list[Input] = []
            for effect in effects:
                match effect:
                    case ValidateBlock(height, block, _):
                        ok = self.app_valid.get(block.id(), True)
                        answers.append(BlockValidated(height, block.id(), ok))
                    case RequestProposal(height, round_, _):
                        txs = _fresh_txs(height, round_)
                        answers.append(ProposalContent(height, round_, self.world.now_ms, txs))
                    case Decide(height, block, commit, _):
                        self.e_decisions[height] = (self._label(block.id()), commit.round)
                        app_hash = sha256(b"app hash after " + block.id())
                        answers.append(BlockExecuted(height, block.id(), app_hash, ()))
                    case Broadcast(Proposal() as p):
                        self._own_proposal(p)
                    case Broadcast(Vote() as v):
                        label = self._label(v.block_id)
                        self.e_sent.append((VOTE_KIND[v.type], v.height, v.round, label, None))
                    case ScheduleTimeout(height, round_, step, duration_ms):
                        self.e_timers[(STEP_NAMES[step], height, round_, duration_ms)] += 1
                    case SignRefused() | PeerMisbehaved():
                        self.e_problems.append(repr(effect))
            pending[:0] = answers

    def _own_proposal(self, p: Proposal) -> None:
        block_id = p.block.id()
        fresh = (
            p.pol_round == -1
            and block_id not in self.label_of
            and p.block.txs == _fresh_txs(p.height, p.round)
            and p.block.header.proposer == self.world.keys[self.me].public_key
        )
        if fresh:
            label = f"F{p.round}"
            self.fresh[(p.height, p.round)] = block_id
            self.label_of[block_id] = label
            self.id_of[label] = block_id
            self.proposable.append(label)
            self.votable.append(label)
            self.app_valid[block_id] = True
        self.e_sent.append((ref.PROPOSE, p.height, p.round, self._label(block_id), p.pol_round))

    def _label(self, block_id: bytes | None) -> str:
        if block_id is None:
            return "none"
        return self.label_of.get(block_id, block_id.hex()[:8])

    # ---- the reference side, comparison and report ---------------------------------------------

    def _r_sent(self) -> list[Sent]:
        out: list[Sent] = []
        for m in self.ref.broadcasts:
            match m:
                case ref.Proposal(h, round_, value, vr, _):
                    out.append((ref.PROPOSE, h, round_, self._label(value), vr))
                case ref.Vote(kind, h, round_, value, _):
                    label = self._label(NIL if value is None else value)
                    out.append((kind, h, round_, label, None))
        return out

    def _r_timers(self) -> Counter[tuple[str, int, int, int]]:
        return Counter((t.kind, t.height, t.round, t.duration_ms) for t in self.ref.timers)

    def _views(self) -> tuple[dict[str, object], dict[str, object]]:
        s, r = self.state, self.ref
        engine: dict[str, object] = {
            "decisions": self.e_decisions,
            "height": s.chain.height,
            "round": s.round,
            "step": STEP_NAMES[s.step],
            "locked": (self._label(s.locked_value), s.locked_round),
            "valid": (self._label(s.valid_value), s.valid_round),
        }
        reference: dict[str, object] = {
            "decisions": {h: (self._label(v), rd) for h, (v, rd) in r.decisions.items()},
            "height": r.h,
            "round": r.round,
            "step": r.step if r.started else "commit",
            "locked": (self._label(r.locked_value), r.locked_round),
            "valid": (self._label(r.valid_value), r.valid_round),
        }
        return engine, reference

    def _compare(self) -> None:
        problems: list[str] = []
        engine, reference = self._views()
        for key, value in engine.items():
            if reference[key] != value:
                problems.append(f"{key}: engine {value}, reference {reference[key]}")
        e_sent, r_sent = self.e_sent, self._r_sent()
        if e_sent != r_sent:
            first = next(
                (i for i, (a, b) in enumerate(zip(e_sent, r_sent, strict=False)) if a != b),
                min(len(e_sent), len(r_sent)),
            )
            problems.append(
                f"sent messages differ from #{first}: engine {e_sent[first:]}, "
                f"reference {r_sent[first:]}"
            )
        e_timers, r_timers = self.e_timers, self._r_timers()
        if e_timers != r_timers:
            problems.append(
                f"timeouts: engine only {sorted((e_timers - r_timers).elements())}, "
                f"reference only {sorted((r_timers - e_timers).elements())}"
            )
        if self.e_problems:
            problems.append(f"engine effects for well-formed input: {self.e_problems}")
        if problems:
            raise Divergence(self._report("\n  ".join(problems)))

    def _report(self, what: str) -> str:
        engine, reference = self._views()
        return (
            f"engine (mutant {self.mutant!r}) and reference diverge:\n  {what}\n"
            f"engine    {engine}\nreference {reference}\n"
            f"sent by p (engine): {self.e_sent}\n"
            "trace (input -> what p sent, by the reference's rules):\n  "
            + "\n  ".join(self.trace[-60:])
        )

    def _step(
        self, what: str, on_engine: Callable[[], None], on_ref: Callable[[], None]
    ) -> list[int]:
        """Apply one input to both sides, trace it, compare; the reference's action lines."""
        before = (len(self.ref.broadcasts), len(self.ref.lines))
        h, round_before = self.ref.h, self.ref.round
        locked_before = (self.ref.locked_value, self.ref.locked_round)
        self.app_events.clear()
        on_engine()
        on_ref()
        for event in self.app_events:  # the app's answers reach the reference as the engine's
            if event is None:
                self.ref.next_height()
            else:
                self.ref.validated(*event)
        sent = self._r_sent()[before[0] :]
        lines = self.ref.lines[before[1] :]
        self.steps += 1
        self.trace.append(f"{self.steps:3}. h{h} {what} -> {sent or '-'}  (L{lines})")
        self._cover(lines, locked_before)
        decided = self.ref.decisions.get(h)
        if 51 in lines and decided is not None:
            if decided[1] < round_before:
                self._note("decided a round below the current one")
            if h > 1:
                self._note("decided at a later height")
        if 26 in lines:
            self._cover_nil_prevote()
        self._compare()
        return lines

    def _cover_nil_prevote(self) -> None:
        """Why L26 (a nil prevote on a fresh proposal) fired, when the value itself was valid."""
        r = self.ref.round
        proposal = self.ref.proposals.get((self.h, r))
        if proposal is None or not self.ref.validity.get(proposal.value, False):
            return
        if not self.ref.timely(proposal):
            self._note("prevoted nil on an untimely proposal")
        elif self.ref.locked_value not in (None, proposal.value):
            self._note("prevoted nil on a proposal of another value than the lock")

    def _note(self, situation: str) -> None:
        self.seen.add(situation)
        COVERAGE[situation] += 1

    def _cover(self, lines: list[int], locked_before: tuple[bytes | None, int]) -> None:
        for line in lines:
            self._note(f"L{line}")
        if 30 in lines and locked_before[0] is not None:
            last = self.ref.broadcasts[-1]
            if isinstance(last, ref.Vote) and last.value != locked_before[0]:
                self._note("prevoted a POL re-proposal while locked on another value")
        if 38 in lines and locked_before[0] not in (None, self.ref.locked_value):
            self._note("locked, then locked on another value")

    def _pick(self, value: int, round_: int, labels: list[str]) -> str:
        """The value of `round_`'s proposal if `value` asks for it and there is one."""
        proposal = self.ref.proposals.get((self.h, round_))
        if value < COHERENT and proposal is not None:
            return self._label(proposal.value)
        return labels[value % len(labels)]

    def _round(self, ahead: int) -> int:
        return max(0, self.ref.round + ahead)

    # ---- rules: what the network, the clock and byzantine validators may do -------------------

    @rule(
        ahead=AHEAD,
        back=st.integers(0, 3),
        value=VALUE,
        timely=st.sampled_from((True, True, True, False)),
        again=st.sampled_from((False, False, False, False, False, True)),
    )
    def proposal(self, ahead: int, back: int, value: int, timely: bool, again: bool) -> None:
        """The proposer of a round (never p) proposes a value, fresh (POL -1) or re-proposed
        with the POL round `back` rounds earlier."""
        w = self.world
        r = self._round(ahead)
        # Both keep only a round's first proposal (D1): a repeat, or an equivocating
        # proposer's second one, is sent only when `again` asks for it.
        for _ in range(PROPOSAL_SHIFT_MAX):
            if w.proposer(r) != self.me and (again or (self.h, r) not in self.ref.proposals):
                break
            r += 1
        else:
            return  # the next rounds are p's or proposed already: nothing to send
        vr = r - back if 0 < back <= r else -1
        label = self._pick(value, vr, self.proposable)
        block = w.blocks[label] if label in w.blocks else self._own_block(label)
        key = w.keys[w.proposer(r)]
        sig = _sign(key, proposal_sign_bytes(CHAIN_ID, self.h, r, vr, block.id()))
        message = Proposal(self.h, r, vr, block, key.public_key, sig)
        self.timely_of.setdefault((self.h, r, block.id(), vr), timely)
        untimely = "" if timely else " (untimely)"
        sender = w.proposer(r)
        abstract = ref.Proposal(self.h, r, block.id(), vr, sender)

        def on_ref() -> None:
            if label == BAD:  # the engine's structural check needs no app: known at once
                self.ref.validated(block.id(), False)
            self.ref.receive(abstract)

        self._step(
            f"PROPOSAL r{r} {label} vr={vr} from v{sender}{untimely}",
            lambda: self._engine(_received(message, timely)),
            on_ref,
        )

    def _own_block(self, label: str) -> Block:
        """p's fresh block (a re-proposal of it by another proposer carries it unchanged)."""
        block_id = self.id_of[label]
        block = self.state.blocks.get(block_id)
        if block is None:
            raise AssertionError(f"p's block {label} is not among the engine's blocks")
        return block

    @rule(
        kind=st.sampled_from([ref.PREVOTE, ref.PREVOTE, ref.PRECOMMIT]),
        sender=st.integers(0, 6),
        ahead=AHEAD,
        value=VALUE,
        count=st.integers(1, 6),
    )
    def votes(self, kind: str, sender: int, ahead: int, value: int, count: int) -> None:
        """`count` validators (other than p, starting at `sender`) vote the same in one round;
        one that already voted otherwise there re-sends its vote unless it is byzantine."""
        r = self._round(ahead)
        label = self._pick(value, r, self.votable)
        start = sender % len(self.others)
        h = self.h
        for i in range(min(count, len(self.others))):
            if self.h == h:  # p may decide on the way: the rest belongs to the old height
                self._vote(kind, self.others[(start + i) % len(self.others)], r, label)

    @rule(
        kind=st.sampled_from([ref.PREVOTE, ref.PRECOMMIT]),
        nil_voters=st.sets(st.integers(0, 6), max_size=2),
        cut=st.integers(0, 6),
    )
    def others_vote_in_round(self, kind: str, nil_voters: set[int], cut: int) -> None:
        """The other validators vote in p's round as honest ones might: for the round's
        proposal, or nil (`nil_voters`), one by one; from the `cut`-th vote on, the first timer
        of p's step to be pending fires at once (the later votes arrive just too late: after a
        prevote timeout, a polka only updates validValue, L42)."""
        r = self.ref.round
        proposal = self.ref.proposals.get((self.h, r))
        value = "nil" if proposal is None else self._label(proposal.value)
        h = self.h
        timed_out = False
        for i, sender in enumerate(self.others):
            if self.h != h:
                return  # p decided on the way: the rest belongs to the old height
            if i >= cut and not timed_out:
                timed_out = self.fire_pending(self.ref.step)
            if self.h == h:
                self._vote(kind, sender, r, "nil" if i in nil_voters else value)

    @rule(kind=st.sampled_from([ref.PREVOTE, ref.PRECOMMIT]))
    def round_fails(self, kind: str) -> None:
        """Every other validator votes nil in p's round (they saw no good proposal in time), so
        the round ends by L44 or the precommit timeout and p moves on."""
        h, r = self.h, self.ref.round
        for sender in self.others:
            if self.h == h:
                self._vote(kind, sender, r, "nil")

    @precondition(lambda self: self.h > 1)
    @rule(
        kind=st.sampled_from([ref.PREVOTE, ref.PRECOMMIT]),
        sender=st.integers(0, 6),
        round_=st.integers(0, 3),
        value=st.sampled_from(("nil", *FIXED)),
    )
    def vote_of_previous_height(self, kind: str, sender: int, round_: int, value: str) -> None:
        """A late vote of the previous height: no rule of this height may count it."""
        h = self.h - 1
        who = self.others[sender % len(self.others)]
        block_id = self.worlds[h].blocks[value].id() if value != "nil" else NIL
        key = self.world.keys[who]
        sig = _sign(key, vote_sign_bytes(CHAIN_ID, VOTE_TYPE[kind], h, round_, block_id))
        message = Vote(VOTE_TYPE[kind], h, round_, block_id, key.public_key, sig)
        abstract = ref.Vote(kind, h, round_, None if block_id == NIL else block_id, who)
        self._step(
            f"{kind.upper()} h{h} r{round_} {value} from v{who} (late)",
            lambda: self._engine(VoteReceived(message)),
            lambda: self.ref.receive(abstract),
        )

    def _vote(self, kind: str, sender: int, r: int, label: str) -> None:
        block_id = self.id_of[label]
        previous = self.sent_by.setdefault((kind, self.h, r, sender), block_id)
        if previous != block_id:
            if sender in self.equivocators:
                self._note("equivocation received")
            else:
                block_id, label = previous, self._label(previous)
        key = self.world.keys[sender]
        sig = _sign(key, vote_sign_bytes(CHAIN_ID, VOTE_TYPE[kind], self.h, r, block_id))
        message = Vote(VOTE_TYPE[kind], self.h, r, block_id, key.public_key, sig)
        abstract = ref.Vote(kind, self.h, r, None if block_id == NIL else block_id, sender)
        self._step(
            f"{kind.upper()} r{r} {label} from v{sender}",
            lambda: self._engine(VoteReceived(message)),
            lambda: self.ref.receive(abstract),
        )

    def fire_pending(self, kind: str) -> bool:
        """p's timer of `kind` for its current round fires, if it is scheduled and pending."""
        key = (kind, self.h, self.ref.round)
        if key not in {(t.kind, t.height, t.round) for t in self._pending_timers()}:
            return False
        self.fired.add(key)
        self._fire(kind, self.h, self.ref.round, "")
        return True

    def _pending_timers(self) -> list[ref.Timer]:
        """Scheduled timers that have not fired, of this height and earlier ones."""
        timers = {(t.kind, t.height, t.round): t for t in self.ref.timers}
        return [t for key, t in sorted(timers.items()) if key not in self.fired]

    @rule(pick=st.integers(0, 15), kind=st.sampled_from(TIMER_KINDS), ahead=AHEAD)
    def timeout(self, pick: int, kind: str, ahead: int) -> None:
        """Mostly a scheduled timeout fires (any of them: timers of earlier rounds fire late);
        otherwise one of another round than p's.  Never an unscheduled one of p's round: the
        engine relies on its shell for that, as the paper's timers are only ever scheduled."""
        timers = self._pending_timers()
        if pick < 13 and timers:
            t = timers[pick % len(timers)]
            self.fired.add((t.kind, t.height, t.round))
            self._fire(t.kind, t.height, t.round, "" if t.height == self.h else " (late)")
            return
        r = self._round(ahead)
        if r == self.ref.round:
            r += 1
        self._fire(kind, self.h, r, " (not p's round)")

    def _fire(self, kind: str, h: int, r: int, note: str) -> None:
        handler = {
            ref.PROPOSE: self.ref.on_timeout_propose,
            ref.PREVOTE: self.ref.on_timeout_prevote,
            ref.PRECOMMIT: self.ref.on_timeout_precommit,
        }[kind]
        self._step(
            f"timeout {kind} r{r}{note}",
            lambda: self._engine(TimeoutFired(h, r, STEP_OF_KIND[kind])),
            lambda: handler(h, r),
        )


def _settings(examples: int, steps: int, shrink: bool) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,  # the same examples every run: CI failures reproduce locally
        database=None,
        deadline=None,
        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.generate,),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=False,
    )


# About 10 s of CPU; each mutant is found within a few hundred examples (see ARCHITECTURE).
MAIN = _settings(500, 50, shrink=True)
MUTANT_SEARCH = _settings(1_000, 50, shrink=False)


def _machine(mutant: str) -> type[EngineVersusReference]:
    return type(f"EngineVersusReference_{mutant}", (EngineVersusReference,), {"mutant": mutant})


Machine = EngineVersusReference
A, B = 8, 9  # value indices naming A and B (>= COHERENT: taken from the list, which starts A, B)
POL = 0  # a value index naming "the value proposed in the POL round"


def _n4(m: Machine) -> None:
    """4 validators of power 10; p = v3, so v0, v1, v2 propose rounds 0, 1, 2."""
    m.setup(shape="n4", me=3, app_valid=(True, True, True), byzantine=set())


def _locked_on_a_in_round_0(m: Machine) -> None:
    _n4(m)
    m.proposal(ahead=0, back=0, value=A, timely=True, again=False)
    m.others_vote_in_round(kind=ref.PREVOTE, nil_voters=set(), cut=6)


def _to_next_round(m: Machine) -> None:
    m.round_fails(kind=ref.PRECOMMIT)
    m.fire_pending(ref.PRECOMMIT)


def _valid_without_lock_in_round_0(m: Machine) -> None:
    """p prevotes A; the prevote timeout fires after v0's nil and v1's A; v2's A then makes the
    polka, with p already in precommit."""
    _n4(m)
    m.proposal(ahead=0, back=0, value=A, timely=True, again=False)
    m.others_vote_in_round(kind=ref.PREVOTE, nil_voters={0}, cut=2)


def _relock(m: Machine) -> None:
    _locked_on_a_in_round_0(m)
    _to_next_round(m)
    m.proposal(ahead=0, back=0, value=B, timely=True, again=False)  # nil: locked on A
    m.others_vote_in_round(kind=ref.PREVOTE, nil_voters=set(), cut=6)  # polka B: relock


def _unlock_by_pol(m: Machine) -> None:
    _locked_on_a_in_round_0(m)
    _to_next_round(m)
    m.proposal(ahead=0, back=0, value=B, timely=True, again=False)  # nil: locked on A
    _to_next_round(m)
    m.votes(kind=ref.PREVOTE, sender=0, ahead=-1, value=POL, count=3)  # late polka B at r1
    m.proposal(ahead=0, back=1, value=POL, timely=True, again=False)  # B, vr 1 >= locked 0


def _pol_below_the_lock(m: Machine) -> None:
    _valid_without_lock_in_round_0(m)  # polka A at r0
    _to_next_round(m)
    m.proposal(ahead=0, back=0, value=B, timely=True, again=False)
    m.others_vote_in_round(kind=ref.PREVOTE, nil_voters=set(), cut=6)  # locked on B at r1
    _to_next_round(m)
    m.proposal(ahead=0, back=2, value=POL, timely=True, again=False)  # A, vr 0 < locked 1


def _late_decision(m: Machine) -> None:
    _n4(m)
    m.proposal(ahead=0, back=0, value=A, timely=True, again=False)
    m.round_fails(kind=ref.PREVOTE)  # precommit nil (L44); the precommits of the others: late
    m.votes(kind=ref.PREVOTE, sender=0, ahead=1, value=A, count=3)  # f+1 in round 1: L55
    m.votes(kind=ref.PRECOMMIT, sender=0, ahead=-1, value=POL, count=3)  # 2f+1 for A at r0


def _untimely(m: Machine) -> None:
    _n4(m)
    m.proposal(ahead=0, back=0, value=A, timely=False, again=False)


SCENARIOS: list[tuple[Callable[[Machine], None], str]] = [
    (_valid_without_lock_in_round_0, "L42"),
    (_relock, "locked, then locked on another value"),
    (_relock, "prevoted nil on a proposal of another value than the lock"),
    (_unlock_by_pol, "prevoted a POL re-proposal while locked on another value"),
    (_pol_below_the_lock, "L32"),
    (_untimely, "prevoted nil on an untimely proposal"),
    (_late_decision, "decided a round below the current one"),
]


def test_every_rare_situation_has_a_scenario() -> None:
    assert set(RARELY) <= {situation for _, situation in SCENARIOS}


@pytest.mark.parametrize(("scenario", "situation"), SCENARIOS)
def test_scenario_reaches_a_rare_situation_in_step(
    scenario: Callable[[Machine], None], situation: str
) -> None:
    """Hand-made runs of the same machine (every step compared) through the rarest paths of the
    lock rules, so they are checked on every run whatever the random search finds."""
    machine = Machine()
    scenario(machine)
    assert situation in machine.seen, machine.trace


def test_engine_follows_the_reference_step_by_step() -> None:
    COVERAGE.clear()
    run_state_machine_as_test(EngineVersusReference, settings=MAIN)
    missing = [x for x in REQUIRED if COVERAGE[x] == 0]
    assert not missing, f"the generated inputs never reached: {missing} ({dict(COVERAGE)})"


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m and m not in UNOBSERVABLE])
def test_model_based_test_catches_mutant(mutant: str) -> None:
    """Checker strength: every observable mutant diverges from the reference within a bounded,
    deterministic set of examples (no shrinking: finding one is the point)."""
    with pytest.raises(Divergence):
        run_state_machine_as_test(_machine(mutant), settings=MUTANT_SEARCH)


def test_unobservable_mutants_are_named_engine_mutants() -> None:
    assert set(UNOBSERVABLE) <= set(MUTANTS)
