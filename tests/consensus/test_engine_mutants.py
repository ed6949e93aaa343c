"""Every mutant changes what the engine does: one row per mutant, a scenario where the correct
engine satisfies `expect` and the mutant does not.  A mutant no scenario can tell apart would be
a no-op that the simulator's checker "catches" for free.

The chain here is 4 validators of power 1 (n = 3f + 1 with f = 1), so "f" and "2f" are whole
validators; "me" is the proposer of round 3 of height 1 unless a row says otherwise.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from consensus.engine import (
    MUTANTS,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Broadcast,
    ChainState,
    Decide,
    Engine,
    EngineConfig,
    EngineState,
    KeySigner,
    RestoreLastSigned,
    SignRefused,
    Start,
    TimeoutFired,
)
from consensus.engine.chain import LastSigned
from consensus.engine.config import MUTANT_DESCRIPTIONS
from consensus.kvapp import KVApp
from consensus.types import NIL, PRECOMMIT, PREVOTE, Vote, vote_sign_bytes
from tests.consensus.harness import (
    CHAIN_ID,
    KEYS,
    Node,
    key_of,
    make_block,
    precommit,
    prevote,
    proposal,
)

GENESIS = Genesis(CHAIN_ID, tuple(GenesisValidator(k.public_key, 1) for k in KEYS))
CHAIN = ChainState.from_genesis(GENESIS, KVApp().init_chain(GENESIS)[0])


def _proposer(round_: int) -> PrivateKey:
    return key_of(CHAIN.validators.proposer(round_))


V0 = make_block(_proposer(0), (b"a=0",), chain=CHAIN)
V1 = make_block(_proposer(1), (b"b=1",), chain=CHAIN)


def _others(n: Node) -> list[PrivateKey]:
    return [k for k in KEYS if k is not n.me]


def _to_round(n: Node, round_: int) -> Node:
    while n.state.round < round_:
        r = n.state.round
        for step in (STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT):
            n.feed(TimeoutFired(1, r, step))
    return n


def _decided(n: Node) -> list[bytes]:
    return [e.block.id() for e in n.effects if isinstance(e, Decide)]


def _broadcast_votes(n: Node, vote_type: int, round_: int) -> list[bytes]:
    return [
        e.message.block_id
        for e in n.effects
        if isinstance(e, Broadcast)
        and isinstance(e.message, Vote)
        and (e.message.type, e.message.round) == (vote_type, round_)
    ]


def _restore_other_prevote(n: Node) -> None:
    """After a restart: the guard says we prevoted V0 at (1, 0); the state forgot it."""
    sign_bytes = vote_sign_bytes(CHAIN_ID, PREVOTE, 1, 0, V0.id())
    n.feed(RestoreLastSigned(LastSigned(1, 0, PREVOTE, sign_bytes)))


@dataclass(frozen=True)
class Row:
    mutant: str
    scenario: str
    act: Callable[[Node], object]
    expect: Callable[[Node], bool]  # true for the correct engine, false for the mutant
    restore_first: bool = False


ROWS = [
    Row(
        "quorum2f",
        "2 of 4 prevotes for v (2f, not 2f+1): no lock",
        lambda n: (
            n.receive(proposal(0, V0, key=_proposer(0))),
            n.receive(prevote(_others(n)[0], 0, V0.id())),
        ),
        lambda n: n.state.locked_round == -1,
    ),
    Row(
        "nolock",
        "locked on v in round 0, a new value in round 2 without POL: prevote nil",
        lambda n: (
            n.receive(proposal(0, V0, key=_proposer(0))),
            n.receive(*(prevote(k, 0, V0.id()) for k in _others(n))),
            _to_round(n, 2),
            n.receive(
                proposal(2, make_block(_proposer(2), (b"c=2",), chain=CHAIN), key=_proposer(2))
            ),
        ),
        lambda n: _broadcast_votes(n, PREVOTE, 2) == [NIL],
    ),
    Row(
        "noguard",
        "restarted with LastSigned = prevote V0 at (1, 0): a nil prevote there is refused",
        lambda n: n.feed(TimeoutFired(1, 0, STEP_PROPOSE)),
        lambda n: (
            _broadcast_votes(n, PREVOTE, 0) == []
            and any(isinstance(e, SignRefused) for e in n.effects)
        ),
        restore_first=True,
    ),
    Row(
        "skip_on_f",
        "one validator (f) sends round-3 messages: stay in round 0",
        lambda n: n.receive(prevote(_others(n)[0], 3, NIL)),
        lambda n: n.state.round == 0,
    ),
    Row(
        "decide_current_round_only",
        "2f+1 precommits for v of round 0 arrive in round 2: decide v",
        lambda n: (
            n.receive(proposal(0, V0, key=_proposer(0))),
            _to_round(n, 2),
            n.receive(*(precommit(k, 0, V0.id()) for k in _others(n))),
        ),
        lambda n: _decided(n) == [V0.id()],
    ),
    Row(
        "no_precommit_nil",
        "2f+1 nil prevotes: precommit nil without waiting for the timeout",
        lambda n: (
            n.receive(proposal(0, V0, key=_proposer(0))),
            n.receive(*(prevote(k, 0, NIL) for k in _others(n))),
        ),
        lambda n: _broadcast_votes(n, PRECOMMIT, 0) == [NIL],
    ),
    Row(
        "fixed_timeouts",
        "round 1's propose timeout is init + delta",
        lambda n: n.feed(TimeoutFired(1, 0, STEP_PRECOMMIT)),
        lambda n: [t.duration_ms for t in n.timeouts(STEP_PROPOSE, 1)] == [1_500],
    ),
    Row(
        "valid_only_on_lock",
        "2f+1 prevotes for v seen in the precommit step: validValue = v (no lock)",
        lambda n: (
            n.receive(proposal(0, V0, key=_proposer(0))),
            n.feed(TimeoutFired(1, 0, STEP_PREVOTE)),
            n.receive(*(prevote(k, 0, V0.id()) for k in _others(n))),
        ),
        lambda n: (n.state.valid_value, n.state.valid_round) == (V0.id(), 0),
    ),
    Row(
        "trust_pol_round",
        "a re-proposal claiming POL round 1 without 2f+1 prevotes there: no prevote yet",
        lambda n: (_to_round(n, 2), n.receive(proposal(2, V1, pol_round=1, key=_proposer(2)))),
        lambda n: _broadcast_votes(n, PREVOTE, 2) == [] and n.state.step == STEP_PROPOSE,
    ),
]


def _node(mutant: str, row: Row) -> Node:
    me = _proposer(3)
    node = Node(
        me, Engine(EngineConfig(mutant=mutant), KeySigner(me)), EngineState.for_height(CHAIN)
    )
    if row.restore_first:
        _restore_other_prevote(node)
    node.feed(Start())
    return node


def test_every_mutant_has_a_row_and_a_description() -> None:
    assert sorted(r.mutant for r in ROWS) == sorted(m for m in MUTANTS if m)
    assert sorted(MUTANT_DESCRIPTIONS) == sorted(m for m in MUTANTS if m)
    assert all(d and "\n" not in d for d in MUTANT_DESCRIPTIONS.values())


@pytest.mark.parametrize("row", ROWS, ids=[r.mutant for r in ROWS])
def test_correct_engine_follows_the_rule(row: Row) -> None:
    node = _node("", row)
    row.act(node)
    assert row.expect(node), row.scenario


@pytest.mark.parametrize("row", ROWS, ids=[r.mutant for r in ROWS])
def test_mutant_breaks_the_rule(row: Row) -> None:
    node = _node(row.mutant, row)
    row.act(node)
    assert not row.expect(node), f"{row.mutant} is a no-op on: {row.scenario}"


@pytest.mark.parametrize("row", ROWS, ids=[r.mutant for r in ROWS])
def test_other_mutants_leave_the_rule_alone(row: Row) -> None:
    """Each mutant is one isolated branch: every other mutant passes this row."""
    for other in MUTANTS:
        if other in ("", row.mutant):
            continue
        node = _node(other, row)
        row.act(node)
        assert row.expect(node), f"{other} also changes: {row.scenario}"
