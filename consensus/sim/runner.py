"""The simulator: N nodes on virtual time and a seeded, faulty network.  One seed, one run.

Theory of operation
-------------------
Everything random comes from one `random.Random(seed)` consumed in a fixed order, and all
events sit in one heap ordered by (virtual time, sequence number), so a seed replays exactly.
Event kinds: message delivery, timer (the engine's timeouts and the commit pause after a
decision, both through the driver's Timers port), gossip tick (each node's driver re-sends what
its relay policy selects: links are lossy), sync tick (a node behind a reachable peer receives
its blocks with commits, i.e. block sync; with `catch_up` the proposal and precommits behind
each block instead, so the node must decide through L49 itself), crash and restart.  Every
node runs the one consensus driver (consensus/driver) with in-memory ports; with
`crash_points` a node may also die at any WAL append, sync, rotation, store write or
background-store completion.
The network decides at send time whether a message is dropped (partition, crash, loss), how
long it takes (reordering follows from random delays) and whether it is duplicated; a targeted
byzantine behaviour may also hold its own message back until the recipient has precommitted
(byzantine.held_until_precommit).  After `heal_ms` the network is clean and every node is up,
and the checker demands progress.
"""

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from consensus.app import Genesis, GenesisValidator
from consensus.commit_verify import MemoVerifier, Verifier
from consensus.crypto import PrivateKey, verify
from consensus.driver.ports import Decided
from consensus.engine import STEP_PRECOMMIT, Input
from consensus.errors import ConsensusError, InvariantError
from consensus.sim.byzantine import (
    TARGETED,
    ByzantineContext,
    ByzantineMemory,
    held_until_precommit,
)
from consensus.sim.checker import Checker, Violation
from consensus.sim.config import RoundPartitions, SimConfig, engine_config
from consensus.sim.faults import CALM, FaultPlan, calm_plan, random_plan
from consensus.sim.node import SimNode
from consensus.types import PRECOMMIT, Block, Commit, DuplicateVoteEvidence, Proposal, Vote

CHAIN_ID = "sim"
SYNC_BATCH_MAX = 8
RANDOM_TWINS_HEAL_MS = 15_000
# With crash points: the chance (per mille) that a durability boundary of an honest node is its
# last moment, by kind (appends are many per height, the rest a few: each kind gets its share),
# and how long the node then stays down.
CRASH_POINT_PERMILLE = {
    "wal_append": 3,
    "wal_sync": 15,
    "wal_rotate": 100,
    "store_write": 30,
    "store_background": 30,
}
CRASH_DOWN_MS_MAX = 5_000
# How often a held message (byzantine.held_until_precommit) looks at its recipient again.
HOLD_POLL_MS = 10

Message = Proposal | Vote | DuplicateVoteEvidence


class CachingVerifier(MemoVerifier):
    """One memo shared by all nodes of a run (a simulation speed-up, not a node feature)."""

    def __init__(self) -> None:
        super().__init__(entries_max=200_000)


@dataclass(slots=True)
class RunResult:
    seed: int
    violations: list[Violation]
    heights_committed: int  # the lowest final height over honest nodes
    max_height: int
    rounds_max: int
    events: int
    misbehaved_reports: int
    evidence_committed: int
    plan: FaultPlan = field(default=CALM)

    @property
    def ok(self) -> bool:
        return not self.violations


def node_keys(validators: int) -> list[PrivateKey]:
    return [PrivateKey.from_label(f"sim-validator-{i}") for i in range(validators)]


