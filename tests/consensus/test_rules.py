"""One table row per upon-rule of Algorithm 1 (arXiv 1807.04938), plus POL, relock, no-unlock.

Every row starts a fresh engine at height 1 ("me", 4 validators of power 10), feeds it signed
messages and checks the one thing the paper says that rule does.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from consensus.engine import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Decide,
    EngineConfig,
    ProposalContent,
    RequestProposal,
    RoundStarted,
    ScheduleTimeout,
    TimeoutFired,
)
from consensus.engine.effects import ValidateBlock
from consensus.types import NIL, PRECOMMIT, PREVOTE
from tests.consensus.harness import (
    Node,
    make_block,
    others,
    precommit,
    prevote,
    proposal,
    proposer,
    started_node,
)

V0 = make_block(proposer(0), (b"a=0",))  # the round-0 proposer's block
V1 = make_block(proposer(1), (b"b=1",))  # a different value, proposed in round 1


def _three_prevotes(node: Node, round_: int, block_id: bytes) -> None:
    node.receive(*(prevote(k, round_, block_id) for k in others(node)))


def _lock_on_v0_in_round_0(node: Node) -> None:
    node.receive(proposal(0, V0))
    _three_prevotes(node, 0, V0.id())


def _to_round(node: Node, round_: int) -> None:
    """Move to `round_` the way a stalled network does: timeouts of every step."""
    while node.state.round < round_:
        r = node.state.round
        for step in (STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT):
            node.feed(TimeoutFired(1, r, step))


@dataclass(frozen=True)
class Row:
    rule: str
    act: Callable[[Node], object]
    expect: Callable[[Node], bool]
    # Who runs the engine: the proposer of this round of height 1.  Default 3: the rows use
    # rounds 0-2, where it proposes nothing.
    me_round: int = 3


def _last_precommit_timeout(node: Node) -> ScheduleTimeout:
    return node.timeouts(STEP_PRECOMMIT, 0)[-1]


ROWS = [
    Row(
        "L10-L21 start: non-proposer schedules timeoutPropose(0) = init",
        lambda n: None,
        lambda n: (
            [t.duration_ms for t in n.timeouts(STEP_PROPOSE, 0)] == [1_000]
            and n.state.step == STEP_PROPOSE
        ),
    ),
    Row(
        "L14-L19 proposer: getValue() then broadcast PROPOSAL(h, r, v, -1)",
        lambda n: n.feed(ProposalContent(1, 0, 5_000, (b"x=1",))),
        lambda n: (
            [(p.round, p.pol_round, p.block.txs) for p in n.proposals()] == [(0, -1, (b"x=1",))]
            and any(isinstance(e, RequestProposal) for e in n.effects)
        ),
        me_round=0,
    ),
    Row(
        "L22-L24 valid proposal, not locked: prevote id(v)",
        lambda n: n.receive(proposal(0, V0)),
        lambda n: n.votes(PREVOTE, 0) == [V0.id()] and n.state.step == STEP_PREVOTE,
    ),
    Row(
        "L22-L26 invalid proposal (app rejects): prevote nil",
        lambda n: (setattr(n, "app_valid", False), n.receive(proposal(0, V0))),
        lambda n: n.votes(PREVOTE, 0) == [NIL],
    ),
    Row(
        "L28-L30 proposal with validRound vr and 2f+1 prevotes at vr: prevote id(v)",
        lambda n: (
            _to_round(n, 2),
            _three_prevotes(n, 1, V1.id()),
            n.receive(proposal(2, V1, pol_round=1)),
        ),
        lambda n: n.votes(PREVOTE, 2) == [V1.id()],
    ),
    Row(
        "L28 without the 2f+1 prevotes at vr: no prevote yet (waits for them or the timeout)",
        lambda n: (_to_round(n, 2), n.receive(proposal(2, V1, pol_round=1))),
        lambda n: n.votes(PREVOTE, 2) == [] and n.state.step == STEP_PROPOSE,
    ),
    Row(
        "L34-L35 2f+1 prevotes of any kind: schedule timeoutPrevote(0)",
        lambda n: n.receive(
            prevote(others(n)[0], 0, NIL), prevote(others(n)[1], 0, b"\1" * 32), proposal(0, V0)
        ),
        lambda n: (
            [t.duration_ms for t in n.timeouts(STEP_PREVOTE, 0)] == [500]
            and n.state.step == STEP_PREVOTE
        ),
    ),
    Row(
        "L36-L43 proposal + 2f+1 prevotes for v in prevote step: lock, precommit, validValue",
        _lock_on_v0_in_round_0,
        lambda n: (
            n.votes(PRECOMMIT, 0) == [V0.id()]
            and (n.state.locked_value, n.state.locked_round) == (V0.id(), 0)
            and (n.state.valid_value, n.state.valid_round) == (V0.id(), 0)
        ),
    ),
    Row(
        "L36 in precommit step: validValue set, no second precommit, no lock",
        lambda n: (
            n.receive(proposal(0, V0)),
            n.feed(TimeoutFired(1, 0, STEP_PREVOTE)),  # precommits nil (L61)
            _three_prevotes(n, 0, V0.id()),
        ),
        lambda n: (
            n.votes(PRECOMMIT, 0) == [NIL]
            and n.state.locked_round == -1
            and (n.state.valid_value, n.state.valid_round) == (V0.id(), 0)
        ),
    ),
    Row(
        "L44-L46 2f+1 nil prevotes: precommit nil",
        lambda n: (n.receive(proposal(0, V0)), _three_prevotes(n, 0, NIL)),
        lambda n: n.votes(PRECOMMIT, 0) == [NIL] and n.state.step == STEP_PRECOMMIT,
    ),
    Row(
        "L47-L48 2f+1 precommits of any kind: schedule timeoutPrecommit(0)",
        lambda n: n.receive(
            precommit(others(n)[0], 0, NIL),
            precommit(others(n)[1], 0, NIL),
            precommit(others(n)[2], 0, b"\2" * 32),
        ),
        lambda n: _last_precommit_timeout(n).duration_ms == 500,
    ),
    Row(
        "L49-L54 proposal + 2f+1 precommits for v: decide v with a commit certificate",
        lambda n: (
            n.receive(proposal(0, V0)),
            n.receive(*(precommit(k, 0, V0.id()) for k in others(n))),
        ),
        lambda n: (
            [
                (e.height, e.block.id(), len(e.commit.signatures))
                for e in n.effects
                if isinstance(e, Decide)
            ]
            == [(1, V0.id(), 3)]
        ),
    ),
    Row(
        "L49 for an earlier round r < round_p: still decides",
        lambda n: (
            n.receive(proposal(0, V0)),
            _to_round(n, 2),
            n.receive(*(precommit(k, 0, V0.id()) for k in others(n))),
        ),
        lambda n: any(isinstance(e, Decide) and e.block.id() == V0.id() for e in n.effects),
    ),
    Row(
        "L55-L56 f+1 messages of a higher round: StartRound(that round)",
        lambda n: n.receive(prevote(others(n)[0], 3, NIL), precommit(others(n)[1], 3, NIL)),
        lambda n: (
            n.state.round == 3
            and any(isinstance(e, RoundStarted) and e.round == 3 for e in n.effects)
        ),
    ),
    Row(
        "L55 only f messages of a higher round: stay",
        lambda n: n.receive(prevote(others(n)[0], 3, NIL), precommit(others(n)[0], 3, NIL)),
        lambda n: n.state.round == 0,
    ),
    Row(
        "L57-L60 timeoutPropose in propose step: prevote nil",
        lambda n: n.feed(TimeoutFired(1, 0, STEP_PROPOSE)),
        lambda n: n.votes(PREVOTE, 0) == [NIL] and n.state.step == STEP_PREVOTE,
    ),
    Row(
        "L58 stale timeoutPropose (other round): ignored",
        lambda n: n.feed(TimeoutFired(1, 5, STEP_PROPOSE)),
        lambda n: n.votes(PREVOTE, 0) == [] and n.votes(PREVOTE, 5) == [],
    ),
    Row(
        "L61-L64 timeoutPrevote in prevote step: precommit nil",
        lambda n: (
            n.feed(TimeoutFired(1, 0, STEP_PROPOSE)),
            n.feed(TimeoutFired(1, 0, STEP_PREVOTE)),
        ),
        lambda n: n.votes(PRECOMMIT, 0) == [NIL] and n.state.step == STEP_PRECOMMIT,
    ),
    Row(
        "L65-L67 timeoutPrecommit: StartRound(r+1) with timeoutPropose(1) = init + delta",
        lambda n: n.feed(TimeoutFired(1, 0, STEP_PRECOMMIT)),
        lambda n: (
            n.state.round == 1 and [t.duration_ms for t in n.timeouts(STEP_PROPOSE, 1)] == [1_500]
        ),
    ),
    # ---- locking ------------------------------------------------------------------------------
    Row(
        "POL re-proposal (L15-L16): the next proposer proposes validValue with validRound",
        lambda n: (
            n.receive(proposal(0, V0)),
            _three_prevotes(n, 0, V0.id()),
            n.feed(TimeoutFired(1, 0, STEP_PRECOMMIT)),
        ),
        lambda n: (
            [(p.round, p.pol_round, p.block.id()) for p in n.proposals(1)] == [(1, 0, V0.id())]
            and not any(isinstance(e, RequestProposal) for e in n.effects)
        ),
        me_round=1,
    ),
    Row(
        "relock: locked on v in round 0, 2f+1 prevotes for v' in round 1 -> lock v' at round 1",
        lambda n: (
            _lock_on_v0_in_round_0(n),
            _to_round(n, 1),
            n.receive(proposal(1, V1)),
            _three_prevotes(n, 1, V1.id()),
        ),
        lambda n: (
            (n.state.locked_value, n.state.locked_round) == (V1.id(), 1)
            and n.votes(PRECOMMIT, 1) == [V1.id()]
            and n.votes(PREVOTE, 1) == [NIL]
        ),  # L23: it did not prevote v' itself
    ),
    Row(
        "no-unlock: locked on v, nil rounds pass, a new value without POL gets a nil prevote",
        lambda n: (_lock_on_v0_in_round_0(n), _to_round(n, 2), n.receive(proposal(2, V1))),
        lambda n: (
            (n.state.locked_value, n.state.locked_round) == (V0.id(), 0)
            and n.votes(PREVOTE, 2) == [NIL]
        ),
    ),
    Row(
        "no-unlock (L29): a POL older than the lock does not unlock",
        lambda n: (
            _to_round(n, 1),
            n.receive(proposal(1, V1)),
            _three_prevotes(n, 1, V1.id()),  # locks V1 at round 1
            _to_round(n, 3),
            _three_prevotes(n, 0, V0.id()),
            n.receive(proposal(3, V0, pol_round=0)),
        ),
        lambda n: n.state.locked_round == 1 and n.votes(PREVOTE, 3) == [NIL],
        me_round=2,
    ),
    Row(
        "unlock by a newer POL (L29 lockedRound <= vr): prevote the POL value",
        lambda n: (
            _lock_on_v0_in_round_0(n),
            _to_round(n, 2),
            _three_prevotes(n, 1, V1.id()),
            n.receive(proposal(2, V1, pol_round=1)),
        ),
        lambda n: n.votes(PREVOTE, 2) == [V1.id()],
    ),
]


def test_every_validator_proposes_once_in_rounds_0_to_3() -> None:
    assert len({proposer(r).public_key for r in range(4)}) == 4


@pytest.mark.parametrize("row", ROWS, ids=[r.rule for r in ROWS])
def test_upon_rule(row: Row) -> None:
    node = started_node(proposer(row.me_round))
    row.act(node)
    assert row.expect(node), row.rule


def test_validate_block_is_requested_once_per_block() -> None:
    node = started_node()
    node.receive(proposal(0, V0), proposal(0, V0))
    assert sum(isinstance(e, ValidateBlock) for e in node.effects) == 1


LOCK_ROWS = [r for r in ROWS if r.rule.startswith(("no-unlock", "relock"))]


@pytest.mark.parametrize("row", LOCK_ROWS, ids=[r.rule for r in LOCK_ROWS])
def test_lock_rows_fail_under_the_nolock_mutant(row: Row) -> None:
    """The locking rows can fail: with the lock check removed, they do."""
    node = started_node(proposer(row.me_round), EngineConfig(mutant="nolock"))
    row.act(node)
    assert not row.expect(node)
