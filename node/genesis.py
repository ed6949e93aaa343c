"""genesis.json <-> consensus.app.Genesis.

The file is JSON for people; the value handed to the engine and the app is the typed Genesis.
`app_state` is the application's canonical msgpack bytes, stored as hex because its schema
belongs to the app; `consensus_params` is a flat table of integers.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.app import Genesis, GenesisValidator
from consensus.crypto import PUBLIC_KEY_BYTES
from node.errors import ConfigError
from node.keys import write_private_file

CHAIN_ID_CHARS_MAX = 50


@dataclass(frozen=True, slots=True)
class GenesisFile:
    """The typed genesis plus which application the chain runs ("fl", or "kv" for tests)."""

    genesis: Genesis
    app: str


APPS = ("fl", "kv")


def genesis_to_json(genesis: Genesis, app: str = "fl") -> str:
    body = {
        "chain_id": genesis.chain_id,
        "app": app,
        "initial_height": genesis.initial_height,
        "genesis_time_ms": genesis.genesis_time_ms,
        "validators": [
            {"name": v.name, "public_key": v.public_key.hex(), "power": v.power}
            for v in genesis.validators
        ],
        "consensus_params": dict(genesis.consensus_params),
        "app_state": genesis.app_state.hex(),
    }
    return json.dumps(body, indent=2) + "\n"


def write_genesis(path: Path, genesis: Genesis, app: str = "fl") -> None:
    write_private_file(path, genesis_to_json(genesis, app).encode())
    path.chmod(0o644)


def read_genesis(path: Path) -> Genesis:
    return read_genesis_file(path).genesis


def read_genesis_file(path: Path) -> GenesisFile:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: genesis file not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable genesis: {exc}") from None
    try:
        genesis = genesis_from_dict(body)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    app = body.get("app", "fl")
    if app not in APPS:
        raise ConfigError(f"{path}: app: expected one of {', '.join(APPS)}")
    return GenesisFile(genesis, app)


def genesis_from_dict(body: Any) -> Genesis:
    if not isinstance(body, dict):
        raise ConfigError("genesis: expected a JSON object")
    known = {
        "app",
        "chain_id",
        "initial_height",
        "genesis_time_ms",
        "validators",
        "consensus_params",
        "app_state",
    }
    for key in body:
        if key not in known:
            raise ConfigError(f"{key}: unknown genesis field")
    chain_id = body.get("chain_id")
    if not isinstance(chain_id, str) or not 0 < len(chain_id) <= CHAIN_ID_CHARS_MAX:
        raise ConfigError(f"chain_id: expected 1 to {CHAIN_ID_CHARS_MAX} characters")
    initial_height = _int(body.get("initial_height", 1), "initial_height", 1)
    genesis_time_ms = _int(body.get("genesis_time_ms", 0), "genesis_time_ms", 0)
    raw_validators = body.get("validators")
    if not isinstance(raw_validators, list) or not raw_validators:
        raise ConfigError("validators: expected a non-empty list")
    validators = []
    seen: set[bytes] = set()
    for i, raw in enumerate(raw_validators):
        where = f"validators[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected an object")
        try:
            public_key = bytes.fromhex(str(raw.get("public_key", "")))
        except ValueError:
            raise ConfigError(f"{where}.public_key: expected hex") from None
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise ConfigError(f"{where}.public_key: expected {PUBLIC_KEY_BYTES} bytes")
        if public_key in seen:
            raise ConfigError(f"{where}.public_key: duplicate validator")
        seen.add(public_key)
        power = _int(raw.get("power"), f"{where}.power", 1)
        name = raw.get("name", "")
        if not isinstance(name, str) or len(name) > 64:
            raise ConfigError(f"{where}.name: expected at most 64 characters")
        validators.append(GenesisValidator(public_key=public_key, power=power, name=name))
    raw_params = body.get("consensus_params", {})
    if not isinstance(raw_params, dict):
        raise ConfigError("consensus_params: expected an object of integers")
    params = tuple(
        (str(k), _int(v, f"consensus_params.{k}", 0)) for k, v in sorted(raw_params.items())
    )
    try:
        app_state = bytes.fromhex(str(body.get("app_state", "")))
    except ValueError:
        raise ConfigError("app_state: expected hex") from None
    return Genesis(
        chain_id=chain_id,
        validators=tuple(validators),
        app_state=app_state,
        initial_height=initial_height,
        genesis_time_ms=genesis_time_ms,
        consensus_params=params,
    )


def _int(value: Any, where: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{where}: expected an integer >= {lo}")
    return value