class Simulation:
    def __init__(self, config: SimConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.rng = random.Random(seed)
        self.now_ms = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.events = 0
        self.blocks_synced = 0  # blocks block sync sent (catch_up: only as a fallback)
        self.verifier: Verifier = CachingVerifier() if config.verify_cache else verify
        keys = node_keys(config.validators)
        self.keys = [k.public_key for k in keys]
        self.genesis = Genesis(
            CHAIN_ID,
            tuple(GenesisValidator(k.public_key, config.power_of(i)) for i, k in enumerate(keys)),
            genesis_time_ms=0,
        )
        node_engine = engine_config(config)
        n = config.validators
        behaviours = [""] * n
        for i, b in enumerate(config.byzantine):
            behaviours[n - 1 - i] = b
        self.nodes: list[SimNode] = []
        for i in range(config.nodes):
            v = config.twin_source(i)
            self.nodes.append(SimNode(self, i, keys[v], self.genesis, node_engine, behaviours[v]))
        faulty_keys = {keys[n - 1 - i].public_key for i in range(len(config.byzantine))}
        faulty_keys |= {keys[config.twin_source(i)].public_key for i in range(n, config.nodes)}
        honest = [node.index for node in self.nodes if node.key.public_key not in faulty_keys]
        self.checker = Checker(self, honest, faulty_keys)
        self.crashable = honest + [n.index for n in self.nodes if n.behaviour == "amnesia"]
        for index in self.crashable:
            self.nodes[index].crash_points = config.crash_points
        if config.faults:
            crashable = honest + [node.index for node in self.nodes if node.behaviour == "amnesia"]
            self.plan = random_plan(
                self.rng,
                len(self.nodes),
                crashable,
                config.heal_ms,
                config.stall_rounds,
                config.after_heal_delay_ms_max,
                isolate_deciders=config.isolate_deciders,
            )
        else:
            self.plan = calm_plan(config.isolate_deciders)
        # node -> virtual time its isolation ends (FaultPlan.isolate_permille).
        self._isolated_until: dict[int, int] = {}
        self.round_partitions = config.round_partitions
        self.round_heal_ms = config.heal_ms
        if config.twins and config.faults and not self.round_partitions and self.rng.random() < 0.5:
            self.round_partitions = self._random_twin_split()
            self.round_heal_ms = min(config.heal_ms, RANDOM_TWINS_HEAL_MS)
        self._lossy_heights = dict.fromkeys(self.plan.lossy_heights)
        self._lossy_coins: dict[tuple[int, int, int, int, int], bool] = {}
        self._node_keys = tuple(node.key.public_key for node in self.nodes)
        self._allies = tuple(node.index for node in self.nodes if node.behaviour)
        # (height, block id) -> the first proposal seen carrying it (SimConfig.catch_up).
        self._proposal_of: dict[tuple[int, bytes], Proposal] = {}

    def _random_twin_split(self) -> RoundPartitions:
        """Twins-style: in rounds 0-3 of height 1, maybe split the network so that each twin
        pair's copies are on different sides (other nodes join a random side)."""
        n = self.config.validators
        rounds: list[tuple[tuple[int, ...], ...]] = []
        for _ in range(4):
            if self.rng.random() < 0.3:
                rounds.append((tuple(range(len(self.nodes))),))
                continue
            side = [self.rng.randrange(2) for _ in range(len(self.nodes))]
            for twin in range(n, len(self.nodes)):
                side[twin] = 1 - side[self.config.twin_source(twin)]
            rounds.append(
                tuple(tuple(i for i in range(len(self.nodes)) if side[i] == g) for g in (0, 1))
            )
        return tuple(rounds)

    # ---- event heap --------------------------------------------------------------------------

    def at(self, time_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time_ms, self._seq, action))

    def run(self) -> RunResult:
        for node in self.nodes:
            self.at(self.rng.randrange(50), node.start)
            self.at(self.rng.randrange(self.config.gossip_interval_ms), self._gossip_tick(node))
            self.at(self.rng.randrange(1_000), self._sync_tick(node))
        for crash in self.plan.crashes:
            node = self.nodes[crash.node]
            self.at(crash.start_ms, partial(self._crash, node, crash.lose_tail))
            self.at(crash.end_ms, partial(self._restart, node))
        self.at(self.config.heal_ms, self._heal)
        end = self.config.duration_ms
        stop = self.config.stop_height
        honest = [self.nodes[i] for i in self.checker.honest]
        while self._heap and self._heap[0][0] <= end:
            if stop and all(node.height > stop for node in honest) and self.checker.settled():
                self.checker.reached_stop = True  # progress shown; no need to wait for the heal
                break
            time_ms, _, action = heapq.heappop(self._heap)
            self.now_ms = time_ms
            self.events += 1
            try:
                action()
            except ConsensusError as exc:
                # A node broke its own invariant: report it and stop, the run is already lost.
                self.checker.fail("invariant", f"at {time_ms} ms: {type(exc).__name__}: {exc}")
                return self.checker.finish()
        self.now_ms = end
        return self.checker.finish()

    def _crash(self, node: SimNode, lose_tail: bool) -> None:
        if node.up:
            node.crash(lose_tail)

    def _restart(self, node: SimNode) -> None:
        if not node.up:
            node.restart()

    def _heal(self) -> None:
        self.checker.heal_heights = [len(node.stored) for node in self.nodes]
        for node in self.nodes:
            node.crash_points = False  # no faults after the heal
            if not node.up:
                node.restart()

    def crash_point(self, node: SimNode, name: str) -> bool:
        """Does `node` die at this durability boundary (`name`)?  Seeded; never after the heal."""
        if self.now_ms >= self.config.heal_ms:
            return False
        return self.rng.randrange(1000) < CRASH_POINT_PERMILLE.get(name, 10)

    def schedule_restart(self, node: SimNode) -> None:
        """A node that died at a crash point comes back through its recovery after a pause."""
        when = min(self.now_ms + self.rng.randint(1, CRASH_DOWN_MS_MAX), self.config.heal_ms)
        self.at(max(when, self.now_ms + 1), partial(self._restart, node))

    def _gossip_tick(self, node: SimNode) -> Callable[[], None]:
        def tick() -> None:
            node.gossip()
            self.at(self.now_ms + self.config.gossip_interval_ms, tick)

        return tick

    def _sync_tick(self, node: SimNode) -> Callable[[], None]:
        def tick() -> None:
            self._sync(node)
            self.at(self.now_ms + 1_000, tick)

        return tick

    def _sync(self, node: SimNode) -> None:
        """Block sync as node/sync.py does it: ask the reachable peer with the most blocks
        (peers announce their heights; a silent node announces nothing).  With `catch_up` the
        peer sends consensus messages instead (`_catch_up`)."""
        if not node.up or not (self.config.block_sync or self.config.catch_up):
            return
        best: SimNode | None = None
        for peer in self.nodes:
            if (
                peer is node
                or not peer.up
                or peer.behaviour == "silent"
                or not self._linked(peer, node)
                or not self._sync_allowed(peer, node)
            ):
                continue
            if best is None or len(peer.stored) > len(best.stored):
                best = peer
        if best is None or len(best.stored) < node.height:
            return
        have = node.height
        if self.config.catch_up and self._catch_up(node, best.stored[have - 1], have):
            return
        batch: list[tuple[Block, Commit]] = [
            (s.block, s.commit)
            for s in best.stored
            if have <= s.block.header.height < have + SYNC_BATCH_MAX
        ]
        if batch:
            self.blocks_synced += len(batch)
            self.at(self.now_ms + self._delay(), lambda: node.deliver_blocks(batch))

    def _catch_up(self, node: SimNode, decided: Decided, height: int) -> bool:
        """Send `node` the proposal that carried `decided`'s block and its commit as precommit
        votes (False if the node holds another proposal of that round: it could not learn the
        block from this one, so the caller sends the block)."""
        if decided.height != height:
            raise InvariantError(f"sim: store out of order at height {height}")
        block_id = decided.block.id()
        proposal = self._proposal_of.get((decided.height, block_id))
        if proposal is None:
            return False
        held = node.state.proposals.get(proposal.round)
        if held is not None and held.block.id() != block_id:
            return False
        commit = decided.commit
        messages: list[Message] = [proposal]
        messages.extend(
            Vote(PRECOMMIT, commit.height, commit.round, commit.block_id, s.validator, s.signature)
            for s in commit.signatures
        )
        for msg in messages:
            self.at(self.now_ms + self._delay(), partial(node.deliver, msg, None))
        return True

    def _sync_allowed(self, peer: SimNode, node: SimNode) -> bool:
        if not self.round_partitions or self.now_ms >= self.round_heal_ms:
            return True
        # Before the heal, a Twins scenario's split holds for block sync too.
        return all(
            any(peer.index in g and node.index in g for g in groups)
            for groups in self.round_partitions
        )

    # ---- network -----------------------------------------------------------------------------

    def _linked(self, a: SimNode, b: SimNode) -> bool:
        if self.now_ms >= self.config.heal_ms:
            return True
        isolated = self._isolated_until
        if isolated and max(isolated.get(a.index, 0), isolated.get(b.index, 0)) > self.now_ms:
            return False
        for p in self.plan.partitions:
            if p.start_ms <= self.now_ms < p.end_ms and p.group_of[a.index] != p.group_of[b.index]:
                return False
        return True

    def _lossy_drop(self, a: SimNode, b: SimNode, msg: Message) -> bool:
        if isinstance(msg, DuplicateVoteEvidence) or msg.round >= self.plan.lossy_rounds:
            return False
        if msg.height not in self._lossy_heights or self.now_ms >= self.config.heal_ms:
            return False
        kind = 0 if isinstance(msg, Proposal) else msg.type
        coin = self._lossy_coins.get((msg.height, msg.round, kind, a.index, b.index))
        if coin is None:
            coin = self.rng.randrange(2) == 0
            self._lossy_coins[(msg.height, msg.round, kind, a.index, b.index)] = coin
        return coin

    def _round_linked(self, a: SimNode, b: SimNode, msg: Message) -> bool:
        parts = self.round_partitions
        if not parts or isinstance(msg, DuplicateVoteEvidence) or msg.height != 1:
            return True
        if self.now_ms >= self.round_heal_ms:
            return True  # after the heal, gossip may carry old rounds' messages across
        if msg.round >= len(parts):
            return True
        return any(a.index in g and b.index in g for g in parts[msg.round])

    def _delay(self) -> int:
        if self.now_ms >= self.config.heal_ms:
            return self.config.after_heal_delay_ms(self.rng)
        plan = self.plan
        delay = self.rng.randint(plan.delay_ms_min, plan.delay_ms_max)
        if plan.slow_permille and self.rng.randrange(1000) < plan.slow_permille:
            delay += self.rng.randint(0, plan.slow_delay_ms_max)
        return delay

    def send(self, src: SimNode, dst: SimNode, msg: Message) -> None:
        if isinstance(msg, Proposal):
            # Kept for consensus catch-up (SimConfig.catch_up): a peer's store holds it.
            self._proposal_of.setdefault((msg.height, msg.block.id()), msg)
        if not self._linked(src, dst) or not self._round_linked(src, dst, msg):
            return
        if self._lossy_heights and self._lossy_drop(src, dst, msg):
            return
        if (
            isinstance(msg, Proposal)
            and self.now_ms < self.config.heal_ms
            and self.plan.stalls(msg.height, msg.round)
        ):
            return
        deliver = partial(dst.deliver, msg, src.index)
        if (
            src.behaviour in TARGETED
            and not isinstance(msg, DuplicateVoteEvidence)
            and self._held(src, dst, msg)
        ):
            deliver = partial(self._deliver_after_precommit, dst, msg, src.index)
        plan = self.plan if self.now_ms < self.config.heal_ms else CALM
        if plan.drop_permille and self.rng.randrange(1000) < plan.drop_permille:
            return
        copies = (
            2
            if plan.duplicate_permille and self.rng.randrange(1000) < plan.duplicate_permille
            else 1
        )
        for _ in range(copies):
            self.at(self.now_ms + self._delay(), deliver)

    def _deliver_after_precommit(self, dst: SimNode, msg: Proposal | Vote, src: int) -> None:
        """Deliver once `dst` has precommitted in the round of `msg` or left it (checked every
        HOLD_POLL_MS): byzantine.held_until_precommit."""
        state = dst.state
        if (
            dst.up
            and state.chain.height == msg.height
            and state.round == msg.round
            and state.step < STEP_PRECOMMIT
        ):
            self.at(
                self.now_ms + HOLD_POLL_MS, partial(self._deliver_after_precommit, dst, msg, src)
            )
            return
        dst.deliver(msg, src)

    def _held(self, src: SimNode, dst: SimNode, msg: Proposal | Vote) -> bool:
        """A targeted behaviour's own timing (byzantine.held_until_precommit)."""
        state = src.state
        ctx = ByzantineContext(
            key=src.key,
            chain_id=state.chain.chain_id,
            nodes=len(self.nodes),
            index=src.index,
            rng=self.rng,
            height=state.chain.height,
            round=state.round,
            memory=ByzantineMemory(),
            validators=state.chain.validators,
            keys=self._node_keys,
            allies=self._allies,
        )
        return held_until_precommit(src.behaviour, ctx, msg, dst.index)

    def broadcast(self, src: SimNode, msg: Message) -> None:
        for dst in self.nodes:
            if dst is not src:
                self.send(src, dst, msg)

    # ---- services for nodes ------------------------------------------------------------------

    def schedule_input(self, node: SimNode, delay_ms: int, inp: Input) -> None:
        """A timer of `node`'s current life (a crash cancels it)."""
        self.at(self.now_ms + delay_ms, partial(node.timeout, node.epoch, inp))

    def txs_for(self, node: SimNode, height: int, round_: int) -> list[bytes]:
        """Each proposer's "mempool": a tx naming it, so twins propose different blocks."""
        txs = [f"h{height}=n{node.index}r{round_}".encode()]
        # Validator-set changes go through the app (effective at H+2).
        txs.extend(self.config.validator_update_txs(height, self.keys))
        return txs

    def record_signed(self, node: SimNode, msg: Proposal | Vote) -> None:
        self.checker.on_signed(node, msg)

    def record_commit(self, node: SimNode, block: Block, commit: Commit, app_hash: bytes) -> None:
        first = block.header.height not in self.checker.committed
        self.checker.on_commit(node, block, commit, app_hash)
        plan = self.plan
        if (
            first
            and plan.isolate_permille
            and node.index in self.checker.honest
            and self.now_ms < self.config.heal_ms
            and self.rng.randrange(1000) < plan.isolate_permille
        ):
            # The first honest decider of a height is cut off: the others must finish the
            # height without its commit (FaultPlan.isolate_permille).
            until = self.now_ms + self.rng.randint(plan.isolate_ms_max // 2, plan.isolate_ms_max)
            self._isolated_until[node.index] = until

    def record_evidence_found(self, node: SimNode, evidence: DuplicateVoteEvidence) -> None:
        self.checker.on_evidence_found(node, evidence)

    def record_misbehaved(self, node: SimNode, reason: str) -> None:
        self.checker.misbehaved_reports += 1

    def record_sign_refused(self, node: SimNode) -> None:
        self.checker.sign_refused += 1


def run_seed(config: SimConfig, seed: int) -> RunResult:
    return Simulation(config, seed).run()
