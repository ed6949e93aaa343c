"""consensus/sim/byzantine.py: what each behaviour sends in place of an honest message.

Every message a behaviour emits must carry a valid signature of the node's own key (honest
nodes catch lies through the protocol, not through cryptography), and relays of other
validators' messages pass unchanged."""

import random

import pytest

from consensus.crypto import PrivateKey, verify
from consensus.sim.byzantine import (
    BEHAVIOURS,
    TARGETED,
    ByzantineContext,
    ByzantineMemory,
    Message,
    held_until_precommit,
    outgoing,
    sign_vote,
)
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Block,
    Header,
    Proposal,
    Vote,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet

CHAIN = "sim"
KEYS = [PrivateKey.from_label(f"byz-test-{i}") for i in range(7)]


def _ctx(
    index: int = 3, round_: int = 2, seed: int = 0, memory: ByzantineMemory | None = None
) -> ByzantineContext:
    return ByzantineContext(
        key=KEYS[index],
        chain_id=CHAIN,
        nodes=4,
        index=index,
        rng=random.Random(seed),
        height=5,
        round=round_,
        memory=memory or ByzantineMemory(),
    )


def _proposal(proposer: int = 3, round_: int = 2, pol_round: int = -1) -> Proposal:
    txs = (b"a=1",)
    header = Header(
        chain_id=CHAIN,
        height=5,
        time_ms=10_000,
        last_block_id=bytes(32),
        last_commit_hash=bytes(32),
        data_hash=txs_hash(txs),
        evidence_hash=bytes(32),
        validators_hash=bytes(32),
        next_validators_hash=bytes(32),
        app_hash=bytes(32),
        proposer=KEYS[proposer].public_key,
    )
    block = Block(header, txs, (), None)
    key = KEYS[proposer]
    msg = proposal_sign_bytes(CHAIN, 5, round_, pol_round, block.id())
    return Proposal(5, round_, pol_round, block, key.public_key, key.sign(msg))


def _vote(signer: int = 3, vote_type: int = PREVOTE, block_id: bytes = b"\x01" * 32) -> Vote:
    ctx = _ctx(index=signer)
    return sign_vote(ctx, vote_type, 5, 2, block_id)


def _signed_by_own_key(msg: Message, key: PrivateKey) -> bool:
    if isinstance(msg, Proposal):
        data = proposal_sign_bytes(CHAIN, msg.height, msg.round, msg.pol_round, msg.block.id())
        return msg.proposer == key.public_key and verify(key.public_key, data, msg.signature)
    if isinstance(msg, Vote):
        data = vote_sign_bytes(CHAIN, msg.type, msg.height, msg.round, msg.block_id)
        return msg.validator == key.public_key and verify(key.public_key, data, msg.signature)
    return True


@pytest.mark.parametrize("behaviour", [*BEHAVIOURS, *TARGETED])
def test_everything_sent_is_validly_signed_by_the_node_itself(behaviour: str) -> None:
    for seed in range(5):
        ctx = _ctx(seed=seed)
        for message in (_proposal(), _vote(), _vote(vote_type=PRECOMMIT), _vote(block_id=NIL)):
            for to, msg in outgoing(behaviour, ctx, message):
                assert to is None or 0 <= to < ctx.nodes
                assert to != ctx.index
                assert _signed_by_own_key(msg, KEYS[3]), (behaviour, msg)


@pytest.mark.parametrize("behaviour", [*BEHAVIOURS, *TARGETED])
def test_relays_of_other_validators_messages_pass_unchanged(behaviour: str) -> None:
    others = (_proposal(proposer=1), _vote(signer=2))
    for message in others:
        sent = outgoing(behaviour, _ctx(), message)
        assert sent == ([] if behaviour == "silent" else [(None, message)])


def test_honest_and_silent() -> None:
    vote = _vote()
    assert outgoing("", _ctx(), vote) == [(None, vote)]
    assert outgoing("amnesia", _ctx(), vote) == [(None, vote)]
    assert outgoing("silent", _ctx(), vote) == []


def test_equivocate_sends_two_valid_proposals_and_every_peer_gets_one() -> None:
    sent = outgoing("equivocate", _ctx(), _proposal())
    blocks = {m.block.id() for _, m in sent if isinstance(m, Proposal)}
    assert len(blocks) == 2
    assert {to for to, _ in sent} == {0, 1, 2}


def test_equivocate_each_gives_every_peer_its_own_block() -> None:
    sent = outgoing("equivocate_each", _ctx(), _proposal())
    assert sorted(to for to, _ in sent if to is not None) == [0, 1, 2]
    assert len({m.block.id() for _, m in sent if isinstance(m, Proposal)}) == 3


def test_double_vote_signs_a_conflicting_vote() -> None:
    vote = _vote()
    sent = outgoing("double_vote", _ctx(), vote)
    ids = {m.block_id for _, m in sent if isinstance(m, Vote)}
    assert ids == {vote.block_id, NIL}


def test_lie_pol_claims_a_round_it_cannot_prove_and_repeats_itself() -> None:
    memory = ByzantineMemory()
    proposal = _proposal(round_=4)
    [(to, lie)] = outgoing("lie_pol", _ctx(round_=4, memory=memory), proposal)
    assert to is None
    assert isinstance(lie, Proposal)
    assert 0 <= lie.pol_round < 4
    assert lie.block.id() != proposal.block.id()
    # A re-send (gossip) repeats the same signed bytes, and its votes follow the pushed block.
    assert outgoing("lie_pol", _ctx(round_=4, seed=9, memory=memory), proposal) == [(None, lie)]
    engine_vote = sign_vote(_ctx(), PREVOTE, 5, 4, proposal.block.id())
    [(_, vote)] = outgoing("lie_pol", _ctx(round_=4, memory=memory), engine_vote)
    assert isinstance(vote, Vote)
    assert vote.block_id == lie.block.id()


