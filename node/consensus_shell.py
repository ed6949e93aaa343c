"""The daemon's consensus shell: the asyncio adapter around the one consensus driver.

Theory of operation
-------------------
All consensus logic (WAL record choice, group commit, replay, relay, the future buffer, compact
proposal bookkeeping, the snapshot policy) is in the sans-IO driver, consensus/driver/driver.py,
which the simulator runs too.  This module implements the driver's ports for a real node:

  Wal        node/wal.py: the CRC-framed file; `sync` is an fsync
  Store      SQLite (node/store/sqlite.py) on one background writer thread, so the fsync of a
             block overlaps the next height; the driver waits for it before marking EndHeight
  App        the application plus the mempool (reap for proposals, update after commit)
  Net        the p2p network; proposals travel compactly (header + tx hashes)
  Timers     loop timers that put the input back into the inbox
  Clock      the wall clock (ms)
  Telemetry  logs, metrics and RPC events
  Penalizer  peer scores

Inputs (peer messages, fired timers, rebuilt proposals, synced blocks) arrive in one inbox and
`run()` hands them to the driver one at a time, so the engine state needs no locks.  Compact
proposals are rebuilt here (fetching missing txs is I/O) with the driver's bookkeeping.

A peer's message passes its budget (node/msgbudget.py: the height/round window and a per-peer,
per-kind token bucket sized from the protocol) right after decoding, before the WAL append, the
engine or any signature check; a peer that sends `peer_abusive_messages_max` clearly abusive
messages is banned, and what it still has queued is purged.

Recovery (`recover()` then the start of `run()`): restore the newest app snapshot (or
init_chain), replay stored blocks above it through the app (checking every app hash), load the
ChainState stored with the last block, then let the driver replay the WAL (consensus/driver/
replay.py says what and why).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from consensus.app import Application, BlockInfo, FinalizeResult, Genesis, ValidatorUpdate
from consensus.crypto import PrivateKey
from consensus.driver.driver import (
    Driver,
    DriverConfig,
    Reassembly,
    compact_data_hash,
    snapshot_now,
)
from consensus.driver.ports import Decided, Message, Peer, Ports
from consensus.driver.walformat import WalFormatError
from consensus.engine import (
    ChainState,
    Engine,
    EngineConfig,
    EngineState,
    Input,
    KeySigner,
)
from consensus.errors import CodecError, ConsensusError
from consensus.txid import tx_id
from consensus.types import (
    Block,
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
from node.config import ConsensusConfig, NodeConfig
from node.errors import StorageError, SyncError, WalCorruptError
from node.events import EventBus
from node.fairinbox import FairInbox
from node.logging import log_event
from node.mempool import Mempool
from node.metrics import NodeMetrics
from node.msgbudget import BudgetConfig, MsgBudget, Verdict, View
from node.network import Network
from node.p2p.peer_id import PeerId
from node.records import decode_results, encode_results
from node.store.sqlite import BlockStore, IndexedTx
from node.txgossip import TxGossip
from node.wal import Wal, WalRecovery
from node.wire import CompactProposal, ConsensusMsg

__all__ = [
    "CHAIN_STATE_KEY",
    "ConsensusShell",
    "compact_data_hash",
    "engine_config",
    "snapshot_now",
]

log = logging.getLogger(__name__)

CHAIN_STATE_KEY = "chain_state"
PEER_INBOX_MAX = 20_000
# Per peer (node/fairinbox.py): a validator's honest burst (its votes plus the relayed votes of a
# stalled height) is far below this; a flooder's excess is dropped undecoded.
PEER_QUEUE_MAX = 2_000
# The consensus task yields to the event loop after this many items in a row, so reading the
# sockets (honest votes among them) goes on while a backlog is worked off.
ITEMS_PER_TURN = 64
FUTURE_MESSAGES_MAX = 5_000
REBROADCAST_INTERVAL_S = 1.0
REASSEMBLIES_MAX = 16


def engine_config(cfg: ConsensusConfig) -> EngineConfig:
    """The engine's settings from the node config: the one place they are mapped."""
    return EngineConfig(
        propose_timeout_ms=cfg.propose_timeout_ms,
        propose_timeout_delta_ms=cfg.propose_timeout_delta_ms,
        prevote_timeout_ms=cfg.prevote_timeout_ms,
        prevote_timeout_delta_ms=cfg.prevote_timeout_delta_ms,
        precommit_timeout_ms=cfg.precommit_timeout_ms,
        precommit_timeout_delta_ms=cfg.precommit_timeout_delta_ms,
        block_bytes_max=cfg.block_bytes_max,
        block_txs_max=cfg.block_txs_max,
        timestamp_precision_ms=cfg.timestamp_precision_ms,
        message_delay_ms=cfg.message_delay_ms,
    )


