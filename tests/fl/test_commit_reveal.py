"""Commit-reveal rounds (`commit_blocks` > 0): commitments first, then reveals that must match;
nobody's update is public before every update of the round is fixed.  Through FLApp's public
surface with signed transactions, and through the client SDK over the in-process transport."""

from dataclasses import replace

import numpy as np
import pytest

from consensus.app import BlockInfo, Genesis, GenesisValidator, VoteInfo
from consensus.codec import Value, decode
from consensus.crypto import PrivateKey
from fl.app import CODE_FAULT, FLApp
from fl.client.sdk import RemoteModel, build_commit_reveal, fetch_model, submit_update
from fl.client.transport import InProcessTransport
from fl.economics.genesis import SECTION, Allocation, EconGenesis
from fl.economics.params import EconParams
from fl.fixed import FRAC_BITS
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import (
    KIND_COMMIT_UPDATE,
    KIND_REVEAL_UPDATE,
    KIND_SUBMIT_UPDATE,
    CommitUpdate,
    SubmitUpdate,
    commitment,
    decode_tx,
    sign_tx,
)

CHAIN = "commit-reveal-test"
BLOCK_MS = 1_000  # each test block is a second of chain time after the last
VALIDATOR = PrivateKey.from_label("cr-val")
CLIENTS = [PrivateKey.from_label(f"cr-client-{i}") for i in range(4)]
PARAMS = replace(
    Params(),
    rule="fedavg",
    updates_per_round=3,
    round_deadline_ms=4_000,
    update_norm_max=64 << FRAC_BITS,
)
SHAPES = ((3, 4), (3,))
SALT = bytes(range(32))


def genesis(commit_blocks: int = 3, **econ: int) -> Genesis:
    section = EconGenesis(
        allocations=tuple(Allocation(k.public_key, 0, 1_000) for k in CLIENTS),
        reserve=1_000_000,
        params=EconParams(commit_blocks=commit_blocks, **econ),
    )
    return Genesis(
        chain_id=CHAIN,
        validators=(GenesisValidator(VALIDATOR.public_key, 10),),
        app_state=build_app_state(SHAPES, None, PARAMS, ((SECTION, section.encode()),)),
    )


def new_app(commit_blocks: int = 3, **econ: int) -> FLApp:
    app = FLApp()
    app.init_chain(genesis(commit_blocks, **econ))
    return app


def block(app: FLApp, txs: list[bytes]) -> list[int]:
    height = app.state.height + 1
    commit = (VoteInfo(VALIDATOR.public_key, 10, True),) if height > 1 else ()
    info = BlockInfo(CHAIN, height, height * BLOCK_MS, VALIDATOR.public_key, b"", commit, ())
    result = app.finalize_block(txs, info)
    app.commit()
    block.last = result  # type: ignore[attr-defined]
    return [r.code for r in result.tx_results]


def body(app: FLApp, value: int) -> Value:
    delta = np.full(15, value << FRAC_BITS, dtype=np.int64)
    return SubmitUpdate(
        app.state.round, app.state.model.hash, 10, FRAC_BITS, 32, 15, delta.astype("<i4").tobytes()
    ).encode()


def signed(app: FLApp, key: PrivateKey, kind: str, payload: Value, nonce_ahead: int = 0) -> bytes:
    nonce = app.state.account(key.public_key).nonce + nonce_ahead
    return sign_tx(key, CHAIN, kind, nonce, payload).to_wire()


def commit_tx(app: FLApp, key: PrivateKey, update: Value, salt: bytes = SALT) -> bytes:
    digest = commitment(key.public_key, app.state.round, update, salt)
    return signed(app, key, KIND_COMMIT_UPDATE, CommitUpdate(app.state.round, digest).encode())


def reveal_tx(app: FLApp, key: PrivateKey, update: Value, salt: bytes = SALT) -> bytes:
    return signed(app, key, KIND_REVEAL_UPDATE, [update, salt])


def phase(app: FLApp) -> str:
    result = app.query("round/phase", b"")
    assert result.ok, result.reason
    value = decode(result.value)
    assert isinstance(value, list)
    return str(value[1])


