"""The properties every simulated run must have, checked from what nodes did, not what they say.

- agreement: no two honest nodes commit different blocks at one height;
- app_hash: honest nodes have identical app hashes per height;
- double_sign: no honest key signs two different proposals/votes for one (height, round, step);
- validity: every block an honest node commits links to its previous block and app hash, is
  proven by a commit certificate re-verified here, and carries only valid transactions and only
  evidence against faulty keys;
- locking: an honest node that precommitted v in round r prevotes another value w in a later
  round r' only if 2f+1 prevotes for w exist from some round in [r, r') (L23/L29: no unlock
  without a proof of lock); the prevotes counted are all that were ever signed by anyone;
- liveness: every honest node commits at least one block after the heal;
- evidence: every faulty key whose equivocation an honest node detected before the heal has
  evidence against it committed by the end.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.commit_verify import verify_commit
from consensus.errors import CommitError
from consensus.kvapp import KVApp
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
)

if TYPE_CHECKING:
    from consensus.sim.node import SimNode
    from consensus.sim.runner import RunResult, Simulation


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class Checker:
    def __init__(self, sim: "Simulation", honest: list[int], faulty_keys: set[bytes]) -> None:
        self.sim = sim
        self.honest = dict.fromkeys(honest)
        self.faulty_keys = faulty_keys
        self.violations: list[Violation] = []
        self.committed: dict[int, tuple[bytes, bytes, int]] = {}  # height -> (id, app_hash, node)
        self.node_tip: dict[int, tuple[bytes, bytes]] = {}  # node -> (last id, last app hash)
        self.signed: dict[tuple[bytes, int, int, int], tuple[bytes, int]] = {}
        self.detected: dict[bytes, int] = {}  # faulty key -> time first detected
        self.evidence_committed: dict[bytes, int] = {}
        # Blocks each node had decided (stored) at the heal; a decision counts as progress even
        # if the run ends inside the commit pause before the next height starts.
        self.heal_heights: list[int] = []
        self.reached_stop = False
        self.misbehaved_reports = 0
        self.sign_refused = 0
        self.rounds_max = 0
        self.prevoters: dict[tuple[int, int, bytes], dict[bytes, None]] = {}
        self.locks: dict[tuple[bytes, int], tuple[int, bytes]] = {}
        self._kv = KVApp()

    def fail(self, kind: str, detail: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(Violation(kind, detail))

    def on_wire(self, msg: Proposal | Vote | DuplicateVoteEvidence) -> None:
        if isinstance(msg, Vote) and msg.type == PREVOTE and msg.block_id != NIL:
            self.prevoters.setdefault((msg.height, msg.round, msg.block_id), {})[msg.validator] = (
                None
            )

    def _check_lock(self, node: "SimNode", vote: Vote) -> None:
        key = node.key.public_key
        if vote.type == PRECOMMIT:
            if vote.block_id != NIL:
                self.locks[(key, vote.height)] = (vote.round, vote.block_id)
            return
        lock = self.locks.get((key, vote.height))
        if vote.block_id == NIL or lock is None or lock[1] == vote.block_id:
            return
        validators = node.state.chain.validators
        for vr in range(lock[0], vote.round):
            signers = self.prevoters.get((vote.height, vr, vote.block_id), {})
            if validators.has_quorum(sum(validators.power_of(k) for k in signers)):
                return
        self.fail(
            "locking",
            f"node {node.index} locked in round {lock[0]} of height {vote.height} prevoted "
            f"another value in round {vote.round} without a proof of lock",
        )

    def on_signed(self, node: "SimNode", msg: Proposal | Vote) -> None:
        self.on_wire(msg)
        if node.index not in self.honest:
            return
        if isinstance(msg, Vote):
            self._check_lock(node, msg)
        self.rounds_max = max(self.rounds_max, msg.round)
        if isinstance(msg, Proposal):
            key = (node.key.public_key, msg.height, msg.round, 0)
            what = (msg.block.id(), msg.pol_round)
        else:
            key = (node.key.public_key, msg.height, msg.round, msg.type)
            what = (msg.block_id, 0)
        previous = self.signed.setdefault(key, what)
        if previous != what:
            self.fail("double_sign", f"node {node.index} at (h, r, step) {key[1:]}")

    def on_commit(self, node: "SimNode", block: Block, commit: Commit, app_hash: bytes) -> None:
        if node.index not in self.honest:
            return
        height = block.header.height
        block_id = block.id()
        chain = node.state.chain
        seen = self.committed.get(height)
        if seen is None:
            self.committed[height] = (block_id, app_hash, node.index)
        else:
            if seen[0] != block_id:
                self.fail("agreement", f"height {height}: nodes {seen[2]} and {node.index}")
            elif seen[1] != app_hash:
                self.fail("app_hash", f"height {height}: nodes {seen[2]} and {node.index}")
        # validity, re-derived independently of the engine
        tip = self.node_tip.get(node.index)
        if tip is not None and (block.header.last_block_id, block.header.app_hash) != tip:
            self.fail("validity", f"node {node.index} height {height}: does not extend its tip")
        self.node_tip[node.index] = (block_id, app_hash)
        try:
            verify_commit(
                chain.chain_id, chain.validators, height, block_id, commit, self.sim.verifier
            )
        except CommitError as exc:
            self.fail("validity", f"node {node.index} height {height}: {exc}")
        for tx in block.txs:
            if not self._kv.check_tx(tx).ok:
                self.fail("validity", f"node {node.index} height {height}: invalid tx")
        for ev in block.evidence:
            culprit = ev.vote_a.validator
            if culprit not in self.faulty_keys:
                self.fail("validity", f"height {height}: evidence against an honest validator")
            self.evidence_committed.setdefault(culprit, height)

    def on_evidence_found(self, node: "SimNode", ev: DuplicateVoteEvidence) -> None:
        if node.index in self.honest:
            self.detected.setdefault(ev.vote_a.validator, self.sim.now_ms)

    def settled(self) -> bool:
        """Every detected equivocation has its evidence committed."""
        return all(key in self.evidence_committed for key in self.detected)

    def finish(self) -> "RunResult":
        from consensus.sim.runner import RunResult

        config = self.sim.config
        nodes = self.sim.nodes
        honest_nodes = [nodes[i] for i in self.honest]
        if self.heal_heights and not self.reached_stop:
            for node in honest_nodes:
                if len(node.stored) <= self.heal_heights[node.index]:
                    self.fail(
                        "liveness",
                        f"node {node.index} decided nothing after height {len(node.stored)} "
                        f"in the {config.liveness_ms} ms after the heal",
                    )
        for key, when in sorted(self.detected.items()):
            if when < config.heal_ms and key not in self.evidence_committed:
                self.fail("evidence", f"equivocation by {key.hex()[:8]} detected, never committed")
        heights = [n.height - 1 for n in honest_nodes] or [0]
        return RunResult(
            seed=self.sim.seed,
            violations=list(self.violations),
            heights_committed=min(heights),
            max_height=max(heights),
            rounds_max=self.rounds_max,
            events=self.sim.events,
            misbehaved_reports=self.misbehaved_reports,
            evidence_committed=len(self.evidence_committed),
            plan=self.sim.plan,
        )