class NodeContext(Protocol):
    """What the shell needs from the node that composes it (node/service.py)."""

    cfg: NodeConfig
    genesis: Genesis
    validator_key: PrivateKey
    metrics: NodeMetrics
    events: EventBus

    @property
    def store(self) -> BlockStore: ...

    @property
    def app(self) -> Application: ...

    @property
    def mempool(self) -> Mempool: ...

    @property
    def gossip(self) -> TxGossip | None: ...

    def penalize(self, peer: PeerId, reason: str, severe: bool = False) -> None: ...

    def sync_hint(self, height: int) -> None: ...


@dataclass(frozen=True, slots=True)
class _SyncItem:
    block: Block
    commit: Any
    done: "asyncio.Future[bool]"


@dataclass(frozen=True, slots=True)
class _Rebuilt:
    reassembly: Reassembly
    fetched: Mapping[bytes, bytes]


_Item = tuple[Input | Message, PeerId | None] | _SyncItem | _Rebuilt


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def budget_config(cfg: ConsensusConfig, engine: EngineConfig) -> BudgetConfig:
    """The message budget's windows are the engine's and the driver's own (it drops only what
    they would drop, earlier)."""
    return BudgetConfig(
        margin=cfg.peer_budget_margin,
        abusive_messages_max=cfg.peer_abusive_messages_max,
        rounds_ahead_max=engine.rounds_ahead_max,
        peer_round_max=engine.peer_round_max,
        future_heights_ahead=DriverConfig().future_heights_ahead,
        future_heights_max=engine.future_heights_max,
    )


