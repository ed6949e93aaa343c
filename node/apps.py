"""Which Application a chain runs, chosen by genesis.json's `app` field, built in one place.

"fl" is the federated-learning application (fl/app.py); "kv" is consensus's tiny key-value app,
used by benchmarks and tests that measure the chain without model math.
"""

from dataclasses import replace

import numpy as np

from consensus.app import Application, GenesisValidator
from consensus.codec import Value
from node.errors import ConfigError

# The testnet's FL task: softmax regression on sklearn's digits, the model every client trains.
FL_DATASET = "digits"
FL_TRAINER = "softmax"
FL_MODEL_SEED = 0
# Bond mode for generated testnets (issue 14): each generated client is bonded this much at
# genesis; a key needs CLIENT_STAKE_MIN bonded to submit, and each BOND_PER_WEIGHT bonded tokens
# buy one unit of aggregation weight (1000 > any digits shard, so honest weights are unchanged).
CLIENT_BOND = 1_000
CLIENT_STAKE_MIN = 100
BOND_PER_WEIGHT = 1
GENESIS_RESERVE = 1_000_000_000
# Client admission a genesis can start with: "bond" (any key holding `client_stake_min` bonded;
# weight bounded by bond), "registry" (the same, and only keys in the registry: those the genesis
# admits, then those `client_admit` proposals admit) or "open" (any key, no economics section).
ADMISSIONS = ("bond", "registry", "open")
VALIDATOR_LIQUID = 10_000  # per unit of genesis power, for governance deposits and fees
# A generated testnet's chain-time periods (the demo, LocalNet tests, the docker e2e): short, so
# rounds, votes, unbonding and jail end within seconds.  `fedchain init` and multi-party genesis
# keep the production defaults of fl/params.py and fl/economics/params.py (a minute to train, a
# day to vote, three days to unbond, ten minutes in jail).
TESTNET_ROUND_DEADLINE_MS = 20_000
TESTNET_GOV_VOTING_PERIOD_MS = 20_000
TESTNET_UNBONDING_PERIOD_MS = 10_000
TESTNET_DOWNTIME_JAIL_MS = 10_000


def build_app(name: str) -> Application:
    match name:
        case "fl":
            from fl.app import FLApp

            return FLApp()
        case "kv":
            from consensus.kvapp import KVApp

            app: Application = KVApp()
            return app
        case _:
            raise ConfigError(f"app: unknown application {name!r}")


def genesis_app_state(
    name: str,
    clients: int,
    round_deadline_ms: int | None = None,
    client_keys: tuple[bytes, ...] | None = None,
    validators: tuple[GenesisValidator, ...] = (),
    commit_blocks: int = 0,
    admission: str = "open",
) -> bytes:
    """Canonical genesis app state.  For "fl": the initial digits model, and rounds that close
    once every client has submitted (or after `round_deadline_ms` of chain time; None: the
    production default).  With `client_keys`
    (bond mode, what `fedchain testnet` writes) an economics section bonds CLIENT_BOND for each
    client key and gives each of `validators` liquid tokens, and `commit_blocks` > 0 makes its
    rounds commit-reveal.  Without, `admission` "bond" (a multi-party draft) writes an economics
    section with the production rules and no accounts yet, and "open" none: the chain is open
    (fl/economics/genesis.py OPEN_GENESIS)."""
    if admission not in ADMISSIONS:
        raise ConfigError(f"admission: expected one of {ADMISSIONS}, not {admission!r}")
    match name:
        case "fl":
            from fl.client.datasets import load
            from fl.client.quantize import float_to_units
            from fl.client.trainers import make_trainer
            from fl.genesis import build_app_state
            from fl.params import Params

            ds = load(FL_DATASET, seed=FL_MODEL_SEED)
            trainer = make_trainer(FL_TRAINER, ds.n_features, ds.n_classes)
            weights = float_to_units(trainer.init(np.random.default_rng(FL_MODEL_SEED)))
            params = replace(Params(), updates_per_round=max(1, clients))
            if round_deadline_ms is not None:
                params = replace(params, round_deadline_ms=round_deadline_ms)
            other: tuple[tuple[str, Value], ...] = ()
            if client_keys is not None:
                other = (bonded_economics(client_keys, validators, commit_blocks),)
            elif admission != "open":
                other = (draft_bond_economics(registry=admission == "registry"),)
            return build_app_state(trainer.shapes(), weights, params, other)
        case "kv":
            return b""
        case _:
            raise ConfigError(f"app: unknown application {name!r}")


def draft_bond_economics(registry: bool = False) -> tuple[str, Value]:
    """A multi-party draft's economics section: bond admission under the production rules
    (`client_stake_min` bonded to submit, weight bounded by `bond_per_weight`), with `registry`
    also the client registry (`client_registry` 1: `genesis add-client` admits each key), a
    funded reward reserve, and no accounts until the coordinator adds them."""
    from fl.economics.genesis import SECTION, EconGenesis
    from fl.economics.params import EconParams

    params = EconParams(client_registry=int(registry))
    return SECTION, EconGenesis(reserve=GENESIS_RESERVE, params=params).encode()


def bonded_economics(
    client_keys: tuple[bytes, ...], validators: tuple[GenesisValidator, ...], commit_blocks: int = 0
) -> tuple[str, Value]:
    """The economics genesis section of a bond-mode testnet."""
    from fl.economics.genesis import SECTION, Allocation, EconGenesis
    from fl.economics.params import EconParams

    allocations = [Allocation(k, 0, CLIENT_BOND) for k in client_keys]
    allocations += [Allocation(v.public_key, v.power * VALIDATOR_LIQUID, 0) for v in validators]
    genesis = EconGenesis(
        allocations=tuple(allocations),
        reserve=GENESIS_RESERVE,
        params=EconParams(
            client_stake_min=CLIENT_STAKE_MIN,
            bond_per_weight=BOND_PER_WEIGHT,
            commit_blocks=commit_blocks,
            gov_voting_period_ms=TESTNET_GOV_VOTING_PERIOD_MS,
            unbonding_period_ms=TESTNET_UNBONDING_PERIOD_MS,
            downtime_jail_ms=TESTNET_DOWNTIME_JAIL_MS,
            # As on an open chain: a dev testnet's validators are stopped and restarted at will.
            downtime_min_signed_permille=0,
        ),
    )
    return SECTION, genesis.encode()
