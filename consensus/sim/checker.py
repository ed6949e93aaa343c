"""The properties every simulated run must have, checked from what nodes did, not what they say.

Safety properties (SAFETY: what a broken consensus rule must show up as):
- agreement: no two honest nodes commit different blocks at one height;
- validity: every block an honest node commits extends that node's previous block and app
  hash, carries only valid transactions and only evidence against faulty keys;
- double_sign: no honest key signs two different messages (different sign bytes) for one
  (height, round, step); sending the same signed bytes again is a re-send, not a double sign.
Other properties:
- app_hash: honest nodes have identical app hashes per height;
- liveness: every honest node commits a new height within `liveness_bound_ms` of the heal
  (virtual time, derived from the timeouts of the rounds it may take; see that function);
- pace: with a synchronous network and only silent (crashed) faulty validators, every height
  commits within its rounds' propose + precommit timeouts plus message delays (`pace_bound_ms`):
  a round whose proposer is silent ends on 2f+1 nil prevotes and precommits, never by waiting
  for the prevote timeout;
- evidence: every faulty key whose equivocation an honest node detected before the heal has
  evidence against it committed by the end.
Rule-shaped diagnostics (they name the rule that broke, not a property a user sees):
- certificate: the commit certificate of each committed block, re-verified here (2/3+ power);
- locking: an honest node that precommitted v in round r prevotes another value w in a later
  round r' only if 2f+1 prevotes for w exist from some round in [r, r') (L23/L29: no unlock
  without a proof of lock); the prevotes counted are all that were ever signed by anyone.
A node raising InvariantError is an `invariant` violation.
"""

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from consensus.commit_verify import verify_commit
from consensus.errors import CommitError
from consensus.kvapp import KVApp
from consensus.sim.config import engine_config
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

