"""The incentives and governance layer as the FL application sees it: one value holding the
economics and governance state, and the hooks the app calls.

Per block H the app calls, in order:
    begin_block(block)                       evidence, validator rewards, downtime, unbonding
    execute(kind, ...) / check_submit(...)   for each transaction (and in check_tx, apply=False)
    settle_round(...)                        if an FL round closed in this block (settles it,
                                             or parks it for the evaluation committee)
    end_block(fl_params, H, time)            committee settlements now due, governance tally +
                                             execution, validator-set diff, and the supply
                                             invariant (raises if broken)
`sections()` are the two app-hash sections; `encode()`/`decode()` carry the layer in snapshots.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from consensus.app import BlockInfo, Event, GenesisValidator
from consensus.codec import Value, expect_list
from consensus.crypto import PUBLIC_KEY_BYTES
from fl.aggregate.copies import DeltaArray, copy_pairs, named_copies
from fl.economics import clients, committee, fees, validators
from fl.economics import txs as econ_txs
from fl.economics.clients import RoundVerdict
from fl.economics.genesis import OPEN_GENESIS, SECTION, initial_state, parse_section
from fl.economics.params import encode_params
from fl.economics.scoring import agreement_permille
from fl.economics.state import EconState
from fl.errors import RejectedError
from fl.governance import engine as gov_engine
from fl.governance.state import GovState
from fl.params import Params
from fl.txs import SignedTx

KINDS = (*econ_txs.KINDS, *gov_engine.KINDS, committee.KIND)
# client, rule score (permille), rule flag ("" if used as sent), the update's tx hash
Verdict = tuple[bytes, int, str, bytes]


@dataclass(slots=True)
class Incentives:
    econ: EconState = field(default_factory=EconState)
    gov: GovState = field(default_factory=GovState)

    # -- genesis --------------------------------------------------------------------------------

    @classmethod
    def from_genesis(
        cls,
        other_sections: Sequence[tuple[str, Value]],
        consensus_validators: Sequence[GenesisValidator],
        height: int,
    ) -> "Incentives":
        genesis = OPEN_GENESIS
        for name, value in other_sections:
            if name == SECTION:
                genesis = parse_section(value)
        return cls(econ=initial_state(genesis, consensus_validators, height))

    # -- transactions ---------------------------------------------------------------------------

    def execute(
        self,
        fl_params: Params,
        kind: str,
        sender: bytes,
        body: Value,
        height: int,
        time_ms: int,
        apply: bool,
    ) -> tuple[Event, ...]:
        """Run one of `KINDS` in block `height` at chain time `time_ms`; RejectedError leaves
        the state unchanged."""
        match kind:
            case _ if kind in econ_txs.KINDS:
                return econ_txs.execute(self.econ, kind, sender, body, height, time_ms, apply)
            case committee.KIND:
                return (committee.execute(self.econ, sender, body, height, apply),)
            case _ if kind in gov_engine.KINDS:
                return gov_engine.execute(
                    self.gov, self.econ, fl_params, kind, sender, body, height, time_ms, apply
                )
            case _:
                raise RejectedError(f"unknown transaction kind {kind!r}")

    def check_submit(self, client: bytes, fl_round: int) -> None:
        clients.check_can_submit(self.econ, client, fl_round)

    def note_fault(self, client: bytes, fl_round: int, reason: str, objective: bool) -> list[Event]:
        """Evidence from a client's own signed transaction: slashed at once when `objective`,
        else one round of cross-round evidence at the flag weight (clients.py)."""
        if objective:
            return clients.punish_fault(self.econ, client, fl_round, reason)
        return clients.note_unmatched_reveal(self.econ, client, fl_round)

    @contextmanager
    def fee(self, tx: SignedTx, apply: bool) -> Iterator[None]:
        """Charge the per-byte fee around a transaction's execution; refund it if it fails.

        With `fee_per_byte` = 0 (the default) this costs nothing, not even the size computation.
        """
        per_byte = self.econ.params.fee_per_byte
        amount = fees.check_fee(self.econ, tx.sender, len(tx.to_wire())) if per_byte else 0
        if apply and amount:
            self.econ.ledger.charge_fee(tx.sender, amount)
        try:
            yield
        except RejectedError:
            if apply and amount:
                fees.refund_fee(self.econ, tx.sender, amount)
            raise

    # -- blocks ---------------------------------------------------------------------------------

    def begin_block(self, block: BlockInfo) -> list[Event]:
        return validators.begin_block(self.econ, block)

    def settle_round(
        self,
        fl_round: int,
        height: int,
        pending: Sequence[tuple[bytes, DeltaArray]],
        verdicts: Sequence[Verdict],
        known_norms_sq: Mapping[bytes, int] | None = None,
        pairs: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> list[Event]:
        """Settle a closed round from the rule's verdicts (client, rule score permille, flag or
        "", tx hash) and the round's deltas in inclusion order (for the agreement scores and the
        near-copies), now or, with an evaluation committee, `committee_blocks` later.

        `pairs`: the round's near-copy pairs (earlier, later), if aggregation already found them
        with this `collusion_permille` (fl.aggregate.copies.copy_pairs); else found here."""
        agreement = agreement_permille(pending, known_norms_sq)
        # A near-copy of another update is flagged (no reward, and one fully suspect round:
        # evidence only across rounds, clients.py), whatever the rule said of it.  `pending` is
        # in inclusion order: in a single-phase round only the later of a pair copied.
        params = self.econ.params
        if pairs is None:
            pairs = copy_pairs(pending, params.collusion_permille)
        copies = named_copies(pairs, originals_first=params.commit_blocks == 0)
        judged = [
            RoundVerdict(
                c, score, agreement.get(c, 0), clients.NEAR_COPY if c in copies else flag, tx_hash
            )
            for c, score, flag, tx_hash in verdicts
        ]
        if self.econ.params.committee_blocks and judged:
            committee.defer(self.econ, fl_round, height, judged)
            return []
        return clients.settle_round(self.econ, fl_round, judged)

    def end_block(
        self, fl_params: Params, height: int, time_ms: int
    ) -> tuple[Params, list[tuple[bytes, int]], list[Event]]:
        events = committee.settle_due(self.econ, height)
        fl_params, gov_events = gov_engine.end_block(
            self.gov, self.econ, fl_params, height, time_ms
        )
        events += gov_events
        updates = validators.power_updates(self.econ)
        for key, power in updates:
            events.append(
                Event("validator_power", (("validator", key.hex()), ("power", str(power))))
            )
        self.econ.ledger.check_invariants()
        return fl_params, updates, events

    # -- hashing and snapshots ------------------------------------------------------------------

    def sections(self) -> list[tuple[str, Value]]:
        return [("economics", self.econ.encode()), ("governance", self.gov.encode())]

    def encode(self) -> Value:
        return [self.econ.encode(), self.gov.encode()]

    @classmethod
    def decode(cls, value: Value) -> "Incentives":
        econ_v, gov_v = expect_list(value, 2, "incentives")
        return cls(EconState.decode(econ_v), GovState.decode(gov_v))

    # -- queries --------------------------------------------------------------------------------

    def query(self, parts: Sequence[str]) -> Value:
        """Answer paths under "econ/..." and "gov/..."; RejectedError for anything else."""
        econ, ledger = self.econ, self.econ.ledger
        match list(parts):
            case ["econ", "supply"]:
                return [
                    ledger.supply,
                    sum(ledger.balances.values()),
                    ledger.total_bonded(),
                    sum(u.amount for u in ledger.unbonding),
                    ledger.reserve,
                    ledger.escrow,
                    ledger.burned,
                ]
            case ["econ", "params"] | ["gov", "params"]:
                return encode_params(econ.params)
            case ["econ", "account", key_hex]:
                key = _hex_key(key_hex)
                client = econ.clients.get(key)
                validator = econ.validators.get(key)
                return [
                    ledger.balance(key),
                    ledger.stake(key),
                    ledger.unbonding_of(key),
                    None if client is None else client.encode(),
                    None if validator is None else validator.encode(),
                ]
            case ["econ", "validators"]:
                return [
                    [k, validators.power_of(econ, k), ledger.stake(k), econ.validators[k].encode()]
                    for k in sorted(econ.validators)
                ]
            case ["econ", "clients"]:
                return [
                    [k, ledger.stake(k), econ.clients[k].encode()] for k in sorted(econ.clients)
                ]
            case ["econ", "unsettled"]:
                window = econ.params.committee_blocks
                return [
                    [
                        u.round,
                        u.close_height,
                        u.close_height + window,
                        [[v.client, v.tx_hash] for v in u.verdicts],
                        sorted(u.scores),
                    ]
                    for u in econ.unsettled
                ]
            case ["gov", "proposals"]:
                return [self.gov.proposals[i].summary() for i in sorted(self.gov.proposals)]
            case ["gov", "proposal", pid]:
                if not pid.isdigit() or int(pid) not in self.gov.proposals:
                    raise RejectedError(f"no proposal {pid!r}")
                return self.gov.proposals[int(pid)].encode()
            case _:
                raise RejectedError(f"unknown query path {'/'.join(parts)!r}")


def _hex_key(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise RejectedError("public key is not hex") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise RejectedError(f"public key must be {PUBLIC_KEY_BYTES} bytes")
    return raw