class ConsensusShell:
    def __init__(self, node: NodeContext, wal: Wal, wal_recovery: WalRecovery) -> None:
        self._node = node
        self._wal = wal
        self._wal_recovery = wal_recovery
        # Our own inputs (timers, rebuilt proposals, synced blocks) come first; peers' messages
        # wait in per-peer queues served round robin.
        self._inbox: deque[_Item] = deque()
        self._peer_inbox: FairInbox[PeerId, _Item] = FairInbox(PEER_QUEUE_MAX)
        self._wake = asyncio.Event()
        self._network: Network | None = None
        self._engine = Engine(engine_config(node.cfg.consensus), KeySigner(node.validator_key))
        self._store = _SqlStore(node)
        self._app = _NodeApp(node)
        self._telemetry = _Telemetry(node, self._app)
        self._driver: Driver | None = None
        self._reassembly_slots = asyncio.Semaphore(REASSEMBLIES_MAX)
        self._tasks: set[asyncio.Task[None]] = set()
        self._budget = MsgBudget(budget_config(node.cfg.consensus, self._engine.config))
        # Peers we have banned: anything more they send is dropped undecoded until they go.
        self._cut: set[PeerId] = set()
        self.dropped_messages = 0

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            raise StorageError("consensus state used before recovery")
        return self._driver

    @property
    def state(self) -> EngineState:
        return self.driver.state

    @property
    def fl_round(self) -> int:
        return self._app.fl_round

    @property
    def double_sign_refusals(self) -> int:
        return self._telemetry.sign_refusals

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> None:
        node = self._node
        app = node.app
        store = node.store
        snapshot = store.latest_snapshot()
        genesis_hash: bytes = b""
        overrides: tuple[ValidatorUpdate, ...] = ()
        if snapshot is not None and snapshot[0] <= store.height:
            app.restore(snapshot[1])
            applied = snapshot[0]
        else:
            genesis_hash, overrides = app.init_chain(node.genesis)
            applied = node.genesis.initial_height - 1
        for height in range(applied + 1, store.height + 1):
            stored = store.block(height)
            if stored is None:
                raise StorageError(f"block {height} missing from the store during recovery")
            block = decode_block(stored.data)
            results = decode_results(stored.results)
            result = app.finalize_block(block.txs, results.info)
            if result.app_hash != stored.app_hash:
                raise StorageError(
                    f"replaying block {height}: app hash {result.app_hash.hex()[:16]} differs "
                    f"from the stored {stored.app_hash.hex()[:16]}; the application is not "
                    "deterministic or the store is damaged"
                )
            app.commit()
        if store.height:
            raw = store.get_meta(CHAIN_STATE_KEY)
            if raw is None:
                raise StorageError("the store has blocks but no consensus state")
            chain = ChainState.decode(raw)
        else:
            chain = ChainState.from_genesis(node.genesis, genesis_hash, overrides)
        self._store.durable = store.height
        self._app.update_fl_round()
        ports = Ports(
            wal=_FileWal(self._wal),
            store=self._store,
            app=self._app,
            net=_Net(self),
            timers=_Timers(self),
            clock=_Clock(),
            telemetry=self._telemetry,
            penalizer=_Penalizer(self),
        )
        config = DriverConfig(
            commit_timeout_ms=node.cfg.consensus.commit_timeout_ms,
            future_messages_max=FUTURE_MESSAGES_MAX,
            snapshot_interval_heights=node.cfg.storage.app_snapshot_interval_heights,
            create_empty_blocks=node.cfg.consensus.create_empty_blocks,
            create_empty_blocks_interval_ms=node.cfg.consensus.create_empty_blocks_interval_ms,
        )
        self._driver = Driver(self._engine, ports, config, chain)
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
        network.on_peer_change(self._on_peer_change)
        try:
            self.driver.recover(self._wal_recovery.records)
        except WalFormatError as exc:
            raise WalCorruptError(f"{self._wal.path}: {exc}") from None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._rebroadcast_loop())
            self._tg = tg
            served = 0
            while True:
                item = self._next_item()
                if item is None:
                    self._wake.clear()
                    await self._wake.wait()
                    served = 0
                    continue
                served += 1
                if served % ITEMS_PER_TURN == 0:
                    await asyncio.sleep(0)
                try:
                    self._handle(item)
                except ConsensusError as exc:
                    # The engine raises InvariantError only for our own broken state.
                    log_event(log, "consensus_invariant_broken", logging.CRITICAL, error=str(exc))
                    raise

    def _next_item(self) -> _Item | None:
        if self._inbox:
            return self._inbox.popleft()
        return self._peer_inbox.pop()

    def _put_item(self, item: _Item) -> None:
        self._inbox.append(item)
        self._wake.set()

    def _handle(self, item: _Item) -> None:
        driver = self.driver
        match item:
            case _SyncItem(block, commit, done):
                result = driver.synced(block, commit)
                if result.problem:
                    done.set_exception(SyncError(result.problem))
                else:
                    done.set_result(result.applied)
            case _Rebuilt(reassembly, fetched):
                if not driver.reassembled(reassembly, fetched):
                    log_event(
                        log,
                        "proposal_incomplete",
                        logging.WARNING,
                        height=reassembly.proposal.height,
                        round=reassembly.proposal.round,
                        missing=sum(1 for h in reassembly.missing if h not in fetched),
                        peer=str(reassembly.peer),
                    )
            case (Proposal() | Vote() | DuplicateVoteEvidence()) as message, peer:
                if not _useless(driver.state, message):
                    driver.receive(message, peer)
            case (inp, _):
                driver.feed(inp)

    def put(self, inp: Input) -> None:
        self._put_item((inp, None))

    def close(self) -> None:
        """Finish the pending block write (clean shutdown)."""
        try:
            if self._driver is not None:
                self._driver.close()
        finally:
            self._store.shutdown()

    # -- from peers ------------------------------------------------------------------------------
    def on_peer_message(self, peer: PeerId, msg: Any) -> None:
        if peer in self._cut:
            self.dropped_messages += 1
            return
        if len(self._peer_inbox) > PEER_INBOX_MAX or self._peer_inbox.full(peer):
            # Dropped before decoding: what a flooder sends beyond its share costs it, not us.
            self.dropped_messages += 1
            if log.isEnabledFor(logging.DEBUG):  # str(peer) is base58: not per dropped message
                log_event(log, "consensus_inbox_full", logging.DEBUG, peer=str(peer))
            return
        try:
            match msg:
                case ConsensusMsg(data):
                    inner = decode_message(data)
                    if not self._admit(peer, inner):
                        return
                    self._peer_inbox.put(peer, (inner, peer))
                    self._wake.set()
                case CompactProposal(data, hashes):
                    proposal = decode_message(data)
                    if not isinstance(proposal, Proposal):
                        raise CodecError("compact proposal must carry a proposal")
                    if self._driver is None or not self._admit(peer, proposal):
                        return
                    reassembly = self._driver.compact_arrived(
                        proposal, hashes, peer, self._node.mempool.get
                    )
                    if reassembly is None:
                        return
                    if not reassembly.missing:
                        self._put_item(_Rebuilt(reassembly, {}))
                    else:
                        self._spawn(self._fetch(reassembly))
                case _:
                    return
        except CodecError as exc:
            self._node.penalize(peer, f"bad consensus message: {exc}", severe=True)
            self._after_penalty(peer)

    def _admit(self, peer: PeerId, message: Message) -> bool:
        """The budget's verdict on a decoded message (node/msgbudget.py); strikes cost the peer
        an offence each, and the last one a ban."""
        driver = self._driver
        if driver is None:
            return True  # recovery is not done: nothing to measure against yet (bounded queue)
        state = driver.state
        chain = state.chain
        view = View(chain.height, state.round, len(chain.validators.validators))
        network = self._network
        # Validators and the operator's persistent peers get a validator's budget (own messages).
        validator = network is not None and network.host.peer_class(peer).protected
        decision = self._budget.admit(peer, message, view, validator, _monotonic_ms())
        if decision.verdict is Verdict.ACCEPT:
            return not _useless(state, message)
        self.dropped_messages += 1
        if decision.verdict is Verdict.ABUSE:
            self._strike(peer, decision.strikes, decision.reason)
        elif isinstance(message, Proposal | Vote) and message.height > chain.height:
            # A later height than the driver buffers: still news that we are behind (the
            # driver would have woken block sync for it, as the engine does for PeerAhead).
            self._node.sync_hint(message.height)
        return False

    def _strike(self, peer: PeerId, strikes: int, reason: str) -> None:
        """Escalating: a plain offence per strike, severe ones for the last two (the node bans
        at its score threshold, node/service.py: 8 plain + 2 severe cross it), more severe ones
        only if the last strike has still not banned the peer; then its queue is purged."""
        limit = self._budget.config.abusive_messages_max
        reason = f"{reason} (strike {strikes} of {limit})"
        self._node.penalize(peer, reason, severe=strikes >= limit - 1)
        host = None if self._network is None else self._network.host
        for _ in range(3):
            if strikes < limit or host is None or host.is_banned(peer):
                break
            self._node.penalize(peer, reason, severe=True)
        self._after_penalty(peer)

    def _after_penalty(self, peer: PeerId) -> None:
        """If that penalty banned `peer`: drop what it still has queued, and what it sends."""
        network = self._network
        if network is None or not network.host.is_banned(peer) or peer in self._cut:
            return
        self._cut.add(peer)
        self._budget.forget(peer)
        purged = self._peer_inbox.purge(peer)
        if self._driver is not None:
            purged += self._driver.forget_peer(peer)
        self.dropped_messages += purged
        log_event(log, "consensus_peer_cut", logging.WARNING, peer=str(peer), purged=purged)

    def _on_peer_change(self, peer: PeerId, connected: bool) -> None:
        if connected:
            return
        self._budget.forget(peer)
        self._after_penalty(peer)  # banned elsewhere (garbage bytes, the engine's offences)
        self._cut.discard(peer)  # gone: nothing more arrives on that connection

    def _spawn(self, coro: Any) -> None:
        tg = getattr(self, "_tg", None)
        if tg is None:
            coro.close()
            return
        task: asyncio.Task[None] = tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lookup_tx(self, h: bytes) -> bytes | None:
        """A tx a peer may ask for: pending, or in a block being decided."""
        tx = self._node.mempool.get(h)
        if tx is None and self._driver is not None:
            tx = self._driver.lookup_tx(h)
        return tx

    async def _fetch(self, reassembly: Reassembly) -> None:
        async with self._reassembly_slots:
            missing = list(reassembly.missing)
            fetched: dict[bytes, bytes] = {}
            gossip = self._node.gossip
            peer = reassembly.peer
            if gossip is not None and isinstance(peer, PeerId):
                others = self._network.peers() if self._network else []
                for source in [peer, *(p for p in others if p != peer)]:
                    got = await gossip.fetch(source, missing, urgent=True)
                    fetched.update(got)
                    missing = [h for h in missing if h not in fetched]
                    if not missing:
                        break
            self._put_item(_Rebuilt(reassembly, fetched))

    def on_peer_connected(self, peer: PeerId) -> None:
        if self._network is not None and self._driver is not None:
            self._driver.peer_connected(peer)

    def on_tx_admitted(self) -> None:
        if self._driver is not None:
            self._driver.txs_available()

    async def _rebroadcast_loop(self) -> None:
        """Resend what the driver's relay policy selects while a height is not progressing."""
        while True:
            await asyncio.sleep(REBROADCAST_INTERVAL_S)
            self.driver.relay_tick()

    # -- block sync ------------------------------------------------------------------------------
    async def apply_synced_block(self, block_data: bytes, commit_data: bytes) -> bool:
        """Verify and apply one synced block through the consensus task; SyncError if invalid."""
        try:
            block = decode_block(block_data)
            commit = decode_commit(commit_data)
        except CodecError as exc:
            raise SyncError(f"undecodable block or commit: {exc}") from None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._put_item(_SyncItem(block, commit, done))
        return await done

    def send_wire(self, peer: PeerId | None, message: Message) -> None:
        network = self._network
        if network is None:
            return
        wire: ConsensusMsg | CompactProposal
        if isinstance(message, Proposal):
            block = message.block
            bare = encode_message(replace(message, block=replace(block, txs=())))
            wire = CompactProposal(bare, tuple(tx_id(tx) for tx in block.txs))
        else:
            wire = ConsensusMsg(encode_message(message))
        if peer is None:
            network.broadcast(wire)
        else:
            network.send(peer, wire)


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _useless(state: EngineState, message: Message) -> bool:
    """Whatever the engine would do nothing with, known without any check: a vote or proposal
    of a decided height (relays for lagging peers) or evidence already pooled or committed (the
    engine checks both signatures before it finds that out).  Dropped before the WAL append."""
    if isinstance(message, DuplicateVoteEvidence):
        key = message.key()
        return key in state.evidence_pool or key in state.chain.committed_evidence
    return message.height < state.chain.height


