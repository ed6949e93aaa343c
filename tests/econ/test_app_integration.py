"""The incentives layer inside FLApp: signed transactions, block hooks, queries, snapshots.

Everything here goes through the application's public surface (check_tx, finalize_block,
query, snapshot/restore) with real ed25519-signed transactions.
"""

from dataclasses import replace

import numpy as np
import pytest

from consensus.app import BlockInfo, Genesis, GenesisValidator, Misbehavior, VoteInfo
from consensus.codec import Value, decode
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.economics.genesis import SECTION, Allocation, EconGenesis
from fl.economics.params import EconParams
from fl.fixed import FRAC_BITS
from fl.genesis import build_app_state
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, sign_tx

CHAIN = "econ-app-test"
VALIDATORS = [PrivateKey.from_label(f"app-val-{i}") for i in range(4)]
CLIENTS = [PrivateKey.from_label(f"app-client-{i}") for i in range(4)]
PARAMS = replace(Params(), rule="fedavg", updates_per_round=4, update_norm_max=64 << FRAC_BITS)


def new_app(econ_params: EconParams | None = None, params: Params = PARAMS) -> FLApp:
    econ = EconGenesis(
        allocations=tuple(Allocation(k.public_key, 5_000, 1_000) for k in CLIENTS),
        reserve=1_000_000,
        params=econ_params or EconParams(gov_voting_period_ms=5_000),
    )
    app = FLApp()
    app.init_chain(
        Genesis(
            chain_id=CHAIN,
            validators=tuple(GenesisValidator(v.public_key, 10) for v in VALIDATORS),
            app_state=build_app_state(((3, 4), (3,)), None, params, ((SECTION, econ.encode()),)),
        )
    )
    return app


def tx(app: FLApp, key: PrivateKey, kind: str, body: Value) -> bytes:
    nonce = app.state.account(key.public_key).nonce
    return sign_tx(key, CHAIN, kind, nonce, body).to_wire()


def block(app: FLApp, txs: list[bytes], evidence: tuple[Misbehavior, ...] = ()) -> list[int]:
    height = app.state.height + 1
    commit = tuple(VoteInfo(v.public_key, 10, True) for v in VALIDATORS) if height > 1 else ()
    info = BlockInfo(CHAIN, height, height * 1000, VALIDATORS[0].public_key, b"", commit, evidence)
    result = app.finalize_block(txs, info)
    app.commit()
    block.last = result  # type: ignore[attr-defined]
    return [r.code for r in result.tx_results]


def query(app: FLApp, path: str) -> Value:
    result = app.query(path, b"")
    assert result.ok, result.reason
    return decode(result.value)


def test_transfer_bond_unbond_through_signed_transactions() -> None:
    app = new_app(EconParams(unbonding_period_ms=3_000))
    a, b = CLIENTS[0], CLIENTS[1]
    assert block(app, [tx(app, a, "transfer", [b.public_key, 1_500])]) == [0]
    assert block(app, [tx(app, b, "bond", [2_000])]) == [0]
    assert query(app, f"econ/account/{b.public_key.hex()}")[:3] == [4_500, 3_000, 0]  # type: ignore[index]
    assert block(app, [tx(app, b, "unbond", [500])]) == [0]  # height 3, matures at 6
    assert query(app, f"econ/account/{b.public_key.hex()}")[:3] == [4_500, 2_500, 500]  # type: ignore[index]
    block(app, [])
    block(app, [])
    assert app.state.height == 5
    assert app.state.incentives.econ.ledger.unbonding_of(b.public_key) == 500
    block(app, [])
    assert app.state.incentives.econ.ledger.balance(b.public_key) == 5_000


def test_rejected_transaction_leaves_the_incentives_state_unchanged() -> None:
    app = new_app(EconParams(block_reward=0))
    block(app, [])
    before = app.state.incentives.encode()
    bad = tx(app, CLIENTS[0], "transfer", [CLIENTS[1].public_key, 10**9])
    check = app.check_tx(bad)
    assert not check.ok
    assert "exceeds balance" in check.reason
    assert block(app, [bad]) == [1]
    assert app.state.incentives.encode() == before


def test_power_changes_go_out_as_validator_updates() -> None:
    app = new_app()
    v = VALIDATORS[1]
    assert block(app, [tx(app, CLIENTS[0], "transfer", [v.public_key, 5_000])]) == [0]
    assert block(app, [tx(app, v, "bond", [5_000])]) == [0]
    updates = block.last.validator_updates  # type: ignore[attr-defined]
    assert [(u.public_key, u.power) for u in updates] == [(v.public_key, 15)]


