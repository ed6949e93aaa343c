"""The "economics" section of the FL genesis and building the initial EconState.

    ["economics", [[[key, balance, bonded], ...], reserve, [validator key, ...], params
                   (, [admitted client key, ...])]]

`params` may list only the entries it overrides.  The admitted clients (a fifth element, present
only when not empty, so every genesis written before it keeps its bytes) are the registry a
consortium starts with when `client_registry` is 1; without them such a chain could admit nobody
until a `client_admit` proposal passed.  Supply is whatever genesis allocates.  Every
validator of the consensus genesis becomes an admitted validator; if the section does not bond
stake for it, it is given power * power_unit bonded (created at genesis), so a chain started
without an economics section still has stake behind every validator.

A chain without an economics section gets `OPEN_GENESIS`: open client admission with no bond
bound on weight (nobody holds stake there, so a bound would weigh every update 0), no client
jail (nobody holds stake to bond there, and scores alone, without stake at risk, should not lock
a client out), no downtime jail (a dev testnet whose validators are stopped and restarted at
will must not shrink its own validator set; governance can turn it on), a reward reserve, and
`OPEN_VALIDATOR_LIQUID` * power liquid tokens per validator so its operators can make
governance deposits and pay fees from the first block.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from consensus.app import GenesisValidator
from consensus.codec import Value, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from fl.economics.ledger import AMOUNT_MAX, ITEMS_MAX, Ledger
from fl.economics.params import EconParams, decode_params, encode_params
from fl.economics.records import ValidatorRecord
from fl.economics.state import EconState
from fl.errors import RejectedError

SECTION = "economics"


@dataclass(frozen=True, slots=True)
class Allocation:
    key: bytes
    balance: int = 0
    bonded: int = 0


@dataclass(frozen=True, slots=True)
class EconGenesis:
    allocations: tuple[Allocation, ...] = ()
    reserve: int = 0
    validators: tuple[bytes, ...] = ()
    params: EconParams = field(default_factory=EconParams)
    admitted: tuple[bytes, ...] = ()  # clients in the registry from genesis on

    def encode(self) -> Value:
        body: list[Value] = [
            [[a.key, a.balance, a.bonded] for a in self.allocations],
            self.reserve,
            list(self.validators),
            encode_params(self.params),
        ]
        if self.admitted:
            body.append(list(self.admitted))
        return body


# The genesis a chain gets when its app_state has no economics section.
OPEN_GENESIS = EconGenesis(
    reserve=1_000_000_000,
    params=EconParams(
        client_stake_min=0,
        bond_per_weight=0,
        client_jail_rounds=0,
        downtime_min_signed_permille=0,
    ),
)
OPEN_VALIDATOR_LIQUID = 10_000  # per unit of genesis voting power


def parse_section(value: Value) -> EconGenesis:
    try:
        items = expect_seq(value, "economics genesis", 5)
        if len(items) not in (4, 5):
            raise CodecError(f"economics genesis: expected 4 or 5 items, got {len(items)}")
        allocs_v, reserve, validators_v, params_v = items[:4]
        admitted_v = expect_seq(items[4], "admitted clients", ITEMS_MAX) if len(items) == 5 else ()
        admitted = tuple(expect_bytes(k, "admitted key", PUBLIC_KEY_BYTES) for k in admitted_v)
        if len(set(admitted)) != len(admitted):
            raise CodecError("a client is admitted twice")
        if len(items) == 5 and not admitted:  # one encoding per genesis: omit an empty list
            raise CodecError("admitted clients: an empty list is written as no fifth item")
        allocations: list[Allocation] = []
        for item in expect_seq(allocs_v, "allocations", ITEMS_MAX):
            key, balance, bonded = expect_list(item, 3, "allocation")
            allocations.append(
                Allocation(
                    expect_bytes(key, "allocation key", PUBLIC_KEY_BYTES),
                    expect_int(balance, "allocation balance", 0, AMOUNT_MAX),
                    expect_int(bonded, "allocation bonded", 0, AMOUNT_MAX),
                )
            )
        keys = [a.key for a in allocations]
        if len(set(keys)) != len(keys):
            raise CodecError("an account is allocated twice")
        validators = tuple(
            expect_bytes(v, "validator key", PUBLIC_KEY_BYTES)
            for v in expect_seq(validators_v, "validators", ITEMS_MAX)
        )
        return EconGenesis(
            tuple(allocations),
            expect_int(reserve, "reserve", 0, AMOUNT_MAX),
            validators,
            decode_params(params_v),
            admitted,
        )
    except CodecError as exc:
        raise RejectedError(f"bad economics genesis: {exc}") from None


def initial_state(
    genesis: EconGenesis, consensus_validators: Sequence[GenesisValidator], height: int
) -> EconState:
    params = genesis.params
    ledger = Ledger(reserve=genesis.reserve)
    for a in sorted(genesis.allocations, key=lambda a: a.key):
        if a.balance:
            ledger.balances[a.key] = a.balance
        if a.bonded:
            ledger.bonded[a.key] = a.bonded
    econ = EconState(params=params, ledger=ledger)
    for key in sorted(genesis.admitted):
        econ.client(key).admitted = True
    for key in sorted({*genesis.validators, *(v.public_key for v in consensus_validators)}):
        econ.validators[key] = ValidatorRecord(admitted=True, tracked_since=height + 1)
    open_chain = genesis is OPEN_GENESIS
    for v in sorted(consensus_validators, key=lambda v: v.public_key):
        if ledger.stake(v.public_key) == 0 and v.power > 0:
            ledger.bonded[v.public_key] = v.power * params.power_unit
        if open_chain and v.power > 0:
            ledger.balances[v.public_key] = v.power * OPEN_VALIDATOR_LIQUID
        if v.power > 0:
            econ.emitted_power[v.public_key] = v.power
    ledger.supply = ledger.accounted()
    return econ
