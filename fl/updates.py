"""The update transactions: validate against the open round, then record them.

Single phase (`commit_blocks` = 0): submit_update carries the update.  Commit-reveal: in the
commit phase commit_update carries sha256(update, salt) (fl/txs.py `commitment`), in the
reveal phase reveal_update carries the update and the salt; it is checked as a submit_update
would be and must match the client's commitment.

`measure` does the stateless tests (decode, coordinate bound, exact norm) once per transaction
(the app memoizes it); `check` does the tests against the open round without touching the
state; `apply` only mutates.  So a rejected update leaves the state exactly as it was, whether
it came through check_tx, a mempool recheck or a block.
"""

from dataclasses import dataclass

import numpy as np

from consensus.app import Event
from fl.errors import RejectedError
from fl.fixed import delta_units_int32, squared_norm
from fl.state import FLState, Pending, UpdateRecord
from fl.txs import (
    KIND_REVEAL_UPDATE,
    KIND_SUBMIT_UPDATE,
    CommitUpdate,
    SignedTx,
    SubmitUpdate,
    commitment,
    reveal_parts,
)


class FaultError(RejectedError):
    """The transaction is refused and its signed bytes are evidence against its sender.

    `objective`: proof by itself (two different updates or commitments for one round, a reveal
    that does not match its commitment, an update whose bytes do not decode): slashed at once.
    Otherwise (a reveal with no commitment: the commitment may have been lost) it only adds a
    flagged round's weight to the client's cross-round evidence, which never slashes alone.
    check_tx admits such a transaction, so that it reaches a block and is judged there; the
    block executes it as a penalty (the nonce advances, so it cannot be replayed)."""

    def __init__(self, reason: str, objective: bool) -> None:
        super().__init__(reason)
        self.objective = objective


@dataclass(frozen=True, slots=True)
class Measured:
    """What an update's bytes say whatever the state: its header and its exact squared norm in
    model units."""

    update: SubmitUpdate
    squared_norm: int


def measure(tx: SignedTx) -> Measured:
    """The stateless part of validation (decode, coordinate bound, norm); a pure function of the
    transaction, so a validator memoizes it with the signature check (fl/authcache.py)."""
    body = reveal_parts(tx.body)[0] if tx.kind == KIND_REVEAL_UPDATE else tx.body
    update = SubmitUpdate.decode(body)
    delta = delta_units_int32(update.delta, update.bits, update.scale_exp, update.count)
    return Measured(update, squared_norm(delta))


def check(state: FLState, tx: SignedTx, measured: Measured) -> Measured:
    """Every stateful test of an update against the open round; raises RejectedError."""
    update = measured.update
    commit_reveal = state.incentives.econ.params.commit_blocks > 0
    if tx.kind == KIND_SUBMIT_UPDATE and commit_reveal:
        raise RejectedError("this chain runs commit-reveal rounds: commit_update, then reveal")
    if tx.kind == KIND_REVEAL_UPDATE:
        _check_reveal(state, tx, update)
    if update.round != state.round:
        raise RejectedError(f"update is for round {update.round} but round {state.round} is open")
    if update.base_hash != state.model.hash:
        raise RejectedError(
            f"base model hash {update.base_hash.hex()[:16]} is not the current model "
            f"{state.model.hash.hex()[:16]} (version {state.model.version})"
        )
    if tx.sender in state.pending_by_client:
        _check_repeat(state, tx, update)
    if len(state.pending) >= state.params.updates_per_round:
        raise RejectedError(f"round {state.round} already holds {len(state.pending)} updates")
    size = state.model.weights.size
    if update.count != size:
        raise RejectedError(f"wrong shape: update has {update.count} parameters, model {size}")
    norm_max = state.params.update_norm_max
    if measured.squared_norm > norm_max * norm_max:
        raise RejectedError(f"update L2 norm exceeds the bound {norm_max} (model units)")
    return measured


def _check_repeat(state: FLState, tx: SignedTx, update: SubmitUpdate) -> None:
    """A second update from a client in one round: the same update again is a plain refusal
    (a retry); a different one is equivocation, signed twice by the client (objective)."""
    held = state.pending[state.pending_by_client[tx.sender]]
    delta = delta_units_int32(update.delta, update.bits, update.scale_exp, update.count)
    if held.samples != update.samples or not np.array_equal(held.delta, delta):
        raise FaultError(f"two different updates for round {state.round}", True)
    raise RejectedError(f"client already submitted an update for round {state.round}")


def _check_reveal(state: FLState, tx: SignedTx, update: SubmitUpdate) -> None:
    if state.incentives.econ.params.commit_blocks == 0:
        raise RejectedError("this chain runs single-phase rounds: use submit_update")
    if state.reveal_opened_height < 0:
        raise RejectedError(f"round {state.round} is still in its commit phase")
    if update.round != state.round or tx.sender in state.pending_by_client:
        return  # refused by the ordinary checks, as a stale or repeated update
    committed = state.commits.get(tx.sender)
    if committed is None:
        raise FaultError(f"no commitment from this client in round {state.round}", False)
    update_body, salt = reveal_parts(tx.body)
    if commitment(tx.sender, update.round, update_body, salt) != committed:
        raise FaultError(f"reveal does not match the round {state.round} commitment", True)


def check_commit(state: FLState, tx: SignedTx) -> CommitUpdate:
    """The commit phase's tests; raises RejectedError (FaultError for a second, different
    commitment in one round: equivocation)."""
    commit = CommitUpdate.decode(tx.body)
    if state.incentives.econ.params.commit_blocks == 0:
        raise RejectedError("this chain runs single-phase rounds: use submit_update")
    if commit.round != state.round:
        raise RejectedError(
            f"commitment is for round {commit.round} but round {state.round} is open"
        )
    if state.reveal_opened_height >= 0:
        raise RejectedError(f"round {state.round} is in its reveal phase")
    previous = state.commits.get(tx.sender)
    if previous == commit.digest:
        raise RejectedError(f"client already committed to this update in round {state.round}")
    if previous is not None:
        raise FaultError(f"two different commitments in round {state.round}", True)
    if len(state.commits) >= state.params.updates_per_round:
        raise RejectedError(f"round {state.round} already holds {len(state.commits)} commitments")
    return commit


def apply_commit(state: FLState, sender: bytes, commit: CommitUpdate) -> tuple[Event, ...]:
    state.commits[sender] = commit.digest
    return (
        Event(
            "fl_update_committed",
            (
                ("round", str(state.round)),
                ("client", sender.hex()),
                ("commitment", commit.digest.hex()),
            ),
        ),
    )


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