def test_double_sign_evidence_slashes_once_and_removes_the_validator() -> None:
    app = new_app()
    bad = VALIDATORS[2].public_key
    evidence = (Misbehavior("duplicate_vote", bad, 1, 10),)
    block(app, [])
    block(app, [], evidence)
    updates = block.last.validator_updates  # type: ignore[attr-defined]
    assert [(u.public_key, u.power) for u in updates] == [(bad, 0)]
    burned = app.state.incentives.econ.ledger.burned
    assert burned == 10_000 * 50 // 1000
    block(app, [], evidence)
    assert app.state.incentives.econ.ledger.burned == burned


def _update(app: FLApp, key: PrivateKey, delta: np.ndarray) -> bytes:
    body = SubmitUpdate(
        app.state.round,
        app.state.model.hash,
        10,
        FRAC_BITS,
        32,
        delta.size,
        delta.astype("<i4").tobytes(),
    )
    return tx(app, key, KIND_SUBMIT_UPDATE, body.encode())


def test_round_close_rewards_aligned_clients_and_slashes_the_opposed_one() -> None:
    app = new_app(
        # Evidence at once from low agreement (a governable choice); the three honest deltas
        # are near-copies by construction, so the collusion test is off.
        EconParams(
            evidence_low_permille=400,
            evidence_rounds_min=1,
            evidence_decay_permille=1000,
            collusion_permille=0,
        ),
        params=replace(PARAMS, rule="median"),
    )
    rng = np.random.default_rng(7)
    base = rng.integers(1 << 14, 1 << 16, size=15)
    deltas = [base + rng.integers(-512, 512, size=15) for _ in range(3)] + [-4 * base]
    txs = [_update(app, k, d) for k, d in zip(CLIENTS, deltas, strict=True)]
    assert block(app, txs) == [0, 0, 0, 0]
    assert app.state.round == 1
    records = app.state.incentives.econ.clients
    assert all(records[k.public_key].rewarded > 0 for k in CLIENTS[:3])
    ledger = app.state.incentives.econ.ledger
    assert ledger.stake(CLIENTS[3].public_key) == 900
    kinds = [e.kind for e in block.last.events]  # type: ignore[attr-defined]
    assert "client_slashed" in kinds


def test_a_client_without_stake_is_refused_when_stake_is_required() -> None:
    app = new_app()
    stranger = PrivateKey.from_label("stranger")
    check = app.check_tx(_update(app, stranger, np.ones(15, dtype=np.int64)))
    assert not check.ok
    assert "below the client minimum" in check.reason


def test_governance_switches_the_rule_at_the_end_height() -> None:
    app = new_app()
    proposer = CLIENTS[0]
    body: Value = [["param", "rule", "multi_krum"], 1_000]
    assert block(app, [tx(app, proposer, "gov_propose", body)]) == [0]  # height 1, ends 6
    votes = [tx(app, v, "gov_vote", [1, "yes"]) for v in VALIDATORS]  # 40_000 of 44_000
    assert block(app, votes) == [0, 0, 0, 0]
    for _ in range(3):
        block(app, [])
        assert app.state.params.rule == "fedavg"
    block(app, [])  # height 6: tallied and executed at its end
    assert app.state.height == 6
    assert app.state.params.rule == "multi_krum"
    summary = query(app, "gov/proposals")
    assert summary[0][3] == "passed"  # type: ignore[index]
    late = tx(app, CLIENTS[1], "gov_vote", [1, "no"])
    assert "ended" in app.check_tx(late).reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([["param", "rule", "multi_krum"], 0], "below the minimum"),
        ([["param", "no_such_param", 1], 1_000], "unknown parameter"),
        ([["param", "trim_permille", 900], 1_000], "not an integer in"),
    ],
)
def test_bad_proposals_are_rejected_by_check_tx_and_in_blocks(body: Value, reason: str) -> None:
    app = new_app()
    before = app.state.app_hash()
    bad = tx(app, CLIENTS[0], "gov_propose", body)
    assert reason in app.check_tx(bad).reason
    assert block(app, [bad]) == [1]
    assert app.state.incentives.gov.proposals == {}
    assert app.state.incentives.econ.ledger.balance(CLIENTS[0].public_key) == 5_000
    assert before != app.state.app_hash()  # height and nonce moved; nothing else did


def test_snapshot_restores_the_incentives_state() -> None:
    app = new_app()
    block(app, [tx(app, CLIENTS[0], "gov_propose", [["text", "hello", "world"], 1_000])])
    other = FLApp()
    other.restore(app.snapshot())
    assert other.state.app_hash() == app.state.app_hash()
    assert other.state.incentives.encode() == app.state.incentives.encode()
