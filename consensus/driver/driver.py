"""The consensus driver: the one loop around the engine, shared by the daemon and the simulator.

Theory of operation
-------------------
The driver owns the EngineState and an input queue.  `feed` queues an input and, unless the
driver is already draining, drains the queue: for each input it (1) drops timers of finished
heights and buffers messages of the next heights, (2) appends the input to the WAL (txs as their
own records, once per height), (3) applies it to the engine and (4) performs the effects in
order.  Answers to effects (ProposalContent, BlockValidated, BlockExecuted) are queued, never
fed recursively, so one external input and all its consequences form one drain.  When the queue
is empty the driver group-commits: if the drain persisted a LastSigned or signed a message, one
WAL sync makes them (and every input before them) durable, and only then are the signed messages
sent.  Durability therefore always runs ahead of what peers have seen.

Deciding (Decide): wait for the previous block's store and mark it with EndHeight, finalize the
block in the app, build the next ChainState, commit the app (in memory), take a snapshot if the
policy says so, hand everything to the store (which may write in the background) and answer
BlockExecuted after the commit pause.  The store's order is block -> state -> snapshot; the
EndHeight marker of a height is written only after its store is durable, at the start of the
next height if it is done by then (the only point where the WAL may rotate), else at the next
decision.  Replay (consensus/driver/replay.py) selects records by height, so a late marker is
harmless.

Recovery (`recover`): the caller builds the driver from the stored ChainState; the driver seeds
the engine with the newest durable LastSigned, feeds Start and every replayed record, performs
RequestProposal/ValidateBlock only afterwards (and only if still wanted), syncs and sends what
replay re-signed.  Messages of later heights wait in a bounded buffer until the engine gets
there; compact proposals are rebuilt from known txs (`compact_arrived`/`reassembled`).
"""

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from consensus.app import BlockInfo, FinalizeResult
from consensus.codec import encode
from consensus.crypto import sha256
from consensus.driver.ports import Decided, Message, Peer, Ports
from consensus.driver.relay import relay_messages
from consensus.driver.replay import plan_replay
from consensus.driver.walformat import (
    LastSignedRecord,
    TxRecord,
    WalInput,
    compact,
    encode_wal,
    own_record,
    proposal_received,
)
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
    EngineState,
    EvidenceFound,
    EvidenceReceived,
    Input,
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
from consensus.engine.inputs import STEP_COMMIT, STEP_PROPOSE
from consensus.txid import tx_id
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote


@dataclass(frozen=True, slots=True)
class DriverConfig:
    # The pause between deciding a block and starting the next height (0: none).
    commit_timeout_ms: int = 0
    # Messages of heights current+1 .. current+future_heights_ahead wait in a buffer of at most
    # future_messages_max; later ones only wake block sync.
    future_heights_ahead: int = 2
    future_messages_max: int = 5_000
    # Take the app's snapshot every this many heights (0: never); see `snapshot_now`.
    snapshot_interval_heights: int = 0
    # Relay peers' proposals too (the simulator's lossy links need it; the daemon's proposals
    # travel compactly and are pulled instead).
    relay_proposals: bool = False
    # CometBFT's create_empty_blocks = false: see `_hold_empty`.
    create_empty_blocks: bool = True
    create_empty_blocks_interval_ms: int = 0  # 0: wait for txs only


@dataclass(frozen=True, slots=True)
class Reassembly:
    """A compact proposal being rebuilt: the txs we hold and the ids we must fetch."""

    proposal: Proposal
    hashes: tuple[bytes, ...]
    peer: Peer
    received_ms: int
    found: tuple[tuple[bytes, bytes], ...]
    missing: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncResult:
    applied: bool
    problem: str = ""  # the synced block or commit is invalid (the sender's fault)


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


def input_height(inp: Input) -> int | None:
    match inp:
        case ProposalReceived(proposal):
            return proposal.height
        case VoteReceived(vote):
            return vote.height
        case TimeoutFired(height, _, _):
            return height
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


class Driver:
    def __init__(
        self, engine: Engine, ports: Ports, config: DriverConfig, chain: ChainState
    ) -> None:
        self.engine = engine
        self.ports = ports
        self.config = config
        self.state = EngineState.for_height(chain)
        self._own_key = b"" if engine.signer is None else engine.signer.public_key
        self._queue: deque[tuple[Input, Peer | None]] = deque()
        self._draining = False
        self._replaying = False
        self._deferred: list[Effect] = []
        self._own_blocks: frozenset[bytes] = frozenset()
        self._height = chain.height
        self._last_signed: bytes | None = None
        self._unsynced_signature = False
        self._outbox: list[Message] = []
        self._replayed_outbox = 0  # how many of _outbox replay re-signed
        self._own: list[Message] = []
        self._wal_txs: set[bytes] = set()
        self._future: dict[int, list[tuple[Input, Peer | None]]] = {}
        self._future_count = 0
        self._pending_store: int | None = None
        self._block_txs: dict[bytes, bytes] = {}
        self._previous_block_txs: dict[bytes, bytes] = {}
        self._snapshot_due = 0
        if config.snapshot_interval_heights > 0:
            interval = config.snapshot_interval_heights
            self._snapshot_due = ((chain.height - 1) // interval + 1) * interval
        self._relay_mark = (-1, -1, -1)
        self._held: BlockExecuted | None = None
        self._txs_seen = False

    @property
    def height(self) -> int:
        return self.state.chain.height

    @property
    def own_messages(self) -> tuple[Message, ...]:
        return tuple(self._own)

    # ---- recovery ------------------------------------------------------------------------------

    def recover(self, records: Sequence[bytes]) -> int:
        """Replay the WAL (every record of the log, oldest first), then resume: the number of
        inputs replayed.  Raises WalFormatError if a checksummed record does not decode."""
        replayed = self.replay(records)
        self.resume()
        return replayed

    def replay(self, records: Sequence[bytes]) -> int:
        """Rebuild the engine state from the log: afterwards it is the state before the crash,
        as far as that was durable (the app is not asked anything yet)."""
        plan = plan_replay(records, self.height)
        if plan.last_signed is not None:
            self._last_signed = plan.last_signed.encode()
            self.state, _ = self.engine.apply(self.state, RestoreLastSigned(plan.last_signed))
        self._own_blocks = plan.own_blocks
        self._replaying = True
        try:
            # One at a time: each record's consequences (queued answers) come before the next
            # record, as they did live.
            self._queue.append((Start(), None))
            self._drain()
            for position, inp in enumerate(plan.inputs):
                self._queue.append((inp, None))
                self._drain()
                if position in plan.own_positions:
                    self._recall_own(inp)
        finally:
            self._replaying = False
            self._own_blocks = frozenset()
            self._replayed_outbox = len(self._outbox)
        if plan.inputs:
            self.ports.telemetry.replayed(self.height, len(plan.inputs))
        return len(plan.inputs)

    def _recall_own(self, inp: Input) -> None:
        """A replayed own message of this height is relayed again like one signed now (the
        guard may not let replay re-sign it, yet a peer may still need it)."""
        match inp:
            case ProposalReceived(message) | VoteReceived(message):
                if message.height == self.height and message not in self._own:
                    self._own.append(message)

    def resume(self) -> None:
        """After replay: ask the app what replay could not (if still wanted), make what replay
        re-signed durable, and send it."""
        deferred, self._deferred = self._deferred, []
        for fx in deferred:
            if self._still_wanted(fx):
                self._perform(fx, None)
        self._drain()
        self._flush()

    def _still_wanted(self, fx: Effect) -> bool:
        state = self.state
        match fx:
            case RequestProposal(height, round_, _):
                return (
                    height == state.chain.height
                    and round_ == state.round
                    and state.step == STEP_PROPOSE
                    and state.proposal_requested_round == round_
                    and round_ not in state.proposals
                )
            case ValidateBlock(height, block, _):
                return height == state.chain.height and state.validity.get(block.id(), 0) is None
        return True

    # ---- inputs --------------------------------------------------------------------------------

    def feed(self, inp: Input, peer: Peer | None = None) -> None:
        """Queue an input (a fired timer, BlockExecuted, a peer's message) and drain."""
        self._queue.append((inp, peer))
        if not self._draining:
            self._drain()
            self._flush()

    def receive(self, message: Message, peer: Peer | None) -> None:
        """A peer's proposal (with its txs), vote or evidence."""
        match message:
            case Proposal():
                self.feed(proposal_received(message, self.ports.clock.now_ms()), peer)
            case Vote():
                self.feed(VoteReceived(message), peer)
            case DuplicateVoteEvidence():
                self.feed(EvidenceReceived(message), peer)

    def compact_arrived(
        self,
        proposal: Proposal,
        hashes: Sequence[bytes],
        peer: Peer,
        lookup: Callable[[bytes], bytes | None],
    ) -> Reassembly | None:
        """A proposal without txs, naming them: what we hold and what must be fetched (None if
        it is stale or malformed; the latter penalizes `peer`).  `lookup` finds pending txs
        (the daemon's mempool); txs of blocks this node has seen are found here."""
        stamp = self.ports.clock.now_ms()
        if proposal.block.txs or compact_data_hash(hashes) != proposal.block.header.data_hash:
            self.ports.penalizer.penalize(peer, "compact proposal: tx hashes do not match")
            return None
        if proposal.height < self.height:
            return None
        found: list[tuple[bytes, bytes]] = []
        missing: list[bytes] = []
        for h in hashes:
            tx = lookup(h) or self.lookup_tx(h)
            if tx is None:
                missing.append(h)
            else:
                found.append((h, tx))
        return Reassembly(proposal, tuple(hashes), peer, stamp, tuple(found), tuple(missing))

    def reassembled(self, r: Reassembly, fetched: Mapping[bytes, bytes]) -> bool:
        """Feed the rebuilt proposal; False if txs are still missing (the proposal is dropped:
        the engine only ever sees a complete block)."""
        txs_by_id = dict(r.found)
        for h in r.missing:
            tx = fetched.get(h)
            if tx is None:
                return False
            txs_by_id[h] = tx
        txs = tuple(txs_by_id[h] for h in r.hashes)
        if r.proposal.height == self.height:
            self._block_txs.update(zip(r.hashes, txs, strict=True))
        full = replace(r.proposal, block=replace(r.proposal.block, txs=txs))
        self.feed(proposal_received(full, r.received_ms), r.peer)
        return True

    def lookup_tx(self, h: bytes) -> bytes | None:
        """A tx of a block proposed at this height or the previous one."""
        return self._block_txs.get(h) or self._previous_block_txs.get(h)

    def synced(self, block: Block, commit: Commit) -> SyncResult:
        """A block for the current height with its commit, from block sync."""
        state = self.state
        if block.header.height != state.chain.height or state.step == STEP_COMMIT:
            return SyncResult(False)
        self.state, effects = self.engine.apply(state, BlockSynced(block, commit))
        for fx in effects:
            if isinstance(fx, PeerMisbehaved):
                return SyncResult(False, fx.reason)
        self._after_apply(effects, None, immediate=True)
        if not self._draining:
            self._drain()
            self._flush()
        return SyncResult(True)

    def forget_peer(self, peer: Peer) -> int:
        """A banned peer's buffered messages of later heights are dropped, not worked off when
        we get there (its queued inputs of this height are drained already: the shell feeds one
        at a time).  Returns how many were dropped."""
        dropped = 0
        for height in list(self._future):
            kept = [(inp, p) for inp, p in self._future[height] if p != peer]
            dropped += len(self._future[height]) - len(kept)
            if kept:
                self._future[height] = kept
            else:
                del self._future[height]
        self._future_count -= dropped
        return dropped

    def peer_connected(self, peer: Peer) -> None:
        for msg in self._own:
            self.ports.net.send(peer, msg)

    def relay_tick(self) -> None:
        """Called periodically: re-send if nothing moved since the last tick."""
        st = self.state
        mark = (st.chain.height, st.round, st.step)
        if mark != self._relay_mark:
            self._relay_mark = mark
            return
        for msg in relay_messages(st, self._own, self._own_key, self.config.relay_proposals):
            self.ports.net.broadcast(msg)

    # ---- the loop ------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._draining = True
        try:
            while self._queue:
                inp, peer = self._queue.popleft()
                self._step(inp, peer)
        finally:
            self._draining = False

    def _step(self, inp: Input, peer: Peer | None) -> None:
        current = self.state.chain.height
        height = input_height(inp)
        if height is not None:
            if isinstance(inp, TimeoutFired):
                if height < current:
                    # A timer of a decided height: the engine ignores it, so it needs no record.
                    return
            elif height > current:
                self._buffer_future(height, inp, peer)
                return
        if not self._replaying and _is_wal_input(inp):
            self._append_input(inp)  # type: ignore[arg-type]
        self.state, effects = self.engine.apply(self.state, inp)
        self._after_apply(effects, peer, immediate=self._replaying)

    def _after_apply(self, effects: list[Effect], peer: Peer | None, immediate: bool) -> None:
        entered = self.state.chain.height != self._height
        if entered:
            self._begin_height()
        for fx in effects:
            self._perform(fx, peer, immediate)
        if entered:
            ready = self._future.pop(self.height, [])
            for stale in [h for h in self._future if h < self.height]:
                del self._future[stale]
            self._future_count = sum(len(v) for v in self._future.values())
            self._queue.extend(ready)

    def _buffer_future(self, height: int, inp: Input, peer: Peer | None) -> None:
        current = self.state.chain.height
        if (
            height <= current + self.config.future_heights_ahead
            and self._future_count < self.config.future_messages_max
        ):
            self._future.setdefault(height, []).append((inp, peer))
            self._future_count += 1
        if height > current + 1:
            self.ports.net.behind(height)
        self._release_held()  # a peer has moved on: so do we

    def _begin_height(self) -> None:
        """Per-height bookkeeping, before any record of the new height is written: mark the
        previous block stored (the one clean rotation point) if its store is done, or if the
        log must rotate now (then wait for it)."""
        self._height = self.height
        self._held = None  # started: a late txs_available() must not count as ending a hold
        self._own = []
        self._previous_block_txs = self._block_txs
        self._block_txs = {}
        self._wal_txs.clear()
        pending = self._pending_store
        if self._replaying:
            # Records of this height are still ahead in the log being replayed: mark, but a
            # rotation now would drop them from the file.
            if pending is not None and self.ports.store.durable_height() >= pending:
                self._mark_stored(may_rotate=False)
            return
        if pending is not None and (
            self.ports.store.durable_height() >= pending or self.ports.wal.rotation_due()
        ):
            self._mark_stored(may_rotate=True)

    def _mark_stored(self, may_rotate: bool) -> None:
        pending = self._pending_store
        if pending is None:
            return
        self.ports.store.wait_stored()
        self._pending_store = None
        carry = (
            [] if self._last_signed is None else [encode_wal(LastSignedRecord(self._last_signed))]
        )
        self.ports.wal.end_height(pending, carry, may_rotate)

    def _append_input(self, inp: WalInput) -> None:
        txs, record = compact(inp)
        self._append_txs(txs)
        self.ports.wal.append(encode_wal(record))

    def _append_txs(self, txs: Sequence[bytes]) -> None:
        for tx in txs:
            h = tx_id(tx)
            if h not in self._wal_txs:
                self.ports.wal.append(encode_wal(TxRecord(tx)))
                self._wal_txs.add(h)

    def _flush(self) -> None:
        """Group commit: one sync makes every LastSigned and own message durable; then send."""
        if not self._outbox and not self._unsynced_signature:
            return
        self.ports.wal.sync()
        self._unsynced_signature = False
        outbox, self._outbox = self._outbox, []
        replayed, self._replayed_outbox = self._replayed_outbox, 0
        for i, msg in enumerate(outbox):
            if isinstance(msg, Proposal | Vote):
                # Only now is it signed as far as anyone can tell: a signature that died with
                # the process before its sync never left and binds nobody (not even a lock).
                self.ports.telemetry.signed(msg, i < replayed)
            self.ports.net.broadcast(msg)

    # ---- effects -------------------------------------------------------------------------------

    def _perform(self, fx: Effect, peer: Peer | None, immediate: bool = False) -> None:
        ports = self.ports
        match fx:
            case PersistLastSigned(last_signed):
                self._last_signed = last_signed.encode()
                ports.wal.append(encode_wal(LastSignedRecord(self._last_signed)))
                self._unsynced_signature = True
            case Broadcast(message):
                self._broadcast_own(message)
            case ScheduleTimeout(height, round_, step, duration_ms):
                ports.timers.schedule(duration_ms, TimeoutFired(height, round_, step))
            case RequestProposal(height, round_, info):
                if self._replaying:
                    self._deferred.append(fx)
                    return
                stamp = ports.clock.now_ms()
                txs = ports.app.prepare(replace(info, time_ms=stamp))
                self._queue.append((ProposalContent(height, round_, stamp, txs), None))
            case ValidateBlock(height, block, info):
                block_id = block.id()
                if self._replaying and block_id in self._own_blocks:
                    # Replay of our own proposal: our app prepared it.
                    self._queue.append((BlockValidated(height, block_id, True), None))
                    return
                if self._replaying:
                    self._deferred.append(fx)
                    return
                valid = ports.app.validate(block, info)
                if not valid:
                    ports.telemetry.proposal_rejected(height)
                self._queue.append((BlockValidated(height, block_id, valid), None))
            case Decide(height, block, commit, info):
                self._decide(height, block, commit, info, immediate)
            case EvidenceFound(evidence):
                ports.telemetry.evidence_found(evidence)
                ports.net.broadcast(evidence)
            case PeerMisbehaved(reason):
                ports.penalizer.penalize(peer, reason)
            case PeerAhead(height) | BlockNeeded(height, _):
                ports.net.behind(height)
            case RoundStarted(height, round_, proposer):
                ports.telemetry.round_started(height, round_, proposer)
            case SignRefused(height, round_, step):
                if not self._replaying:  # replay re-tries what the restored guard covers
                    ports.telemetry.sign_refused(height, round_, step)

    def _broadcast_own(self, message: Proposal | Vote | DuplicateVoteEvidence) -> None:
        # Durability before the signature leaves: appended here, synced by _flush, then sent.
        if isinstance(message, Proposal | Vote):
            txs, record = own_record(message)
            if isinstance(message, Proposal):
                self._block_txs.update((tx_id(tx), tx) for tx in txs)
            self._append_txs(txs)
            self.ports.wal.append(encode_wal(record))
            if message not in self._own:
                self._own.append(message)
        self._outbox.append(message)

    def _decide(
        self, height: int, block: Block, commit: Commit, info: BlockInfo, immediate: bool
    ) -> None:
        ports = self.ports
        # The previous block is durable before this one is written (heights never skip in the
        # store); usually it finished long ago.
        self._mark_stored(may_rotate=False)
        result = ports.app.finalize(block, info)
        updates = tuple(result.validator_updates)
        chain_after = self.state.chain.after_block(block, commit, result.app_hash, updates)
        ports.app.commit(block)
        snapshot = self._snapshot_if_due(height)
        decided = Decided(height, block, commit, info, result, chain_after, snapshot)
        ports.store.save_block(decided)
        self._pending_store = height
        ports.telemetry.committed(decided)
        done = BlockExecuted(height, block.id(), result.app_hash, updates)
        if not immediate and self._hold_empty(done, block, result):
            return
        if immediate or self.config.commit_timeout_ms == 0:
            self._queue.append((done, None))
        else:
            ports.timers.schedule(self.config.commit_timeout_ms, done)

    # ---- create_empty_blocks = false ------------------------------------------------------------

    def _hold_empty(self, done: BlockExecuted, block: Block, result: FinalizeResult) -> bool:
        """After a block that changed nothing worth sealing (no txs, evidence, validator updates
        or app events) this node does not start the next height until `txs_available()`, a
        peer's message of a later height (`_buffer_future`) or the interval: CometBFT's wait
        before round 0, on every validator, so nobody's propose timeout runs meanwhile.  A block
        that did change something is followed at once by the block whose header seals its app
        hash.  Only when the next height starts changes, so the engine's safety is untouched."""
        seen, self._txs_seen = self._txs_seen, False
        if self.config.create_empty_blocks or seen:
            return False
        if block.txs or block.evidence or result.validator_updates or result.events:
            return False
        self._held = done
        interval = self.config.create_empty_blocks_interval_ms
        if interval > 0:
            # Fed anyway when the interval ends; the engine ignores it if the height moved on.
            self.ports.timers.schedule(max(interval, self.config.commit_timeout_ms), done)
        return True

    def txs_available(self) -> None:
        """The mempool admitted a tx: a held height starts after the commit pause.  Touches no
        engine state (only this flag and a timer), so the mempool's task may call it."""
        held, self._held = self._held, None
        if held is None:
            self._txs_seen = True  # it may miss this height's block: don't hold after it
        else:
            self.ports.timers.schedule(self.config.commit_timeout_ms, held)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._queue.append((held, None))

    def _snapshot_if_due(self, height: int) -> bytes | None:
        interval = self.config.snapshot_interval_heights
        if interval <= 0:
            return None
        pending = self.ports.app.pending_updates()
        if not snapshot_now(height, self._snapshot_due, interval, pending):
            return None
        self._snapshot_due = (height // interval + 1) * interval
        return self.ports.app.snapshot()

    def close(self) -> None:
        """Clean shutdown: the pending block write durable and marked."""
        self._mark_stored(may_rotate=False)
