"""EconState: the ledger, the incentive parameters and the participant records.

`encode()` is the canonical value hashed into the app hash (section "economics") and carried
in snapshots; maps are emitted sorted by key.  `emitted_power` is the validator set as the
consensus engine knows it (genesis, then every ValidatorUpdate we returned), so end-of-block
code can return only the differences.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.codec import Value, expect_bytes, expect_int, expect_list, expect_seq
from consensus.crypto import PUBLIC_KEY_BYTES
from fl.economics.ledger import ITEMS_MAX, Ledger
from fl.economics.params import EconParams, decode_params, encode_params
from fl.economics.records import ClientRecord, ValidatorRecord

EVIDENCE_KEPT_MAX = 100_000

if TYPE_CHECKING:
    from fl.economics.committee import UnsettledRound


@dataclass(slots=True)
class EconState:
    params: EconParams = field(default_factory=EconParams)
    ledger: Ledger = field(default_factory=Ledger)
    clients: dict[bytes, ClientRecord] = field(default_factory=dict)
    validators: dict[bytes, ValidatorRecord] = field(default_factory=dict)
    emitted_power: dict[bytes, int] = field(default_factory=dict)
    # (validator, height) of every piece of duplicate-vote evidence already punished.
    evidence_seen: list[tuple[bytes, int]] = field(default_factory=list)
    # Closed FL rounds waiting for the evaluation committee (committee.py), oldest first.
    unsettled: list["UnsettledRound"] = field(default_factory=list)

    def client(self, key: bytes) -> ClientRecord:
        record = self.clients.get(key)
        if record is None:
            record = ClientRecord(reputation=self.params.reputation_initial)
            self.clients[key] = record
        return record

    def client_view(self, key: bytes) -> ClientRecord:
        """The record without creating one (for checks that must not mutate)."""
        return self.clients.get(key) or ClientRecord(reputation=self.params.reputation_initial)

    def encode(self) -> Value:
        return [
            encode_params(self.params),
            self.ledger.encode(),
            [[k, self.clients[k].encode()] for k in sorted(self.clients)],
            [[k, self.validators[k].encode()] for k in sorted(self.validators)],
            [[k, self.emitted_power[k]] for k in sorted(self.emitted_power)],
            [[k, h] for k, h in self.evidence_seen],  # (height, key) order, see validators
            [u.encode() for u in self.unsettled],
        ]

    @classmethod
    def decode(cls, value: Value) -> "EconState":
        from fl.economics.committee import UnsettledRound  # committee builds on this module

        params_v, ledger_v, clients_v, validators_v, power_v, evidence_v, unsettled_v = expect_list(
            value, 7, "economics"
        )
        state = cls(params=decode_params(params_v), ledger=Ledger.decode(ledger_v))
        for item in expect_seq(clients_v, "clients", ITEMS_MAX):
            key, rec = expect_list(item, 2, "client")
            state.clients[_key(key)] = ClientRecord.decode(rec)
        for item in expect_seq(validators_v, "validators", ITEMS_MAX):
            key, rec = expect_list(item, 2, "validator")
            state.validators[_key(key)] = ValidatorRecord.decode(rec)
        for item in expect_seq(power_v, "emitted power", ITEMS_MAX):
            key, power = expect_list(item, 2, "power")
            state.emitted_power[_key(key)] = expect_int(power, "power", 1)
        for item in expect_seq(evidence_v, "evidence", EVIDENCE_KEPT_MAX):
            key, height = expect_list(item, 2, "evidence")
            state.evidence_seen.append((_key(key), expect_int(height, "evidence height", 0)))
        for item in expect_seq(unsettled_v, "unsettled rounds", ITEMS_MAX):
            state.unsettled.append(UnsettledRound.decode(item))
        return state


def _key(value: Value) -> bytes:
    return expect_bytes(value, "account key", PUBLIC_KEY_BYTES)
