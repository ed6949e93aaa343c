"""The FL chain's genesis `app_state` as a JSON object people can read and edit.

The chain hashes and executes canonical msgpack bytes (fl/genesis.py); genesis.json shows the
same value as named fields, so an operator sets balances, parameters and the model without
Python:

    "app_state": {
      "model":     {"shapes": [[64, 10], [10]], "weights": "zeros" | "<int64 LE hex>"},
      "params":    {"rule": "centered_clip", "updates_per_round": 8, ...},     (FL, by name)
      "economics": {"accounts": [{"key": HEX, "balance": N, "bonded": N}, ...],
                    "reserve": N, "validators": [HEX, ...], "params": {NAME: N, ...},
                    "admitted_clients": [HEX, ...]}     (the registry, if any, at genesis)
    }

`params` may name only what differs from the defaults and `economics` may be absent (an open
chain, fl/economics/genesis.py); both directions go through the same validating parsers the
chain uses, so a readable app_state is accepted exactly when its bytes would be.  Legacy files
carry the bytes as a hex string; those are read as before.
"""

from dataclasses import replace
from typing import Any

import numpy as np

from consensus.codec import Value
from consensus.crypto import PUBLIC_KEY_BYTES
from fl.economics import params as econ_params
from fl.economics.genesis import OPEN_GENESIS, Allocation, EconGenesis, parse_section
from fl.economics.genesis import SECTION as ECON_SECTION
from fl.errors import RejectedError
from fl.fixed import model_from_bytes, model_to_bytes
from fl.genesis import build_app_state, parse_app_state
from fl.model import parameter_count
from fl.params import GOVERNABLE, Params, spec_of, validate
from node.errors import ConfigError

SECTIONS = ("model", "params", ECON_SECTION)
ZEROS = "zeros"


def check_app_state(app_state: bytes) -> None:
    """ConfigError unless the FL app (and its economics layer) can start from these bytes:
    found when the genesis file is read, not as a traceback inside the node's first block."""
    try:
        fl = parse_app_state(app_state)
    except RejectedError as exc:
        raise ConfigError(f"app_state: {exc}") from None
    for name, value in fl.other:
        if name == ECON_SECTION:
            _parse_econ(value)


def app_state_to_doc(app_state: bytes) -> dict[str, Any]:
    """The readable form of canonical FL genesis bytes (every parameter spelled out)."""
    try:
        fl = parse_app_state(app_state)
    except RejectedError as exc:
        raise ConfigError(f"app_state: {exc}") from None
    weights = ZEROS if not fl.weights.any() else model_to_bytes(fl.weights).hex()
    doc: dict[str, Any] = {
        "model": {"shapes": [list(s) for s in fl.shapes], "weights": weights},
        "params": {spec.name: getattr(fl.params, spec.name) for spec in GOVERNABLE},
    }
    for name, value in fl.other:
        if name != ECON_SECTION:
            raise ConfigError(f"app_state: section {name!r} has no readable form")
        doc[ECON_SECTION] = _econ_to_doc(_parse_econ(value))
    if app_state_from_doc(doc) != app_state and weights == ZEROS:
        # Zero weights stored explicitly rather than as b"": spell them out so the readable
        # form names the very same bytes (the genesis hash is over the bytes).
        doc["model"]["weights"] = model_to_bytes(fl.weights).hex()
    if app_state_from_doc(doc) != app_state:
        raise ConfigError("app_state: not in canonical form (write it as a hex string)")
    return doc


def app_state_from_doc(doc: Any) -> bytes:
    """Canonical FL genesis bytes from the readable form; ConfigError names the bad field."""
    if not isinstance(doc, dict):
        raise ConfigError("app_state: expected an object (or a hex string)")
    for name in doc:
        if name not in SECTIONS:
            raise ConfigError(f"app_state.{name}: unknown section (known: {', '.join(SECTIONS)})")
    shapes, weights = _model_from_doc(doc.get("model"))
    params = _params_from_doc(doc.get("params", {}))
    other: tuple[tuple[str, Value], ...] = ()
    if ECON_SECTION in doc:
        other = ((ECON_SECTION, _econ_from_doc(doc[ECON_SECTION]).encode()),)
    state = build_app_state(shapes, weights, params, other)
    try:
        parse_app_state(state)  # the chain's own parser has the last word
        for _, value in other:
            parse_section(value)
    except RejectedError as exc:
        raise ConfigError(f"app_state: {exc}") from None
    return state


