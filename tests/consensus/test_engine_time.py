"""Block time is proposer-based (PBTS): a proposer cannot pick it freely.

A fresh proposal (L22, no POL round) gets a prevote only if it is timely for the receiver:
    time - PRECISION <= received <= time + MSGDELAY(round) + PRECISION
with MSGDELAY growing 10% per round; a re-proposal with a POL round (L28) keeps its time and is
not checked.  A proposer that cannot produce a valid, timely time proposes nothing.  Nothing a
peer does about time raises an exception.
"""

import heapq
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey, sha256
from consensus.engine import (
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
    ProposalContent,
    ProposalReceived,
    RequestProposal,
    ScheduleTimeout,
    Start,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.types import (
    NIL,
    PREVOTE,
    TIME_MS_MAX,
    Block,
    Commit,
    CommitSig,
    Proposal,
    Vote,
)
from tests.consensus.harness import (
    CHAIN,
    KEYS,
    Node,
    make_block,
    others,
    precommit,
    prevote,
    proposal,
    proposer,
    started_node,
)

CONFIG = EngineConfig()  # precision 500 ms, message delay 2,000 ms
PRECISION = CONFIG.timestamp_precision_ms
DELAY = CONFIG.message_delay_ms
YEAR_MS = 365 * 24 * 3600 * 1000

BLOCK = make_block(proposer(0))  # block time CHAIN.last_time_ms + 1_000 = 999
T = BLOCK.header.time_ms


def _prevote_for(received_ms: int, round_: int = 0, block: Block = BLOCK) -> list[bytes]:
    node = started_node(proposer(3))
    while node.state.round < round_:
        r = node.state.round
        node.feed(TimeoutFired(1, r, STEP_PROPOSE), TimeoutFired(1, r, 1), TimeoutFired(1, r, 2))
    p = proposal(round_, make_block(proposer(round_), block.txs))
    node.feed(ProposalReceived(p, received_ms))
    return node.votes(PREVOTE, round_)


TIMELINESS = [
    ("received at the block time", T, True),
    ("received up to PRECISION before the block time (clocks differ)", T - PRECISION, True),
    ("received earlier than that: the proposer's clock runs ahead", T - PRECISION - 1, False),
    ("received within MSGDELAY + PRECISION after", T + DELAY + PRECISION, True),
    ("received later than that: an old time", T + DELAY + PRECISION + 1, False),
    ("received a year after the block time", T + YEAR_MS, False),
    ("reception time unknown (-1: old WAL record, no clock): timely", -1, True),
]


@pytest.mark.parametrize(
    ("what", "received_ms", "timely"), TIMELINESS, ids=[w for w, _, _ in TIMELINESS]
)
def test_l22_prevotes_a_fresh_block_only_if_timely(
    what: str, received_ms: int, timely: bool
) -> None:
    votes = _prevote_for(received_ms)
    block_id = make_block(proposer(0), BLOCK.txs).id()
    assert votes == ([block_id] if timely else [NIL]), what


def test_message_delay_is_relaxed_by_the_round_so_a_late_network_still_decides() -> None:
    """10% per round in integers: an old time that round 0 rejects is accepted later."""
    assert [CONFIG.message_delay_at_ms(r) for r in (0, 1, 2, 10)] == [2_000, 2_200, 2_420, 5_187]
    late = T + 3_000 + PRECISION  # 1 s past round 0's bound
    assert _prevote_for(late, round_=0) == [NIL]
    block_5 = make_block(proposer(5), BLOCK.txs)
    assert _prevote_for(late, round_=5, block=block_5) == [block_5.id()]  # MSGDELAY(5) = 3,221


def test_message_delay_growth_is_capped_and_cheap_for_huge_rounds() -> None:
    assert CONFIG.message_delay_at_ms(1 << 20) == TIME_MS_MAX


def test_l28_reproposal_with_pol_is_not_checked_for_timeliness() -> None:
    """PBTS: a value keeps the time 2f+1 prevoted when it was fresh (here round 1)."""
    node = started_node(proposer(3))
    for r in (0, 1):
        node.feed(TimeoutFired(1, r, 0), TimeoutFired(1, r, 1), TimeoutFired(1, r, 2))
    value = make_block(proposer(1), (b"v=1",))
    node.receive(*(prevote(k, 1, value.id()) for k in others(node)))
    node.feed(ProposalReceived(proposal(2, value, pol_round=1), T + YEAR_MS))
    assert node.votes(PREVOTE, 2) == [value.id()]


def test_the_same_reproposal_without_pol_is_checked() -> None:
    """The row above can fail: the identical late reception at L22 gets nil."""
    node = started_node(proposer(3))
    for r in (0, 1):
        node.feed(TimeoutFired(1, r, 0), TimeoutFired(1, r, 1), TimeoutFired(1, r, 2))
    value = make_block(proposer(2), (b"v=1",))
    node.feed(ProposalReceived(proposal(2, value), T + YEAR_MS))
    assert node.votes(PREVOTE, 2) == [NIL]


# ---- the proposer's own time ----------------------------------------------------------------


def _chain_after_block_at(time_ms: int) -> ChainState:
    """Height 2 after a height-1 block with `time_ms`, committed by 3 of 4 validators."""
    header = replace(make_block(proposer(0)).header, time_ms=time_ms)
    block = Block(header, (b"k=v",), (), None)
    signers = sorted(KEYS[:3], key=lambda k: CHAIN.validators.index(k.public_key) or 0)
    sigs = tuple(CommitSig(k.public_key, precommit(k, 0, block.id()).signature) for k in signers)
    return CHAIN.after_block(block, Commit(1, 0, block.id(), sigs), CHAIN.app_hash, ())


def _proposer_at_height_2(chain: ChainState) -> Node:
    me = next(k for k in KEYS if k.public_key == chain.validators.proposer(0))
    node = Node(me, Engine(CONFIG, KeySigner(me)), EngineState.for_height(chain))
    node.feed(Start())
    assert any(isinstance(e, RequestProposal) for e in node.effects)
    return node


def test_after_a_block_at_the_largest_time_the_proposer_skips_and_the_round_times_out() -> None:
    """Regression: this raised InvariantError on every honest proposer (the chain halted)."""
    node = _proposer_at_height_2(_chain_after_block_at(TIME_MS_MAX))
    node.feed(ProposalContent(2, 0, 5_000, (b"x=1",)))
    assert node.proposals() == []
    node.feed(TimeoutFired(2, 0, STEP_PROPOSE))
    assert node.votes(PREVOTE, 0) == [NIL]


def test_a_proposer_behind_the_previous_block_by_more_than_the_precision_skips() -> None:
    """Its raised time would be untimely for validators with clocks like its own."""
    node = _proposer_at_height_2(_chain_after_block_at(10_000))
    node.feed(ProposalContent(2, 0, 10_000 - PRECISION, (b"x=1",)))
    assert node.proposals() == []


def test_a_proposer_slightly_behind_raises_its_time_past_the_previous_block() -> None:
    node = _proposer_at_height_2(_chain_after_block_at(10_000))
    node.feed(ProposalContent(2, 0, 10_000 - PRECISION + 1, (b"x=1",)))
    (own,) = node.proposals()
    assert own.block.header.time_ms == 10_001


def test_a_proposer_clock_a_year_ahead_gets_nil_prevotes() -> None:
    """Regression: every validator prevoted the year-ahead block, and it committed."""
    skewed = make_block(proposer(0), (b"k=v",))
    skewed = Block(replace(skewed.header, time_ms=T + YEAR_MS), skewed.txs, skewed.evidence, None)
    node = started_node(proposer(3))
    node.feed(ProposalReceived(proposal(0, skewed), T))
    assert node.votes(PREVOTE, 0) == [NIL]


# ---- a cluster with one skewed clock ----------------------------------------------------------

LINK_MS = 50
CLUSTER_KEYS = [PrivateKey.from_label(f"pbts-{i}") for i in range(4)]


def _run_cluster(clock_offsets_ms: list[int], heights: int) -> tuple[list[list[Block]], int]:
    """Four engines on a virtual clock, links of 50 ms; node i's clock reads now + offset[i].
    Returns the blocks each decided and the virtual time at the end."""
    genesis = Genesis("pbts", tuple(GenesisValidator(k.public_key, 1) for k in CLUSTER_KEYS))
    chain = ChainState.from_genesis(genesis, b"\0" * 32)
    engines = [Engine(CONFIG, KeySigner(k)) for k in CLUSTER_KEYS]
    states = [EngineState.for_height(chain) for _ in CLUSTER_KEYS]
    decided: list[list[Block]] = [[] for _ in CLUSTER_KEYS]
    events: list[tuple[int, int, int, Input]] = []
    seq = 0

    def at(when: int, i: int, inp: Input) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, i, inp))

    for i in range(4):
        at(0, i, Start())
    now = 0
    while events and min(len(d) for d in decided) < heights:
        now, _, i, inp = heapq.heappop(events)
        states[i], effects = engines[i].apply(states[i], inp)
        for e in effects:
            match e:
                case Broadcast(Proposal() as p):
                    for j in range(4):
                        if j != i:
                            received = now + LINK_MS + clock_offsets_ms[j]
                            at(now + LINK_MS, j, ProposalReceived(p, received))
                case Broadcast(Vote() as v):
                    for j in range(4):
                        if j != i:
                            at(now + LINK_MS, j, VoteReceived(v))
                case ScheduleTimeout(h, r, step, duration_ms):
                    at(now + duration_ms, i, TimeoutFired(h, r, step))
                case RequestProposal(h, r, _):
                    clock = now + clock_offsets_ms[i]
                    at(now, i, ProposalContent(h, r, clock, (f"h{h}".encode(),)))
                case ValidateBlock(h, block, _):
                    at(now, i, BlockValidated(h, block.id(), True))
                case Decide(h, block, _, _):
                    decided[i].append(block)
                    at(now, i, BlockExecuted(h, block.id(), sha256(block.id())))
                case _:
                    pass
    return decided, now


