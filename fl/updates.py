"""The submit_update transaction: validate against the open round, then record it as pending.

`check` does every test and builds the value to store without touching the state; `apply` only
mutates.  So a rejected update leaves the state exactly as it was, whether it came through
check_tx or inside a block.
"""

from consensus.app import Event
from fl.errors import RejectedError
from fl.fixed import delta_units_int32, squared_norm
from fl.state import FLState, Pending, UpdateRecord
from fl.txs import SignedTx, SubmitUpdate


def check(state: FLState, tx: SignedTx, tx_hash: bytes) -> Pending:
    update = SubmitUpdate.decode(tx.body)
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
    delta = delta_units_int32(update.delta, update.bits, update.scale_exp, update.count)
    norm_max = state.params.update_norm_max
    if squared_norm(delta) > norm_max * norm_max:
        raise RejectedError(f"update L2 norm exceeds the bound {norm_max} (model units)")
    return Pending(tx.sender, tx_hash, update.samples, delta)


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
