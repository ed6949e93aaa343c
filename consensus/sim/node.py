"""One simulated node: an engine and a KV app behind a shell that models a real node's disk.

Durability model (what a crash keeps):
- the block store (block, commit, app snapshot, next ChainState) is written atomically at
  Decide, as the node does (block -> state -> app commit);
- the LastSigned guard is durable as soon as PersistLastSigned is performed;
- the WAL of the current height is durable up to the last fsync, which happens exactly when
  LastSigned is persisted (own signatures are fsynced before they are sent); records after it
  survive a crash only if the crash does not `lose_tail`.
A restart rebuilds the engine from the stored ChainState, restores LastSigned, and replays the
durable WAL.  During replay RequestProposal is not answered again (the recorded ProposalContent
follows in the WAL if it was durable), so a replayed proposal is byte-identical or not signed.

Byzantine behaviours wrap an honest engine: `silent` sends nothing, `equivocate` sends a second,
different proposal to half the peers, `double_vote` signs a conflicting vote for each of its
votes, `amnesia` forgets its lock at every new round and restarts without its WAL or guard.
"""

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus.app import BlockInfo, Genesis
from consensus.crypto import PrivateKey
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
from consensus.errors import InvariantError
from consensus.kvapp import KVApp
from consensus.types import (
    NIL,
    PRECOMMIT,
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)

if TYPE_CHECKING:
    from consensus.sim.runner import Simulation

FUTURE_BUFFER_MAX = 256


def _input_height(inp: Input) -> int | None:
    match inp:
        case ProposalReceived(p):
            return p.height
        case VoteReceived(v):
            return v.height
        case (
            TimeoutFired(height=h)
            | ProposalContent(height=h)
            | BlockValidated(height=h)
            | BlockExecuted(height=h)
        ):
            return h
        case BlockSynced(block=b):
            return b.header.height
        case _:
            return None


