"""The genesis `fedchain testnet` writes: bond mode with every generated client bonded, so a
fresh unfunded key cannot submit (issue 14: 8 sybil keys once supplied 88% of the updates),
and commit-reveal rounds when asked for; and the multi-party draft (`fedchain genesis init`),
bond mode by default too, or a registry whose members the genesis admits."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from fl.app import FLApp
from fl.client.sdk import build_update, fetch_model, fetch_params, round_phase
from fl.client.transport import InProcessTransport
from fl.economics.genesis import EconGenesis, parse_section
from fl.economics.params import EconParams
from fl.errors import RejectedError
from node.apps import CLIENT_BOND, CLIENT_STAKE_MIN, genesis_app_state
from node.appstate import app_state_from_doc, app_state_to_doc, with_account
from node.cli import main as cli
from node.errors import ConfigError
from node.genesis import read_genesis_file

CHAIN = "testnet-genesis-test"
CLIENTS = [PrivateKey.from_label(f"tn-client-{i}") for i in range(3)]
VALIDATORS = (GenesisValidator(PrivateKey.from_label("tn-val").public_key, 10),)


def transport(commit_blocks: int = 0) -> InProcessTransport:
    state = genesis_app_state(
        "fl",
        len(CLIENTS),
        client_keys=tuple(k.public_key for k in CLIENTS),
        validators=VALIDATORS,
        commit_blocks=commit_blocks,
    )
    return InProcessTransport(Genesis(chain_id=CHAIN, validators=VALIDATORS, app_state=state))


def submit(t: InProcessTransport, key: PrivateKey) -> tuple[bool, str]:
    model = fetch_model(t)
    delta = np.random.default_rng(0).normal(0, 0.01, model.weights.shape)
    tx = build_update(key, CHAIN, 0, model, delta, 10, fetch_params(t))
    result = t.submit(tx)
    return result.accepted, result.reason


def test_generated_clients_are_bonded_and_strangers_are_refused() -> None:
    t = transport()
    econ = t.app.state.incentives.econ
    assert all(econ.ledger.stake(k.public_key) == CLIENT_BOND for k in CLIENTS)
    assert econ.params.client_stake_min == CLIENT_STAKE_MIN > 0
    assert econ.params.bond_per_weight > 0
    assert submit(t, CLIENTS[0]) == (True, "")
    accepted, reason = submit(t, PrivateKey.from_label("sybil"))
    assert not accepted
    assert "below the client minimum" in reason


def test_validators_keep_liquid_tokens_for_governance_deposits() -> None:
    econ = transport().app.state.incentives.econ
    key = VALIDATORS[0].public_key
    assert econ.ledger.balance(key) >= econ.params.gov_deposit_min
    assert econ.ledger.stake(key) > 0


def test_commit_reveal_is_off_unless_asked_for() -> None:
    assert round_phase(transport())[1] == "single"
    assert round_phase(transport(commit_blocks=40))[1] == "commit"


def test_the_kv_app_has_no_economics() -> None:
    assert genesis_app_state("kv", 3, client_keys=(CLIENTS[0].public_key,)) == b""


def test_an_fl_genesis_without_client_keys_stays_open() -> None:
    app = FLApp()
    app.init_chain(Genesis(CHAIN, VALIDATORS, genesis_app_state("fl", 2)))
    assert app.state.incentives.econ.params.client_stake_min == 0


def test_a_multi_party_draft_is_bond_mode_under_the_production_rules() -> None:
    genesis = Genesis(CHAIN, VALIDATORS, genesis_app_state("fl", 2, admission="bond"))
    app = FLApp()
    app.init_chain(genesis)
    econ = app.state.incentives.econ
    assert econ.params == EconParams()  # production defaults: no testnet periods
    assert econ.params.client_stake_min > 0
    assert econ.params.bond_per_weight > 0
    assert econ.ledger.reserve > 0  # rewards are funded
    accepted, reason = submit(InProcessTransport(genesis), PrivateKey.from_label("stranger"))
    assert not accepted
    assert "below the client minimum" in reason


def test_an_unknown_admission_is_refused() -> None:
    with pytest.raises(ConfigError, match="admission"):
        genesis_app_state("fl", 2, admission="whitelist")


def test_a_registry_draft_takes_only_the_clients_its_genesis_admits() -> None:
    """A consortium's registry from the first block: `genesis init --admission registry`, then
    `add-client` per member (bonded and admitted).  A bond alone admits nobody."""
    member, outsider = CLIENTS[0], CLIENTS[1]
    doc = app_state_to_doc(genesis_app_state("fl", 2, admission="registry"))
    doc = with_account(doc, member.public_key, 0, 500, admit=True)
    doc = with_account(doc, outsider.public_key, 0, 500)  # bonded, never admitted
    assert doc["economics"]["admitted_clients"] == [member.public_key.hex()]
    genesis = Genesis(CHAIN, VALIDATORS, app_state_from_doc(doc))
    t = InProcessTransport(genesis)
    assert t.app.state.incentives.econ.params.client_registry == 1
    assert submit(t, member) == (True, "")
    accepted, reason = submit(t, outsider)
    assert not accepted
    assert "registry" in reason


def test_a_genesis_without_admitted_clients_keeps_its_bytes() -> None:
    """The admitted list is a fifth element written only when it is not empty, so every
    economics section written before it encodes (and hashes) as before."""
    section = EconGenesis(reserve=5, params=EconParams())
    assert len(section.encode()) == 4  # type: ignore[arg-type]
    assert parse_section(section.encode()) == section
    admitted = replace(section, admitted=(CLIENTS[0].public_key,))
    assert parse_section(admitted.encode()) == admitted
    with pytest.raises(RejectedError, match="admitted twice"):
        parse_section(replace(admitted, admitted=admitted.admitted * 2).encode())
    with pytest.raises(RejectedError, match="empty list"):
        parse_section([*section.encode(), []])  # type: ignore[misc]


def test_the_genesis_cli_admits_each_added_client_in_registry_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "genesis.json"
    member, outsider = CLIENTS[0].public_key.hex(), CLIENTS[1].public_key.hex()
    assert (
        cli(
            ["genesis", "init", "--chain-id", CHAIN, "--admission", "registry", "--out", str(draft)]
        )
        == 0
    )
    assert cli(["genesis", "add-client", "--genesis", str(draft), "--key", member]) == 0
    assert "admitted to the client registry" in capsys.readouterr().out
    assert (
        cli(
            [
                "genesis",
                "add-account",
                "--genesis",
                str(draft),
                "--key",
                outsider,
                "--bonded",
                "500",
            ]
        )
        == 0
    )
    assert cli(["genesis", "show", str(draft)]) == 0
    shown = capsys.readouterr().out
    assert f"{member}  balance 0  bonded 100  (admitted client)" in shown
    assert f"{outsider}  balance 0  bonded 500\n" in shown
    loaded = read_genesis_file(draft, draft=True)
    t = InProcessTransport(replace(loaded.genesis, validators=VALIDATORS))
    assert submit(t, CLIENTS[0]) == (True, "")
    assert not submit(t, CLIENTS[1])[0]
