"""The optional per-byte transaction fee: `fee_per_byte` * wire size, paid into the reserve."""

from fl.economics.state import EconState
from fl.errors import RejectedError


def fee_for(econ: EconState, tx_bytes: int) -> int:
    return econ.params.fee_per_byte * tx_bytes


def check_fee(econ: EconState, sender: bytes, tx_bytes: int) -> int:
    fee = fee_for(econ, tx_bytes)
    if econ.ledger.balance(sender) < fee:
        raise RejectedError(f"fee {fee} exceeds balance {econ.ledger.balance(sender)}")
    return fee


def refund_fee(econ: EconState, sender: bytes, fee: int) -> None:
    """Undo `charge_fee` for a transaction that was then rejected (reserve -> balance)."""
    if fee > 0:
        econ.ledger.reserve -= fee
        econ.ledger.balances[sender] = econ.ledger.balance(sender) + fee
