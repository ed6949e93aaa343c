"""The LastSigned guard and WAL replay: a restarted engine never signs two different things for
one (height, round, step), yet replaying its inputs re-derives the identical signatures."""

from consensus.engine import (
    STEP_PROPOSE,
    Broadcast,
    EngineState,
    Input,
    LastSigned,
    PersistLastSigned,
    RestoreLastSigned,
    SignRefused,
    Start,
    TimeoutFired,
)
from consensus.types import NIL, PREVOTE, Vote
from tests.consensus.harness import CHAIN, make_block, proposal, proposer, started_node


def _signed(effects: list[object]) -> list[Vote]:
    return [e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, Vote)]


def test_persist_precedes_every_broadcast_of_a_signature() -> None:
    node = started_node(proposer(3))
    node.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    kinds = [type(e).__name__ for e in node.effects if isinstance(e, PersistLastSigned | Broadcast)]
    assert kinds == ["PersistLastSigned", "Broadcast"]
    persisted = next(e for e in node.effects if isinstance(e, PersistLastSigned))
    assert (
        persisted.last_signed.height,
        persisted.last_signed.round,
        persisted.last_signed.step,
    ) == (1, 0, PREVOTE)


def test_restored_guard_refuses_a_conflicting_vote_after_a_crash() -> None:
    # Before the crash: prevoted for the round-0 block.
    first = started_node(proposer(3))
    block = make_block(proposer(0))
    first.receive(proposal(0, block))
    assert [v.block_id for v in _signed(first.effects)] == [block.id()]
    guard = next(e for e in reversed(first.effects) if isinstance(e, PersistLastSigned)).last_signed
    # After the crash the WAL tail (the proposal) is lost; the propose timeout fires instead.
    restarted = started_node(proposer(3))
    restarted.state = EngineState.for_height(CHAIN)
    restarted.feed(RestoreLastSigned(LastSigned.decode(guard.encode())), Start())
    effects = restarted.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    assert _signed(effects) == []  # a nil prevote would conflict with the prevote for the block
    assert SignRefused(1, 0, PREVOTE) in effects


def test_replaying_the_same_inputs_re_signs_identically() -> None:
    inputs: list[Input] = [Start(), TimeoutFired(1, 0, STEP_PROPOSE)]
    first = started_node(proposer(3))
    first.state = EngineState.for_height(CHAIN)
    first.effects.clear()
    first.feed(*inputs)
    guard = first.state.last_signed
    assert guard is not None
    again = started_node(proposer(3))
    again.state = EngineState.for_height(CHAIN)
    again.effects.clear()
    again.feed(RestoreLastSigned(guard), *inputs)
    assert _signed(again.effects) == _signed(first.effects)
    assert [v.block_id for v in _signed(again.effects)] == [NIL]
    assert not any(isinstance(e, SignRefused) for e in again.effects)


def test_last_signed_round_trips() -> None:
    ls = LastSigned(7, 3, 2, b"bytes")
    assert LastSigned.decode(ls.encode()) == ls
