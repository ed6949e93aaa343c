"""The FL application: transactions, rejections that leave state unchanged, rounds, queries."""

from dataclasses import replace

import numpy as np
import pytest

from consensus.codec import decode, encode
from consensus.crypto import PrivateKey
from fl.app import CODE_FAULT, FLApp
from fl.errors import RejectedError
from fl.fixed import DELTA_ABS_MAX, FRAC_BITS, ONE
from fl.params import Params
from fl.txs import KIND_SUBMIT_UPDATE, SubmitUpdate, decode_tx, sign_tx
from tests.fl.helpers import (
    CHAIN_ID,
    SIZE,
    block,
    key,
    new_app,
    random_delta,
    run_block,
    update_tx,
)


def test_round_closes_after_k_updates_and_moves_the_model() -> None:
    app = new_app()
    rng = np.random.default_rng(1)
    deltas = [random_delta(rng) for _ in range(3)]
    txs = [update_tx(app, key(i), d) for i, d in enumerate(deltas)]
    assert all(app.check_tx(tx).ok for tx in txs)
    base = app.state.model
    result = run_block(app, txs)
    assert [r.code for r in result.tx_results] == [0, 0, 0]
    assert app.state.round == 1
    assert app.state.model.version == 1
    assert app.state.model.hash != base.hash
    # The incentives layer follows with its own settlement event.
    assert [e.kind for e in result.events] == ["fl_round_closed", "round_settled"]
    # centered_clip of three updates stays within their coordinate-wise range
    stacked = np.stack(deltas)
    assert np.all(app.state.model.weights >= stacked.min(axis=0) - 1)
    assert np.all(app.state.model.weights <= stacked.max(axis=0) + 1)


