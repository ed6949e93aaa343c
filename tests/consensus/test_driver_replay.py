"""Replay restores exactly: the one consensus driver, killed at any durability boundary (a WAL
append, a sync, a store write, a background store completion) with any torn tail, comes back
with the engine state it had (lock, valid value, vote sets, own votes and proposal, step) as far
as it was durable.  Runs the real Driver over the real WAL bytes (consensus/driver/memory.py).
"""

import copy
from dataclasses import dataclass, field, fields
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.app import BlockInfo, FinalizeResult
from consensus.driver.driver import Driver, DriverConfig
from consensus.driver.memory import MemoryStore, MemoryWal
from consensus.driver.ports import Decided, Message, Peer, Ports
from consensus.driver.walformat import decode_wal, parse_end_height
from consensus.engine import (
    STEP_COMMIT,
    STEP_PRECOMMIT,
    STEP_PROPOSE,
    ChainState,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    TimeoutFired,
)
from consensus.kvapp import KVApp
from consensus.types import NIL, PRECOMMIT, PREVOTE, Block, DuplicateVoteEvidence, Proposal, Vote
from tests.consensus.harness import CHAIN, GENESIS, KEYS, make_block, proposer, vote

# ---- a driver on in-memory ports ----------------------------------------------------------------


class Crash(Exception):
    pass


@dataclass
class Rig:
    """One validator's durable state (WAL bytes, store) and its current driver."""

    me: int
    wal: MemoryWal = field(default_factory=lambda: MemoryWal(rotate_bytes=1 << 30))
    store: MemoryStore = field(default_factory=MemoryStore)
    sent: list[Message] = field(default_factory=list)
    refused: list[tuple[int, int, int]] = field(default_factory=list)
    crash_at: int = -1  # the boundary (counted from 0) to die at; -1: never
    boundaries: int = 0
    driver: Driver | None = None
    app: KVApp = field(default_factory=KVApp)

    def boundary(self, name: str) -> None:
        self.boundaries += 1
        if self.boundaries - 1 == self.crash_at:
            raise Crash(name)

    def boot(self, driver_class: type[Driver] = Driver) -> Driver:
        self.wal.boundary = self.boundary
        self.store.boundary = self.boundary
        self.app = KVApp()
        app_hash, _ = self.app.init_chain(GENESIS)
        chain = ChainState.from_genesis(GENESIS, app_hash)
        for d in self.store.durable:
            self.app.finalize_block(d.block.txs, d.info)
            self.app.commit()
            chain = d.chain_after
        ports = Ports(
            wal=self.wal,
            store=self.store,
            app=_App(self),
            net=_Net(self),
            timers=_Timers(),
            clock=_Clock(self),
            telemetry=_Telemetry(self),
            penalizer=_Penalizer(),
        )
        engine = Engine(EngineConfig(), KeySigner(KEYS[self.me]))
        self.driver = driver_class(engine, ports, DriverConfig(), chain)
        return self.driver

    def start(self, driver_class: type[Driver] = Driver) -> Driver:
        driver = self.boot(driver_class)
        driver.recover(self.wal.open())
        return driver


class _App:
    def __init__(self, rig: Rig) -> None:
        self._rig = rig

    def prepare(self, info: BlockInfo) -> tuple[bytes, ...]:
        return (f"mine={info.height}".encode(),)

    def validate(self, block: Block, info: BlockInfo) -> bool:
        return b"bad=1" not in block.txs

    def finalize(self, block: Block, info: BlockInfo) -> FinalizeResult:
        return self._rig.app.finalize_block(block.txs, info)

    def commit(self, block: Block) -> None:
        self._rig.app.commit()

    def pending_updates(self) -> int:
        return 0

    def snapshot(self) -> bytes:
        return b""


class _Net:
    def __init__(self, rig: Rig) -> None:
        self._rig = rig

    def broadcast(self, message: Message) -> None:
        self._rig.sent.append(message)

    def send(self, peer: Peer, message: Message) -> None:
        return None

    def behind(self, height: int) -> None:
        return None


class _Timers:
    def schedule(self, delay_ms: int, inp: Input) -> None:
        return None  # the tests fire timeouts themselves


class _Clock:
    """A clock that agrees with the harness's block times (1 s after the previous block)."""

    def __init__(self, rig: Rig) -> None:
        self._rig = rig

    def now_ms(self) -> int:
        driver = self._rig.driver
        return 1_000 if driver is None else driver.state.chain.last_time_ms + 1_000


class _Telemetry:
    def __init__(self, rig: Rig) -> None:
        self._rig = rig

    def signed(self, message: Proposal | Vote, replayed: bool) -> None:
        return None

    def sign_refused(self, height: int, round_: int, step: int) -> None:
        self._rig.refused.append((height, round_, step))

    def round_started(self, height: int, round_: int, proposer: bytes) -> None:
        return None

    def evidence_found(self, evidence: DuplicateVoteEvidence) -> None:
        return None

    def proposal_rejected(self, height: int) -> None:
        return None

    def committed(self, decided: Decided) -> None:
        return None

    def replayed(self, height: int, records: int) -> None:
        return None