class StoredHeight:
    __slots__ = ("app_hash", "block", "chain_after", "commit", "info")

    def __init__(
        self,
        block: Block,
        commit: Commit,
        app_hash: bytes,
        chain_after: ChainState,
        info: BlockInfo,
    ) -> None:
        self.block = block
        self.commit = commit
        self.app_hash = app_hash
        self.chain_after = chain_after
        self.info = info


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
        self.stored: list[StoredHeight] = []
        self.durable_last_signed: LastSigned | None = None
        self.wal: list[Input] = []
        self.wal_durable = 0
        # Volatile.
        self.up = True
        self.epoch = 0
        self.replaying = False
        self.future: list[Input] = []
        self.sent: dict[tuple[int, int], Proposal | Vote] = {}
        self.gossip_mark = (0, 0, -1)
        self.app = KVApp()
        self.state = self._boot_state()

    # ---- lifecycle ---------------------------------------------------------------------------

    def _boot_state(self) -> EngineState:
        # The app recovers by replaying every stored block (block -> state -> app commit).
        self.app = KVApp()
        app_hash, overrides = self.app.init_chain(self.genesis)
        chain = ChainState.from_genesis(self.genesis, app_hash, overrides)
        for s in self.stored:
            result = self.app.finalize_block(s.block.txs, s.info)
            self.app.commit()
            if result.app_hash != s.app_hash:
                raise InvariantError("sim: app replay diverged from the stored app hash")
            chain = s.chain_after
        return EngineState.for_height(chain)

    @property
    def height(self) -> int:
        return self.state.chain.height

    def start(self) -> None:
        self._run(Start())

    def crash(self, lose_tail: bool) -> None:
        self.up = False
        self.epoch += 1
        keep = len(self.wal) if not lose_tail else self.wal_durable
        if self.behaviour == "amnesia":
            keep = 0
            self.durable_last_signed = None
        self.wal = self.wal[:keep]
        self.wal_durable = min(self.wal_durable, keep)
        self.future = []
        self.sent = {}

    def restart(self) -> None:
        self.up = True
        self.state = self._boot_state()
        if self.durable_last_signed is not None:
            self._apply_chain(RestoreLastSigned(self.durable_last_signed))
        records, self.wal = self.wal, []
        self.wal_durable = 0
        self.replaying = True
        for record in records:
            self._run(record)
        self.replaying = False
        # Keep what concerns the height we are at (a WAL written before the last block was
        # stored describes a finished height); Start comes first, as after any new height.
        current = [r for r in records if _input_height(r) == self.height]
        self.wal = [Start(), *current]
        self.wal_durable = len(self.wal)
        if not records:
            self._run(Start())

    # ---- inputs ------------------------------------------------------------------------------

    def deliver(self, msg: Proposal | Vote | DuplicateVoteEvidence) -> None:
        if not self.up:
            return
        match msg:
            case Proposal():
                self._run(ProposalReceived(msg))
            case Vote():
                self._run(VoteReceived(msg))
            case DuplicateVoteEvidence():
                self._run(EvidenceReceived(msg))

    def deliver_blocks(self, blocks: list[tuple[Block, Commit]]) -> None:
        for block, commit in blocks:
            if not self.up or block.header.height != self.height:
                continue
            self._run(BlockSynced(block, commit))

    def timeout(self, epoch: int, fired: Input) -> None:
        if self.up and epoch == self.epoch:
            self._run(fired)

    def _run(self, first: Input) -> None:
        pending: deque[Input] = deque([first])
        while pending:
            inp = pending.popleft()
            if not self.replaying:
                self.wal.append(inp)
            else:
                self._recall_own(inp)
            self._apply_chain(inp, pending)

    def _recall_own(self, inp: Input) -> None:
        match inp:
            case ProposalReceived(p) if p.proposer == self.key.public_key:
                self._remember_sent(p)
            case VoteReceived(v) if v.validator == self.key.public_key:
                self._remember_sent(v)
            case _:
                pass

    def _apply_chain(self, inp: Input, pending: deque[Input] | None = None) -> None:
        height_before = self.height
        self.state, effects = self.engine.apply(self.state, inp)
        queue = pending if pending is not None else deque()
        for effect in effects:
            self._perform(effect, queue)
        if any(isinstance(e, PeerAhead) and e.height == height_before + 1 for e in effects):
            self.buffer_future(inp)
        if self.height != height_before:
            self._new_height()
            if not self.replaying:
                self.wal = [Start()]
                self.wal_durable = 1
            future, self.future = self.future, []
            for x in future:
                queue.append(x)

    def _new_height(self) -> None:
        self.sent = {}

    # ---- effects -----------------------------------------------------------------------------

    def _perform(self, effect: Effect, pending: deque[Input]) -> None:
        sim = self.sim
        match effect:
            case PersistLastSigned(last_signed):
                self.durable_last_signed = last_signed
                self.wal_durable = len(self.wal)
            case Broadcast(message):
                self._broadcast(message)
            case ScheduleTimeout(height, round_, step, duration_ms):
                sim.schedule_timeout(self, duration_ms, TimeoutFired(height, round_, step))
            case RequestProposal(height, round_, info):
                if self.replaying:
                    return
                txs = sim.txs_for(self, height, round_)
                chosen = self.app.prepare_proposal(txs, info, self.engine.config.block_bytes_max)
                pending.append(ProposalContent(height, round_, sim.now_ms, tuple(chosen)))
            case ValidateBlock(height, block, info):
                ok = self.app.process_proposal(block.txs, info)
                pending.append(BlockValidated(height, block.id(), ok))
            case Decide(height, block, commit, info):
                self._decide(height, block, commit, info, pending)
            case EvidenceFound(evidence):
                sim.record_evidence_found(self, evidence)
                if self.behaviour != "silent":
                    sim.broadcast(self, evidence)
            case PeerAhead() | BlockNeeded():
                pass
            case PeerMisbehaved(reason):
                sim.record_misbehaved(self, reason)
            case RoundStarted(height, round_, _):
                if self.behaviour == "amnesia" and round_ > 0:
                    self.state.locked_value = None
                    self.state.locked_round = -1
            case SignRefused():
                sim.record_sign_refused(self)

    def _decide(
        self, height: int, block: Block, commit: Commit, info: BlockInfo, pending: deque[Input]
    ) -> None:
        if self.stored and self.stored[-1].block.header.height >= height:
            return  # replay of a decision already stored
        result = self.app.finalize_block(block.txs, info)
        self.app.commit()
        chain_after = self.state.chain.after_block(
            block, commit, result.app_hash, result.validator_updates
        )
        self.stored.append(StoredHeight(block, commit, result.app_hash, chain_after, info))
        self.sim.record_commit(self, block, commit, result.app_hash)
        done = BlockExecuted(height, block.id(), result.app_hash, result.validator_updates)
        if self.replaying:
            pending.append(done)
        else:
            self.sim.schedule_executed(self, done)

    def executed(self, epoch: int, done: BlockExecuted) -> None:
        if self.up and epoch == self.epoch and self.state.step == STEP_COMMIT:
            self._run(done)

    def buffer_future(self, inp: Input) -> None:
        if len(self.future) < FUTURE_BUFFER_MAX:
            self.future.append(inp)

    # ---- sending (honest and byzantine) ------------------------------------------------------

    def _broadcast(self, message: Proposal | Vote | DuplicateVoteEvidence) -> None:
        sim = self.sim
        if isinstance(message, Proposal | Vote):
            sim.record_signed(self, message)
            self._remember_sent(message)
            if not self.replaying:
                # Own messages go to the WAL, fsynced, before they leave: a replay after a
                # crash gets them back even where the guard refuses to sign them again.
                own = (
                    ProposalReceived(message)
                    if isinstance(message, Proposal)
                    else VoteReceived(message)
                )
                self.wal.append(own)
                self.wal_durable = len(self.wal)
        if self.behaviour == "silent":
            return
        if self.behaviour == "equivocate" and isinstance(message, Proposal):
            other = self._conflicting_proposal(message)
            sim.broadcast_split(self, message, other)
            return
        if self.behaviour == "double_vote" and isinstance(message, Vote):
            sim.broadcast_split(self, message, self._conflicting_vote(message))
            return
        sim.broadcast(self, message)

    def _remember_sent(self, message: Proposal | Vote) -> None:
        if message.height != self.height:
            return
        step = 0 if isinstance(message, Proposal) else message.type
        self.sent[(message.round, step)] = message

    def _conflicting_proposal(self, proposal: Proposal) -> Proposal:
        block = proposal.block
        txs = (*block.txs, f"equivocation={self.index}/{proposal.round}".encode())
        header = replace(block.header, data_hash=txs_hash(txs))
        other = Block(header, txs, block.evidence, block.last_commit)
        chain_id = self.state.chain.chain_id
        msg = proposal_sign_bytes(
            chain_id, proposal.height, proposal.round, proposal.pol_round, other.id()
        )
        return replace(proposal, block=other, signature=self.key.sign(msg))

    def _conflicting_vote(self, vote: Vote) -> Vote:
        block_id = NIL if vote.block_id != NIL else self.sim.rng.randbytes(32)
        chain_id = self.state.chain.chain_id
        msg = vote_sign_bytes(chain_id, vote.type, vote.height, vote.round, block_id)
        return replace(vote, block_id=block_id, signature=self.key.sign(msg))

    def gossip(self) -> None:
        """Periodic re-send (links are lossy): own messages of this height's current and previous
        round, the current round's proposal, the votes held for the current round and for the
        proof-of-lock rounds (validRound, the proposal's polRound) as a real node's vote gossip
        would, and pending evidence."""
        if not self.up or self.behaviour == "silent":
            return
        st = self.state
        # Only a node that made no progress since the last tick re-sends (as the node's shell
        # does): healthy rounds cost no extra traffic.
        mark = (st.chain.height, st.round, st.step)
        if mark != self.gossip_mark:
            self.gossip_mark = mark
            return
        r = st.round
        for (round_, _), message in sorted(self.sent.items(), key=lambda kv: kv[0]):
            if round_ >= r - 1:
                self.sim.broadcast(self, message)
        proposal = st.proposals.get(r)
        rounds = [r, st.valid_round]
        if proposal is not None:
            rounds.append(proposal.pol_round)
            if proposal.proposer != self.key.public_key:
                self.sim.broadcast(self, proposal)
        for round_ in sorted(set(rounds)):
            for votes in (st.prevotes.get(round_), st.precommits.get(round_)):
                if votes is None:
                    continue
                # Own votes too: our prevote may be the one a peer lacks for the proof of lock.
                for _, vote in [*sorted(votes.votes.items()), *sorted(votes.conflicting.items())]:
                    if not (vote.round >= r - 1 and vote.validator == self.key.public_key):
                        self.sim.broadcast(self, vote)  # (recent own votes went out above)
        for _, evidence in sorted(st.evidence_pool.items()):
            self.sim.broadcast(self, evidence)
        # The previous height's commit, for peers still finishing it (CometBFT gossips its
        # LastCommit the same way): the precommits let them decide without block sync.
        if self.stored and self.stored[-1].block.header.height == st.chain.height - 1:
            for vote in self._last_commit_votes():
                self.sim.broadcast(self, vote)

    def _last_commit_votes(self) -> list[Vote]:
        top = self.stored[-1]
        commit = top.commit
        return [
            Vote(PRECOMMIT, commit.height, commit.round, commit.block_id, s.validator, s.signature)
            for s in commit.signatures
        ]
