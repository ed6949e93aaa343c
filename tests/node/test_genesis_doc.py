"""genesis.json's readable app_state and signed validator entries (gentx)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.economics.genesis import OPEN_GENESIS, Allocation, parse_section
from fl.genesis import parse_app_state
from node.apps import genesis_app_state
from node.appstate import app_state_from_doc, app_state_to_doc, with_account
from node.errors import ConfigError
from node.genesis import genesis_hash, genesis_to_json, read_genesis_file, write_genesis
from node.gentx import read_gentx, sign_gentx, write_gentx

VALIDATOR = PrivateKey.from_label("org-validator")
NODE = PrivateKey.from_label("org-node")


def fl_genesis(app_state: bytes) -> Genesis:
    return Genesis("c1", (GenesisValidator(VALIDATOR.public_key, 10, "org"),), app_state)


def test_the_readable_app_state_names_the_same_bytes() -> None:
    state = genesis_app_state("fl", clients=3)
    doc = app_state_to_doc(state)
    assert doc["params"]["updates_per_round"] == 3
    assert doc["model"]["shapes"] == [[10, 64], [10]]
    assert app_state_from_doc(json.loads(json.dumps(doc))) == state


def test_a_genesis_file_round_trips_and_its_hash_ignores_formatting(tmp_path: Path) -> None:
    genesis = fl_genesis(genesis_app_state("fl", clients=2))
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    assert isinstance(json.loads(path.read_text())["app_state"], dict)
    assert read_genesis_file(path).genesis == genesis
    reordered = dict(reversed(list(json.loads(genesis_to_json(genesis)).items())))
    path.write_text(json.dumps(reordered, indent=7))
    assert genesis_hash(read_genesis_file(path).genesis) == genesis_hash(genesis)
    assert genesis_hash(replace(genesis, chain_id="c2")) != genesis_hash(genesis)


def test_legacy_hex_app_state_is_still_read(tmp_path: Path) -> None:
    genesis = fl_genesis(genesis_app_state("fl", clients=2))
    body = json.loads(genesis_to_json(genesis))
    body["app_state"] = genesis.app_state.hex()
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(body))
    assert read_genesis_file(path).genesis == genesis


def test_params_may_name_only_what_they_change_and_relations_hold_for_the_table() -> None:
    doc = app_state_to_doc(genesis_app_state("fl", clients=2))
    # updates_min 12 is only valid together with updates_per_round 20: checked as a whole.
    doc["params"] = {"updates_min": 12, "updates_per_round": 20, "rule": "median"}
    params = parse_app_state(app_state_from_doc(doc)).params
    assert (params.updates_min, params.updates_per_round, params.rule) == (12, 20, "median")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["params"].update(rule="mean"), "app_state.params.rule"),
        (lambda d: d["params"].update(updates_min=99), "updates_min must not exceed"),
        (lambda d: d.update(extra={}), "app_state.extra: unknown section"),
        (lambda d: d["model"].update(shapes=[[0]]), "app_state.model.shapes[0]"),
        (lambda d: d["model"].update(weights="00" * 8), "app_state.model.weights: 1 values"),
        (lambda d: d["model"].update(weights="xyz"), "app_state.model.weights: expected"),
        (
            lambda d: d.update(economics={"accounts": [{"key": "ab", "balance": 1}]}),
            "accounts[0].key: expected 32 bytes",
        ),
        (lambda d: d.update(economics={"reserve": -1}), "economics.reserve"),
        (lambda d: d.update(economics={"params": {"nope": 1}}), "economics.params.nope"),
    ],
)
def test_a_bad_field_is_named(change, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = app_state_to_doc(genesis_app_state("fl", clients=2))
    change(doc)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        app_state_from_doc(doc)


def test_adding_an_account_keeps_the_open_chain_rules_and_refuses_duplicates() -> None:
    doc = app_state_to_doc(genesis_app_state("fl", clients=2))
    key = PrivateKey.from_label("client").public_key
    doc = with_account(doc, key, 5, 100)
    econ = doc["economics"]
    assert econ["accounts"] == [{"key": key.hex(), "balance": 5, "bonded": 100}]
    assert econ["reserve"] == OPEN_GENESIS.reserve
    assert econ["params"]["client_stake_min"] == OPEN_GENESIS.params.client_stake_min
    with pytest.raises(ConfigError, match="already in the genesis"):
        with_account(doc, key, 1, 0)
    ((name, section),) = parse_app_state(app_state_from_doc(doc)).other
    assert name == "economics"
    assert parse_section(section).allocations == (Allocation(key, 5, 100),)


def test_a_gentx_is_signed_by_the_validator_key_over_every_field(tmp_path: Path) -> None:
    gentx = sign_gentx(VALIDATOR, NODE, "c1", "org", 10, "10.0.0.5:26656")
    assert gentx.p2p_address.startswith("/ip4/10.0.0.5/tcp/26656/p2p/12D3KooW")
    path = tmp_path / "gentx.json"
    write_gentx(path, gentx)
    assert read_gentx(path) == gentx
    for field, value in (("power", 11), ("name", "other"), ("chain_id", "c2")):
        body = json.loads(path.read_text())
        body[field] = value
        path.write_text(json.dumps(body))
        with pytest.raises(ConfigError, match="signature: not made by this validator key"):
            read_gentx(path)
        write_gentx(path, gentx)
    dns = sign_gentx(VALIDATOR, NODE, "c1", "org", 10, "validator0.example:26656")
    assert dns.p2p_address.startswith("/dns4/validator0.example/tcp/26656/")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        sign_gentx(VALIDATOR, NODE, "c1", "org", 10, "no-port")
