"""Bad input from peers: a typed error or a PeerMisbehaved effect, never a crash, and the
engine state is exactly as before."""

import copy
from dataclasses import replace
from typing import TypeVar

import pytest

from consensus.codec import encode
from consensus.crypto import PrivateKey
from consensus.engine import (
    BlockSynced,
    EngineState,
    EvidenceReceived,
    Input,
    PeerAhead,
    PeerMisbehaved,
    ProposalReceived,
    VoteReceived,
)
from consensus.errors import CodecError, RemoteError
from consensus.types import (
    NIL,
    PREVOTE,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    decode_message,
    encode_message,
)
from tests.consensus.harness import (
    KEYS,
    make_block,
    others,
    precommit,
    prevote,
    proposal,
    proposer,
    started_node,
    vote,
)

T = TypeVar("T", Vote, Proposal)

OUTSIDER = PrivateKey.from_label("not-a-validator")
BLOCK = make_block(proposer(0))


def _forged(v: T) -> T:
    return replace(v, signature=bytes(64))


def _snapshot(state: EngineState) -> EngineState:
    return copy.deepcopy(state)


BAD_INPUTS: list[tuple[str, Input]] = [
    ("vote from a non-validator", VoteReceived(vote(OUTSIDER, PREVOTE, 0, NIL))),
    ("vote for another chain id", VoteReceived(vote(KEYS[1], PREVOTE, 0, NIL, chain_id="other"))),
    ("vote with a bad signature", VoteReceived(_forged(prevote(KEYS[1], 0)))),
    (
        "vote signed for another block id",
        VoteReceived(replace(prevote(KEYS[1], 0, BLOCK.id()), block_id=b"\7" * 32)),
    ),
    ("vote for a far-future height", VoteReceived(vote(KEYS[1], PREVOTE, 0, NIL, height=10**6))),
    ("proposal from the wrong proposer", ProposalReceived(proposal(0, BLOCK, key=proposer(1)))),
    ("proposal with a bad signature", ProposalReceived(_forged(proposal(0, BLOCK)))),
    (
        "evidence with a forged vote",
        EvidenceReceived(
            DuplicateVoteEvidence.of(
                prevote(KEYS[1], 0, NIL), _forged(prevote(KEYS[1], 0, b"\1" * 32))
            )
        ),
    ),
    (
        "evidence of two different validators",
        EvidenceReceived(
            DuplicateVoteEvidence.of(prevote(KEYS[1], 0, NIL), prevote(KEYS[2], 0, b"\1" * 32))
        ),
    ),
    (
        "synced block with a commit lacking 2/3",
        BlockSynced(
            BLOCK,
            Commit(
                1,
                0,
                BLOCK.id(),
                (CommitSig(KEYS[1].public_key, precommit(KEYS[1], 0, BLOCK.id()).signature),),
            ),
        ),
    ),
]


@pytest.mark.parametrize(("what", "bad"), BAD_INPUTS, ids=[w for w, _ in BAD_INPUTS])
def test_bad_input_is_penalized_and_changes_nothing(what: str, bad: Input) -> None:
    node = started_node(proposer(3))
    node.receive(prevote(others(node)[0], 0, NIL))  # some state worth protecting
    before = _snapshot(node.state)
    _, effects = node.engine.apply(node.state, bad)
    assert len(effects) == 1, what
    assert isinstance(effects[0], PeerMisbehaved), what
    assert effects[0].reason
    assert node.state == before, what


def test_a_good_vote_does_change_the_state() -> None:
    """The comparison above can see a change."""
    node = started_node(proposer(3))
    before = _snapshot(node.state)
    node.receive(prevote(others(node)[0], 0, NIL))
    assert node.state != before


def test_near_future_height_is_a_sync_hint_not_a_penalty() -> None:
    node = started_node(proposer(3))
    before = _snapshot(node.state)
    _, effects = node.engine.apply(
        node.state, VoteReceived(vote(KEYS[1], PREVOTE, 0, NIL, height=5))
    )
    assert effects == [PeerAhead(5)]
    assert node.state == before


MALFORMED = [
    ("not msgpack", b"\xc1\xc1"),
    ("a map", b"\x92\x02\x81\x01\x01"),
    ("unknown kind", encode([9, []])),
    ("vote type 3", encode([2, [3, 1, 0, b"", b"k" * 32, b"s" * 64]])),
    ("short key", encode([2, [1, 1, 0, b"", b"k" * 31, b"s" * 64]])),
    ("block id of 5 bytes", encode([2, [1, 1, 0, b"12345", b"k" * 32, b"s" * 64]])),
    ("negative round", encode([2, [1, 1, -1, b"", b"k" * 32, b"s" * 64]])),
    ("pol_round not below round", encode([1, [1, 0, 0, [], b"k" * 32, b"s" * 64]])),
    ("trailing bytes", encode([2, [1, 1, 0, b"", b"k" * 32, b"s" * 64]]) + b"\x00"),
]


@pytest.mark.parametrize(("what", "data"), MALFORMED, ids=[w for w, _ in MALFORMED])
def test_malformed_messages_raise_codec_error(what: str, data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_message(data)


def test_oversized_message_is_refused_before_decoding() -> None:
    from consensus.codec import DecodeLimits

    data = encode_message(proposal(0, make_block(proposer(0), (b"k=" + b"v" * 10_000,))))
    with pytest.raises(CodecError):
        decode_message(data, DecodeLimits(message_bytes_max=1_000))


def test_codec_errors_are_remote_errors() -> None:
    assert issubclass(CodecError, RemoteError)
