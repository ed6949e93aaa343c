"""One simulated node: the real consensus driver (consensus/driver) with in-memory ports.

The WAL is bytes in the daemon's format (consensus/driver/memory.py), the store a list that
writes "in the background" (a save is durable once the node's next event begins, or when the
driver waits for it), timers and the clock are the simulator's virtual time.  A crash keeps the
synced WAL prefix, optionally some unsynced bytes after it (a torn tail), and the completed
store writes; a restart goes through the driver's own recovery: app rebuilt from the stored
blocks (block -> state -> app commit), the WAL scanned and its torn tail cut, replay.

Crash points (SimConfig.crash_points): every WAL append, sync, rotation, store write and
background-store completion is a boundary where the node may die (seeded); it then restarts
through the same recovery after a pause.

Byzantine behaviours (consensus/sim/byzantine.py) change what the node sends, in one place
(`_outgoing`, behind the Net port); `amnesia` also forgets its lock at every new round and
restarts without its WAL (and so without its guard).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

from consensus.app import BlockInfo, FinalizeResult, Genesis
from consensus.crypto import PrivateKey
from consensus.driver.driver import Driver, DriverConfig
from consensus.driver.memory import MemoryStore, MemoryWal
from consensus.driver.ports import Decided, Message, Peer, Ports
from consensus.engine import ChainState, Engine, EngineConfig, EngineState, Input, KeySigner
from consensus.errors import InvariantError
from consensus.kvapp import KVApp
from consensus.sim.byzantine import ByzantineContext, ByzantineMemory, outgoing
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote

if TYPE_CHECKING:
    from consensus.sim.runner import Simulation

# Small, so rotation (carry the guard, drop finished heights) happens in every run.
SIM_WAL_ROTATE_BYTES = 32 * 1024


class SimCrash(Exception):  # a control-flow signal, not an error
    """Raised at a crash point: the node dies right there."""


class SimNode:
    def __init__(
        self,
        sim: "Simulation",
        index: int,
        key: PrivateKey,
        genesis: Genesis,
        config: EngineConfig,
        behaviour: str,
    ) -> None:
        self.sim = sim
        self.index = index
        self.key = key
        self.genesis = genesis
        self.behaviour = behaviour
        self.engine = Engine(config, KeySigner(key), sim.verifier)
        # Durable.
        self.wal = MemoryWal(SIM_WAL_ROTATE_BYTES, self._boundary)
        self.store = MemoryStore(self._boundary)
        # Volatile.
        self.up = True
        self.epoch = 0
        self.crash_points = False
        self.crashes = 0
        self.crashed_at: dict[str, int] = {}  # crash-point kind -> how often this node died there
        self.app = KVApp()
        self._byzantine_memory = ByzantineMemory()
        self._reported: dict[int, bytes] = {}  # height -> block id told to the checker
        self.driver = self._boot()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self.driver.state

    @property
    def stored(self) -> list[Decided]:
        return self.store.blocks

    @property
    def height(self) -> int:
        return self.driver.height

    def _boot(self) -> Driver:
        # The app recovers by replaying every durably stored block (block -> state -> commit).
        self.app = KVApp()
        app_hash, overrides = self.app.init_chain(self.genesis)
        chain = ChainState.from_genesis(self.genesis, app_hash, overrides)
        for s in self.store.durable:
            result = self.app.finalize_block(s.block.txs, s.info)
            self.app.commit()
            if result.app_hash != s.result.app_hash:
                raise InvariantError("sim: app replay diverged from the stored app hash")
            chain = s.chain_after
        ports = Ports(
            wal=self.wal,
            store=self.store,
            app=_App(self),
            net=_Net(self),
            timers=_Timers(self),
            clock=_Clock(self),
            telemetry=_Telemetry(self),
            penalizer=_Penalizer(self),
        )
        config = DriverConfig(
            commit_timeout_ms=self.sim.config.block_interval_ms,
            future_messages_max=256,
            relay_proposals=True,
        )
        return Driver(self.engine, ports, config, chain)

    def start(self) -> None:
        self._guarded(lambda: self.driver.recover(self.wal.open()))

    def crash(self, lose_tail: bool) -> None:
        """Die now (a fault plan's crash, between events)."""
        keep = 0 if lose_tail else len(self.wal.data)
        self._die(keep, store_completed=not lose_tail)

    def _die(self, keep_unsynced: int, store_completed: bool) -> None:
        self.up = False
        self.epoch += 1
        self.crashes += 1
        self.wal.crash(keep_unsynced)
        self.store.crash(store_completed)
        if self.behaviour == "amnesia":
            self.wal.wipe()

    def restart(self) -> None:
        self.up = True
        self.driver = self._boot()
        self.start()

    def _boundary(self, name: str) -> None:
        if not self.up or not self.crash_points:
            return
        if self.sim.crash_point(self, name):
            self.crashed_at[name] = self.crashed_at.get(name, 0) + 1
            rng = self.sim.rng
            self._die(rng.randrange(64), store_completed=rng.randrange(2) == 0)
            raise SimCrash(name)

    def _guarded(self, action: Callable[[], object]) -> None:
        try:
            self.store.settle()  # the background writer finished while we were away
            action()
        except SimCrash:
            self.sim.schedule_restart(self)

    # ---- inputs ------------------------------------------------------------------------------

    def deliver(self, msg: Message, src: int | None = None) -> None:
        if self.up:
            self._guarded(lambda: self.driver.receive(msg, src))

    def deliver_blocks(self, blocks: list[tuple[Block, Commit]]) -> None:
        def apply() -> None:
            for block, commit in blocks:
                if not self.up or block.header.height != self.height:
                    continue
                result = self.driver.synced(block, commit)
                if result.problem:
                    self.sim.record_misbehaved(self, result.problem)

        if self.up:
            self._guarded(apply)

    def timeout(self, epoch: int, fired: Input) -> None:
        if self.up and epoch == self.epoch:
            self._guarded(lambda: self.driver.feed(fired))

    def gossip(self) -> None:
        if self.up and self.behaviour != "silent":
            self._guarded(self.driver.relay_tick)

    # ---- sending (honest and byzantine) ------------------------------------------------------

    def send_out(self, message: Message) -> None:
        for dst, msg in self._outgoing(message):
            if dst is None:
                self.sim.broadcast(self, msg)
            else:
                self.sim.send(self, self.sim.nodes[dst], msg)

    def _outgoing(self, message: Message) -> list[tuple[int | None, Message]]:
        """What actually leaves: (recipient node index or None for everyone, message).  The one
        place a byzantine behaviour changes sending (consensus/sim/byzantine.py)."""
        if not self.behaviour:
            self.sim.checker.on_wire(message)  # double_sign is judged on what leaves a node
            return [(None, message)]
        state = self.state
        ctx = ByzantineContext(
            key=self.key,
            chain_id=state.chain.chain_id,
            nodes=len(self.sim.nodes),
            index=self.index,
            rng=self.sim.rng,
            height=state.chain.height,
            round=state.round,
            memory=self._byzantine_memory,
            validators=state.chain.validators,
            keys=tuple(n.key.public_key for n in self.sim.nodes),
            allies=tuple(n.index for n in self.sim.nodes if n.behaviour),
        )
        sends = outgoing(self.behaviour, ctx, message)
        for _, msg in sends:
            self.sim.checker.on_wire(msg)  # the lock check counts every prevote that was sent
        return sends

    def committed(self, decided: Decided) -> None:
        seen = self._reported.get(decided.height)
        block_id = decided.block.id()
        if seen is None:
            self._reported[decided.height] = block_id
            self.sim.record_commit(self, decided.block, decided.commit, decided.result.app_hash)
        elif seen != block_id and self.index in self.sim.checker.honest:
            # Re-decided after a crash lost the stored block: it must be the same block.
            self.sim.checker.fail(
                "agreement", f"node {self.index} re-decided height {decided.height} differently"
            )


# ---- the in-memory ports ---------------------------------------------------------------------


class _App:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def prepare(self, info: BlockInfo) -> tuple[bytes, ...]:
        node = self._node
        txs = node.sim.txs_for(node, info.height, node.state.round)
        chosen = node.app.prepare_proposal(txs, info, node.engine.config.block_bytes_max)
        return tuple(chosen)

    def validate(self, block: Block, info: BlockInfo) -> bool:
        return self._node.app.process_proposal(block.txs, info)

    def finalize(self, block: Block, info: BlockInfo) -> FinalizeResult:
        return self._node.app.finalize_block(block.txs, info)

    def commit(self, block: Block) -> None:
        self._node.app.commit()

    def pending_updates(self) -> int:
        return 0

    def snapshot(self) -> bytes:
        return self._node.app.snapshot()


class _Net:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def broadcast(self, message: Message) -> None:
        self._node.send_out(message)

    def send(self, peer: Peer, message: Message) -> None:
        if isinstance(peer, int):
            self._node.sim.send(self._node, self._node.sim.nodes[peer], message)

    def behind(self, height: int) -> None:
        return None  # the simulator's sync tick polls peers' heights


class _Timers:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def schedule(self, delay_ms: int, inp: Input) -> None:
        self._node.sim.schedule_input(self._node, delay_ms, inp)


class _Clock:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def now_ms(self) -> int:
        return self._node.sim.now_ms


class _Telemetry:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def signed(self, message: Proposal | Vote, replayed: bool) -> None:
        self._node.sim.record_signed(self._node, message)

    def sign_refused(self, height: int, round_: int, step: int) -> None:
        self._node.sim.record_sign_refused(self._node)

    def round_started(self, height: int, round_: int, proposer: bytes) -> None:
        node = self._node
        if node.behaviour == "amnesia" and round_ > 0:
            node.state.locked_value = None
            node.state.locked_round = -1

    def evidence_found(self, evidence: DuplicateVoteEvidence) -> None:
        self._node.sim.record_evidence_found(self._node, evidence)

    def proposal_rejected(self, height: int) -> None:
        return None

    def committed(self, decided: Decided) -> None:
        self._node.committed(decided)

    def replayed(self, height: int, records: int) -> None:
        return None


class _Penalizer:
    def __init__(self, node: SimNode) -> None:
        self._node = node

    def penalize(self, peer: Peer | None, reason: str) -> None:
        self._node.sim.record_misbehaved(self._node, reason)