# ---- the ports -----------------------------------------------------------------------------


class _FileWal:
    def __init__(self, wal: Wal) -> None:
        self._wal = wal

    def append(self, payload: bytes) -> None:
        self._wal.append(payload)

    def sync(self) -> None:
        self._wal.sync()

    def end_height(self, height: int, carry: Sequence[bytes], may_rotate: bool) -> None:
        self._wal.end_height(height, carry, may_rotate)

    def rotation_due(self) -> bool:
        return self._wal.rotation_due()


class _SqlStore:
    """Blocks are written by one background thread so the fsync of SQLite overlaps the next
    height's consensus; the store still sees heights strictly in order."""

    def __init__(self, node: NodeContext) -> None:
        self._node = node
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-writer")
        self._pending: list[tuple[int, Future[None]]] = []
        self.durable = 0

    def save_block(self, decided: Decided) -> None:
        self._pending.append((decided.height, self._writer.submit(self._write, decided)))

    def _write(self, d: Decided) -> None:
        """Runs on the writer thread: block (+ results, tx index, next ChainState), then the
        app snapshot; durable (fsync) before it returns."""
        store = self._node.store
        block = d.block
        store.save_block(
            height=d.height,
            block_hash=block.id(),
            data=encode_block(block),
            commit_data=encode_commit(d.commit),
            results=encode_results(d.info, d.result),
            app_hash=d.result.app_hash,
            time_ms=block.header.time_ms,
            txs=[
                IndexedTx(tx_id(tx), r.code, r.reason)
                for tx, r in zip(block.txs, d.result.tx_results, strict=True)
            ],
            meta=[(CHAIN_STATE_KEY, d.chain_after.encode())],
        )
        if d.snapshot is not None:
            store.save_snapshot(d.height, d.snapshot)

    def wait_stored(self) -> None:
        pending, self._pending = self._pending, []
        for height, future in pending:
            future.result()  # a StorageError here halts the node: the store is broken
            self.durable = height

    def durable_height(self) -> int:
        while self._pending and self._pending[0][1].done():
            height, future = self._pending.pop(0)
            future.result()
            self.durable = height
        return self.durable

    def shutdown(self) -> None:
        self._writer.shutdown(wait=True)


