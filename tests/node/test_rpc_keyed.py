"""The RPC's keyed JSON views, held against the answers of a live FLApp (no drift allowed)."""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consensus.codec import decode
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.economics.params import EconParams
from fl.txs import sign_tx
from node.rpc.keyed import ShapeError, keyed
from tests.fl.helpers import CHAIN_ID, key, new_app, random_delta, run_block, update_tx

VALIDATOR = PrivateKey.from_label("v0")


def answer(app: FLApp, path: str) -> object:
    result = app.query(path, b"")
    assert result.ok, result.reason
    return keyed(path, decode(result.value))


@pytest.fixture(scope="module")
def app() -> FLApp:
    """A chain whose first FL round closed and which holds one governance proposal."""
    app = new_app()
    rng = np.random.default_rng(0)
    honest = [update_tx(app, key(i), random_delta(rng)) for i in range(2)]
    outlier = update_tx(app, key(2), np.full(15, 8 << 16, dtype=np.int64))  # flagged, dropped
    run_block(app, [*honest, outlier])
    deposit = EconParams().gov_deposit_min
    propose = sign_tx(VALIDATOR, CHAIN_ID, "gov_propose", 0, [["text", "hi", "there"], deposit])
    vote = sign_tx(VALIDATOR, CHAIN_ID, "gov_vote", 1, [1, "yes"])
    results = run_block(app, [propose.to_wire(), vote.to_wire()]).tx_results
    assert [r.ok for r in results] == [True, True]
    return app


def test_round_names_every_field_and_the_last_outcome(app: FLApp) -> None:
    value = answer(app, "round")
    assert isinstance(value, dict)
    assert value["round"] == 1
    assert value["updates_per_round"] == 3
    outcome = value["last_outcome"]
    assert outcome["round"] == 0
    assert outcome["rule"] == app.state.params.rule
    assert len(outcome["accepted"]) == 2
    assert outcome["flagged"][0]["client"] == key(2).public_key.hex()
    assert set(outcome["accepted"][0]) == {"client", "samples", "score", "tx"}
    assert len(value["model_hash"]) == 64  # hex


def test_params_account_update_and_proposals_are_keyed(app: FLApp) -> None:
    params = answer(app, "params")
    assert isinstance(params, dict)
    assert params["rule"] == app.state.params.rule
    account = answer(app, f"account/{key(0).public_key.hex()}")
    assert account == {"next_nonce": 1}
    tx_hash = next(iter(app.state.records)).hex()
    record = answer(app, f"update/{tx_hash}")
    assert isinstance(record, dict)
    assert record["round"] == 0
    assert record["status"] in ("accepted", "flagged")
    proposals = answer(app, "gov/proposals")
    assert isinstance(proposals, list)
    assert proposals[0]["id"] == 1
    assert set(proposals[0]["tally"]) == {"yes", "no", "abstain", "veto", "total_bonded"}
    proposal = answer(app, "gov/proposal/1")
    assert isinstance(proposal, dict)
    assert proposal["proposer"] == VALIDATOR.public_key.hex()
    assert proposal["votes"] == {VALIDATOR.public_key.hex(): "yes"}


def test_a_layout_change_is_an_error_not_a_shifted_object() -> None:
    with pytest.raises(ShapeError, match="'round' answer has 7 fields, expected 8"):
        keyed("round", [1, 2, 3, 4, 5, 6, b"h"])
    assert keyed("econ/supply", [1, b"\x01"]) == [1, "01"]  # no table: positional


def _shape(value: object) -> object:
    """Field names, recursively (lists by their first element): what an example must match."""
    if isinstance(value, dict):
        if value and all(len(str(k)) == 64 or k.endswith("...") for k in value):
            return "map"  # keyed by public key (votes): the keys are data, not fields
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_shape(value[0])]
    return "leaf"


def _doc_examples() -> dict[str, dict[str, Any]]:
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    found = re.findall(r"<!-- example: GET (\S+) -->\n```json\n(.*?)```", text, re.S)
    return {path: json.loads(body) for path, body in found}


def test_every_example_in_the_api_doc_has_the_fields_of_a_live_answer(app: FLApp) -> None:
    examples = _doc_examples()
    assert set(examples) == {"/round", "/params", "/gov/proposal/1"}
    for path, example in examples.items():
        assert set(example) == {"height", "value"}
        live = answer(app, path.strip("/"))
        assert _shape(example["value"]) == _shape(live), path