def _model_from_doc(raw: Any) -> tuple[tuple[tuple[int, ...], ...], Any]:
    if not isinstance(raw, dict):
        raise ConfigError('app_state.model: expected {"shapes": [[...]], "weights": ...}')
    shapes_raw = raw.get("shapes")
    if not isinstance(shapes_raw, list) or not shapes_raw:
        raise ConfigError("app_state.model.shapes: expected a list of layer shapes")
    shapes: list[tuple[int, ...]] = []
    for i, layer in enumerate(shapes_raw):
        if not isinstance(layer, list) or not layer or not all(_is_int(d, 1) for d in layer):
            raise ConfigError(f"app_state.model.shapes[{i}]: expected positive integers")
        shapes.append(tuple(layer))
    weights_raw = raw.get("weights", ZEROS)
    if weights_raw == ZEROS:
        return tuple(shapes), None
    try:
        weights = model_from_bytes(bytes.fromhex(str(weights_raw)))
    except ValueError:
        raise ConfigError(
            'app_state.model.weights: expected "zeros" or int64 little-endian hex'
        ) from None
    size = parameter_count(tuple(shapes))
    if weights.size != size:
        raise ConfigError(f"app_state.model.weights: {weights.size} values, the shapes need {size}")
    return tuple(shapes), np.asarray(weights, dtype=np.int64)


def _params_from_doc(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError("app_state.params: expected an object of NAME: VALUE")
    changes: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            spec_of(str(name)).check(value)
        except RejectedError as exc:
            raise ConfigError(f"app_state.params.{name}: {exc}") from None
        changes[str(name)] = value
    # All at once: relations between entries (updates_min <= updates_per_round) hold for the
    # whole table, not for each intermediate one.
    params = replace(Params(), **changes)
    try:
        validate(params)
    except RejectedError as exc:
        raise ConfigError(f"app_state.params: {exc}") from None
    return params


def _econ_from_doc(raw: Any) -> EconGenesis:
    where = f"app_state.{ECON_SECTION}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(raw) - {"accounts", "reserve", "validators", "params", "admitted_clients"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field")
    accounts: list[Allocation] = []
    for i, item in enumerate(raw.get("accounts", [])):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}.accounts[{i}]: expected an object")
        balance, bonded = item.get("balance", 0), item.get("bonded", 0)
        if not _is_int(balance, 0) or not _is_int(bonded, 0):
            raise ConfigError(f"{where}.accounts[{i}]: balance and bonded are integers >= 0")
        accounts.append(
            Allocation(_key(item.get("key"), f"{where}.accounts[{i}].key"), balance, bonded)
        )
    reserve = raw.get("reserve", 0)
    if not _is_int(reserve, 0):
        raise ConfigError(f"{where}.reserve: expected an integer >= 0")
    validators = tuple(
        _key(v, f"{where}.validators[{i}]") for i, v in enumerate(raw.get("validators", []))
    )
    params = econ_params.EconParams()
    raw_params = raw.get("params", {})
    if not isinstance(raw_params, dict):
        raise ConfigError(f"{where}.params: expected an object of NAME: VALUE")
    for name, value in raw_params.items():
        try:
            params = econ_params.with_value(params, str(name), value)
        except RejectedError as exc:
            raise ConfigError(f"{where}.params.{name}: {exc}") from None
    admitted = tuple(
        _key(k, f"{where}.admitted_clients[{i}]")
        for i, k in enumerate(raw.get("admitted_clients", []))
    )
    genesis = EconGenesis(tuple(accounts), reserve, validators, params, admitted)
    _parse_econ(genesis.encode())  # duplicates, bounds: the chain's parser decides
    return genesis


def _parse_econ(value: Value) -> EconGenesis:
    try:
        return parse_section(value)
    except RejectedError as exc:
        raise ConfigError(f"app_state.{ECON_SECTION}: {exc}") from None


def _econ_to_doc(econ: EconGenesis) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "accounts": [
            {"key": a.key.hex(), "balance": a.balance, "bonded": a.bonded} for a in econ.allocations
        ],
        "reserve": econ.reserve,
        "validators": [v.hex() for v in econ.validators],
        "params": {spec.name: getattr(econ.params, spec.name) for spec in econ_params.GOVERNABLE},
    }
    if econ.admitted:
        doc["admitted_clients"] = [k.hex() for k in econ.admitted]
    return doc


def with_account(
    doc: dict[str, Any], key: bytes, balance: int, bonded: int, admit: bool = False
) -> dict[str, Any]:
    """`doc` with one more genesis account (and, with `admit`, that key in the client
    registry); an account is allocated once."""
    # A chain that had no economics section ran OPEN_GENESIS's rules: keep them, so adding
    # an account does not silently close client admission or empty the reward reserve.
    econ = _econ_from_doc(doc[ECON_SECTION]) if ECON_SECTION in doc else OPEN_GENESIS
    if any(a.key == key for a in econ.allocations):
        raise ConfigError(f"account {key.hex()} is already in the genesis")
    econ = replace(econ, allocations=(*econ.allocations, Allocation(key, balance, bonded)))
    if admit:
        econ = replace(econ, admitted=(*econ.admitted, key))
    return {**doc, ECON_SECTION: _econ_to_doc(econ)}


def _key(raw: Any, where: str) -> bytes:
    try:
        key = bytes.fromhex(str(raw))
    except ValueError:
        raise ConfigError(f"{where}: expected a hex public key") from None
    if len(key) != PUBLIC_KEY_BYTES:
        raise ConfigError(f"{where}: expected {PUBLIC_KEY_BYTES} bytes")
    return key


def _is_int(value: Any, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo
