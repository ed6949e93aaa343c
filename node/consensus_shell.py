"""The consensus shell: the one task that owns the engine state, and everything it touches.

Theory of operation
-------------------
Inputs (peer proposals and votes, fired timeouts, the app's answers, synced blocks) arrive in
one inbox and are applied one at a time by `run()`, so the engine state needs no locks.  For
each input the shell (1) appends it to the WAL, (2) applies it to the engine and (3) performs
the effects in order:

  PersistLastSigned  -> LastSigned file written and fsynced;
  Broadcast          -> the signed message is appended to the WAL and fsynced, then sent
                        (a proposal travels compactly: header + tx hashes);
  ScheduleTimeout    -> a loop timer that later puts TimeoutFired into the inbox;
  RequestProposal    -> app.prepare_proposal over the mempool, fed back as ProposalContent;
  ValidateBlock      -> app.process_proposal, fed back as BlockValidated;
  Decide             -> finalize_block; the block, its commit, results, tx index and the next
                        ChainState are stored in one SQLite transaction; then app.commit(),
                        an app snapshot every N heights (later while an FL round holds updates),
                        EndHeight in the WAL, mempool recheck;
                        BlockExecuted is fed after `commit_timeout_ms`;
  PeerMisbehaved     -> the sender of that input is penalized.

Messages for the next height (peers that committed first) are buffered and fed once the engine
reaches that height; anything further ahead wakes block sync.  Compact proposals are rebuilt
from the mempool; missing txs are fetched from the sender before the full proposal enters the
inbox, so the engine (and the prevote) only ever sees a complete block.

Recovery (`recover()` then the start of `run()`): restore the newest app snapshot (or
init_chain), replay stored blocks above it through the app (checking every app hash), load the
ChainState stored with the last block, then replay the WAL records of the current height into a
fresh engine seeded with the persisted LastSigned.  Re-signing identical bytes is allowed, so
replay reproduces our own messages exactly and can never equivocate.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from consensus.app import Application, ValidatorUpdate
from consensus.codec import decode, encode, expect_int, expect_list
from consensus.crypto import sha256
from consensus.engine import (
    BlockExecuted,
    BlockNeeded,
    BlockSynced,
    BlockValidated,
    Broadcast,
    ChainState,
    Decide,
    Effect,
    Engine,
    EngineConfig,
    EngineState,
    EvidenceFound,
    EvidenceReceived,
    Input,
    KeySigner,
    LastSigned,
    PeerAhead,
    PeerMisbehaved,
    PersistLastSigned,
    ProposalContent,
    ProposalReceived,
    RequestProposal,
    RestoreLastSigned,
    RoundStarted,
    ScheduleTimeout,
    SignRefused,
    Start,
    TimeoutFired,
    ValidateBlock,
    VoteReceived,
)
from consensus.engine.inputs import STEP_COMMIT
from consensus.errors import CodecError, ConsensusError
from consensus.txid import tx_id
from consensus.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    decode_block,
    decode_commit,
    decode_message,
    encode_block,
    encode_commit,
    encode_message,
)
from node.errors import StorageError, SyncError, WalCorruptError
from node.logging import log_event
from node.network import Network
from node.p2p.peer_id import PeerId
from node.records import (
    LastSignedRecord,
    OwnMessage,
    TxRecord,
    WalInput,
    compact,
    decode_results,
    decode_wal,
    encode_results,
    encode_wal,
    inflate,
    wal_height,
)
from node.store.sqlite import IndexedTx, StoredBlock
from node.wal import Wal, WalRecovery, parse_end_height
from node.wire import CompactProposal, ConsensusMsg, Message

if TYPE_CHECKING:
    from node.service import Node

log = logging.getLogger(__name__)

CHAIN_STATE_KEY = "chain_state"
PEER_INBOX_MAX = 20_000
FUTURE_MESSAGES_MAX = 5_000
REBROADCAST_INTERVAL_S = 1.0
REASSEMBLIES_MAX = 16


@dataclass(frozen=True, slots=True)
class _SyncItem:
    block: Block
    commit: Commit
    done: "asyncio.Future[bool]"


_Item = tuple[Input, PeerId | None] | _SyncItem


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def snapshot_now(height: int, due: int, interval: int, fl_pending: int) -> bool:
    """Take the app's snapshot at this height?  Every `interval` heights (from `due` on), but not
    while an FL round holds updates unless another `interval` heights have passed: at 1,000
    pending 100k-parameter updates a snapshot is a 400 MB encode on the consensus task (a 0.5 s
    stall, a missed propose timeout and +300 MB per validator when it fell inside the burst);
    right after the round closes it is a few MB.  Snapshots are this node's own recovery
    shortcut, so when each is taken is free to choose."""
    return height >= due and (fl_pending == 0 or height >= due + interval)


def compact_data_hash(hashes: Sequence[bytes]) -> bytes:
    """The header's data_hash computed from tx hashes alone (types.txs_hash over hashes)."""
    return sha256(encode(list(hashes)))