def test_a_round_commits_then_reveals_then_aggregates() -> None:
    app = new_app()
    updates = [body(app, i + 1) for i in range(3)]
    assert phase(app) == "commit"
    assert (
        block(app, [commit_tx(app, k, u) for k, u in zip(CLIENTS, updates, strict=False)])
        == [0] * 3
    )
    # Three commitments fill the round: the reveal phase opens at the end of that block.
    assert phase(app) == "reveal"
    assert app.state.pending == []  # nothing of any update is on chain yet
    assert (
        block(app, [reveal_tx(app, k, u) for k, u in zip(CLIENTS, updates, strict=False)])
        == [0] * 3
    )
    assert app.state.round == 1  # every commitment revealed: the round closed
    assert app.state.model.version == 1
    assert app.state.commits == {}
    assert phase(app) == "commit"


def test_updates_in_the_clear_are_refused_on_a_commit_reveal_chain() -> None:
    app = new_app()
    check = app.check_tx(signed(app, CLIENTS[0], KIND_SUBMIT_UPDATE, body(app, 1)))
    assert not check.ok
    assert "commit-reveal" in check.reason


def test_a_reveal_during_the_commit_phase_is_refused() -> None:
    app = new_app()
    update = body(app, 1)
    block(app, [commit_tx(app, CLIENTS[0], update)])
    check = app.check_tx(reveal_tx(app, CLIENTS[0], update))
    assert not check.ok
    assert "commit phase" in check.reason


def test_the_commit_phase_ends_at_its_block_deadline() -> None:
    app = new_app(commit_blocks=3)
    update = body(app, 1)
    block(app, [commit_tx(app, CLIENTS[0], update)])
    block(app, [])
    assert phase(app) == "commit"
    block(app, [])  # height 3 = opened (0) + commit_blocks
    assert phase(app) == "reveal"
    block(app, [reveal_tx(app, CLIENTS[0], update)])
    assert app.state.round == 1  # its only commitment revealed


def test_a_reveal_that_does_not_match_its_commitment_is_refused_and_slashed() -> None:
    app = new_app(client_slash_permille=100)
    honest, other = body(app, 1), body(app, 2)
    block(app, [commit_tx(app, k, honest) for k in CLIENTS[:3]])
    bad = reveal_tx(app, CLIENTS[0], other)
    assert app.check_tx(bad).ok  # admitted: in a block it is evidence against its sender
    assert block(app, [bad]) == [CODE_FAULT]
    assert app.state.incentives.econ.ledger.stake(CLIENTS[0].public_key) == 900
    assert CLIENTS[0].public_key not in app.state.pending_by_client
    assert app.state.account(CLIENTS[0].public_key).nonce == 2  # executed: no replay


def test_a_wrong_salt_is_a_mismatch_too() -> None:
    app = new_app()
    update = body(app, 1)
    block(app, [commit_tx(app, k, update) for k in CLIENTS[:3]])
    assert block(app, [reveal_tx(app, CLIENTS[0], update, salt=b"\x01" * 32)]) == [CODE_FAULT]


def test_two_different_commitments_in_one_round_are_equivocation() -> None:
    app = new_app(client_slash_permille=100)
    block(app, [commit_tx(app, CLIENTS[0], body(app, 1))])
    second = commit_tx(app, CLIENTS[0], body(app, 2))
    assert app.check_tx(second).ok
    assert block(app, [second]) == [CODE_FAULT]
    assert app.state.incentives.econ.ledger.stake(CLIENTS[0].public_key) == 900
    repeat = commit_tx(app, CLIENTS[0], body(app, 1))  # the same commitment again: no fault
    assert not app.check_tx(repeat).ok


def test_a_reveal_without_a_commitment_counts_against_the_client_but_is_no_slash() -> None:
    app = new_app()
    block(app, [commit_tx(app, k, body(app, 1)) for k in CLIENTS[:3]])
    stray = reveal_tx(app, CLIENTS[3], body(app, 1))
    assert block(app, [stray]) == [CODE_FAULT]
    record = app.state.incentives.econ.clients[CLIENTS[3].public_key]
    assert (record.evidence, record.judged, record.slashed) == (30, 1, 0)  # a flag's weight
    assert CLIENTS[3].public_key not in app.state.pending_by_client


