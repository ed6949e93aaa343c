"""The driver's loop: group commit, reception stamps, the future buffer and relay selection."""

from consensus.driver.driver import input_height
from consensus.driver.walformat import ProposalIds, decode_wal, scan
from consensus.engine import STEP_PROPOSE, TimeoutFired, VoteReceived
from consensus.types import NIL, PRECOMMIT, PREVOTE, Proposal, Vote
from tests.consensus.harness import KEYS, make_block, proposer, vote
from tests.consensus.test_driver_replay import Rig, _me_not_proposing, _proposal


def _records(rig: Rig) -> list[object]:
    records, _ = scan(bytes(rig.wal.data), "test")
    return [decode_wal(p) for p in records if not p.startswith(b"\x00FC-ENDHEIGHT")]


def test_one_sync_per_input_and_nothing_leaves_before_it() -> None:
    rig = Rig(_me_not_proposing())
    driver = rig.start()
    syncs = rig.wal.syncs
    sent_at_sync: list[int] = []
    original = rig.wal.sync

    def sync() -> None:
        sent_at_sync.append(len(rig.sent))
        original()

    rig.wal.sync = sync  # type: ignore[method-assign]
    driver.feed(TimeoutFired(1, 0, STEP_PROPOSE))  # -> LastSigned + our nil prevote
    assert rig.wal.syncs == syncs + 1
    assert sent_at_sync == [0]  # the sync came before the prevote was sent
    assert [m.block_id for m in rig.sent if isinstance(m, Vote)] == [NIL]
    driver.receive(vote(KEYS[(_me_not_proposing() + 1) % 4], PREVOTE, 0, NIL), None)
    assert rig.wal.syncs == syncs + 1  # a peer's vote alone signs nothing: no sync


def test_a_peer_proposal_is_stamped_on_arrival_and_the_stamp_is_recorded() -> None:
    rig = Rig(_me_not_proposing())
    driver = rig.start()
    now = driver.ports.clock.now_ms()
    driver.receive(_proposal(0, make_block(proposer(0))), None)
    stamped = [r for r in _records(rig) if isinstance(r, ProposalIds)]
    assert [r.received_ms for r in stamped] == [now]
    assert driver.state.proposal_received_ms == {0: now}
    again = rig.start()
    assert again.state.proposal_received_ms == {0: now}  # replay sees the same reception


def test_messages_of_the_next_height_wait_and_are_recorded_when_fed() -> None:
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    early = vote(KEYS[(me + 1) % 4], PREVOTE, 0, NIL, height=2)
    driver.receive(early, None)
    assert not any(isinstance(r, VoteReceived) and r.vote == early for r in _records(rig))
    block = make_block(proposer(0))
    others = [k for i, k in enumerate(KEYS) if i != me]
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id()), None)
    assert driver.height == 2
    index = driver.state.chain.validators.index(early.validator)
    assert index is not None
    assert driver.state.prevotes[0].votes[index] == early
    assert any(isinstance(r, VoteReceived) and r.vote == early for r in _records(rig))
    assert input_height(VoteReceived(early)) == 2


def test_a_stalled_node_relays_own_messages_held_votes_and_the_last_commit() -> None:
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
    assert driver.height == 2
    driver.feed(TimeoutFired(2, 0, STEP_PROPOSE))  # our nil prevote at height 2
    rig.sent.clear()
    driver.relay_tick()  # progress since the last tick: nothing
    assert rig.sent == []
    driver.relay_tick()  # stalled
    own = [
        m
        for m in rig.sent
        if isinstance(m, Vote) and m.height == 2 and m.validator == KEYS[me].public_key
    ]
    assert [(v.height, v.type, v.block_id) for v in own] == [(2, PREVOTE, NIL)]
    last_commit = [m for m in rig.sent if isinstance(m, Vote) and m.height == 1]
    assert {v.validator for v in last_commit} == {k.public_key for k in others[:2]} | {
        KEYS[me].public_key
    }
    assert all(v.type == PRECOMMIT and v.block_id == block.id() for v in last_commit)
    assert not any(isinstance(m, Proposal) for m in rig.sent)  # the daemon pulls proposals


def test_a_forgotten_peers_buffered_messages_of_the_next_height_are_never_fed() -> None:
    """A peer banned while its messages of height 2 wait in the buffer: they are dropped, the
    other peer's still count when the node gets there (the shell calls forget_peer on a ban)."""
    me = _me_not_proposing()
    rig = Rig(me)
    driver = rig.start()
    others = [k for i, k in enumerate(KEYS) if i != me]
    banned = vote(others[0], PREVOTE, 0, NIL, height=2)
    kept = vote(others[1], PREVOTE, 0, NIL, height=2)
    driver.receive(banned, "banned")
    driver.receive(kept, "honest")
    assert driver.forget_peer("banned") == 1
    assert driver.forget_peer("banned") == 0
    block = make_block(proposer(0))
    driver.receive(_proposal(0, block), None)
    for k in others[:2]:
        driver.receive(vote(k, PREVOTE, 0, block.id()), None)
    for k in others[:2]:
        driver.receive(vote(k, PRECOMMIT, 0, block.id()), None)
    assert driver.height == 2
    held = driver.state.prevotes[0].votes
    assert held.get(driver.state.chain.validators.index(kept.validator)) == kept
    assert driver.state.chain.validators.index(banned.validator) not in held