def test_one_clock_a_year_ahead_cannot_move_chain_time() -> None:
    """Regression: each time the skewed validator proposed, chain time jumped a year for good."""
    decided, end_ms = _run_cluster([0, 0, 0, YEAR_MS], heights=12)
    chain = decided[0][:12]
    assert len(chain) == 12
    assert all(d[:12] == chain for d in decided)
    times = [b.header.time_ms for b in chain]
    assert times == sorted(set(times))  # strictly increasing
    assert times[-1] <= end_ms + PRECISION  # never ahead of the honest clocks
    proposers = {b.header.proposer for b in chain}
    assert CLUSTER_KEYS[3].public_key not in proposers  # its year-ahead blocks never commit


def test_synchronized_clocks_commit_every_height_in_round_0() -> None:
    """The cluster above is not starved by PBTS itself: with good clocks nothing is nil."""
    decided, end_ms = _run_cluster([0, 0, 0, 0], heights=8)
    assert len(decided[0]) >= 8
    assert end_ms < 8 * 1_000  # a height takes a few links, not a propose timeout


@settings(max_examples=150, deadline=None)
@given(
    last_time_ms=st.integers(0, TIME_MS_MAX),
    clock_ms=st.integers(-(1 << 63), 1 << 63),
)
def test_the_proposer_never_raises_whatever_the_previous_time_and_its_clock(
    last_time_ms: int, clock_ms: int
) -> None:
    """It proposes a time past the previous block's, valid and timely by its clock, or nothing."""
    chain = replace(_chain_after_block_at(1_000), last_time_ms=last_time_ms)
    me = next(k for k in KEYS if k.public_key == chain.validators.proposer(0))
    node = Node(me, Engine(CONFIG, KeySigner(me)), EngineState.for_height(chain))
    node.feed(Start(), ProposalContent(2, 0, clock_ms, (b"x=1",)))
    for p in node.proposals():
        time_ms = p.block.header.time_ms
        assert last_time_ms < time_ms <= TIME_MS_MAX
        assert CONFIG.timely(time_ms, clock_ms, 0)


@settings(max_examples=150, deadline=None)
@given(
    time_ms=st.integers(0, TIME_MS_MAX),
    received_ms=st.integers(-(1 << 63), 1 << 63),
    round_=st.integers(0, 70),
)
def test_any_block_time_and_reception_gives_a_prevote_never_an_exception(
    time_ms: int, received_ms: int, round_: int
) -> None:
    node = started_node(proposer(3))
    while node.state.round < round_:
        r = node.state.round
        node.feed(TimeoutFired(1, r, 0), TimeoutFired(1, r, 1), TimeoutFired(1, r, 2))
    block = make_block(proposer(round_))
    block = Block(replace(block.header, time_ms=time_ms), block.txs, (), None)
    node.feed(ProposalReceived(proposal(round_, block), received_ms))
    timely = CONFIG.timely(time_ms, received_ms, round_)
    assert node.votes(PREVOTE, round_) == [block.id() if timely else NIL]
