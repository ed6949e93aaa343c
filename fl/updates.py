"""The submit_update transaction: validate against the open round, then record it as pending.

`measure` does the stateless tests (decode, coordinate bound, exact norm) once per transaction
(the app memoizes it); `check` does the tests against the open round without touching the
state; `apply` only mutates.  So a rejected update leaves the state exactly as it was, whether
it came through check_tx, a mempool recheck or a block.
"""

from dataclasses import dataclass

from consensus.app import Event
from fl.errors import RejectedError
from fl.fixed import delta_units_int32, squared_norm
from fl.state import FLState, Pending, UpdateRecord
from fl.txs import SignedTx, SubmitUpdate


@dataclass(frozen=True, slots=True)
class Measured:
    """What an update's bytes say whatever the state: its header and its exact squared norm in
    model units."""

    update: SubmitUpdate
    squared_norm: int


def measure(tx: SignedTx) -> Measured:
    """The stateless part of validation (decode, coordinate bound, norm); a pure function of the
    transaction, so a validator memoizes it with the signature check (fl/authcache.py)."""
    update = SubmitUpdate.decode(tx.body)
    delta = delta_units_int32(update.delta, update.bits, update.scale_exp, update.count)
    return Measured(update, squared_norm(delta))


def check(state: FLState, tx: SignedTx, measured: Measured) -> Measured:
    """Every stateful test of an update against the open round; raises RejectedError."""
    update = measured.update
    if update.round != state.round:
        raise RejectedError(f"update is for round {update.round} but round {state.round} is open")
    if update.base_hash != state.model.hash:
        raise RejectedError(
            f"base model hash {update.base_hash.hex()[:16]} is not the current model "
            f"{state.model.hash.hex()[:16]} (version {state.model.version})"
        )
    if tx.sender in state.pending_by_client:
        raise RejectedError(f"client already submitted an update for round {state.round}")
    if len(state.pending) >= state.params.updates_per_round:
        raise RejectedError(f"round {state.round} already holds {len(state.pending)} updates")
    size = state.model.weights.size
    if update.count != size:
        raise RejectedError(f"wrong shape: update has {update.count} parameters, model {size}")
    norm_max = state.params.update_norm_max
    if measured.squared_norm > norm_max * norm_max:
        raise RejectedError(f"update L2 norm exceeds the bound {norm_max} (model units)")
    return measured


def pending(tx: SignedTx, tx_hash: bytes, measured: Measured) -> Pending:
    """The accepted update as the round holds it, its delta decoded (again: the memo keeps
    only the norm, not 400 KB of int32 per update waiting in the mempool)."""
    update = measured.update
    delta = delta_units_int32(update.delta, update.bits, update.scale_exp, update.count)
    return Pending(tx.sender, tx_hash, update.samples, delta, measured.squared_norm)


def apply(state: FLState, pending: Pending) -> tuple[Event, ...]:
    state.pending_by_client[pending.client] = len(state.pending)
    state.pending.append(pending)
    state.records[pending.tx_hash] = UpdateRecord(
        state.round, pending.client, pending.samples, "pending"
    )
    return (
        Event(
            "fl_update_accepted",
            (
                ("round", str(state.round)),
                ("client", pending.client.hex()),
                ("tx", pending.tx_hash.hex()),
                ("samples", str(pending.samples)),
            ),
        ),
    )