class _Penalizer:
    def penalize(self, peer: Peer | None, reason: str) -> None:
        return None


def comparable(state: EngineState) -> dict[str, Any]:
    """Everything of the engine's state but the evidence pool (gossip, re-sent by peers).  A
    reception time of -1 means "unknown", as an absent one does (the engine reads both as -1):
    our own proposal has none live and -1 when replayed."""
    out = {
        f.name: copy.deepcopy(getattr(state, f.name))
        for f in fields(EngineState)
        if f.name != "evidence_pool"
    }
    out["proposal_received_ms"] = {r: t for r, t in state.proposal_received_ms.items() if t != -1}
    return out


# ---- the scenario of the restarted validator that forgot its lock -------------------------------


def _me_not_proposing() -> int:
    """A validator that proposes in neither round 0 nor round 1."""
    busy = {proposer(0).public_key, proposer(1).public_key}
    return next(i for i, k in enumerate(KEYS) if k.public_key not in busy)


def test_a_restarted_validator_keeps_its_lock_its_votes_and_refuses_to_unlock() -> None:
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    block = make_block(proposer(0))
    others = [k for i, k in enumerate(KEYS) if i != me]
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    # We prevoted and, with 3 of 4 prevotes, locked the block and precommitted it.
    before = comparable(driver.state)
    assert driver.state.locked_value == block.id()
    assert driver.state.step == STEP_PRECOMMIT
    # kill -9: nothing is lost that was synced (the precommit was sent, so it was synced).
    restarted = rig.start()
    assert comparable(restarted.state) == before
    assert restarted.state.locked_round == 0
    index = restarted.state.chain.validators.index(KEYS[me].public_key)
    assert index in restarted.state.prevotes[0].votes  # our own prevote counts again
    assert index in restarted.state.precommits[0].votes
    assert rig.refused == []
    # Round 1 brings a fresh proposal without a proof of lock: a locked validator prevotes nil.
    restarted.feed(TimeoutFired(1, 0, STEP_PRECOMMIT))
    other = make_block(proposer(1), txs=(b"other=1",))
    rig.sent.clear()
    restarted.receive(_proposal(1, other), None)
    prevotes = [m for m in rig.sent if isinstance(m, Vote) and m.type == PREVOTE]
    assert [v.block_id for v in prevotes] == [NIL]


# ---- the crash between a decision and its background store ---------------------------------------


def test_a_crash_before_the_block_is_durable_replays_the_decided_height() -> None:
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    block = make_block(proposer(0))
    others = [k for i, k in enumerate(KEYS) if i != me]
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id()), None)
    # Height 1 is decided and executed; its block went to the (background) store writer, and
    # height 2 began: we prevote nil on its propose timeout.
    assert driver.height == 2
    driver.feed(TimeoutFired(2, 0, STEP_PROPOSE))
    before = comparable(driver.state)
    # Crash before the writer finished: the store has nothing.
    rig.store.crash(completed=False)
    assert rig.store.durable == []
    restarted = rig.start()
    assert restarted.height == 2
    assert [d.block.id() for d in rig.store.blocks] == [block.id()]  # decided again, stored
    assert comparable(restarted.state) == before
    assert rig.refused == []  # no sign_refused at (2, 0, 0) / (2, 0, 1): nothing was lost
    assert _end_heights(rig.wal) == []  # the marker of 1 waits for its store


def test_the_end_height_marker_follows_the_durable_store() -> None:
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    block = make_block(proposer(0))
    others = [k for i, k in enumerate(KEYS) if i != me]
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    rig.store.settle()  # nothing pending yet: no marker either
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id()), None)
    assert _end_heights(rig.wal) == []
    rig.store.settle()  # the writer finished; the next decision (or height start) marks it
    driver.feed(TimeoutFired(2, 0, STEP_PROPOSE))
    driver.close()
    assert _end_heights(rig.wal) == [1]


def _end_heights(wal: MemoryWal) -> list[int]:
    return [h for p in wal.open() if (h := parse_end_height(p)) is not None]


def _proposal(round_: int, block: Block, chain: ChainState = CHAIN) -> Proposal:
    from tests.consensus.harness import proposal

    return proposal(round_, block, height=chain.height)


# ---- the property: any crash point, any torn tail -----------------------------------------------


class Recording(Driver):
    """The real driver, recording its state after every step and where its input record ended
    (a step cut short by the crash included: its record may have survived)."""

    steps: list[tuple[int | None, dict[str, Any]]]
    rig: Rig

    def _step(self, inp: Input, peer: Peer | None) -> None:
        before = len(self.rig.wal.data)
        try:
            super()._step(inp, peer)
        finally:
            self.steps.append((_input_record_end(self.rig.wal, before), comparable(self.state)))


def _input_record_end(wal: MemoryWal, start: int) -> int | None:
    """The end offset of the input record appended at `start` (txs come first), if any."""
    from consensus.driver.walformat import scan

    records, _ = scan(bytes(wal.data), "test")
    offset = 8
    for payload in records:
        end = offset + 8 + len(payload)
        if offset >= start and parse_end_height(payload) is None:
            tag = type(decode_wal(payload)).__name__
            if tag not in ("TxRecord", "LastSignedRecord", "OwnMessage"):
                return end
        offset = end
    return None


