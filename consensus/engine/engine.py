"""The Tendermint engine: Algorithm 1 of arXiv 1807.04938 as `apply(state, input) -> effects`.

Theory of operation
-------------------
The engine never waits, reads a clock, draws a random number or does I/O.  The shell feeds it
inputs (peer messages, fired timeouts, answers from the app) and performs the effects it returns
in order.  After every accepted input `_progress` re-evaluates the upon-rules of the paper until
none fires; each rule is commented with the line of Algorithm 1 it implements (`# L22`).
Values are blocks, named by their id; valid(v) is the structural check of checks.py AND the
app's process_proposal answer (BlockValidated), so a rule needing valid(v) waits for the app.

Signing goes through an injected Signer, behind the LastSigned guard: the engine never signs at
a (height, round, step) below the last one, nor different bytes at the same one.  Every
signature is preceded by PersistLastSigned, which the shell makes durable before it broadcasts.

Decision (L49) emits Decide; the engine then waits in STEP_COMMIT for BlockExecuted (the app's
new hash and validator updates), builds the next height's ChainState and starts round 0.
Bad input from peers yields a PeerMisbehaved effect and leaves the state untouched: every check
runs before the first write.  Checks run cheapest first, so a stranger's message costs little:
decode-level bounds (types.py), the height gate, the round bounds (peer_round_max: penalized;
beyond rounds_ahead_max: ignored), membership, the signature, and only then anything that costs
O(round) (the proposer of the message's round).  Nothing a peer sends can raise.

Block time: proposer-based timestamps (PBTS)
--------------------------------------------
A fresh block's time is its proposer's clock (ProposalContent.time_ms), raised to one past the
previous block's time; if that is not a valid time (the previous block is at TIME_MS_MAX) or not
timely by the proposer's own clock, it proposes nothing and the round times out.  At L22 (a
proposal without POL round) a validator prevotes the block only if it is also *timely*: received
at local time `recv` with time - PRECISION <= recv <= time + MSGDELAY(round) + PRECISION
(EngineConfig.timely; MSGDELAY grows 10% per round, so a too-tight setting costs rounds, not
liveness).  An untimely block gets a nil prevote, like an invalid one.  L28 (re-proposal of a
value with its POL round) does not check timeliness, as in the PBTS spec: the value keeps the time
2f+1 validators prevoted when it was fresh.  Hence:
  * monotonic: every block's time exceeds the previous one's (checks.block_problem);
  * bounded by honest clocks: deciding a value needs 2f+1 precommits, hence 2f+1 prevotes in
    some round; a chain of L28 re-proposals always leads back to a round where the value was
    fresh and 2f+1 validators prevoted it at L22, of which f+1 are honest and found it timely.
    So a committed time is within PRECISION (+ the message delay) of some honest validator's
    clock when it received the block: one byzantine proposer cannot commit a far-future time
    (which would stop every later proposer at TIME_MS_MAX), and one validator whose clock is a
    year ahead gets nil prevotes from the others instead of moving chain time a year ahead.
The bound holds only for receptions stamped by the driver (ProposalReceived.received_ms).
"""

from dataclasses import replace

from consensus.commit_verify import Verifier, verify_commit
from consensus.crypto import verify
from consensus.engine.chain import EVIDENCE_AGE_HEIGHTS, ChainState, LastSigned
from consensus.engine.checks import block_info, block_problem, check_evidence, check_vote_signature
from consensus.engine.config import EngineConfig, Signer
from consensus.engine.effects import (
    BlockNeeded,
    Broadcast,
    Decide,
    Effect,
    EvidenceFound,
    PeerAhead,
    PeerMisbehaved,
    PersistLastSigned,
    RequestProposal,
    RoundStarted,
    ScheduleTimeout,
    SignRefused,
    ValidateBlock,
)
from consensus.engine.inputs import (
    STEP_COMMIT,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    BlockExecuted,
    BlockSynced,
    BlockValidated,
    EvidenceReceived,
    Input,
    ProposalContent,
    ProposalReceived,
    RestoreLastSigned,
    Start,
    TimeoutFired,
    VoteReceived,
)
from consensus.engine.state import EngineState, VoteSet
from consensus.errors import CommitError, InvalidMessage, InvariantError
from consensus.types import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_PROPOSAL,
    TIME_MS_MAX,
    Block,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Header,
    Proposal,
    Vote,
    commit_hash,
    evidence_hash,
    proposal_sign_bytes,
    txs_hash,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet


