"""Config, key and genesis files: round-trips, and errors that name the field."""

from pathlib import Path

import pytest

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PrivateKey
from node.config import NodeConfig, P2PConfig, load_config, render_config
from node.errors import ConfigError
from node.genesis import read_genesis, write_genesis
from node.keys import read_key, write_key


def test_rendered_config_round_trips(tmp_path: Path) -> None:
    cfg = NodeConfig(
        moniker="v0",
        p2p=P2PConfig(listen_port=1234, persistent_peers=("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWx",)),
    )
    path = tmp_path / "config.toml"
    path.write_text(render_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("mood = 1", "mood: unknown setting"),
        ("[rpc]\nlisten_port = 70000", "rpc.listen_port"),
        ("[rpc]\nlisten_port = '1'", "rpc.listen_port: expected an integer"),
        ("[mempool]\ntxs_max = 0", "mempool.txs_max: must be positive"),
        ("[consensus]\npropose_timeout_ms = -1", "consensus.propose_timeout_ms"),
        ("[consensus]\ntimestamp_precision_ms = -1", "consensus.timestamp_precision_ms"),
        ("[consensus]\nmessage_delay_ms = 0", "consensus.message_delay_ms: must be positive"),
        ("[p2p]\npersistent_peers = ['localhost:1']", r"p2p.persistent_peers\[0\]"),
        ("[log]\nformat = 'xml'", "log.format"),
        ("[storage]\nfsync = 1", "storage.fsync: expected true or false"),
        ("rpc = 3", "rpc: expected a table"),
        ("[rpc\n", "invalid TOML"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load_config(path)


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fedchain init"):
        load_config(tmp_path / "nope.toml")


def test_keys_round_trip_and_are_private(tmp_path: Path) -> None:
    key = PrivateKey.from_label("k")
    path = tmp_path / "key.json"
    write_key(path, key)
    assert read_key(path).public_key == key.public_key
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text('{"type": "ed25519", "seed": "zz"}')
    with pytest.raises(ConfigError, match="seed"):
        read_key(path)


def test_genesis_round_trips_and_rejects_duplicates(tmp_path: Path) -> None:
    a, b = PrivateKey.from_label("a").public_key, PrivateKey.from_label("b").public_key
    genesis = Genesis(
        chain_id="test-chain",
        validators=(GenesisValidator(a, 10, "v0"), GenesisValidator(b, 5, "v1")),
        app_state=b"\x90",  # opaque bytes: the kv app's (an FL genesis is checked field by field)
        consensus_params=(("block_bytes_max", 1000),),
    )
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis, "kv")
    assert read_genesis(path) == genesis
    text = path.read_text().replace(b.hex(), a.hex())
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"validators\[1\].public_key: duplicate"):
        read_genesis(path)
