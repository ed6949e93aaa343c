"""A byzantine validator flooding signed votes cannot buy the engine's CPU or the shell's queue.

The engine checks a vote's signature only if the vote could change something: a repeat of a
recorded vote, or any further vote for a slot whose equivocation is already on record, is
dropped before the signature check.  The node serves peers round robin (node/fairinbox.py), so
an honest vote waits behind at most one message of each other peer.
"""

from consensus.crypto import verify
from consensus.engine import Engine, EngineConfig, EngineState, KeySigner, Start, VoteReceived
from consensus.engine.effects import EvidenceFound, PeerMisbehaved
from consensus.types import PREVOTE
from node.fairinbox import FairInbox
from tests.consensus.harness import CHAIN, KEYS, vote


class CountingVerifier:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        self.calls += 1
        return verify(public_key, message, signature)


def started() -> tuple[Engine, EngineState, CountingVerifier]:
    counting = CountingVerifier()
    engine = Engine(EngineConfig(), KeySigner(KEYS[0]), counting)
    state, _ = engine.apply(EngineState.for_height(CHAIN), Start())
    return engine, state, counting


def test_repeats_of_a_recorded_vote_cost_one_signature_check_in_all() -> None:
    engine, state, counting = started()
    flooded = vote(KEYS[3], PREVOTE, 2, b"\x01" * 32)
    for _ in range(1_000):
        state, effects = engine.apply(state, VoteReceived(flooded))
        assert effects == []
    assert counting.calls == 1
    assert flooded in state.prevotes[2].votes.values()


def test_after_an_equivocation_is_on_record_more_conflicts_are_free() -> None:
    engine, state, counting = started()
    state, _ = engine.apply(state, VoteReceived(vote(KEYS[3], PREVOTE, 1, b"\x01" * 32)))
    state, effects = engine.apply(state, VoteReceived(vote(KEYS[3], PREVOTE, 1, b"\x02" * 32)))
    assert any(isinstance(e, EvidenceFound) for e in effects)
    before = counting.calls
    for i in range(3, 200):
        state, effects = engine.apply(
            state, VoteReceived(vote(KEYS[3], PREVOTE, 1, bytes([i % 256]) * 32))
        )
        assert effects == []
    assert counting.calls == before
    assert len(state.prevotes[1].conflicting) == 1


def test_a_forged_vote_for_an_open_slot_is_still_checked_and_penalized() -> None:
    engine, state, counting = started()
    forged = vote(KEYS[3], PREVOTE, 1, b"\x01" * 32)
    forged = type(forged)(
        forged.type, forged.height, forged.round, forged.block_id, forged.validator, b"\x00" * 64
    )
    state, effects = engine.apply(state, VoteReceived(forged))
    assert [type(e) for e in effects] == [PeerMisbehaved]
    assert counting.calls == 1


def test_the_inbox_serves_peers_in_turn_and_caps_each() -> None:
    inbox: FairInbox[str, str] = FairInbox(per_peer_max=3)
    for i in range(10):
        inbox.put("flooder", f"f{i}")
    inbox.put("honest-a", "a0")
    inbox.put("honest-b", "b0")
    assert inbox.full("flooder")
    assert not inbox.full("honest-a")
    assert inbox.dropped == 7
    order = [inbox.pop() for _ in range(len(inbox))]
    assert order == ["f0", "a0", "b0", "f1", "f2"]
    assert inbox.pop() is None
    assert len(inbox) == 0
    inbox.put("flooder", "again")  # an emptied peer's queue starts over
    assert inbox.pop() == "again"
