"""The "economics" section of the FL genesis and building the initial EconState.

    ["economics", [[[key, balance, bonded], ...], reserve, [validator key, ...], params]]

`params` may list only the entries it overrides.  Supply is whatever genesis allocates.  Every
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

    def encode(self) -> Value:
        return [
            [[a.key, a.balance, a.bonded] for a in self.allocations],
            self.reserve,
            list(self.validators),
            encode_params(self.params),
        ]


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
        allocs_v, reserve, validators_v, params_v = expect_list(value, 4, "economics genesis")
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
