"""Validity of what peers send: signed messages, evidence, and the structure of blocks.

Every function is pure and returns a reason string (or raises InvalidMessage) instead of
touching state, so the engine can reject an input before changing anything.
"""

from consensus.app import BlockInfo, Misbehavior, VoteInfo
from consensus.commit_verify import Verifier, verify_commit
from consensus.engine.chain import EVIDENCE_AGE_HEIGHTS, ChainState
from consensus.engine.config import EngineConfig
from consensus.errors import CommitError, InvalidMessage
from consensus.types import (
    Block,
    DuplicateVoteEvidence,
    Vote,
    commit_hash,
    evidence_hash,
    txs_hash,
    vote_sign_bytes,
)


def check_vote_signature(chain: ChainState, vote: Vote, power: int, verifier: Verifier) -> None:
    if power == 0:
        raise InvalidMessage("vote from a non-validator")
    message = vote_sign_bytes(chain.chain_id, vote.type, vote.height, vote.round, vote.block_id)
    if not verifier(vote.validator, message, vote.signature):
        raise InvalidMessage("vote with a bad signature (or for another chain id)")


def check_evidence(chain: ChainState, ev: DuplicateVoteEvidence, verifier: Verifier) -> None:
    problem = ev.well_formed()
    if problem is not None:
        raise InvalidMessage(problem)
    height = ev.vote_a.height
    if height > chain.height or height < chain.height - EVIDENCE_AGE_HEIGHTS + 1:
        raise InvalidMessage("evidence height outside the evidence window")
    validators = chain.validators_at(height)
    if validators is None:
        raise InvalidMessage("evidence height outside the evidence window")
    power = validators.power_of(ev.vote_a.validator)
    check_vote_signature(chain, ev.vote_a, power, verifier)
    check_vote_signature(chain, ev.vote_b, power, verifier)


def contents_problem(block: Block) -> str | None:
    """Why the header's hashes do not cover the block's txs, evidence and last commit, or None
    (a proposal's check, and block sync's check of a body fetched again)."""
    h = block.header
    if h.data_hash != txs_hash(block.txs):
        return "data hash does not match the transactions"
    if h.evidence_hash != evidence_hash(block.evidence):
        return "evidence hash does not match the evidence"
    if h.last_commit_hash != commit_hash(block.last_commit):
        return "last commit hash does not match the last commit"
    return None


def block_problem(
    chain: ChainState, block: Block, config: EngineConfig, verifier: Verifier
) -> str | None:
    """Why `block` cannot be chain.height's block (whoever proposed it), or None."""
    h = block.header
    if h.chain_id != chain.chain_id:
        return "wrong chain id"
    if h.height != chain.height:
        return "wrong height"
    if h.time_ms <= chain.last_time_ms:
        return "time does not advance"
    if h.last_block_id != chain.last_block_id:
        return "wrong last block id"
    if h.app_hash != chain.app_hash:
        return "wrong app hash"
    if h.validators_hash != chain.validators.hash():
        return "wrong validators hash"
    if h.next_validators_hash != chain.next_validators.hash():
        return "wrong next validators hash"
    if chain.validators.index(h.proposer) is None:
        return "proposer is not a validator"
    if len(block.txs) > config.block_txs_max or sum(map(len, block.txs)) > config.block_bytes_max:
        return "block too large"
    contents = contents_problem(block)
    if contents is not None:
        return contents
    if h.height == chain.initial_height:
        if block.last_commit is not None:
            return "first block carries a last commit"
    else:
        previous = chain.validators_at(h.height - 1)
        if block.last_commit is None or previous is None:
            return "missing last commit"
        try:
            verify_commit(
                chain.chain_id, previous, h.height - 1, h.last_block_id, block.last_commit, verifier
            )
        except CommitError as exc:
            return f"last commit: {exc}"
    if len(block.evidence) > config.block_evidence_max:
        return "too much evidence"
    seen: dict[tuple[bytes, int, int, int], None] = {}
    committed = dict.fromkeys(chain.committed_evidence)
    for ev in block.evidence:
        key = ev.key()
        if key in seen or key in committed:
            return "evidence repeated or already committed"
        seen[key] = None
        if ev.vote_a.height >= h.height:
            return "evidence from the block's own height"
        try:
            check_evidence(chain, ev, verifier)
        except InvalidMessage as exc:
            return f"evidence: {exc}"
    return None


def block_info(chain: ChainState, block: Block) -> BlockInfo:
    """What the app learns besides the txs: last-commit signers and punished equivocations."""
    h = block.header
    last_commit: tuple[VoteInfo, ...] = ()
    previous = chain.validators_at(h.height - 1)
    if block.last_commit is not None and previous is not None:
        signers = {s.validator: None for s in block.last_commit.signatures}
        last_commit = tuple(
            VoteInfo(v.public_key, v.power, v.public_key in signers) for v in previous.validators
        )
    misbehavior = []
    for ev in block.evidence:
        vs = chain.validators_at(ev.vote_a.height)
        power = 0 if vs is None else vs.power_of(ev.vote_a.validator)
        misbehavior.append(
            Misbehavior("duplicate_vote", ev.vote_a.validator, ev.vote_a.height, power)
        )
    return BlockInfo(
        chain_id=h.chain_id,
        height=h.height,
        time_ms=h.time_ms,
        proposer=h.proposer,
        block_hash=block.id(),
        last_commit=last_commit,
        misbehavior=tuple(misbehavior),
    )
