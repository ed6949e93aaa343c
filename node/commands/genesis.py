"""`fedchain genesis`: build one genesis with several organisations, each keeping its own keys.

The flow (docs/operators.md walks through it):
    coordinator:   genesis init --chain-id C --out genesis.json          (a draft, no validators)
    each org:      init --home H ...; genesis add-validator --home H --genesis genesis.json
                       --p2p-address HOST:PORT --out org.gentx.json       (signed on its host)
    coordinator:   genesis add-account / add-client ...; genesis collect --genesis genesis.json
                       org1.gentx.json org2.gentx.json ...                (checks every signature)
    everyone:      genesis validate genesis.json; compare the printed genesis hash out of band;
                   copy it to HOME/genesis.json; start.
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from consensus.app import Genesis, GenesisValidator
from fl.economics.clients import votes_for_stake
from fl.economics.genesis import OPEN_GENESIS
from fl.economics.genesis import SECTION as ECON_SECTION
from fl.economics.params import EconParams
from node.apps import ADMISSIONS, build_app, genesis_app_state
from node.appstate import with_account
from node.config import load_config
from node.errors import ConfigError, NodeError
from node.genesis import (
    APPS,
    genesis_hash,
    genesis_to_json,
    read_genesis_file,
    readable_app_state,
    write_genesis,
)
from node.gentx import read_gentx, sign_gentx, write_gentx
from node.home import Home
from node.keys import read_key

HELP = "build a multi-party genesis: init, add-validator, add-account, add-client, collect, ..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = actions.add_parser(
        "init", help="write a draft genesis (no validators yet)", formatter_class=fmt
    )
    p.add_argument("--out", type=Path, required=True, help="genesis file to write")
    p.add_argument("--chain-id", required=True, help="the chain's id (1-50 characters)")
    p.add_argument("--app", default="fl", choices=APPS, help="application the chain runs")
    p.add_argument("--clients", type=int, default=8, help="FL updates per round")
    p.add_argument(
        "--admission",
        default="bond",
        choices=ADMISSIONS,
        help="who may submit updates: bond = keys the genesis (or later a bond tx) gives "
        "client_stake_min bonded, their say bounded by bond; registry = the same, and only keys "
        "in the registry (add-client admits each; later, client_admit proposals); open = any "
        "key (no stake, so nothing bounds how many keys one party runs)",
    )
    p.add_argument(
        "--genesis-time-ms",
        type=int,
        default=None,
        help="chain time of the genesis, ms since the epoch (default: now; periods such as the "
        "first FL round's deadline count from it)",
    )
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = actions.add_parser(
        "add-validator",
        help="sign this home's validator entry (a gentx file) for the coordinator",
        formatter_class=fmt,
    )
    p.add_argument("--home", type=Path, required=True, help="this organisation's node home")
    p.add_argument("--genesis", type=Path, required=True, help="the coordinator's draft genesis")
    p.add_argument("--p2p-address", required=True, help="HOST:PORT where peers reach this node")
    p.add_argument("--name", help="validator name (default: the home's moniker)")
    p.add_argument("--power", type=int, default=10, help="voting power")
    p.add_argument("--out", type=Path, help="gentx file (default: HOME/gentx.json)")

    for action, what in (("add-account", "an account"), ("add-client", "an FL client")):
        p = actions.add_parser(action, help=f"allocate {what} in the genesis", formatter_class=fmt)
        p.add_argument("--genesis", type=Path, required=True, help="genesis file to change")
        key = p.add_mutually_exclusive_group(required=True)
        key.add_argument("--key", help="public key (hex)")
        key.add_argument("--key-file", type=Path, help="a key file (its public key is used)")
        p.add_argument("--balance", type=int, default=0, help="liquid tokens")
        if action == "add-client":
            p.add_argument(
                "--bond", type=int, help="bonded stake (default: the chain's client_stake_min)"
            )
        else:
            p.add_argument("--bonded", type=int, default=0, help="bonded stake")

    p = actions.add_parser(
        "collect", help="add signed validator entries to the genesis", formatter_class=fmt
    )
    p.add_argument("--genesis", type=Path, required=True, help="the draft genesis")
    p.add_argument("gentx", type=Path, nargs="+", help="gentx files from add-validator")
    p.add_argument("--out", type=Path, help="write here instead of changing --genesis")

    p = actions.add_parser("validate", help="check a genesis fully and print its hash")
    p.add_argument("genesis", type=Path)

    p = actions.add_parser("show", help="summarize a genesis (or --json: the whole file)")
    p.add_argument("genesis", type=Path)
    p.add_argument("--json", action="store_true", help="print the normalized JSON")


def run(args: argparse.Namespace) -> int:
    try:
        match args.action:
            case "init":
                return _init(args)
            case "add-validator":
                return _add_validator(args)
            case "add-account" | "add-client":
                return _add_account(args)
            case "collect":
                return _collect(args)
            case "validate":
                return _validate(args.genesis)
            case _:
                return _show(args.genesis, args.json)
    except NodeError as exc:
        print(f"fedchain genesis {args.action}: {exc}", file=sys.stderr)
        return 1


def _init(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out} exists (use --force to overwrite)")
    if args.clients < 1:
        raise ConfigError("--clients: expected at least 1")
    genesis = Genesis(
        chain_id=args.chain_id,
        validators=(),
        app_state=genesis_app_state(args.app, args.clients, admission=args.admission),
        genesis_time_ms=(
            time.time_ns() // 1_000_000 if args.genesis_time_ms is None else args.genesis_time_ms
        ),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_genesis(args.out, genesis, args.app)
    read_genesis_file(args.out, draft=True)  # what we wrote must read back
    print(f"wrote draft genesis {args.out} (chain {args.chain_id}); next: each validator runs")
    print(f"  fedchain genesis add-validator --home HOME --genesis {args.out} --p2p-address H:P")
    if args.app == "fl" and args.admission == "bond":
        print("bond admission: only clients added with `genesis add-client --bond N` (or bonding")
        print("  later) may submit, their say bounded by N (add-client prints it); validators")
        print("  need liquid tokens (`genesis add-account --balance`) for deposits and fees")
    if args.app == "fl" and args.admission == "registry":
        print("registry admission: only clients added with `genesis add-client` (admitted and")
        print("  bonded, their say bounded by the bond) or later admitted by a client_admit")
        print("  proposal may submit; a bond alone admits nobody.  Validators need liquid tokens")
        print("  (`genesis add-account --balance`) for deposits and fees")
    return 0


def _add_validator(args: argparse.Namespace) -> int:
    draft = read_genesis_file(args.genesis, draft=True).genesis
    home = Home(args.home)
    name = args.name or _moniker(home)
    gentx = sign_gentx(
        read_key(home.validator_key_file),
        read_key(home.node_key_file),
        draft.chain_id,
        name,
        args.power,
        args.p2p_address,
    )
    out = args.out or home.root / "gentx.json"
    write_gentx(out, gentx)
    print(f"wrote {out}: validator {name} ({gentx.public_key.hex()[:16]}), power {gentx.power}")
    print(f"  peer address {gentx.p2p_address}")
    print("  send this file to the coordinator; the keys stay in this home")
    return 0


def _add_account(args: argparse.Namespace) -> int:
    loaded = read_genesis_file(args.genesis, draft=True)
    if loaded.app != "fl":
        raise ConfigError("accounts exist only in the FL app's genesis")
    key = read_key(args.key_file).public_key if args.key_file else _hex_key(args.key)
    doc = readable_app_state(loaded.genesis.app_state, loaded.app)
    if not isinstance(doc, dict):
        raise ConfigError(f"{args.genesis}: app_state is not in readable form")
    if args.action == "add-client":
        bonded = args.bond if args.bond is not None else _client_stake_min(doc)
    else:
        bonded = args.bonded
    if args.balance < 0 or bonded < 0:
        raise ConfigError("--balance and the bond must be >= 0")
    if args.balance == 0 and bonded == 0:
        raise ConfigError("allocate something: --balance and/or a bond above 0")
    admit = args.action == "add-client" and _registry(doc)
    changed = with_account(doc, key, args.balance, bonded, admit)
    _write(args.genesis, loaded.app, loaded.genesis, changed)
    note = _weight_cap_note(doc, bonded) if args.action == "add-client" else ""
    note += "; admitted to the client registry" if admit else ""
    print(f"added {key.hex()[:16]}: balance {args.balance}, bonded {bonded}{note}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    loaded = read_genesis_file(args.genesis, draft=True)
    genesis = loaded.genesis
    validators = list(genesis.validators)
    peers: list[str] = []
    for path in args.gentx:
        gentx = read_gentx(path)
        if gentx.chain_id != genesis.chain_id:
            raise ConfigError(
                f"{path}: signed for chain {gentx.chain_id!r}, not {genesis.chain_id!r}"
            )
        if any(v.public_key == gentx.public_key for v in validators):
            raise ConfigError(f"{path}: validator {gentx.public_key.hex()[:16]} is already in")
        if any(v.name == gentx.name for v in validators):
            raise ConfigError(f"{path}: a validator is already named {gentx.name!r}")
        validators.append(GenesisValidator(gentx.public_key, gentx.power, gentx.name))
        peers.append(gentx.p2p_address)
    collected = replace(genesis, validators=tuple(validators))
    problem = collected.problem()
    if problem is not None:
        raise ConfigError(problem)
    out = args.out or args.genesis
    write_genesis(out, collected, loaded.app)
    print(
        f"wrote {out}: {len(validators)} validators, genesis hash {genesis_hash(collected).hex()}"
    )
    print("persistent peers (each node lists the others in config.toml [p2p] persistent_peers):")
    for peer in peers:
        print(f"  {peer}")
    return 0


def _validate(path: Path) -> int:
    loaded = read_genesis_file(path)
    app = build_app(loaded.app)
    try:
        app.init_chain(loaded.genesis)
    except Exception as exc:  # the app's own genesis checks, whatever their type
        raise ConfigError(f"{path}: the {loaded.app} app refuses it: {exc}") from None
    g = loaded.genesis
    total = sum(v.power for v in g.validators)
    print(f"{path}: valid. chain {g.chain_id}, {len(g.validators)} validators, total power {total}")
    print(f"genesis hash {genesis_hash(g).hex()}")
    return 0


def _show(path: Path, as_json: bool) -> int:
    loaded = read_genesis_file(path, draft=True)
    g = loaded.genesis
    if as_json:
        print(genesis_to_json(g, loaded.app), end="")
        return 0
    print(f"chain {g.chain_id} (app {loaded.app}), initial height {g.initial_height}")
    print(f"genesis hash {genesis_hash(g).hex()}")
    print(f"validators ({len(g.validators)}):" if g.validators else "validators: none (a draft)")
    for v in g.validators:
        print(f"  {v.name or '-':<16} {v.public_key.hex()}  power {v.power}")
    doc = readable_app_state(g.app_state, loaded.app)
    if isinstance(doc, dict):
        model = doc["model"]
        print(f"model: shapes {model['shapes']}, weights {_weights_label(model['weights'])}")
        print("params: " + ", ".join(f"{k}={v}" for k, v in doc["params"].items()))
        econ = doc.get(ECON_SECTION)
        if econ is None:
            print("economics: none (open chain: open client admission, funded reward reserve)")
        else:
            print(f"economics: {_admission_label(econ['params'])}")
            print(f"  reserve {econ['reserve']}, {len(econ['accounts'])} accounts")
            admitted = set(econ.get("admitted_clients", []))
            for a in econ["accounts"]:
                mark = "  (admitted client)" if a["key"] in admitted else ""
                print(f"  {a['key']}  balance {a['balance']}  bonded {a['bonded']}{mark}")
    return 0


def _write(path: Path, app: str, genesis: Genesis, doc: dict[str, Any]) -> None:
    body = json.loads(genesis_to_json(genesis, app))
    body["app_state"] = doc
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    read_genesis_file(tmp, draft=True)  # refuse to replace a good file with a bad one
    shutil.move(tmp, path)


def _admission_label(params: dict[str, Any]) -> str:
    if params["client_registry"]:
        how = "registry (keys admitted at genesis or by governance,"
    elif params["client_stake_min"] > 0:
        how = "bond (keys"
    else:
        return "open client admission (any key may submit)"
    bound = params["bond_per_weight"]
    weight = f"{bound} bonded per unit of weight" if bound else "weight not bounded by bond"
    return f"{how} holding {params['client_stake_min']} bonded), {weight}"


def _weight_cap_note(doc: dict[str, Any], bonded: int) -> str:
    """What the bond buys (fl/rounds.py `_weight`, fl/economics/clients.py `stake_votes`)."""
    econ = doc.get(ECON_SECTION)
    if econ is None:
        return ""
    params = replace(EconParams(), **econ["params"])
    bound, price = params.bond_per_weight, params.client_stake_min
    if bound == 0 or price == 0:
        return ""
    return (
        f"; it has {votes_for_stake(bonded, params)} votes under the robust rules (one per "
        f"{price} bonded) and weighs at most {bonded // bound} samples under fedavg "
        f"(bond_per_weight {bound})"
    )


def _registry(doc: dict[str, Any]) -> bool:
    econ = doc.get(ECON_SECTION)
    return econ is not None and bool(econ["params"]["client_registry"])


def _client_stake_min(doc: dict[str, Any]) -> int:
    econ = doc.get(ECON_SECTION)
    if econ is None:
        return OPEN_GENESIS.params.client_stake_min
    return int(econ["params"]["client_stake_min"])


def _hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError("--key: expected a hex public key") from None
    if len(key) != 32:
        raise ConfigError("--key: expected 32 bytes (64 hex digits)")
    return key


def _moniker(home: Home) -> str:
    return load_config(home.config_file).moniker


def _weights_label(weights: str) -> str:
    return "zeros" if weights == "zeros" else f"{len(weights) // 16} int64 values"
