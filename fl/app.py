"""FLApp: the fedchain application behind the consensus Application protocol.

Theory of operation.  Transactions are `SignedTx` envelopes (fl/txs.py).  Every transaction, in
check_tx and in a block alike, goes through the same pipeline: decode (stateless), verify the
signature, check the sender's nonce, then `_execute`, one `match` on the kind that calls the
kind's own module (`check` builds the change without touching state, `apply` makes it).  A
rejected transaction gets a non-zero code and a reason and changes nothing; an accepted one
bumps its sender's nonce.  At the end of every block the round lifecycle (fl/rounds.py) may
close the open round; its `RoundOutcome` is the hook for rewards and penalties.  The app hash
is the hash of the sectioned canonical state (fl/state.py).

Block validity: process_proposal rejects a block only for what the proposer could have seen
statelessly (undecodable transaction, bad signature, too many transactions); stateful failures
are recorded per transaction.
"""

from collections.abc import Sequence

from consensus.app import (
    CODE_OK,
    AppInfo,
    BlockInfo,
    CheckTxResult,
    Event,
    FinalizeResult,
    Genesis,
    QueryResult,
    TxResult,
    ValidatorUpdate,
)
from consensus.codec import DecodeLimits, Value, decode, encode
from consensus.crypto import HASH_BYTES, PUBLIC_KEY_BYTES
from consensus.errors import CodecError
from consensus.txid import tx_id
from fl import rounds, updates
from fl.authcache import AuthCache
from fl.economics import layer as incentives
from fl.economics.layer import Incentives
from fl.errors import FLInvariantError, RejectedError
from fl.genesis import parse_app_state
from fl.model import ModelVersion
from fl.params import encode_params
from fl.state import FLState, restore_state
from fl.txs import KIND_COMMIT_UPDATE, KIND_REVEAL_UPDATE, KIND_SUBMIT_UPDATE, SignedTx
from fl.updates import FaultError

CODE_REJECTED = 1
CODE_NONCE = 2
CODE_FAULT = 3  # refused, and executed as evidence against the sender (fl/updates.FaultError)
BLOCK_TXS_MAX = 10_000
# check_tx admits nonces up to this far ahead, so a client may queue a few transactions.
NONCE_WINDOW = 16
SNAPSHOT_LIMITS = DecodeLimits(array_items_max=10_000_000)