class ConsensusShell:
    def __init__(self, node: "Node", wal: Wal, wal_recovery: WalRecovery) -> None:
        self._node = node
        self._wal = wal
        self._wal_recovery = wal_recovery
        # Ids of the txs written as WAL records since the last EndHeight marker.
        self._wal_txs: set[bytes] = set()
        self._last_signed: bytes | None = None
        # Own messages waiting for the one fsync that precedes their sending (group commit).
        self._outbox: list[Message] = []
        self._unsynced_signature = False
        self._depth = 0
        # Blocks are written by one background thread so the fsync of SQLite overlaps the next
        # height's consensus; the store still sees heights strictly in order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-writer")
        self._storing: tuple[int, Future[None]] | None = None
        self._height_entered = 0
        cfg = node.cfg.consensus
        self._commit_timeout_ms = cfg.commit_timeout_ms
        self._engine = Engine(
            EngineConfig(
                propose_timeout_ms=cfg.propose_timeout_ms,
                propose_timeout_delta_ms=cfg.propose_timeout_delta_ms,
                prevote_timeout_ms=cfg.prevote_timeout_ms,
                prevote_timeout_delta_ms=cfg.prevote_timeout_delta_ms,
                precommit_timeout_ms=cfg.precommit_timeout_ms,
                precommit_timeout_delta_ms=cfg.precommit_timeout_delta_ms,
                block_bytes_max=cfg.block_bytes_max,
                block_txs_max=cfg.block_txs_max,
            ),
            KeySigner(node.validator_key),
        )
        self._state: EngineState | None = None
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._network: Network | None = None
        self._replaying = False
        self._deferred: list[Effect] = []
        self._future: dict[int, list[tuple[Input, PeerId | None]]] = {}
        self._future_count = 0
        self._own: list[Message] = []
        self._block_txs: dict[bytes, bytes] = {}
        self._previous_block_txs: dict[bytes, bytes] = {}
        self._last_commit_s = time.monotonic()
        self._fl_round = 0
        self._fl_pending = 0  # updates the open FL round holds (0 for other apps)
        self._snapshot_due = 0  # set by recover(): the next multiple of the snapshot interval
        self._reassembly_slots = asyncio.Semaphore(REASSEMBLIES_MAX)
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped_messages = 0
        self.double_sign_refusals = 0

    @property
    def state(self) -> EngineState:
        if self._state is None:
            raise StorageError("consensus state used before recovery")
        return self._state

    @property
    def app(self) -> Application:
        return self._node.app

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> None:
        node = self._node
        store = node.store
        snapshot = store.latest_snapshot()
        genesis_hash: bytes = b""
        overrides: tuple[ValidatorUpdate, ...] = ()
        if snapshot is not None and snapshot[0] <= store.height:
            self.app.restore(snapshot[1])
            applied = snapshot[0]
        else:
            genesis_hash, overrides = self.app.init_chain(node.genesis)
            applied = node.genesis.initial_height - 1
        for height in range(applied + 1, store.height + 1):
            stored = store.block(height)
            if stored is None:
                raise StorageError(f"block {height} missing from the store during recovery")
            block = decode_block(stored.data)
            results = decode_results(stored.results)
            result = self.app.finalize_block(block.txs, results.info)
            if result.app_hash != stored.app_hash:
                raise StorageError(
                    f"replaying block {height}: app hash {result.app_hash.hex()[:16]} differs "
                    f"from the stored {stored.app_hash.hex()[:16]}; the application is not "
                    "deterministic or the store is damaged"
                )
            self.app.commit()
        if store.height:
            raw = store.get_meta(CHAIN_STATE_KEY)
            if raw is None:
                raise StorageError("the store has blocks but no consensus state")
            chain = ChainState.decode(raw)
        else:
            chain = ChainState.from_genesis(node.genesis, genesis_hash, overrides)
        self._state = EngineState.for_height(chain)
        self._height_entered = chain.height
        self._update_fl_round()
        interval = node.cfg.storage.app_snapshot_interval_heights
        self._snapshot_due = (store.height // interval + 1) * interval
        node.metrics.height.set(store.height)
        log_event(
            log,
            "node_recovered",
            height=store.height,
            app_replayed=store.height - applied,
            next_height=chain.height,
        )

    # -- the consensus task ----------------------------------------------------------------------
    async def run(self, network: Network) -> None:
        self._network = network
        self._replay_wal()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._rebroadcast_loop())
            self._tg = tg
            while True:
                item = await self._inbox.get()
                try:
                    if isinstance(item, _SyncItem):
                        self._apply_synced(item)
                    else:
                        self._feed(item[0], item[1])
                except ConsensusError as exc:
                    # The engine raises InvariantError only for our own broken state.
                    log_event(log, "consensus_invariant_broken", logging.CRITICAL, error=str(exc))
                    raise

    def _replay_wal(self) -> None:
        state = self.state
        raw = self._find_last_signed()
        if raw is not None:
            try:
                last_signed = LastSigned.decode(raw)
            except CodecError as exc:
                raise WalCorruptError(f"LastSigned record does not decode: {exc}") from None
            self._last_signed = raw
            state, _ = self._engine.apply(state, RestoreLastSigned(last_signed))
        height = state.chain.height
        records: list[WalInput] = []
        try:
            decoded = inflate(decode_wal(payload) for payload in self._wal_recovery.pending)
        except CodecError as exc:
            raise WalCorruptError(f"WAL record does not decode: {exc}") from None
        for record in decoded:
            if isinstance(record, OwnMessage | LastSignedRecord):
                continue
            if wal_height(record) in (height, None):
                records.append(record)
        self._replaying = True
        try:
            self._feed(Start(), None)
            for record in records:
                self._feed(record, None)
        finally:
            self._replaying = False
        deferred, self._deferred = self._deferred, []
        for fx in deferred:
            self._perform(fx, None)
        if records:
            log_event(log, "wal_replayed", height=height, records=len(records))

    def _find_last_signed(self) -> bytes | None:
        for payload in reversed(self._wal_recovery.records):
            if parse_end_height(payload) is not None:
                continue
            try:
                record = decode_wal(payload)
            except CodecError as exc:
                raise WalCorruptError(f"WAL record does not decode: {exc}") from None
            if isinstance(record, LastSignedRecord):
                return record.data
        return None

    def _put(self, inp: Input, peer: PeerId | None) -> None:
        self._inbox.put_nowait((inp, peer))

    def _feed(self, inp: Input, peer: PeerId | None) -> None:
        state = self.state
        height = _input_height(inp)
        current = state.chain.height
        if isinstance(inp, TimeoutFired) and inp.height < current:
            # A timer of a decided height: the engine ignores it, so it needs no WAL record.
            # (At 50 empty heights/s, such timers fired one per 10 ms, each an append.)
            return
        if height is not None and height > current:
            if height <= current + 2 and self._future_count < FUTURE_MESSAGES_MAX:
                self._future.setdefault(height, []).append((inp, peer))
                self._future_count += 1
            if height > current + 1:
                self._node.sync_hint(height)
            return
        if not self._replaying and _is_wal_input(inp):
            self._append_input(inp)  # type: ignore[arg-type]
        self._depth += 1
        try:
            state, effects = self._engine.apply(state, inp)
            self._state = state
            for fx in effects:
                self._perform(fx, peer)
            if self.state.chain.height != self._height_entered:
                self._entered_height()
        finally:
            self._depth -= 1
        if self._depth == 0:
            self._flush()

    def _append_input(self, inp: WalInput) -> None:
        """An engine input into the WAL; a block's txs as their own records, once per height
        (node/records.py says why)."""
        txs, record = compact(inp)
        for tx in txs:
            h = tx_id(tx)
            if h not in self._wal_txs:
                self._wal.append(encode_wal(TxRecord(tx)))
                self._wal_txs.add(h)
        self._wal.append(encode_wal(record))

    def _flush(self) -> None:
        """One fsync makes every LastSigned and own message of this input durable; then send."""
        if not self._outbox and not self._unsynced_signature:
            return
        self._wal.sync()
        self._unsynced_signature = False
        outbox, self._outbox = self._outbox, []
        if not self._replaying:
            for msg in outbox:
                self._send_all(msg)

    def _entered_height(self) -> None:
        """Once per height (nested feeds may notice the change more than once): reset the
        per-height buffers, then feed what arrived early for this height."""
        height = self.state.chain.height
        self._height_entered = height
        self._own = []
        self._previous_block_txs = self._block_txs
        self._block_txs = {}
        ready = self._future.pop(height, [])
        for stale in [h for h in self._future if h < height]:
            del self._future[stale]
        self._future_count = sum(len(v) for v in self._future.values())
        for inp, peer in ready:
            self._feed(inp, peer)

    # -- effects ---------------------------------------------------------------------------------
    def _perform(self, fx: Effect, peer: PeerId | None) -> None:
        match fx:
            case PersistLastSigned(last_signed):
                self._last_signed = last_signed.encode()
                self._wal.append(encode_wal(LastSignedRecord(self._last_signed)))
                self._unsynced_signature = True
            case Broadcast(message):
                self._broadcast_own(message)
            case ScheduleTimeout(height, round_, step, duration_ms):
                asyncio.get_running_loop().call_later(
                    duration_ms / 1000, self._put, TimeoutFired(height, round_, step), None
                )
            case RequestProposal(height, round_, info):
                if self._replaying:
                    self._deferred.append(fx)
                    return
                cfg = self._node.cfg.consensus
                candidates = self._node.mempool.reap(cfg.block_txs_max, cfg.block_bytes_max)
                stamp = now_ms()
                txs = self.app.prepare_proposal(
                    candidates, replace(info, time_ms=stamp), cfg.block_bytes_max
                )
                self._feed(ProposalContent(height, round_, stamp, tuple(txs)), None)
            case ValidateBlock(height, block, info):
                if self._replaying:
                    self._deferred.append(fx)
                    return
                valid = self.app.process_proposal(block.txs, info)
                if not valid:
                    log_event(log, "proposal_rejected_by_app", logging.WARNING, height=height)
                self._feed(BlockValidated(height, block.id(), valid), None)
            case Decide(height, block, commit, info):
                self._execute(height, block, commit, info, self._replaying)
            case EvidenceFound(evidence):
                log_event(
                    log,
                    "evidence_found",
                    logging.WARNING,
                    height=evidence.vote_a.height,
                    round=evidence.vote_a.round,
                    validator=evidence.vote_a.validator.hex()[:16],
                )
                self._send_all(ConsensusMsg(encode_message(evidence)))
            case PeerMisbehaved(reason):
                if peer is not None:
                    self._node.penalize(peer, reason)
            case PeerAhead(height) | BlockNeeded(height, _):
                self._node.sync_hint(height)
            case RoundStarted(height, round_, proposer):
                self._node.metrics.round.set(round_)
                if round_ > 0:
                    log_event(
                        log, "round_started", height=height, round=round_, proposer=proposer[:8]
                    )
            case SignRefused(height, round_, step):
                self.double_sign_refusals += 1
                log_event(
                    log,
                    "sign_refused",
                    logging.WARNING,
                    height=height,
                    round=round_,
                    step=step,
                    reason="LastSigned guard: would differ from what was signed before",
                )

    def _broadcast_own(self, message: Proposal | Vote | DuplicateVoteEvidence) -> None:
        # Durability before the signature leaves: the message (and the LastSigned and inputs
        # before it) is appended here and fsynced by _flush before anything is sent.
        wire: Message
        if isinstance(message, Proposal):
            block = message.block
            ids = tuple(tx_id(tx) for tx in block.txs)
            for h, tx in zip(ids, block.txs, strict=True):
                self._block_txs[h] = tx
            bare = encode_message(replace(message, block=replace(block, txs=())))
            self._wal.append(encode_wal(OwnMessage(bare)))
            wire = CompactProposal(bare, ids)
        else:
            data = encode_message(message)
            self._wal.append(encode_wal(OwnMessage(data)))
            wire = ConsensusMsg(data)
        self._own.append(wire)
        self._outbox.append(wire)

    def _send_all(self, msg: Message) -> None:
        if self._network is not None:
            self._network.broadcast(msg)

    # -- deciding --------------------------------------------------------------------------------
    def _execute(
        self, height: int, block: Block, commit: Commit, info: Any, immediate: bool
    ) -> None:
        node = self._node
        started = time.monotonic()
        result = self.app.finalize_block(block.txs, info)
        updates = tuple(result.validator_updates)
        next_chain = self.state.chain.after_block(block, commit, result.app_hash, updates)
        tx_hashes = [tx_id(tx) for tx in block.txs]
        # The previous block must be on disk before this one (heights never skip in the store)
        # and before its EndHeight marker; usually it finished long ago.
        self._wait_stored()
        block_id = block.id()
        job = partial(
            node.store.save_block,
            height=height,
            block_hash=block_id,
            data=encode_block(block),
            commit_data=encode_commit(commit),
            results=encode_results(info, result),
            app_hash=result.app_hash,
            time_ms=block.header.time_ms,
            txs=[
                IndexedTx(h, r.code, r.reason)
                for h, r in zip(tx_hashes, result.tx_results, strict=True)
            ],
            meta=[(CHAIN_STATE_KEY, next_chain.encode())],
        )
        self.app.commit()
        self._update_fl_round()
        snapshot = self._snapshot_if_due(height)
        self._storing = (height, self._writer.submit(self._store_block, job, height, snapshot))
        dropped = node.mempool.update(tx_hashes)
        now = time.monotonic()
        interval_ms = int((now - self._last_commit_s) * 1000)
        self._last_commit_s = now
        m = node.metrics
        m.height.set(height)
        m.block_interval.observe(interval_ms / 1000)
        m.txs_committed.inc(len(block.txs))
        m.mempool_txs.set(len(node.mempool))
        m.mempool_bytes.set(node.mempool.size_bytes)
        m.fl_round.set(self._fl_round)
        rejected = sum(1 for r in result.tx_results if not r.ok)
        log_event(
            log,
            "block_committed",
            height=height,
            round=commit.round,
            txs=len(block.txs),
            rejected=rejected,
            app_hash=result.app_hash.hex()[:16],
            ms=interval_ms,
            exec_ms=int((now - started) * 1000),
            mempool=len(node.mempool),
            rechecked_out=len(dropped),
        )
        node.events.publish(
            {
                "event": "block",
                "height": height,
                "hash": block.id().hex(),
                "txs": len(block.txs),
                "app_hash": result.app_hash.hex(),
                "time_ms": block.header.time_ms,
                "interval_ms": interval_ms,
            }
        )
        if tx_hashes:
            # One event per block, not per tx: a 5,000-tx block must not overflow a
            # subscriber's queue (bounded in events) by itself.
            node.events.publish(
                {
                    "event": "txs",
                    "height": height,
                    "txs": [
                        {"hash": h.hex(), "code": r.code, "reason": r.reason}
                        for h, r in zip(tx_hashes, result.tx_results, strict=True)
                    ],
                }
            )
        block_events = [(e, True) for e in result.events]
        tx_events = [(e, False) for r in result.tx_results for e in r.events]
        for event, block_level in (*block_events, *tx_events):
            fields = dict(event.attributes)
            fields.pop("event", None)
            fields.pop("height", None)
            if "round" in fields:  # the app's rounds are FL rounds; "round" is consensus's
                fields["fl_round"] = fields.pop("round")
            # Every block-level app event (round close, settlement, slash, jail, governance,
            # validator power) is one INFO line; per-tx events only for FL updates and votes.
            level = (
                logging.INFO
                if block_level or event.kind.startswith(("fl_", "gov_", "client_slash"))
                else logging.DEBUG
            )
            log_event(log, event.kind, level, False, height=height, **fields)
            node.events.publish({"event": event.kind, "height": height, **fields})
        done = BlockExecuted(height, block.id(), result.app_hash, updates)
        if immediate or self._commit_timeout_ms == 0:
            self._feed(done, None)
        else:
            asyncio.get_running_loop().call_later(
                self._commit_timeout_ms / 1000, self._put, done, None
            )

    def _store_block(self, job: Callable[[], None], height: int, snapshot: bytes | None) -> None:
        """Runs on the writer thread: block (+ results, tx index, next ChainState), then the
        app snapshot; durable (fsync) before it returns."""
        job()
        if snapshot is not None:
            self._node.store.save_snapshot(height, snapshot)

    def _wait_stored(self) -> None:
        """Block until the pending block write is durable, then mark its height in the WAL."""
        if self._storing is None:
            return
        height, future = self._storing
        self._storing = None
        future.result()  # a StorageError here halts the node: the store is broken
        carry = (
            [] if self._last_signed is None else [encode_wal(LastSignedRecord(self._last_signed))]
        )
        self._wal.end_height(height, carry)
        self._wal_txs.clear()  # replay starts at the marker: later records must rewrite txs

    def close(self) -> None:
        """Finish the pending block write (clean shutdown)."""
        try:
            self._wait_stored()
        finally:
            self._writer.shutdown(wait=True)

    def _snapshot_if_due(self, height: int) -> bytes | None:
        interval = self._node.cfg.storage.app_snapshot_interval_heights
        if not snapshot_now(height, self._snapshot_due, interval, self._fl_pending):
            return None
        self._snapshot_due = (height // interval + 1) * interval
        return self.app.snapshot()

    def _update_fl_round(self) -> None:
        result = self.app.query("round", b"")
        if not result.ok:
            return
        try:
            value = decode(result.value)
            if isinstance(value, list) and value:
                self._fl_round = expect_int(value[0], "round", 0)
                if len(value) > 4:
                    self._fl_pending = expect_int(value[4], "pending updates", 0)
            else:
                self._fl_round = expect_int(expect_list(value, 1, "round")[0], "round", 0)
        except CodecError:
            return

    # -- from peers ------------------------------------------------------------------------------
    def on_peer_message(self, peer: PeerId, msg: Message) -> None:
        if self._inbox.qsize() > PEER_INBOX_MAX:
            self.dropped_messages += 1
            log_event(log, "consensus_inbox_full", logging.WARNING, peer=str(peer))
            return
        try:
            match msg:
                case ConsensusMsg(data):
                    inner = decode_message(data)
                    match inner:
                        case Vote():
                            self._put(VoteReceived(inner), peer)
                        case DuplicateVoteEvidence():
                            self._put(EvidenceReceived(inner), peer)
                        case Proposal():
                            self._put(ProposalReceived(inner), peer)
                case CompactProposal(data, hashes):
                    proposal = decode_message(data)
                    if not isinstance(proposal, Proposal) or proposal.block.txs:
                        raise CodecError("compact proposal must carry a proposal without txs")
                    if compact_data_hash(hashes) != proposal.block.header.data_hash:
                        raise CodecError("compact proposal: tx hashes do not match data_hash")
                    if self._state is not None and proposal.height < self.state.chain.height:
                        return
                    self._spawn(self._reassemble(peer, proposal, hashes))
                case _:
                    return
        except CodecError as exc:
            self._node.penalize(peer, f"bad consensus message: {exc}", severe=True)

    def _spawn(self, coro: Any) -> None:
        tg = getattr(self, "_tg", None)
        if tg is None:
            coro.close()
            return
        task: asyncio.Task[None] = tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lookup_tx(self, h: bytes) -> bytes | None:
        tx = self._node.mempool.get(h)
        if tx is None:
            tx = self._block_txs.get(h) or self._previous_block_txs.get(h)
        return tx

    def lookup_tx(self, h: bytes) -> bytes | None:
        """A tx a peer may ask for: pending, or in a block being decided."""
        return self._lookup_tx(h)

    async def _reassemble(self, peer: PeerId, proposal: Proposal, hashes: Sequence[bytes]) -> None:
        async with self._reassembly_slots:
            found: dict[bytes, bytes] = {}
            missing: list[bytes] = []
            for h in hashes:
                tx = self._lookup_tx(h)
                if tx is None:
                    missing.append(h)
                else:
                    found[h] = tx
            gossip = self._node.gossip
            if missing and gossip is not None:
                peers = [peer] + [
                    p for p in (self._network.peers() if self._network else []) if p != peer
                ]
                for source in peers:
                    got = await gossip.fetch(source, missing, urgent=True)
                    found.update(got)
                    missing = [h for h in missing if h not in found]
                    if not missing:
                        break
            if missing:
                log_event(
                    log,
                    "proposal_incomplete",
                    logging.WARNING,
                    height=proposal.height,
                    round=proposal.round,
                    missing=len(missing),
                    peer=str(peer),
                )
                return
            txs = tuple(found[h] for h in hashes)
            for h, tx in zip(hashes, txs, strict=True):
                self._block_txs[h] = tx
            full = replace(proposal, block=replace(proposal.block, txs=txs))
            self._put(ProposalReceived(full), peer)

    def on_peer_connected(self, peer: PeerId) -> None:
        if self._network is None:
            return
        for msg in self._own:
            self._network.send(peer, msg)

    def on_tx_admitted(self) -> None:
        return

    async def _rebroadcast_loop(self) -> None:
        """Resend our own messages of a height that is not progressing (lost or late peers)."""
        last_height = -1
        while True:
            await asyncio.sleep(REBROADCAST_INTERVAL_S)
            height = self.state.chain.height
            if height == last_height:
                for msg in self._own:
                    self._send_all(msg)
                for vote in self._held_votes():
                    self._send_all(ConsensusMsg(encode_message(vote)))
            last_height = height

    def _held_votes(self) -> list[Vote]:
        """Others' votes of the rounds that can still decide: the current one and the POL rounds.

        Relaying them (they carry their signers' signatures) lets a peer that missed them, e.g.
        while it restarted, reach the same quorum even if their signer is now silent or byzantine;
        with only own-message resends the simulator stalled behind a double-voting validator.
        """
        state = self.state
        rounds = sorted({state.round, state.locked_round, state.valid_round} - {-1})
        held: list[Vote] = []
        for sets in (state.prevotes, state.precommits):
            for round_ in rounds:
                votes = sets.get(round_)
                if votes is not None:
                    held.extend(votes.votes[i] for i in sorted(votes.votes))
        return held

    # -- block sync ------------------------------------------------------------------------------
    async def apply_synced_block(self, block_data: bytes, commit_data: bytes) -> bool:
        """Verify and apply one synced block through the consensus task; SyncError if invalid."""
        try:
            block = decode_block(block_data)
            commit = decode_commit(commit_data)
        except CodecError as exc:
            raise SyncError(f"undecodable block or commit: {exc}") from None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_SyncItem(block, commit, done))
        return await done

    def _apply_synced(self, item: _SyncItem) -> None:
        state = self.state
        height = item.block.header.height
        if height != state.chain.height or state.step == STEP_COMMIT:
            item.done.set_result(False)
            return
        state, effects = self._engine.apply(state, BlockSynced(item.block, item.commit))
        self._state = state
        for fx in effects:
            if isinstance(fx, PeerMisbehaved):
                item.done.set_exception(SyncError(fx.reason))
                return
        for fx in effects:
            if isinstance(fx, Decide):
                self._execute(fx.height, fx.block, fx.commit, fx.block_info, immediate=True)
            else:
                self._perform(fx, None)
        if self.state.chain.height != self._height_entered:
            self._entered_height()
        self._flush()
        item.done.set_result(True)

    def resume_after_sync(self) -> None:
        return

    # -- views for RPC and status ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = self.state
        chain = state.chain
        index = chain.validators.index(self._node.validator_key.public_key)
        return {
            "consensus_height": chain.height,
            "round": state.round,
            "step": state.step,
            "is_validator": index is not None,
            "voting_power": chain.validators.power_of(self._node.validator_key.public_key),
            "validators": len(chain.validators),
            "fl_round": self._fl_round,
        }

    def block_json(self, stored: StoredBlock) -> dict[str, Any]:
        block = decode_block(stored.data)
        commit = decode_commit(stored.commit_data)
        results = decode_results(stored.results)
        h = block.header
        return {
            "height": stored.height,
            "hash": stored.hash.hex(),
            "time_ms": h.time_ms,
            "proposer": h.proposer.hex(),
            "app_hash": h.app_hash.hex(),
            "result_app_hash": stored.app_hash.hex(),
            "last_block_hash": h.last_block_id.hex(),
            "data_hash": h.data_hash.hex(),
            "validators_hash": h.validators_hash.hex(),
            "txs": [tx_id(tx).hex() for tx in block.txs],
            "tx_results": [{"code": c, "reason": r} for c, r in results.tx_results],
            "evidence": len(block.evidence),
            "commit": {
                "round": commit.round,
                "signers": [s.validator.hex() for s in commit.signatures],
            },
        }

    def validators_json(self) -> dict[str, Any]:
        chain = self.state.chain
        names = {v.public_key: v.name for v in self._node.genesis.validators}
        return {
            "height": chain.height,
            "total_power": chain.validators.total_power,
            "validators": [
                {
                    "public_key": v.public_key.hex(),
                    "power": v.power,
                    "name": names.get(v.public_key, ""),
                }
                for v in chain.validators.validators
            ],
        }

    def tx_bytes(self, height: int, index: int) -> bytes | None:
        stored = self._node.store.block(height)
        if stored is None:
            return None
        txs = decode_block(stored.data).txs
        return txs[index] if 0 <= index < len(txs) else None


def _input_height(inp: Input) -> int | None:
    match inp:
        case ProposalReceived(proposal):
            return proposal.height
        case VoteReceived(vote):
            return vote.height
        case _:
            return None


def _is_wal_input(inp: Input) -> bool:
    return isinstance(
        inp,
        ProposalReceived
        | VoteReceived
        | EvidenceReceived
        | TimeoutFired
        | ProposalContent
        | BlockValidated,
    )
