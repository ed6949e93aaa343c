"""What the engine asks the shell to do, in order.  The shell must perform them in list order:
a PersistLastSigned always precedes the Broadcast of the message it guards, and the shell must
have it on disk (fsync) before that Broadcast leaves the process."""

from dataclasses import dataclass

from consensus.app import BlockInfo
from consensus.engine.chain import LastSigned
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote


@dataclass(frozen=True, slots=True)
class PersistLastSigned:
    last_signed: LastSigned


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Proposal | Vote | DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RequestProposal:
    """We propose at (height, round): call app.prepare_proposal, answer with ProposalContent.
    `block_info.time_ms` is 0: the shell puts its clock reading in ProposalContent."""

    height: int
    round: int
    block_info: BlockInfo


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Ask app.process_proposal about a structurally valid block; answer with BlockValidated."""

    height: int
    block: Block
    block_info: BlockInfo


@dataclass(frozen=True, slots=True)
class Decide:
    """Block `height` is decided with `commit`: store both, finalize + commit the app, answer
    BlockExecuted."""

    height: int
    block: Block
    commit: Commit
    block_info: BlockInfo


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    """A validator equivocated; the evidence is pending inclusion. Gossip it."""

    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    """The input just applied was invalid (bad signature, non-validator, wrong chain id,
    far-future height, malformed): penalize whoever sent it.  The state did not change."""

    reason: str


@dataclass(frozen=True, slots=True)
class PeerAhead:
    """A valid-looking message for a later height arrived: the shell may start block sync."""

    height: int


@dataclass(frozen=True, slots=True)
class BlockNeeded:
    """2/3+ precommitted `block_id` but we never received that block: fetch it (block sync)."""

    height: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class RoundStarted:
    height: int
    round: int
    proposer: bytes


@dataclass(frozen=True, slots=True)
class SignRefused:
    """The LastSigned guard stopped a signature (after a restart): logged, never sent."""

    height: int
    round: int
    step: int


Effect = (
    PersistLastSigned
    | Broadcast
    | ScheduleTimeout
    | RequestProposal
    | ValidateBlock
    | Decide
    | EvidenceFound
    | PeerMisbehaved
    | PeerAhead
    | BlockNeeded
    | RoundStarted
    | SignRefused
)
