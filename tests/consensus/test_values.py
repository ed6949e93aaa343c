"""Canonical encodings round-trip, sign bytes separate everything they must, validator sets
rotate proposers by power, and commit certificates verify alone."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.commit_verify import verify_commit
from consensus.crypto import PrivateKey
from consensus.errors import CommitError
from consensus.types import (
    PRECOMMIT,
    PREVOTE,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Vote,
    decode_block,
    decode_commit,
    decode_message,
    encode_block,
    encode_commit,
    encode_message,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet
from tests.consensus.harness import (
    CHAIN,
    CHAIN_ID,
    KEYS,
    make_block,
    precommit,
    prevote,
    proposal,
    proposer,
)

hashes = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32))


@given(
    st.sampled_from([PREVOTE, PRECOMMIT]),
    st.integers(1, 2**40),
    st.integers(0, 2**20),
    hashes,
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64),
)
def test_vote_round_trips(t: int, h: int, r: int, block_id: bytes, key: bytes, sig: bytes) -> None:
    vote = Vote(t, h, r, block_id, key, sig)
    data = encode_message(vote)
    assert decode_message(data) == vote
    assert encode_message(decode_message(data)) == data


def test_block_proposal_commit_evidence_round_trip() -> None:
    block = make_block(proposer(0), (b"a=1", b"b=2"))
    assert decode_block(encode_block(block)) == block
    prop = proposal(0, block)
    assert decode_message(encode_message(prop)) == prop
    commit = Commit(1, 0, block.id(), tuple(CommitSig(k.public_key, b"s" * 64) for k in KEYS[:3]))
    assert decode_commit(encode_commit(commit)) == commit
    ev = DuplicateVoteEvidence.of(prevote(KEYS[1], 0), prevote(KEYS[1], 0, b"\1" * 32))
    assert decode_message(encode_message(ev)) == ev
    assert ev.well_formed() is None


@pytest.mark.parametrize(
    "changed",
    [
        ("other", PREVOTE, 1, 0, b""),
        (CHAIN_ID, PRECOMMIT, 1, 0, b""),
        (CHAIN_ID, PREVOTE, 2, 0, b""),
        (CHAIN_ID, PREVOTE, 1, 1, b""),
        (CHAIN_ID, PREVOTE, 1, 0, b"\1" * 32),
    ],
)
def test_vote_sign_bytes_differ_in_every_field(changed: tuple[str, int, int, int, bytes]) -> None:
    assert vote_sign_bytes(*changed) != vote_sign_bytes(CHAIN_ID, PREVOTE, 1, 0, b"")


def test_weighted_round_robin_is_proportional_to_power() -> None:
    keys = [PrivateKey.from_label(f"w{i}").public_key for i in range(3)]
    vs = ValidatorSet.of([(keys[0], 1), (keys[1], 2), (keys[2], 5)])
    counts = dict.fromkeys(keys, 0)
    for _ in range(80):
        counts[vs.proposer(0)] += 1
        vs = vs.advanced()
    assert [counts[k] for k in keys] == [10, 20, 50]


def test_quorums_are_strictly_above_two_thirds_and_one_third() -> None:
    vs = CHAIN.validators  # 4 x 10
    assert not vs.has_quorum(20)
    assert vs.has_quorum(30)
    assert not vs.has_one_third(10)
    assert vs.has_one_third(20)


def _commit(signers: list[PrivateKey], block_id: bytes, round_: int = 0) -> Commit:
    order = sorted(signers, key=lambda k: k.public_key)
    return Commit(
        1,
        round_,
        block_id,
        tuple(CommitSig(k.public_key, precommit(k, round_, block_id).signature) for k in order),
    )


def test_commit_with_three_of_four_verifies() -> None:
    block_id = b"\5" * 32
    verify_commit(CHAIN_ID, CHAIN.validators, 1, block_id, _commit(KEYS[:3], block_id))


@pytest.mark.parametrize(
    ("what", "commit"),
    [
        ("two of four", _commit(KEYS[:2], b"\5" * 32)),
        ("another block", _commit(KEYS[:3], b"\6" * 32)),
        (
            "a repeated signer",
            Commit(1, 0, b"\5" * 32, (_commit(KEYS[:1], b"\5" * 32).signatures * 3)),
        ),
        (
            "a forged signature",
            Commit(
                1,
                0,
                b"\5" * 32,
                tuple(
                    CommitSig(s.validator, bytes(64))
                    for s in _commit(KEYS[:3], b"\5" * 32).signatures
                ),
            ),
        ),
        ("a non-validator", _commit([*KEYS[:2], PrivateKey.from_label("x")], b"\5" * 32)),
        ("another height", Commit(2, 0, b"\5" * 32, _commit(KEYS[:3], b"\5" * 32).signatures)),
    ],
)
def test_bad_commits_are_rejected(what: str, commit: Commit) -> None:
    with pytest.raises(CommitError):
        verify_commit(CHAIN_ID, CHAIN.validators, 1, b"\5" * 32, commit)