class _NodeApp:
    def __init__(self, node: NodeContext) -> None:
        self._node = node
        self.fl_round = 0
        self.fl_pending = 0  # updates the open FL round holds (0 for other apps)
        self.rechecked_out = 0
        self.finalize_started_s = 0.0

    def prepare(self, info: BlockInfo) -> tuple[bytes, ...]:
        node = self._node
        cfg = node.cfg.consensus
        candidates = node.mempool.reap(cfg.block_txs_max, cfg.block_bytes_max)
        return tuple(node.app.prepare_proposal(candidates, info, cfg.block_bytes_max))

    def validate(self, block: Block, info: BlockInfo) -> bool:
        node = self._node
        valid = node.app.process_proposal(block.txs, info)
        if not valid:
            # Nobody will ask about a refused block's txs again: what the app remembered of
            # those this node does not hold would stay until its memo's bound (a byzantine
            # proposer could fill it with distinct signed txs every round it proposes).
            for tx in block.txs:
                if tx_id(tx) not in node.mempool:
                    node.app.release_tx(tx)
        return valid

    def finalize(self, block: Block, info: BlockInfo) -> FinalizeResult:
        self.finalize_started_s = time.monotonic()
        return self._node.app.finalize_block(block.txs, info)

    def commit(self, block: Block) -> None:
        self._node.app.commit()
        self.update_fl_round()
        self.rechecked_out = len(self._node.mempool.update([tx_id(tx) for tx in block.txs]))

    def pending_updates(self) -> int:
        return self.fl_pending

    def snapshot(self) -> bytes:
        return self._node.app.snapshot()

    def update_fl_round(self) -> None:
        info = self._node.app.info()
        self.fl_round = info.work_round
        self.fl_pending = info.work_pending


