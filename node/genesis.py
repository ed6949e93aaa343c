"""genesis.json <-> consensus.app.Genesis.

The file is JSON for people; the value handed to the engine and the app is the typed Genesis.
For the FL app `app_state` is a readable object (node/appstate.py: model, parameters and
accounts by name); a hex string of the canonical bytes is accepted too (older files, other
apps).  `consensus_params` is a flat table of integers.

The genesis hash names the typed value (its canonical encoding, app_state as bytes), not the
JSON text, so reformatting the file or reordering its keys does not change the chain it names.
A draft (the coordinator's file before `genesis collect`) may have no validators yet; a node
never starts from one.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.app import Genesis, GenesisValidator
from consensus.codec import encode
from consensus.crypto import PUBLIC_KEY_BYTES, sha256
from node.appstate import app_state_from_doc, app_state_to_doc, check_app_state
from node.errors import ConfigError
from node.keys import write_private_file

GENESIS_HASH_DOMAIN = "fedchain/genesis/v1"

CHAIN_ID_CHARS_MAX = 50


@dataclass(frozen=True, slots=True)
class GenesisFile:
    """The typed genesis plus which application the chain runs ("fl", or "kv" for tests)."""

    genesis: Genesis
    app: str


APPS = ("fl", "kv")


def genesis_hash(genesis: Genesis) -> bytes:
    """sha256 of the canonical encoding of every genesis field: what peers compare."""
    return sha256(
        encode(
            [
                GENESIS_HASH_DOMAIN,
                genesis.chain_id,
                genesis.initial_height,
                genesis.genesis_time_ms,
                [[v.public_key, v.power, v.name] for v in genesis.validators],
                [[k, v] for k, v in genesis.consensus_params],
                genesis.app_state,
            ]
        )
    )


def readable_app_state(app_state: bytes, app: str) -> Any:
    """The JSON value written for app_state: named fields for the FL app, else hex."""
    if app == "fl" and app_state:
        try:
            return app_state_to_doc(app_state)
        except ConfigError:
            pass  # not expressible field by field: the bytes themselves, as hex
    return app_state.hex()


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
        "app_state": readable_app_state(genesis.app_state, app),
    }
    return json.dumps(body, indent=2) + "\n"


def write_genesis(path: Path, genesis: Genesis, app: str = "fl") -> None:
    write_private_file(path, genesis_to_json(genesis, app).encode())
    path.chmod(0o644)


def read_genesis(path: Path) -> Genesis:
    return read_genesis_file(path).genesis


def read_genesis_file(path: Path, draft: bool = False) -> GenesisFile:
    """A genesis file, fully checked; `draft` also accepts one without validators yet."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: genesis file not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable genesis: {exc}") from None
    try:
        genesis = genesis_from_dict(body, draft)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    app = body.get("app", "fl")
    if app not in APPS:
        raise ConfigError(f"{path}: app: expected one of {', '.join(APPS)}")
    if app == "fl" and genesis.app_state:
        try:
            check_app_state(genesis.app_state)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return GenesisFile(genesis, app)


def genesis_from_dict(body: Any, draft: bool = False) -> Genesis:
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
    if not isinstance(raw_validators, list) or not (raw_validators or draft):
        raise ConfigError(
            "validators: expected a non-empty list (a draft genesis gets its validators from "
            "`fedchain genesis collect`)"
        )
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
    raw_state = body.get("app_state", "")
    if isinstance(raw_state, dict):
        app_state = app_state_from_doc(raw_state)
    else:
        try:
            app_state = bytes.fromhex(str(raw_state))
        except ValueError:
            raise ConfigError("app_state: expected an object or a hex string") from None
    genesis = Genesis(
        chain_id=chain_id,
        validators=tuple(validators),
        app_state=app_state,
        initial_height=initial_height,
        genesis_time_ms=genesis_time_ms,
        consensus_params=params,
    )
    problem = genesis.problem() if validators else None  # a draft's other fields were checked
    if problem is not None:
        raise ConfigError(problem)
    return genesis


def _int(value: Any, where: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{where}: expected an integer >= {lo}")
    return value
