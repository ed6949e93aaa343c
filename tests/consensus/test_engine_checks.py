"""Cheap checks first: a stranger's message is rejected before anything costly is done for it.

Order for a proposal: decode-level bounds (types.py), height gate, round bounds (peer_round_max
penalized, beyond our round + rounds_ahead_max ignored), membership, signature, and only then the
proposer of its round (O(round x validators) the first time a set is asked for a far round).
The tests count signature verifications and proposer-priority steps, never wall-clock time.
"""

from dataclasses import replace

import pytest

from consensus.crypto import PrivateKey, verify
from consensus.engine import (
    Effect,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
    PeerMisbehaved,
    ProposalReceived,
    Start,
    VoteReceived,
)
from consensus.types import NIL, PREVOTE, ROUND_MAX, Proposal
from consensus.validators import ValidatorSet
from tests.consensus.harness import CHAIN, KEYS, make_block, proposal, proposer, vote

CONFIG = EngineConfig()
FAR = CONFIG.rounds_ahead_max + 1  # ahead of round 0 by more than we keep


class Counters:
    def __init__(self) -> None:
        self.verifications = 0
        self.steps = 0

    def verifier(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        self.verifications += 1
        return verify(public_key, message, signature)


@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> Counters:
    c = Counters()
    step = ValidatorSet._step

    def counted(self: ValidatorSet, priorities: list[int]) -> int:
        c.steps += 1
        return step(self, priorities)

    monkeypatch.setattr(ValidatorSet, "_step", counted)
    return c


def _apply(c: Counters, inp: Input) -> list[Effect]:
    """Feed one input to a fresh engine at round 0 of height 1, counting only that input."""
    me = proposer(3)
    engine = Engine(CONFIG, KeySigner(me), c.verifier)
    fresh = ValidatorSet(CHAIN.validators.validators)  # an empty proposer memo
    state, _ = engine.apply(EngineState.for_height(replace(CHAIN, validators=fresh)), Start())
    c.verifications = c.steps = 0
    _, out = engine.apply(state, inp)
    return out


def _unsigned(round_: int) -> Proposal:
    p = proposal(min(round_, 3), make_block(proposer(0)))
    return replace(p, round=round_, signature=bytes(64))


def test_unsigned_proposal_at_the_largest_decodable_round_costs_nothing(
    counters: Counters,
) -> None:
    """Regression: the proposer of round 2^20 was computed first (~0.5 s, 2^20 x 4 steps)."""
    out = _apply(counters, ProposalReceived(_unsigned(ROUND_MAX)))
    assert [type(e) for e in out] == [PeerMisbehaved]
    assert (counters.verifications, counters.steps) == (0, 0)


def test_unsigned_proposal_beyond_rounds_ahead_is_ignored_unverified(counters: Counters) -> None:
    out = _apply(counters, ProposalReceived(_unsigned(FAR)))
    assert out == []
    assert (counters.verifications, counters.steps) == (0, 0)


def test_unsigned_near_proposal_is_penalized_for_its_signature_before_its_proposer(
    counters: Counters,
) -> None:
    out = _apply(counters, ProposalReceived(_unsigned(CONFIG.rounds_ahead_max)))
    assert [type(e) for e in out] == [PeerMisbehaved]
    assert "signature" in out[0].reason  # type: ignore[union-attr]
    assert (counters.verifications, counters.steps) == (1, 0)


def test_proposal_from_a_non_validator_is_penalized_before_its_signature(
    counters: Counters,
) -> None:
    outsider = PrivateKey.from_label("outsider")
    p = proposal(2, make_block(proposer(2)), key=outsider)
    out = _apply(counters, ProposalReceived(p))
    assert [type(e) for e in out] == [PeerMisbehaved]
    assert (counters.verifications, counters.steps) == (0, 0)


def test_signed_proposal_by_the_wrong_validator_costs_one_check_and_round_steps(
    counters: Counters,
) -> None:
    """Only a signed, near proposal reaches the proposer computation (memoized: round 5 costs
    the steps of rounds 1..5 once, round 0 was computed at Start)."""
    wrong = next(k for k in KEYS if k.public_key != CHAIN.validators.proposer(5))
    p = proposal(5, make_block(proposer(5)), key=wrong)
    out = _apply(counters, ProposalReceived(p))
    assert [type(e) for e in out] == [PeerMisbehaved]
    assert counters.verifications == 1
    assert counters.steps <= 5


def test_votes_beyond_the_round_bounds_are_not_verified(counters: Counters) -> None:
    far = vote(KEYS[1], PREVOTE, FAR, NIL)
    assert _apply(counters, VoteReceived(replace(far, signature=bytes(64)))) == []
    beyond = replace(far, round=CONFIG.peer_round_max + 1)
    assert [type(e) for e in _apply(counters, VoteReceived(beyond))] == [PeerMisbehaved]
    assert counters.verifications == 0


def test_a_signed_proposal_within_bounds_is_still_accepted(counters: Counters) -> None:
    """The checks above are not a blanket refusal."""
    p = proposal(0, make_block(proposer(0)))
    out = _apply(counters, ProposalReceived(p))
    assert not any(isinstance(e, PeerMisbehaved) for e in out)
    assert counters.verifications >= 1