class FLApp:
    def __init__(self) -> None:
        self._state: FLState | None = None
        self._last_height = 0
        self._last_app_hash = b""
        self._auth: AuthCache | None = None
        # (height, app hash) computed by finalize_block, so commit does not hash again.
        self._finalized: tuple[int, bytes] = (-1, b"")

    @property
    def state(self) -> FLState:
        if self._state is None:
            raise FLInvariantError("the application has no state before init_chain or restore")
        return self._state

    # -- lifecycle ----------------------------------------------------------------------------

    def init_chain(self, genesis: Genesis) -> tuple[bytes, tuple[ValidatorUpdate, ...]]:
        fl_genesis = parse_app_state(genesis.app_state)
        model = ModelVersion.build(0, fl_genesis.shapes, fl_genesis.weights)
        self._state = FLState(
            chain_id=genesis.chain_id,
            height=genesis.initial_height - 1,
            params=fl_genesis.params,
            model=model,
            round_opened_height=genesis.initial_height - 1,
            time_ms=genesis.genesis_time_ms,
            round_opened_ms=genesis.genesis_time_ms,
            history=[model],
            incentives=Incentives.from_genesis(
                fl_genesis.other, genesis.validators, genesis.initial_height - 1
            ),
        )
        _, initial_set, _ = self.state.incentives.end_block(
            self.state.params, self.state.height, self.state.time_ms
        )
        self._last_height = self.state.height
        self._last_app_hash = self.state.app_hash()
        return self._last_app_hash, tuple(ValidatorUpdate(k, p) for k, p in initial_set)

    def info(self) -> AppInfo:
        state = self.state
        return AppInfo(self._last_height, self._last_app_hash, state.round, len(state.pending))

    # -- mempool ------------------------------------------------------------------------------

    def check_tx(self, tx: bytes) -> CheckTxResult:
        try:
            signed = self._authenticate(tx)
        except RejectedError as exc:
            return CheckTxResult(code=CODE_REJECTED, reason=str(exc), malformed=True)
        next_nonce = self.state.account(signed.sender).nonce
        if not next_nonce <= signed.nonce < next_nonce + NONCE_WINDOW:
            return CheckTxResult(
                code=CODE_NONCE,
                reason=f"nonce {signed.nonce} outside [{next_nonce}, {next_nonce + NONCE_WINDOW})",
                sender=signed.sender,
                nonce=signed.nonce,
            )
        try:
            self._execute(tx, signed, apply=False)
        except FaultError:
            pass  # evidence against its sender: admitted so a block can judge it
        except RejectedError as exc:
            return CheckTxResult(CODE_REJECTED, str(exc), signed.sender, signed.nonce)
        return CheckTxResult(
            sender=signed.sender, nonce=signed.nonce, nonce_gap=signed.nonce - next_nonce
        )

    def release_tx(self, tx: bytes) -> None:
        """The mempool holds `tx` no more: its memo entry would only pin its bytes."""
        self._memo().forget((tx,))

    # -- proposals ----------------------------------------------------------------------------

    def prepare_proposal(
        self, txs: Sequence[bytes], block: BlockInfo, block_bytes_max: int
    ) -> list[bytes]:
        """Keep transactions that authenticate and whose nonces run in sequence, within size."""
        chosen: list[bytes] = []
        size = 0
        next_nonce: dict[bytes, int] = {}
        for tx in txs:
            if len(chosen) >= BLOCK_TXS_MAX or size + len(tx) > block_bytes_max:
                continue
            try:
                signed = self._authenticate(tx)
            except RejectedError:
                continue
            expected = next_nonce.get(signed.sender, self.state.account(signed.sender).nonce)
            if signed.nonce != expected:
                continue
            next_nonce[signed.sender] = expected + 1
            chosen.append(tx)
            size += len(tx)
        return chosen

    def process_proposal(self, txs: Sequence[bytes], block: BlockInfo) -> bool:
        if len(txs) > BLOCK_TXS_MAX:
            return False
        try:
            for tx in txs:
                self._authenticate(tx)
        except RejectedError:
            return False
        return True

    # -- execution ----------------------------------------------------------------------------

    def finalize_block(self, txs: Sequence[bytes], block: BlockInfo) -> FinalizeResult:
        state = self.state
        if block.height != state.height + 1:
            raise FLInvariantError(f"finalize_block({block.height}) after height {state.height}")
        state.height = block.height
        state.time_ms = block.time_ms
        events: list[Event] = state.incentives.begin_block(block)
        results = tuple(self._deliver(tx) for tx in txs)
        self._memo().forget(txs)
        cause = rounds.due(state, block.height)
        if cause == "reveal":
            events.append(rounds.open_reveal(state, block.height))
            cause = ""
        if cause:
            fl_round = state.round
            # Only a commit-reveal round owes reveals (governance may switch it off mid-round).
            commit_reveal = state.incentives.econ.params.commit_blocks > 0
            broken = rounds.unrevealed(state) if commit_reveal else []
            pending = [(p.client, p.delta) for p in state.pending]  # close_round clears them
            norms = {p.client: p.squared_norm for p in state.pending}
            outcome = rounds.close_round(state, block.height, cause)
            events.append(outcome.event())
            # Flagged entries carry no score in the outcome; their records do.
            verdicts = [(c.client, c.score, "", c.tx_hash) for c in outcome.accepted] + [
                (f.client, state.records[f.tx_hash].score, f.reason, f.tx_hash)
                for f in outcome.flagged
            ]
            events += state.incentives.settle_round(
                outcome.round, block.height, pending, verdicts, norms, outcome.copy_pairs
            )
            for client in broken:  # committed and never revealed: withheld, or lost
                events += state.incentives.note_fault(client, fl_round, "unrevealed", False)
        state.params, power, gov_events = state.incentives.end_block(
            state.params, block.height, block.time_ms
        )
        events += gov_events
        self._finalized = (block.height, state.app_hash())
        return FinalizeResult(
            tx_results=results,
            app_hash=self._finalized[1],
            validator_updates=tuple(ValidatorUpdate(k, p) for k, p in power),
            events=tuple(events),
        )

    def commit(self) -> None:
        self._last_height = self.state.height
        # Nothing changes the state between finalize_block and commit: reuse its hash.
        height, app_hash = self._finalized
        self._last_app_hash = app_hash if height == self._last_height else self.state.app_hash()

    def _deliver(self, tx: bytes) -> TxResult:
        try:
            signed = self._authenticate(tx)
            next_nonce = self.state.account(signed.sender).nonce
            if signed.nonce != next_nonce:
                return TxResult(CODE_NONCE, f"nonce {signed.nonce}, expected {next_nonce}")
            events = self._execute(tx, signed, apply=True)
        except FaultError as exc:
            events = tuple(
                self.state.incentives.note_fault(
                    signed.sender, self.state.round, str(exc), exc.objective
                )
            )
            self._bump_nonce(signed.sender)
            return TxResult(CODE_FAULT, str(exc), events)
        except RejectedError as exc:
            return TxResult(CODE_REJECTED, str(exc))
        self._bump_nonce(signed.sender)
        return TxResult(CODE_OK, "", events)

    def _bump_nonce(self, sender: bytes) -> None:
        account = self.state.accounts.setdefault(sender, self.state.account(sender))
        account.nonce += 1

    def _authenticate(self, tx: bytes) -> SignedTx:
        return self._memo().authenticate(tx)

    def _memo(self) -> AuthCache:
        # Memoized decode + signature check + update measurement (pure functions of the bytes
        # and chain id): see fl/authcache.py.
        if self._auth is None or self._auth.chain_id != self.state.chain_id:
            self._auth = AuthCache(self.state.chain_id)
        return self._auth

    def _execute(self, wire: bytes, tx: SignedTx, apply: bool) -> tuple[Event, ...]:
        """The one dispatch on transaction kind; raises RejectedError without changing state."""
        state = self.state
        with state.incentives.fee(tx, apply):
            return self._dispatch(wire, tx, apply)

    def _dispatch(self, wire: bytes, tx: SignedTx, apply: bool) -> tuple[Event, ...]:
        state = self.state
        match tx.kind:
            case "submit_update" | "reveal_update":
                state.incentives.check_submit(tx.sender, state.round)
                try:
                    measured_bytes = self._memo().measure_update(wire, tx)
                except RejectedError as exc:
                    # The mempool refuses it as before; in a block, the signed bytes alone
                    # prove the fault (no state of ours made them invalid).
                    if apply:
                        raise FaultError(str(exc), True) from None
                    raise
                measured = updates.check(state, tx, measured_bytes)
                if not apply:
                    return ()
                return updates.apply(state, updates.pending(tx, tx_id(wire), measured))
            case "commit_update":
                state.incentives.check_submit(tx.sender, state.round)
                commit = updates.check_commit(state, tx)
                return updates.apply_commit(state, tx.sender, commit) if apply else ()
            case kind if kind in incentives.KINDS:
                # In check_tx the transaction would run in the next block, at a time no earlier
                # than the last block's.
                height = state.height if apply else state.height + 1
                return state.incentives.execute(
                    state.params, kind, tx.sender, tx.body, height, state.time_ms, apply
                )
            case _:
                raise RejectedError(f"unknown transaction kind {tx.kind!r}")

    # -- queries ------------------------------------------------------------------------------

    def query(self, path: str, data: bytes) -> QueryResult:
        try:
            value = self._query(path)
        except (RejectedError, ValueError) as exc:
            return QueryResult(code=CODE_REJECTED, reason=str(exc), height=self.state.height)
        raw = value if isinstance(value, bytes) else encode(value)
        return QueryResult(value=raw, height=self.state.height)

    def _query(self, path: str) -> Value:
        state = self.state
        parts = path.strip("/").split("/")
        match parts:
            case ["model"]:
                return state.model.encode()
            case ["model", version]:
                for model in state.history:
                    if model.version == int(version):
                        return model.encode()
                raise RejectedError(f"model version {version} is not kept")
            case ["round"]:
                return [
                    state.round,
                    state.round_opened_height,
                    state.round_deadline_ms(),
                    state.params.updates_per_round,
                    len(state.pending),
                    state.model.version,
                    state.model.hash,
                    state.last_outcome,
                ]
            case ["round", "phase"]:
                commit_blocks = state.incentives.econ.params.commit_blocks
                phase = "single"
                if commit_blocks:
                    phase = "reveal" if state.reveal_opened_height >= 0 else "commit"
                return [
                    state.round,
                    phase,
                    state.round_opened_height + commit_blocks,
                    state.reveal_opened_height,
                    len(state.commits),
                ]
            case ["account", key_hex]:
                key = _hex(key_hex, PUBLIC_KEY_BYTES, "public key")
                return state.account(key).encode()
            case ["update", tx_hex]:
                record = state.records.get(_hex(tx_hex, HASH_BYTES, "tx hash"))
                if record is None:
                    raise RejectedError("no record of that update (unknown or pruned)")
                return record.encode()
            case ["params"]:
                return encode_params(state.params)
            case ["econ" | "gov", *_]:
                return state.incentives.query(parts)
            case _:
                raise RejectedError(f"unknown query path {path!r}")

    # -- state sync ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def restore(self, snapshot: bytes) -> None:
        try:
            state = restore_state(decode(snapshot, SNAPSHOT_LIMITS))
        except CodecError as exc:
            raise RejectedError(f"bad snapshot: {exc}") from None
        self._state = state
        self._last_height = state.height
        self._last_app_hash = state.app_hash()


def _hex(text: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise RejectedError(f"{what} is not hex") from None
    if len(raw) != size:
        raise RejectedError(f"{what} must be {size} bytes")
    return raw


__all__ = ["KIND_COMMIT_UPDATE", "KIND_REVEAL_UPDATE", "KIND_SUBMIT_UPDATE", "FLApp"]