def test_a_commitment_left_unrevealed_counts_against_the_client() -> None:
    app = new_app()
    updates = [body(app, 1), body(app, 2), body(app, 3)]
    block(app, [commit_tx(app, k, u) for k, u in zip(CLIENTS, updates, strict=False)])
    block(app, [reveal_tx(app, k, u) for k, u in zip(CLIENTS[:2], updates, strict=False)])
    for _ in range(PARAMS.round_deadline_ms // BLOCK_MS):
        block(app, [])
    assert app.state.round == 1  # closed at the reveal deadline with two updates
    assert app.state.incentives.econ.clients[CLIENTS[2].public_key].evidence == 30


def test_a_client_that_never_reveals_is_never_slashed_and_never_paid() -> None:
    """A client that crashes between its commitment and its reveal in every round (or withholds
    every reveal) proves nothing: its evidence settles at the flag weight, below the bound.
    At full suspicion, as before session 14, it was slashed in round 23."""
    app = new_app(client_slash_permille=100)
    crasher = CLIENTS[2].public_key
    for fl_round in range(40):
        updates = [body(app, 1 + i) for i in range(3)]
        block(app, [commit_tx(app, k, u) for k, u in zip(CLIENTS, updates, strict=False)])
        while phase(app) != "reveal":
            block(app, [])
        block(app, [reveal_tx(app, k, u) for k, u in zip(CLIENTS[:2], updates, strict=False)])
        while app.state.round == fl_round:
            block(app, [])
    record = app.state.incentives.econ.clients[crasher]
    assert (record.judged, record.slashed, record.rewarded) == (40, 0, 0)
    assert 400 < record.evidence <= 500  # risen toward the flag weight, and no further
    assert app.state.incentives.econ.ledger.stake(crasher) == 1_000


def test_a_commitment_names_its_sender_and_round() -> None:
    update: Value = [1]  # any body: the digest binds sender and round
    a = commitment(CLIENTS[0].public_key, 0, update, SALT)
    assert a != commitment(CLIENTS[1].public_key, 0, update, SALT)
    assert a != commitment(CLIENTS[0].public_key, 1, update, SALT)
    assert a != commitment(CLIENTS[0].public_key, 0, update, b"\x00" * 32)


def test_commit_state_is_hashed_and_survives_a_snapshot() -> None:
    a, b = new_app(), new_app()
    block(a, [commit_tx(a, CLIENTS[0], body(a, 1))])
    block(b, [commit_tx(b, CLIENTS[0], body(b, 2))])
    assert a.state.app_hash() != b.state.app_hash()  # the commitment is in the state
    restored = FLApp()
    restored.restore(a.snapshot())
    assert restored.state.app_hash() == a.state.app_hash()
    assert restored.state.commits == a.state.commits


def test_single_phase_chain_refuses_commitments() -> None:
    app = new_app(commit_blocks=0)
    check = app.check_tx(commit_tx(app, CLIENTS[0], body(app, 1)))
    assert not check.ok
    assert "single-phase" in check.reason


@pytest.mark.parametrize("commit_blocks", [0, 2])
def test_the_sdk_sends_an_update_the_way_the_chain_wants_it(commit_blocks: int) -> None:
    transport = InProcessTransport(genesis(commit_blocks))
    model = fetch_model(transport)
    result = submit_update(
        transport, CLIENTS[0], model, np.full(15, 0.5), 10, PARAMS, transport.produce_block
    )
    assert result.accepted, result.reason
    kinds = {KIND_COMMIT_UPDATE} if commit_blocks else {KIND_SUBMIT_UPDATE}
    assert {decode_tx(tx).kind for tx in transport.mempool} <= kinds | {KIND_REVEAL_UPDATE}
    transport.wait_for_round(1, blocks_max=8)
    assert fetch_model(transport).version == 1
    assert transport.app.state.incentives.econ.clients.get(CLIENTS[0].public_key) is None or (
        transport.app.state.incentives.econ.clients[CLIENTS[0].public_key].faults == 0
    )


def test_sdk_commitment_matches_its_reveal() -> None:
    app = new_app()
    model = RemoteModel(0, 0, app.state.model.hash, SHAPES, np.zeros(15))
    commit, reveal = build_commit_reveal(
        CLIENTS[0], CHAIN, 0, model, np.full(15, 0.5), 10, PARAMS, SALT
    )
    block(app, [commit])
    for _ in range(3):
        block(app, [])
    assert phase(app) == "reveal"
    assert block(app, [reveal]) == [0]
    assert app.state.round == 1


def test_switching_commit_reveal_off_mid_round_punishes_nobody() -> None:
    app = new_app()
    block(app, [commit_tx(app, CLIENTS[0], body(app, 1))])
    app.state.incentives.econ.params = replace(app.state.incentives.econ.params, commit_blocks=0)
    for _ in range(PARAMS.round_deadline_ms // BLOCK_MS):
        block(app, [])
    assert app.state.round == 1
    assert app.state.commits == {}
    record = app.state.incentives.econ.clients.get(CLIENTS[0].public_key)
    assert record is None or record.evidence == 0