SAFETY = ("agreement", "validity", "double_sign")
VIOLATIONS_KEPT = 20
# Liveness after the heal: rounds an honest node may need (a faulty proposer's rounds, rounds
# that align nodes that were in different rounds) past the highest round it had reached.
LIVENESS_SPARE_ROUNDS = 2
SYNC_INTERVAL_MS = 1_000


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
        self.honest_keys = {sim.nodes[i].key.public_key: i for i in honest}
        self.round_before_heal = 0  # the highest round an honest key signed before the heal
        self.first_commit_after_heal: dict[int, int] = {}  # node -> virtual time
        self.last_commit_at: dict[int, int] = {}  # node -> virtual time of its last commit
        config = sim.config
        # The bounds use the paper's timeouts, whatever a mutant did to the engine's.
        self.timeouts = replace(engine_config(config), mutant="")
        self.pace_checked = (
            not config.faults
            and not config.twins
            and not config.round_partitions
            and not config.crash_points
            and all(b == "silent" for b in config.byzantine)
        )
        self._kv = KVApp()

    def fail(self, kind: str, detail: str) -> None:
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(Violation(kind, detail))

    def on_wire(self, msg: Proposal | Vote | DuplicateVoteEvidence) -> None:
        """Every message a node sends (its own, relays, whatever a byzantine node made up),
        once per send: prevotes for the locking diagnostic, honest keys' signatures for
        double_sign.  A signature that never left a node (it died first) is no double sign."""
        if isinstance(msg, DuplicateVoteEvidence):
            return
        if isinstance(msg, Vote):
            signer = msg.validator
            if msg.type == PREVOTE and msg.block_id != NIL:
                self.prevoters.setdefault((msg.height, msg.round, msg.block_id), {})[signer] = None
            key = (signer, msg.height, msg.round, msg.type)
            what = (msg.block_id, 0)
        else:
            signer = msg.proposer
            key = (signer, msg.height, msg.round, 0)
            what = (msg.block.id(), msg.pol_round)
        node = self.honest_keys.get(signer)
        if node is None:
            return
        if self.sim.now_ms < self.sim.config.heal_ms:
            self.round_before_heal = max(self.round_before_heal, msg.round)
        # (block id, pol round) at (key, height, round, step) fixes the sign bytes.
        previous = self.signed.setdefault(key, what)
        if previous != what:
            self.fail(
                "double_sign",
                f"node {node} signed two messages at (h, r, step) {key[1:]} "
                f"(block {previous[0].hex()[:8]} then {what[0].hex()[:8]})",
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
        """A node's engine signed `msg` (it may still die before sending it: double_sign is
        judged on the wire, the locking diagnostic in signing order)."""
        if node.index not in self.honest:
            return
        if isinstance(msg, Vote):
            self._check_lock(node, msg)
        self.rounds_max = max(self.rounds_max, msg.round)

    def on_commit(self, node: "SimNode", block: Block, commit: Commit, app_hash: bytes) -> None:
        if node.index not in self.honest:
            return
        height = block.header.height
        block_id = block.id()
        chain = node.state.chain
        seen = self.committed.get(height)
        now = self.sim.now_ms
        if now >= self.sim.config.heal_ms:
            self.first_commit_after_heal.setdefault(node.index, now)
        previous_at = self.last_commit_at.get(node.index)
        self.last_commit_at[node.index] = now
        if self.pace_checked and previous_at is not None:
            bound = self.pace_bound_ms(commit.round)
            if now - previous_at > bound:
                self.fail(
                    "pace",
                    f"node {node.index} height {height} (round {commit.round}) took "
                    f"{now - previous_at} ms, bound {bound} ms",
                )
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
            self.fail("certificate", f"node {node.index} height {height}: {exc}")
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

    def _delay_max_ms(self) -> int:
        return max(self.sim.config.after_heal_delay_ms_max, self.sim.plan.delay_ms_max)

    def pace_bound_ms(self, commit_round: int) -> int:
        """A height decided in round R, synchronous network (delay <= Δ, start skew <= Δ):
        the commit pause, then each failed round r < R lasts its propose timeout, two message
        delays to gather 2f+1 nil prevotes then precommits, and its precommit timeout (plus
        skew); the deciding round takes a proposal, prevotes and precommits: 3Δ + skew."""
        delta = self._delay_max_ms()
        total = self.sim.config.block_interval_ms + 4 * delta
        for r in range(commit_round):
            total += self.timeouts.timeout_ms(0, r) + self.timeouts.timeout_ms(2, r) + 4 * delta
        return total

    def liveness_bound_ms(self) -> int:
        """How long after the heal an honest node may take to commit a new height.

        After the heal every message arrives within Δ = after_heal_delay_ms_max.  A node may
        be finishing the commit pause (block interval) and a block sync (sync interval), then
        sit in rounds from r0, the highest round an honest node had signed in, up to the
        first round with an honest proposer that every honest node is in: at most one round per
        validator (the weighted round-robin gives each faulty key fewer than that in a row)
        plus LIVENESS_SPARE_ROUNDS.  Each such round r lasts at most its three timeouts (which
        grow with r) plus a gossip interval and four message delays."""
        config = self.sim.config
        delta = config.after_heal_delay_ms_max
        # Rounds whose timeouts are still shorter than two message delays may fail however
        # the proposer behaves; they come on top.
        r_synchronous = 0
        while any(self.timeouts.timeout_ms(step, r_synchronous) < 2 * delta for step in (0, 1, 2)):
            r_synchronous += 1
        r0 = self.round_before_heal
        last = max(r0, r_synchronous) + config.validators + LIVENESS_SPARE_ROUNDS
        total = config.block_interval_ms + SYNC_INTERVAL_MS
        for r in range(r0, last):
            total += sum(self.timeouts.timeout_ms(step, r) for step in (0, 1, 2))
            total += config.gossip_interval_ms + 4 * delta
        return total

    def finish(self) -> "RunResult":
        from consensus.sim.runner import RunResult

        config = self.sim.config
        nodes = self.sim.nodes
        honest_nodes = [nodes[i] for i in self.honest]
        if self.heal_heights and not self.reached_stop:
            bound = self.liveness_bound_ms()
            deadline = min(config.heal_ms + bound, config.duration_ms)
            for node in honest_nodes:
                when = self.first_commit_after_heal.get(node.index)
                if when is None or when > deadline:
                    window = deadline - config.heal_ms
                    self.fail(
                        "liveness",
                        f"node {node.index} committed nothing in the {window} ms after the heal"
                        f" (bound {bound} ms from round {self.round_before_heal})",
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