def test_withhold_reaches_a_subset_fixed_per_round() -> None:
    memory = ByzantineMemory()
    audiences = set()
    for seed in range(20):
        ctx = _ctx(seed=seed, memory=memory)
        audiences.add(tuple(to for to, _ in outgoing("withhold", ctx, _vote())))
    assert len(audiences) == 1  # the same peers for the whole (height, round)
    assert None not in next(iter(audiences))
    assert len(next(iter(audiences))) < 3


def test_bad_time_moves_the_time_and_keeps_the_header_consistent() -> None:
    proposal = _proposal()
    times = set()
    for seed in range(10):
        [(_, bent)] = outgoing("bad_time", _ctx(seed=seed), proposal)
        assert isinstance(bent, Proposal)
        header = bent.block.header
        assert header.time_ms != proposal.block.header.time_ms
        assert bent.block.id() != proposal.block.id()
        assert header.data_hash == proposal.block.header.data_hash
        assert bent.block.txs == proposal.block.txs
        times.add(header.time_ms > proposal.block.header.time_ms)
    assert times == {True, False}  # both the future and the past


def test_flood_rounds_adds_far_ahead_votes() -> None:
    vote = _vote()
    sent = outgoing("flood_rounds", _ctx(), vote)
    assert sent[0] == (None, vote)
    assert len(sent) > 1
    assert all(isinstance(m, Vote) and m.round > vote.round for _, m in sent[1:])


def test_lock_breaker_coalition_splits_locks_then_pushes_a_fresh_block() -> None:
    keys = tuple(k.public_key for k in KEYS)
    validators = ValidatorSet.of([(k, 1) for k in keys])
    allies = tuple(i for i, k in enumerate(keys) if validators.proposer(0) == k)
    assert allies, "the test needs a member proposing round 0"
    member = allies[0]
    other_ally = next(i for i in range(7) if i != member and validators.proposer(1) != keys[i])
    allies = (member, other_ally)

    def ctx(round_: int, memory: ByzantineMemory) -> ByzantineContext:
        return ByzantineContext(
            KEYS[member], CHAIN, 7, member, random.Random(1), 5, round_, memory, validators,
            keys, allies,
        )  # fmt: skip

    memory = ByzantineMemory()
    proposal = _proposal(proposer=member, round_=0)
    sent = outgoing("lock_breaker", ctx(0, memory), proposal)
    audience = {to for to, _ in sent}
    assert None not in audience
    assert other_ally in audience
    honest_reached = audience - {other_ally}
    assert 0 < len(honest_reached) < 5  # some honest validators are left out
    precommit = sign_vote(ctx(0, memory), PRECOMMIT, 5, 0, proposal.block.id())
    sent = outgoing("lock_breaker", ctx(0, memory), precommit)
    for_block = [to for to, m in sent if isinstance(m, Vote) and m.block_id != NIL]
    assert len(for_block) == 1  # only the decider
    # A later round of the same height with a member as proposer: a fresh block, voted for.
    later = next(r for r in range(1, 20) if validators.proposer(r) == keys[member])
    [(to, pushed)] = outgoing("lock_breaker", ctx(later, memory), _proposal(member, later))
    assert to is None
    assert isinstance(pushed, Proposal)
    assert pushed.block.id() != _proposal(member, later).block.id()


def test_hide_pol_shows_its_proof_of_lock_in_time_to_one_honest_validator_only() -> None:
    keys = tuple(k.public_key for k in KEYS[:4])
    validators = ValidatorSet.of(list(zip(keys, (1, 10, 10, 10), strict=True)))
    me = next(i for i in range(4) if validators.proposer(0) == keys[i])
    power = validators.power_of(keys[me])
    assert 3 * power < validators.total_power, "the test needs the proposer to be faulty-sized"

    def ctx(round_: int) -> ByzantineContext:
        return ByzantineContext(
            KEYS[me], CHAIN, 4, me, random.Random(1), 5, round_, ByzantineMemory(), validators,
            keys, (me,),
        )  # fmt: skip

    proposal = _proposal(proposer=me, round_=0)
    assert outgoing("hide_pol", ctx(0), proposal) == [(None, proposal)]
    peers = [i for i in range(4) if i != me]
    early = [i for i in peers if not held_until_precommit("hide_pol", ctx(0), proposal, i)]
    late = [i for i in peers if i not in early]
    assert early
    assert late
    s_power = sum(validators.power_of(keys[i]) for i in early)
    assert validators.has_quorum(s_power + power)
    assert not validators.has_quorum(s_power)
    prevote = sign_vote(ctx(0), PREVOTE, 5, 0, proposal.block.id())
    [locker] = [i for i in peers if not held_until_precommit("hide_pol", ctx(0), prevote, i)]
    assert locker in early
    assert validators.power_of(keys[locker]) == min(validators.power_of(keys[i]) for i in early)
    precommit = sign_vote(ctx(0), PRECOMMIT, 5, 0, proposal.block.id())
    assert outgoing("hide_pol", ctx(0), precommit) == []
    # Its later proposer rounds of the height: nothing; other validators' messages: relayed.
    later = next(r for r in range(1, 40) if validators.proposer(r) == keys[me])
    assert outgoing("hide_pol", ctx(later), _proposal(proposer=me, round_=later)) == []
    other = _vote(signer=(me + 1) % 4)
    assert not held_until_precommit("hide_pol", ctx(0), other, locker)