class Engine:
    """Stateless rules plus injected context (config, signer, verifier); state is passed in."""

    def __init__(
        self,
        config: EngineConfig,
        signer: Signer | None,
        verifier: Verifier = verify,
    ) -> None:
        self.config = config
        self.signer = signer
        self.verifier = verifier
        self._public_key = b"" if signer is None else signer.public_key

    # ---- entry point ---------------------------------------------------------------------------

    def apply(self, state: EngineState, inp: Input) -> tuple[EngineState, list[Effect]]:
        out: list[Effect] = []
        try:
            match inp:
                case Start():
                    if not state.started:
                        state.started = True
                        self._start_round(state, 0, out)  # L10
                case RestoreLastSigned(last_signed):
                    current = state.last_signed
                    if current is None or _key(last_signed) > _key(current):
                        state.last_signed = last_signed
                case ProposalReceived(proposal, received_ms):
                    self._on_proposal(state, proposal, received_ms, out)
                case VoteReceived(vote):
                    self._on_vote(state, vote, out)
                case EvidenceReceived(evidence):
                    self._on_evidence(state, evidence, out)
                case TimeoutFired(height, round_, step):
                    self._on_timeout(state, height, round_, step, out)
                case ProposalContent():
                    self._on_proposal_content(state, inp, out)
                case BlockValidated(height, block_id, valid):
                    if height == state.chain.height and state.validity.get(block_id, 0) is None:
                        state.validity[block_id] = valid
                case BlockExecuted():
                    self._on_executed(state, inp, out)
                    return state, out
                case BlockSynced(block, commit):
                    self._on_synced(state, block, commit, out)
        except InvalidMessage as exc:
            return state, [PeerMisbehaved(str(exc))]
        if state.started and state.step != STEP_COMMIT:
            self._progress(state, out)
        return state, out

    # ---- peer messages: check everything, then record -------------------------------------------

    def _height_gate(self, state: EngineState, height: int, out: list[Effect]) -> bool:
        """True if a message for `height` is for us now; far-future heights are violations."""
        current = state.chain.height
        if height > current + self.config.future_heights_max:
            raise InvalidMessage(f"message for far-future height {height} (we are at {current})")
        if height > current:
            out.append(PeerAhead(height))
            return False
        return height == current and state.step != STEP_COMMIT

    def _round_gate(self, state: EngineState, round_: int) -> bool:
        """True if a peer's message for `round_` is worth checking now; rounds no honest node
        reaches are violations.  Runs before the signature: both are cheap, this is cheaper."""
        if round_ > self.config.peer_round_max:
            raise InvalidMessage(f"message for round {round_} beyond {self.config.peer_round_max}")
        return round_ <= state.round + self.config.rounds_ahead_max

    def _on_vote(self, state: EngineState, vote: Vote, out: list[Effect]) -> None:
        if not self._height_gate(state, vote.height, out):
            return
        if not self._round_gate(state, vote.round):
            return
        chain = state.chain
        index = chain.validators.index(vote.validator)
        if index is not None and _changes_nothing(state, index, vote):
            # A repeat of a recorded vote, or another vote for a slot whose equivocation is
            # already on record: nothing would change, so it costs no signature check (a
            # byzantine validator re-sending its votes must not buy our CPU with them).
            return
        power = 0 if index is None else chain.validators.validators[index].power
        check_vote_signature(chain, vote, power, self.verifier)
        if index is None:
            return
        votes = _vote_sets(state, vote.type).setdefault(vote.round, VoteSet())
        previous = votes.votes.get(index)
        if previous is not None:
            if previous.block_id != vote.block_id and index not in votes.conflicting:
                votes.conflicting[index] = vote
                power = chain.validators.validators[index].power
                votes.power_by_block[vote.block_id] = (
                    votes.power_by_block.get(vote.block_id, 0) + power
                )
                self._add_evidence(state, DuplicateVoteEvidence.of(previous, vote), out)
            return
        self._record_vote(state, index, vote)

    def _record_vote(self, state: EngineState, index: int, vote: Vote) -> None:
        votes = _vote_sets(state, vote.type).setdefault(vote.round, VoteSet())
        power = state.chain.validators.validators[index].power
        votes.votes[index] = vote
        votes.power += power
        votes.power_by_block[vote.block_id] = votes.power_by_block.get(vote.block_id, 0) + power
        self._note_sender(state, vote.round, index)

    def _note_sender(self, state: EngineState, round_: int, index: int) -> None:
        senders = state.round_senders.setdefault(round_, {})
        if index not in senders:
            senders[index] = None
            power = state.chain.validators.validators[index].power
            state.round_power[round_] = state.round_power.get(round_, 0) + power

    def _on_proposal(
        self, state: EngineState, proposal: Proposal, received_ms: int, out: list[Effect]
    ) -> None:
        # Cheapest first: height, round bounds, membership, signature; the proposer of the
        # round (O(round) for a set's first far round) only for a signed, near message.
        if not self._height_gate(state, proposal.height, out):
            return
        if not self._round_gate(state, proposal.round):
            return
        chain = state.chain
        index = chain.validators.index(proposal.proposer)
        if index is None:
            raise InvalidMessage("proposal from a non-validator")
        block = proposal.block
        block_id = block.id()
        message = proposal_sign_bytes(
            chain.chain_id, proposal.height, proposal.round, proposal.pol_round, block_id
        )
        if not self.verifier(proposal.proposer, message, proposal.signature):
            raise InvalidMessage("proposal with a bad signature (or for another chain id)")
        if proposal.proposer != chain.validators.proposer(proposal.round):
            raise InvalidMessage("proposal from a validator that is not this round's proposer")
        if proposal.round in state.proposals:
            return  # a repeat, or the proposer equivocating: the first one stands
        state.proposals[proposal.round] = proposal
        state.proposal_received_ms[proposal.round] = received_ms
        self._note_sender(state, proposal.round, index)
        self._learn_block(state, block_id, block, out)

    def _learn_block(
        self, state: EngineState, block_id: bytes, block: Block, out: list[Effect]
    ) -> None:
        if block_id in state.blocks:
            return
        state.blocks[block_id] = block
        problem = block_problem(state.chain, block, self.config, self.verifier)
        if problem is not None:
            state.validity[block_id] = False
            return
        state.validity[block_id] = None
        out.append(ValidateBlock(state.chain.height, block, block_info(state.chain, block)))

    def _on_evidence(
        self, state: EngineState, ev: DuplicateVoteEvidence, out: list[Effect]
    ) -> None:
        chain = state.chain
        height = ev.vote_a.height
        if height > chain.height or chain.validators_at(height) is None:
            return  # outside our window: an honest peer ahead or behind may still send it
        check_evidence(chain, ev, self.verifier)
        self._add_evidence(state, ev, out)

    def _add_evidence(
        self, state: EngineState, ev: DuplicateVoteEvidence, out: list[Effect]
    ) -> None:
        key = ev.key()
        if key in state.evidence_pool or key in state.chain.committed_evidence:
            return
        if len(state.evidence_pool) >= self.config.evidence_pool_max:
            return
        state.evidence_pool[key] = ev
        out.append(EvidenceFound(ev))

    def _on_synced(
        self, state: EngineState, block: Block, commit: Commit, out: list[Effect]
    ) -> None:
        chain = state.chain
        if block.header.height != chain.height or state.step == STEP_COMMIT:
            return
        block_id = block.id()
        try:
            verify_commit(
                chain.chain_id, chain.validators, chain.height, block_id, commit, self.verifier
            )
        except CommitError as exc:
            raise InvalidMessage(f"synced block: {exc}") from None
        problem = block_problem(chain, block, self.config, self.verifier)
        if problem is not None:
            raise InvalidMessage(f"synced block: {problem}")
        self._decide(state, block, commit, out)

    # ---- answers from the shell --------------------------------------------------------------

    def _on_timeout(
        self, state: EngineState, height: int, round_: int, step: int, out: list[Effect]
    ) -> None:
        if height != state.chain.height or round_ != state.round or state.step == STEP_COMMIT:
            return
        if step == STEP_PROPOSE and state.step == STEP_PROPOSE:  # L57
            self._vote(state, PREVOTE, NIL, out)  # L59
            state.step = STEP_PREVOTE  # L60
        elif step == STEP_PREVOTE and state.step == STEP_PREVOTE:  # L61
            self._vote(state, PRECOMMIT, NIL, out)  # L63
            state.step = STEP_PRECOMMIT  # L64
        elif step == STEP_PRECOMMIT:  # L65
            self._start_round(state, round_ + 1, out)  # L67

    def _on_proposal_content(
        self, state: EngineState, content: ProposalContent, out: list[Effect]
    ) -> None:
        chain = state.chain
        if (
            content.height != chain.height
            or content.round != state.round
            or state.step != STEP_PROPOSE
            or state.proposal_requested_round != content.round
            or content.round in state.proposals
        ):
            return
        # PBTS: our clock, raised past the previous block.  No valid time (the previous block is
        # at TIME_MS_MAX) or one our own clock finds untimely (the previous block is ahead of us
        # by more than the precision): propose nothing; the round times out and a later round
        # (a later clock reading, or another proposer) moves on.  Never an exception: a peer's
        # block decided that previous time.
        time_ms = max(content.time_ms, chain.last_time_ms + 1)
        if time_ms > TIME_MS_MAX or not self.config.timely(time_ms, content.time_ms, content.round):
            return
        evidence = self._pending_evidence(state)
        txs = self._fit(content.txs)
        header = Header(
            chain_id=chain.chain_id,
            height=chain.height,
            time_ms=time_ms,
            last_block_id=chain.last_block_id,
            last_commit_hash=commit_hash(chain.last_commit),
            data_hash=txs_hash(txs),
            evidence_hash=evidence_hash(evidence),
            validators_hash=chain.validators.hash(),
            next_validators_hash=chain.next_validators.hash(),
            app_hash=chain.app_hash,
            proposer=self._public_key,
        )
        block = Block(header, txs, evidence, chain.last_commit)
        problem = block_problem(chain, block, self.config, self.verifier)
        if problem is not None:
            raise InvariantError(f"our own proposal is invalid: {problem}")
        self._propose(state, block, -1, out)  # L18-L19

    def _pending_evidence(self, state: EngineState) -> tuple[DuplicateVoteEvidence, ...]:
        """Pool evidence a block at this height may carry, in canonical (key) order."""
        h = state.chain.height
        fit = [
            ev
            for key, ev in sorted(state.evidence_pool.items())
            if h - EVIDENCE_AGE_HEIGHTS < key[1] < h
        ]
        return tuple(fit[: self.config.block_evidence_max])

    def _fit(self, txs: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """The longest prefix of the app's txs within the block limits."""
        size = 0
        for i, tx in enumerate(txs):
            size += len(tx)
            if i >= self.config.block_txs_max or size > self.config.block_bytes_max:
                return txs[:i]
        return txs

    def _on_executed(self, state: EngineState, done: BlockExecuted, out: list[Effect]) -> None:
        block = state.decided
        if block is None or done.height != state.chain.height or done.block_id != block.id():
            return
        commit = state.decided_commit
        if commit is None:
            raise InvariantError("decided without a commit")
        chain = state.chain.after_block(block, commit, done.app_hash, done.validator_updates)
        pool = {
            k: ev
            for k, ev in state.evidence_pool.items()
            if k not in chain.committed_evidence and k[1] > chain.height - EVIDENCE_AGE_HEIGHTS
        }
        fresh = EngineState.for_height(chain, state.last_signed, pool)
        _replace(state, fresh)
        state.started = True
        self._start_round(state, 0, out)  # L54
        self._progress(state, out)

    # ---- Algorithm 1 ---------------------------------------------------------------------------

    def _start_round(self, state: EngineState, round_: int, out: list[Effect]) -> None:
        """L11-L21: StartRound(round)."""
        state.round = round_  # L12
        state.step = STEP_PROPOSE  # L13
        chain = state.chain
        proposer = chain.validators.proposer(round_)
        out.append(RoundStarted(chain.height, round_, proposer))
        if proposer == self._public_key and self.signer is not None:  # L14
            if state.valid_value is not None:  # L15
                block = state.blocks[state.valid_value]  # L16
                self._propose(state, block, state.valid_round, out)  # L19
            else:
                state.proposal_requested_round = round_
                template = _template(chain, proposer, self._pending_evidence(state))
                info = replace(block_info(chain, template), block_hash=b"")
                out.append(RequestProposal(chain.height, round_, info))  # L18: getValue()
        # L21 (also on the proposer: if the app never answers, the round still moves on)
        out.append(
            ScheduleTimeout(
                chain.height, round_, STEP_PROPOSE, self.config.timeout_ms(STEP_PROPOSE, round_)
            )
        )

    def _progress(self, state: EngineState, out: list[Effect]) -> None:
        while state.step != STEP_COMMIT and self._fire_one(state, out):
            pass

    def _fire_one(self, state: EngineState, out: list[Effect]) -> bool:
        """Fire the first enabled upon-rule; True if one fired (then re-evaluate)."""
        chain = state.chain
        vs = chain.validators
        r = state.round
        # L49: a decision in any round.
        decide_rounds = sorted(state.precommits)
        if self.config.mutant == "decide_current_round_only":  # MUTANT decide_current_round_only
            decide_rounds = [x for x in decide_rounds if x == r]
        for round_ in decide_rounds:
            for block_id, power in state.precommits[round_].power_by_block.items():
                if block_id == NIL or not self._quorum(vs, power):
                    continue
                if block_id not in state.blocks:
                    if block_id not in state.block_needed:
                        state.block_needed[block_id] = None
                        out.append(BlockNeeded(chain.height, block_id))
                    continue
                if state.validity.get(block_id) is True:  # L50
                    commit = _commit(state, round_, block_id)
                    self._decide(state, state.blocks[block_id], commit, out)  # L51-L54
                    return True
        # L55: f+1 messages of a higher round.
        higher = [x for x in state.round_power if x > r and self._skip(vs, state.round_power[x])]
        if higher:
            self._start_round(state, max(higher), out)  # L56
            return True
        proposal = state.proposals.get(r)
        block_id = NIL if proposal is None else proposal.block.id()
        valid = None if proposal is None else state.validity.get(block_id)
        prevotes = state.prevotes.get(r)
        if state.step == STEP_PROPOSE and proposal is not None and valid is not None:
            vr = proposal.pol_round
            if vr == -1:  # L22
                free = state.locked_round == -1 or state.locked_value == block_id  # L23
                if self.config.mutant == "nolock":  # MUTANT nolock
                    free = True
                # PBTS: a fresh value must also be timely (see the top of this module).
                timely = self.config.timely(
                    proposal.block.header.time_ms, state.proposal_received_ms.get(r, -1), r
                )
                good = valid and free and timely
                self._vote(state, PREVOTE, block_id if good else NIL, out)  # L24/L26
                state.step = STEP_PREVOTE  # L27
                return True
            pol = state.prevotes.get(vr)
            pol_proven = pol is not None and self._quorum(vs, pol.power_by_block.get(block_id, 0))
            if self.config.mutant == "trust_pol_round":  # MUTANT trust_pol_round
                pol_proven = True
            if 0 <= vr < r and pol_proven:  # L28
                free = state.locked_round <= vr or state.locked_value == block_id  # L29
                if self.config.mutant == "nolock":  # MUTANT nolock
                    free = True
                self._vote(state, PREVOTE, block_id if valid and free else NIL, out)  # L30/L32
                state.step = STEP_PREVOTE  # L33
                return True
        if (
            state.step == STEP_PREVOTE
            and state.prevote_timeout_round != r
            and prevotes is not None
            and self._quorum(vs, prevotes.power)
        ):  # L34
            state.prevote_timeout_round = r
            out.append(
                ScheduleTimeout(
                    chain.height, r, STEP_PREVOTE, self.config.timeout_ms(STEP_PREVOTE, r)
                )
            )  # L35
            return True
        if (
            proposal is not None
            and valid is True
            and state.step >= STEP_PREVOTE
            and state.l36_round != r
            and prevotes is not None
            and self._quorum(vs, prevotes.power_by_block.get(block_id, 0))
        ):  # L36
            state.l36_round = r
            locking = state.step == STEP_PREVOTE
            if locking:  # L37
                state.locked_value = block_id  # L38
                state.locked_round = r  # L39
                self._vote(state, PRECOMMIT, block_id, out)  # L40
                state.step = STEP_PRECOMMIT  # L41
            if locking or self.config.mutant != "valid_only_on_lock":  # MUTANT valid_only_on_lock
                state.valid_value = block_id  # L42
                state.valid_round = r  # L43
            return True
        if (
            state.step == STEP_PREVOTE
            and prevotes is not None
            and self._quorum(vs, prevotes.power_by_block.get(NIL, 0))
            and self.config.mutant != "no_precommit_nil"  # MUTANT no_precommit_nil
        ):  # L44
            self._vote(state, PRECOMMIT, NIL, out)  # L45
            state.step = STEP_PRECOMMIT  # L46
            return True
        precommits = state.precommits.get(r)
        if (
            state.precommit_timeout_round != r
            and precommits is not None
            and self._quorum(vs, precommits.power)
        ):  # L47
            state.precommit_timeout_round = r
            out.append(
                ScheduleTimeout(
                    chain.height, r, STEP_PRECOMMIT, self.config.timeout_ms(STEP_PRECOMMIT, r)
                )
            )  # L48
            return True
        return False

    def _quorum(self, vs: ValidatorSet, power: int) -> bool:
        if self.config.mutant == "quorum2f":  # MUTANT quorum2f
            # Deliberately wrong: 2f of n = 3f+1 instead of 2f+1.
            return power >= 2 * ((vs.total_power - 1) // 3)
        return vs.has_quorum(power)

    def _skip(self, vs: ValidatorSet, power: int) -> bool:
        """L55's f+1: more than a third of the power, so at least one honest validator."""
        if self.config.mutant == "skip_on_f":  # MUTANT skip_on_f
            # Deliberately wrong: f (the most the faulty may hold) instead of f+1.
            return power >= (vs.total_power - 1) // 3
        return vs.has_one_third(power)

    def _decide(self, state: EngineState, block: Block, commit: Commit, out: list[Effect]) -> None:
        state.decided = block
        state.decided_commit = commit
        state.step = STEP_COMMIT
        out.append(Decide(state.chain.height, block, commit, block_info(state.chain, block)))

    # ---- signing behind the LastSigned guard ---------------------------------------------------

    def _sign(
        self,
        state: EngineState,
        height: int,
        round_: int,
        step: int,
        message: bytes,
        out: list[Effect],
    ) -> bytes | None:
        if self.signer is None or state.chain.validators.index(self._public_key) is None:
            return None
        last = state.last_signed
        if last is not None and self.config.mutant != "noguard":  # MUTANT noguard
            here = (height, round_, step)
            if here < _key(last) or (here == _key(last) and message != last.sign_bytes):
                out.append(SignRefused(height, round_, step))
                return None
        state.last_signed = LastSigned(height, round_, step, message)
        out.append(PersistLastSigned(state.last_signed))
        return self.signer.sign(message)

    def _vote(self, state: EngineState, vote_type: int, block_id: bytes, out: list[Effect]) -> None:
        chain = state.chain
        message = vote_sign_bytes(chain.chain_id, vote_type, chain.height, state.round, block_id)
        signature = self._sign(state, chain.height, state.round, vote_type, message, out)
        if signature is None:
            return
        vote = Vote(vote_type, chain.height, state.round, block_id, self._public_key, signature)
        out.append(Broadcast(vote))
        index = chain.validators.index(self._public_key)
        votes = _vote_sets(state, vote_type).get(state.round)
        if index is not None and (votes is None or index not in votes.votes):
            self._record_vote(state, index, vote)

    def _propose(self, state: EngineState, block: Block, pol_round: int, out: list[Effect]) -> None:
        chain = state.chain
        block_id = block.id()
        message = proposal_sign_bytes(
            chain.chain_id, chain.height, state.round, pol_round, block_id
        )
        signature = self._sign(state, chain.height, state.round, STEP_PROPOSAL, message, out)
        if signature is None:
            return
        proposal = Proposal(
            chain.height, state.round, pol_round, block, self._public_key, signature
        )
        out.append(Broadcast(proposal))
        state.proposals[state.round] = proposal
        state.blocks[block_id] = block
        if state.validity.get(block_id) is None:
            state.validity[block_id] = True  # our own app prepared it
        index = chain.validators.index(self._public_key)
        if index is not None:
            self._note_sender(state, state.round, index)


def _key(last: LastSigned) -> tuple[int, int, int]:
    return (last.height, last.round, last.step)


def _changes_nothing(state: EngineState, index: int, vote: Vote) -> bool:
    votes = _vote_sets(state, vote.type).get(vote.round)
    if votes is None:
        return False
    previous = votes.votes.get(index)
    return previous is not None and (previous == vote or index in votes.conflicting)


def _vote_sets(state: EngineState, vote_type: int) -> dict[int, VoteSet]:
    return state.prevotes if vote_type == PREVOTE else state.precommits


def _commit(state: EngineState, round_: int, block_id: bytes) -> Commit:
    votes = state.precommits[round_]
    chosen = {i: v for i, v in votes.votes.items() if v.block_id == block_id}
    chosen.update({i: v for i, v in votes.conflicting.items() if v.block_id == block_id})
    sigs = tuple(CommitSig(chosen[i].validator, chosen[i].signature) for i in sorted(chosen))
    return Commit(state.chain.height, round_, block_id, sigs)


def _template(
    chain: ChainState, proposer: bytes, evidence: tuple[DuplicateVoteEvidence, ...]
) -> Block:
    """A block shell carrying what block_info needs before the txs are known."""
    header = Header(
        chain_id=chain.chain_id,
        height=chain.height,
        time_ms=0,
        last_block_id=chain.last_block_id,
        last_commit_hash=commit_hash(chain.last_commit),
        data_hash=b"",
        evidence_hash=b"",
        validators_hash=b"",
        next_validators_hash=b"",
        app_hash=chain.app_hash,
        proposer=proposer,
    )
    return Block(header, (), evidence, chain.last_commit)


def _replace(state: EngineState, fresh: EngineState) -> None:
    for name in EngineState.__slots__:
        setattr(state, name, getattr(fresh, name))