class _Net:
    def __init__(self, shell: ConsensusShell) -> None:
        self._shell = shell

    def broadcast(self, message: Message) -> None:
        self._shell.send_wire(None, message)

    def send(self, peer: Peer, message: Message) -> None:
        if isinstance(peer, PeerId):
            self._shell.send_wire(peer, message)

    def behind(self, height: int) -> None:
        self._shell._node.sync_hint(height)


class _Timers:
    def __init__(self, shell: ConsensusShell) -> None:
        self._shell = shell

    def schedule(self, delay_ms: int, inp: Input) -> None:
        asyncio.get_running_loop().call_later(delay_ms / 1000, self._shell.put, inp)


class _Clock:
    def now_ms(self) -> int:
        return now_ms()


class _Penalizer:
    def __init__(self, shell: ConsensusShell) -> None:
        self._shell = shell

    def penalize(self, peer: Peer | None, reason: str) -> None:
        if isinstance(peer, PeerId):
            self._shell._node.penalize(peer, reason)
            self._shell._after_penalty(peer)


class _Telemetry:
    def __init__(self, node: NodeContext, app: _NodeApp) -> None:
        self._node = node
        self._app = app
        self._last_commit_s = time.monotonic()
        self.sign_refusals = 0

    def signed(self, message: Proposal | Vote, replayed: bool) -> None:
        return None

    def sign_refused(self, height: int, round_: int, step: int) -> None:
        self.sign_refusals += 1
        log_event(
            log,
            "sign_refused",
            logging.WARNING,
            height=height,
            round=round_,
            step=step,
            reason="LastSigned guard: would differ from what was signed before",
        )

    def round_started(self, height: int, round_: int, proposer: bytes) -> None:
        self._node.metrics.round.set(round_)
        if round_ > 0:
            log_event(
                log, "round_started", height=height, round=round_, proposer=proposer.hex()[:8]
            )

    def evidence_found(self, evidence: DuplicateVoteEvidence) -> None:
        log_event(
            log,
            "evidence_found",
            logging.WARNING,
            height=evidence.vote_a.height,
            round=evidence.vote_a.round,
            validator=evidence.vote_a.validator.hex()[:16],
        )

    def proposal_rejected(self, height: int) -> None:
        log_event(log, "proposal_rejected_by_app", logging.WARNING, height=height)

    def replayed(self, height: int, records: int) -> None:
        log_event(log, "wal_replayed", height=height, records=records)

    def committed(self, decided: Decided) -> None:
        node = self._node
        height, block, commit, result = (
            decided.height,
            decided.block,
            decided.commit,
            decided.result,
        )
        now = time.monotonic()
        interval_ms = int((now - self._last_commit_s) * 1000)
        self._last_commit_s = now
        m = node.metrics
        m.height.set(height)
        m.block_interval.observe(interval_ms / 1000)
        m.txs_committed.inc(len(block.txs))
        m.mempool_txs.set(len(node.mempool))
        m.mempool_bytes.set(node.mempool.size_bytes)
        m.fl_round.set(self._app.fl_round)
        m.observe_block(decided)  # signatures, validators, FL outcomes (node/metrics.py)
        rejected = sum(1 for r in result.tx_results if not r.ok)
        log_event(
            log,
            "block_committed",
            logging.getLevelNamesMapping()[node.cfg.log.blocks_level.upper()],
            height=height,
            round=commit.round,
            txs=len(block.txs),
            rejected=rejected,
            app_hash=result.app_hash.hex()[:16],
            ms=interval_ms,
            exec_ms=int((now - self._app.finalize_started_s) * 1000),
            mempool=len(node.mempool),
            rechecked_out=self._app.rechecked_out,
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
        if block.txs:
            # One event per block, not per tx: a 5,000-tx block must not overflow a
            # subscriber's queue (bounded in events) by itself.
            node.events.publish(
                {
                    "event": "txs",
                    "height": height,
                    "txs": [
                        {"hash": tx_id(tx).hex(), "code": r.code, "reason": r.reason}
                        for tx, r in zip(block.txs, result.tx_results, strict=True)
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
