"""Across heights: app hash of H in header H+1, validator updates of H effective at H+2, the
proposer rotation, and what the app learns in BlockInfo (last-commit signers, misbehavior)."""

from consensus.app import ValidatorUpdate
from consensus.crypto import PrivateKey
from consensus.engine import (
    BlockExecuted,
    ChainState,
    Decide,
    ProposalContent,
)
from consensus.types import Commit
from tests.consensus.harness import (
    CHAIN,
    KEYS,
    make_block,
    others,
    precommit,
    proposal,
    proposer,
    started_node,
)


def _decide_height_1(
    app_hash: bytes, updates: tuple[ValidatorUpdate, ...] = ()
) -> tuple[object, Decide]:
    node = started_node(proposer(1, CHAIN))
    block = make_block(proposer(0), (b"a=1",))
    node.receive(proposal(0, block))
    node.receive(*(precommit(k, 0, block.id()) for k in others(node)))
    decide = next(e for e in node.effects if isinstance(e, Decide))
    node.feed(BlockExecuted(1, block.id(), app_hash, updates))
    return node, decide


def test_app_hash_of_h_goes_into_header_h_plus_1_and_commit_into_last_commit() -> None:
    node, decide = _decide_height_1(b"\x42" * 32)
    chain = node.state.chain  # type: ignore[attr-defined]
    assert chain.height == 2
    assert chain.app_hash == b"\x42" * 32
    assert chain.last_block_id == decide.block.id()
    block2 = make_block(proposer(0, chain), (b"b=2",), chain=chain)
    assert block2.header.app_hash == b"\x42" * 32
    assert block2.last_commit == decide.commit


def test_validator_update_at_h_applies_at_h_plus_2() -> None:
    newcomer = PrivateKey.from_label("newcomer")
    chain = CHAIN
    block = make_block(proposer(0), (b"x=1",))
    commit = Commit(1, 0, block.id(), ())
    chain2 = chain.after_block(block, commit, b"h1", (ValidatorUpdate(newcomer.public_key, 10),))
    assert chain2.validators.index(newcomer.public_key) is None
    assert chain2.next_validators.index(newcomer.public_key) is not None
    block2 = make_block(proposer(0, chain2), (b"x=2",), chain=chain2)
    chain3 = chain2.after_block(block2, Commit(2, 0, block2.id(), ()), b"h2", ())
    assert chain3.validators.index(newcomer.public_key) is not None
    assert len(chain3.validators) == 5
    # Removal: power 0 at H leaves the set at H+2.
    chain4 = chain3.after_block(
        make_block(proposer(0, chain3), (b"x=3",), chain=chain3),
        Commit(3, 0, make_block(proposer(0, chain3), (b"x=3",), chain=chain3).id(), ()),
        b"h3",
        (ValidatorUpdate(KEYS[0].public_key, 0),),
    )
    assert chain4.validators.index(KEYS[0].public_key) is not None
    assert chain4.next_validators.index(KEYS[0].public_key) is None


def test_chain_state_round_trips() -> None:
    node, _ = _decide_height_1(b"\x01" * 32)
    chain = node.state.chain  # type: ignore[attr-defined]
    assert ChainState.decode(chain.encode()) == chain


def test_block_info_reports_last_commit_signers() -> None:
    node, decide = _decide_height_1(b"\x07" * 32)
    chain = node.state.chain  # type: ignore[attr-defined]
    from consensus.engine.checks import block_info

    block2 = make_block(proposer(0, chain), (b"b=2",), chain=chain)
    info = block_info(chain, block2)
    signers = {s.validator for s in decide.commit.signatures}
    assert {v.public_key for v in info.last_commit if v.signed} == signers
    assert len(info.last_commit) == 4


def test_proposer_content_time_is_monotonic() -> None:
    node = started_node(proposer(0))
    node.feed(ProposalContent(1, 0, -50, (b"k=v",)))  # a clock behind genesis
    (prop,) = node.proposals(0)
    assert prop.block.header.time_ms > CHAIN.last_time_ms