def test_round_outcome_lists_contributions_and_flags_for_incentives() -> None:
    params = replace(Params(), rule="multi_krum", updates_per_round=5)
    app = new_app(params)
    rng = np.random.default_rng(2)
    honest = [random_delta(rng, bound=1000) for _ in range(4)]
    outlier = np.full(SIZE, DELTA_ABS_MAX // 2, dtype=np.int64)
    txs = [update_tx(app, key(i), d) for i, d in enumerate([*honest, outlier])]
    run_block(app, txs)
    round_info = decode(app.query("round", b"").value)
    assert isinstance(round_info, list)
    outcome = round_info[7]
    assert isinstance(outcome, list)
    accepted, flagged = outcome[6], outcome[7]
    assert isinstance(accepted, list)
    assert isinstance(flagged, list)
    assert key(4).public_key in [f[0] for f in flagged]
    assert len(accepted) + len(flagged) == 5
    assert all(0 <= c[2] <= 1000 for c in accepted)


def test_round_closes_at_deadline_with_what_it_has() -> None:
    params = replace(Params(), updates_per_round=5, round_deadline_ms=3_000)
    app = new_app(params)
    run_block(app, [update_tx(app, key(0), random_delta(np.random.default_rng(3)))])
    run_block(app, [])
    assert app.state.round == 0
    run_block(app, [])
    assert app.state.round == 1
    assert app.state.model.version == 1


def test_deadline_with_too_few_updates_keeps_the_model() -> None:
    params = replace(Params(), updates_per_round=5, updates_min=2, round_deadline_ms=2_000)
    app = new_app(params)
    tx = update_tx(app, key(0), random_delta(np.random.default_rng(4)))
    run_block(app, [tx])
    base = app.state.model.hash
    run_block(app, [])
    assert app.state.round == 1
    assert app.state.model.hash == base
    record = decode(app.query(f"update/{decode_tx(tx).hash().hex()}", b"").value)
    assert isinstance(record, list)
    assert record[3] == "unused"


def _resigned(tx: bytes, signer: PrivateKey) -> bytes:
    signed = decode_tx(tx)
    return sign_tx(signer, CHAIN_ID, signed.kind, signed.nonce, signed.body).to_wire()


def _bad_inputs(app: FLApp) -> dict[str, tuple[bytes, str]]:
    good = random_delta(np.random.default_rng(5))
    first = update_tx(app, key(0), good)
    run_block(app, [first])  # client 0 has now submitted for round 0, nonce 1
    wrong_sig = bytearray(update_tx(app, key(1), good))
    wrong_sig[-1] ^= 1
    out_of_range = np.full(SIZE, DELTA_ABS_MAX + 1, dtype=np.int64)
    q16 = SubmitUpdate(0, app.state.model.hash, 1, 40, 16, SIZE, b"\x00" * (2 * SIZE)).encode()
    return {
        "wrong shape": (update_tx(app, key(1), np.zeros(SIZE + 1, dtype=np.int64)), "shape"),
        "length mismatch": (update_tx(app, key(1), good[:-1], count=SIZE), "bytes"),
        "out of range": (update_tx(app, key(1), out_of_range), "exceeds"),
        "wrong round": (update_tx(app, key(1), good, round_number=1), "round"),
        "wrong base hash": (update_tx(app, key(1), good, base_hash=b"\x01" * 32), "base model"),
        "second update": (update_tx(app, key(0), good), "already submitted"),
        "bad signature": (bytes(wrong_sig), "signature"),
        "wrong chain": (update_tx(app, key(1), good, chain_id="other"), "signature"),
        "replayed nonce": (first, "nonce"),
        "nonce gap": (update_tx(app, key(1), good, nonce=1), "nonce"),
        "unknown kind": (sign_tx(key(1), CHAIN_ID, "mint", 0, []).to_wire(), "unknown"),
        "malformed": (b"\x93\x01\x02", "malformed"),
        "bad body": (sign_tx(key(1), CHAIN_ID, KIND_SUBMIT_UPDATE, 0, [1]).to_wire(), "malformed"),
        "scale too fine": (sign_tx(key(1), CHAIN_ID, KIND_SUBMIT_UPDATE, 0, q16).to_wire(), ""),
        "norm": (update_tx(app, key(1), np.full(SIZE, 15 * ONE, dtype=np.int64)), "norm"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong shape",
        "wrong round",
        "wrong base hash",
        "second update",
        "bad signature",
        "wrong chain",
        "replayed nonce",
        "unknown kind",
        "malformed",
        "norm",
    ],
)
def test_bad_input_is_rejected_with_a_reason_and_changes_nothing(case: str) -> None:
    app, twin = new_app(), new_app()
    tx, why = _bad_inputs(app)[case]
    _bad_inputs(twin)
    snapshot = app.snapshot()
    checked = app.check_tx(tx)
    assert not checked.ok
    assert why in checked.reason
    assert app.snapshot() == snapshot
    with_bad = run_block(app, [tx])
    without = run_block(twin, [])
    assert with_bad.tx_results[0].code != 0
    assert with_bad.tx_results[0].reason
    assert with_bad.app_hash == without.app_hash


@pytest.mark.parametrize("case", ["length mismatch", "out of range", "bad body"])
def test_signed_undecodable_update_in_a_block_is_an_objective_fault(case: str) -> None:
    """The mempool refuses it; if a proposer includes it anyway, its signed bytes alone prove
    the fault: the sender is slashed and jailed at once, its nonce advances (no replay)."""
    app = new_app()
    tx, why = _bad_inputs(app)[case]
    checked = app.check_tx(tx)
    assert not checked.ok
    assert why in checked.reason
    sender = decode_tx(tx).sender
    result = run_block(app, [tx])
    assert result.tx_results[0].code == CODE_FAULT
    assert why in result.tx_results[0].reason
    assert [e.kind for e in result.tx_results[0].events] == ["client_slashed"]
    assert app.state.account(sender).nonce == 1
    record = app.state.incentives.econ.clients[sender]
    assert (record.faults, record.jailed_until_round) == (1, 1)


def test_two_different_updates_in_one_round_are_equivocation() -> None:
    """The same update again is a retry (refused, nothing else); a different one is signed
    evidence of equivocation: admitted by the mempool, slashed once in a block."""
    app = new_app()
    first = random_delta(np.random.default_rng(5))
    run_block(app, [update_tx(app, key(0), first)])
    assert "already submitted" in app.check_tx(update_tx(app, key(0), first)).reason
    other = update_tx(app, key(0), random_delta(np.random.default_rng(6)))
    assert app.check_tx(other).ok
    result = run_block(app, [other])
    assert result.tx_results[0].code == CODE_FAULT
    assert [e.kind for e in result.tx_results[0].events] == ["client_slashed"]
    record = app.state.incentives.econ.clients[key(0).public_key]
    assert record.faults == 1
    assert len(app.state.pending) == 1  # the first update stays; the second is evidence only


def test_a_scale_finer_than_the_model_is_floored_not_rejected() -> None:
    app = new_app()
    tx, _ = _bad_inputs(app)["scale too fine"]
    assert app.check_tx(tx).ok  # zeros at scale 2**40 are legal: the chain floors to 2**-16


def test_nonce_gap_is_admitted_by_the_mempool_but_not_executed() -> None:
    app = new_app()
    tx = update_tx(app, key(1), np.zeros(SIZE, dtype=np.int64), nonce=1)
    assert app.check_tx(tx).ok  # queued behind nonce 0
    assert run_block(app, [tx]).tx_results[0].code != 0


def test_process_proposal_rejects_blocks_with_unauthenticated_transactions() -> None:
    app = new_app()
    good = update_tx(app, key(0), np.zeros(SIZE, dtype=np.int64))
    bad = bytearray(good)
    bad[-1] ^= 1
    assert app.process_proposal([good], block(app))
    assert not app.process_proposal([good, bytes(bad)], block(app))


def test_prepare_proposal_keeps_nonce_order_and_size() -> None:
    app = new_app()
    a0 = update_tx(app, key(0), np.zeros(SIZE, dtype=np.int64))
    a1 = sign_tx(key(0), CHAIN_ID, "mint", 1, []).to_wire()
    b1 = update_tx(app, key(1), np.zeros(SIZE, dtype=np.int64), nonce=1)
    assert app.prepare_proposal([a1, a0, b1, b"junk"], block(app), 10**6) == [a0]
    assert app.prepare_proposal([a0, a1], block(app), len(a0)) == [a0]


def test_queries_cover_model_round_account_update_params() -> None:
    app = new_app()
    tx = update_tx(app, key(0), random_delta(np.random.default_rng(6)))
    run_block(app, [tx])
    model = decode(app.query("model", b"").value)
    assert isinstance(model, list)
    assert model[0] == 0
    assert model[1] == app.state.model.hash
    assert decode(app.query("model/0", b"").value) == model
    assert not app.query("model/7", b"").ok
    assert decode(app.query(f"account/{key(0).public_key.hex()}", b"").value) == [1]
    record = decode(app.query(f"update/{decode_tx(tx).hash().hex()}", b"").value)
    assert isinstance(record, list)
    assert record[:4] == [0, key(0).public_key, 10, "pending"]
    assert decode(app.query("params", b"").value)[0] == ["rule", "history_clip"]  # type: ignore[index]
    for bad in ("nope", "account/zz", "update/00", "model/x"):
        result = app.query(bad, b"")
        assert not result.ok
        assert result.reason


def test_snapshot_restore_is_the_identity_and_continues_identically() -> None:
    app = new_app()
    rng = np.random.default_rng(7)
    run_block(app, [update_tx(app, key(i), random_delta(rng)) for i in range(3)])
    run_block(app, [update_tx(app, key(5), random_delta(rng))])
    copy = FLApp()
    copy.restore(app.snapshot())
    assert copy.snapshot() == app.snapshot()
    assert copy.info() == app.info()
    more = [update_tx(app, key(i), random_delta(rng)) for i in (6, 7)]
    assert run_block(app, more).app_hash == run_block(copy, more).app_hash


def test_restore_rejects_garbage() -> None:
    with pytest.raises(RejectedError):
        FLApp().restore(encode(["not", "a", "snapshot"]))


def test_info_reports_the_last_committed_height_and_hash() -> None:
    app = new_app()
    result = app.finalize_block([], block(app))
    assert app.info().last_height == 0
    app.commit()
    assert app.info().last_height == 1
    assert app.info().last_app_hash == result.app_hash


def test_every_rule_runs_through_the_app() -> None:
    for rule in ("fedavg", "median", "trimmed_mean", "multi_krum", "centered_clip"):
        app = new_app(replace(Params(), rule=rule, updates_per_round=4))
        rng = np.random.default_rng(8)
        run_block(app, [update_tx(app, key(i), random_delta(rng)) for i in range(4)])
        assert app.state.model.version == 1, rule


def test_fixed_point_scale_is_sixteen_bits() -> None:
    assert ONE == 1 << FRAC_BITS == 65536
