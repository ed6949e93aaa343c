"""Token and staking transactions: transfer, bond, unbond, unjail.

Bodies (canonical msgpack arrays):
    transfer  [recipient (32-byte key), amount]
    bond      [amount]
    unbond    [amount]        the stake returns to the balance after `unbonding_period_ms`
    unjail    []              a jailed validator whose jail time is over rejoins the set
`execute` checks everything before it mutates, so a rejected transaction changes nothing.
"""

from dataclasses import dataclass

from consensus.app import Event
from consensus.codec import Value, expect_bytes, expect_int, expect_list
from consensus.crypto import PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from fl.economics.ledger import AMOUNT_MAX
from fl.economics.state import EconState
from fl.errors import RejectedError

KINDS = ("transfer", "bond", "unbond", "unjail")


@dataclass(frozen=True, slots=True)
class Transfer:
    recipient: bytes
    amount: int

    def encode(self) -> Value:
        return [self.recipient, self.amount]


@dataclass(frozen=True, slots=True)
class Amount:
    amount: int

    def encode(self) -> Value:
        return [self.amount]


def decode_transfer(body: Value) -> Transfer:
    try:
        to, amount = expect_list(body, 2, "transfer")
        return Transfer(
            expect_bytes(to, "recipient", PUBLIC_KEY_BYTES),
            expect_int(amount, "amount", 1, AMOUNT_MAX),
        )
    except CodecError as exc:
        raise RejectedError(f"malformed transfer: {exc}") from None


def decode_amount(body: Value, kind: str) -> Amount:
    try:
        (amount,) = expect_list(body, 1, kind)
        return Amount(expect_int(amount, "amount", 1, AMOUNT_MAX))
    except CodecError as exc:
        raise RejectedError(f"malformed {kind}: {exc}") from None


def execute(
    econ: EconState,
    kind: str,
    sender: bytes,
    body: Value,
    height: int,
    time_ms: int,
    apply: bool,
) -> tuple[Event, ...]:
    """Run one token/staking transaction in block `height` at chain time `time_ms`;
    RejectedError leaves no trace."""
    ledger = econ.ledger
    match kind:
        case "transfer":
            tx = decode_transfer(body)
            if tx.recipient == sender:
                raise RejectedError("transfer to self")
            if ledger.balance(sender) < tx.amount:
                raise RejectedError(f"amount {tx.amount} exceeds balance {ledger.balance(sender)}")
            if apply:
                ledger.transfer(sender, tx.recipient, tx.amount)
            return (_event("transfer", sender, ("to", tx.recipient.hex()), tx.amount),)
        case "bond":
            amt = decode_amount(body, kind)
            if ledger.balance(sender) < amt.amount:
                raise RejectedError(f"bond {amt.amount} exceeds balance {ledger.balance(sender)}")
            if apply:
                ledger.bond(sender, amt.amount)
            return (_event("bond", sender, ("bonded", str(ledger.stake(sender))), amt.amount),)
        case "unbond":
            amt = decode_amount(body, kind)
            if ledger.stake(sender) < amt.amount:
                raise RejectedError(f"unbond {amt.amount} exceeds bonded {ledger.stake(sender)}")
            mature = time_ms + econ.params.unbonding_period_ms
            if apply:
                ledger.unbond(sender, amt.amount, mature)
            return (_event("unbond", sender, ("mature_ms", str(mature)), amt.amount),)
        case "unjail":
            try:
                expect_list(body, 0, "unjail")
            except CodecError as exc:
                raise RejectedError(f"malformed unjail: {exc}") from None
            record = econ.validators.get(sender)
            if record is None:
                raise RejectedError("sender is not a validator")
            if record.tombstoned:
                raise RejectedError("validator is tombstoned (double sign) and cannot unjail")
            if not record.jailed:
                raise RejectedError("validator is not jailed")
            if time_ms < record.jailed_until_ms:
                raise RejectedError(f"jailed until chain time {record.jailed_until_ms} ms")
            if ledger.stake(sender) < econ.params.validator_stake_min:
                raise RejectedError(
                    f"bonded {ledger.stake(sender)} below the validator minimum "
                    f"{econ.params.validator_stake_min}"
                )
            if apply:
                record.jailed = False
                record.tracked_since = height + 1
                record.missed = []
            return (Event("validator_unjailed", (("validator", sender.hex()),)),)
        case _:
            raise RejectedError(f"unknown economics transaction kind {kind!r}")


def _event(kind: str, sender: bytes, extra: tuple[str, str], amount: int) -> Event:
    return Event(kind, (("sender", sender.hex()), ("amount", str(amount)), extra))