Action = tuple[str, int, int, int]

ACTIONS = st.tuples(
    st.sampled_from(["proposal", "prevote", "precommit", "timeout"]),
    st.integers(0, 3),  # signer (votes) / block variant (proposals) / step (timeouts)
    st.integers(0, 2),  # round
    st.integers(0, 2),  # block variant (0: nil for votes)
)


def _blocks(chain: ChainState, round_: int) -> list[Block]:
    key = proposer(round_, chain)
    return [
        make_block(key, txs=(f"v{variant}={chain.height}".encode(),), chain=chain)
        for variant in range(3)
    ]


def _play(driver: Driver, me: int, action: Action) -> None:
    kind, who, round_, variant = action
    chain = driver.state.chain
    if kind == "timeout":
        driver.feed(TimeoutFired(chain.height, round_, who % 3))
        return
    if kind == "proposal":
        block = _blocks(chain, round_)[who % 3]
        if proposer(round_, chain).public_key != KEYS[me].public_key:
            driver.receive(_proposal(round_, block, chain), None)
        return
    if who == me:
        return
    block_id = NIL if variant == 0 else _blocks(chain, round_)[variant].id()
    vote_type = PREVOTE if kind == "prevote" else PRECOMMIT
    driver.receive(vote(KEYS[who], vote_type, round_, block_id, height=chain.height), None)


def _decide_helpers(me: int) -> list[Action]:
    """A tail that tends to decide a height, so runs cross heights."""
    return [
        ("proposal", 1, 0, 0),
        *(("prevote", k, 0, 1) for k in range(4) if k != me),
        *(("precommit", k, 0, 1) for k in range(4) if k != me),
    ]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    me=st.integers(0, 3),
    actions=st.lists(ACTIONS, max_size=25),
    decide_first=st.booleans(),
    crash_at=st.integers(0, 400),
    torn=st.integers(0, 400),
    store_completed=st.booleans(),
)
def test_replay_after_any_crash_point_restores_the_durable_state(
    me: int,
    actions: list[Action],
    decide_first: bool,
    crash_at: int,
    torn: int,
    store_completed: bool,
) -> None:
    rig = Rig(me, crash_at=crash_at)
    driver = rig.boot(Recording)
    assert isinstance(driver, Recording)
    driver.steps = []
    driver.rig = rig
    script = [*_decide_helpers(me), *actions] if decide_first else actions
    try:
        driver.recover(rig.wal.open())
        for action in script:
            _play(driver, me, action)
            rig.store.settle()
    except Crash:
        pass
    steps = driver.steps
    rig.crash_at = -1
    rig.wal.crash(torn)
    rig.store.crash(store_completed)
    kept = len(rig.wal.data)
    restarted = rig.boot()
    restarted.replay(rig.wal.open())

    # The state after the last input whose record survived, and after the steps that follow
    # from it without a record of their own (BlockExecuted, the start of the next height).
    last = -1
    for i, (record_end, _) in enumerate(steps):
        if record_end is not None and record_end <= kept:
            last = i
    j = max(last, 0)
    while j + 1 < len(steps) and steps[j + 1][0] is None:
        j += 1
    expected = steps[j][1]
    stored = rig.store.durable_height()
    got = comparable(restarted.state)
    if expected["chain"].height <= stored:
        # The store ran ahead of the WAL's durable prefix: the state of the next height's start.
        first = next(i for i, (_, s) in enumerate(steps) if s["chain"].height == stored + 1)
        while first + 1 < len(steps) and steps[first + 1][0] is None:
            first += 1
        expected = steps[first][1]
        expected.pop("last_signed")
        got.pop("last_signed")
    if expected["step"] == STEP_COMMIT:
        # Decided, and the crash came before the block was executed: replay executes it.
        decided = expected["decided"]
        assert got["chain"].height == expected["chain"].height + 1
        assert got["chain"].last_block_id == decided.id()
        assert (got["round"], got["locked_round"]) == (0, -1)
    else:
        assert got == expected
    restarted.resume()  # and it goes on from there


def test_replay_never_rotates_away_the_records_it_is_replaying() -> None:
    # Height 1's block died in the writer; the log (over its budget) holds heights 1 and 2.
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    block = make_block(proposer(0))
    others = [k for i, k in enumerate(KEYS) if i != me]
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id()), None)
    driver.feed(TimeoutFired(2, 0, STEP_PROPOSE))  # our prevote at height 2
    rig.store.crash(completed=False)
    assert rig.store.durable == []
    rig.wal.rotate_bytes = 1  # from now on always over budget
    first = comparable(rig.start().state)
    rig.store.crash(completed=True)  # the re-decided block 1 is durable this time
    second = rig.start()  # a second crash right after the first replay
    assert comparable(second.state) == first
    assert second.state.chain.height == 2
    assert rig.refused == []
