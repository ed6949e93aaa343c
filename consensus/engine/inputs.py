"""What the shell feeds the engine.  Each is a value; the WAL records them for replay.

Messages from peers (ProposalReceived, VoteReceived, EvidenceReceived, BlockSynced) may be
anything: the engine checks them and answers a bad one with a PeerMisbehaved effect, leaving its
state untouched.  The others are the shell's answers to the engine's own effects:
    RequestProposal -> ProposalContent      (app.prepare_proposal + the proposer's clock)
    ValidateBlock   -> BlockValidated       (app.process_proposal)
    Decide          -> BlockExecuted        (store block, app.finalize_block, app.commit)
    ScheduleTimeout -> TimeoutFired         (after duration_ms)
"""

from dataclasses import dataclass

from consensus.app import ValidatorUpdate
from consensus.engine.chain import LastSigned
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote

# Steps of a round; TimeoutFired names one of the first three.
STEP_PROPOSE = 0
STEP_PREVOTE = 1
STEP_PRECOMMIT = 2
STEP_COMMIT = 3  # decided, waiting for BlockExecuted


@dataclass(frozen=True, slots=True)
class Start:
    """Begin round 0 of the state's height (after construction and any RestoreLastSigned)."""


@dataclass(frozen=True, slots=True)
class RestoreLastSigned:
    """The guard the shell persisted before the crash: never sign below or beside it."""

    last_signed: LastSigned


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """A peer's proposal and `received_ms`, the local clock when it arrived (PBTS timeliness).

    -1 means unknown (WAL records written before receptions were stamped, unit tests): such a
    proposal counts as timely, see EngineConfig.timely.  The driver stamps every live reception.
    """

    proposal: Proposal
    received_ms: int = -1


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True, slots=True)
class EvidenceReceived:
    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    height: int
    round: int
    step: int


@dataclass(frozen=True, slots=True)
class ProposalContent:
    """The transactions the app prepared for our proposal and the proposer's clock reading.

    `time_ms` becomes the block time, raised to one past the previous block's; if that is not
    a valid, timely time the engine proposes nothing and the round times out."""

    height: int
    round: int
    time_ms: int
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BlockValidated:
    height: int
    block_id: bytes
    valid: bool


@dataclass(frozen=True, slots=True)
class BlockExecuted:
    """The decided block is stored and executed; its results shape the next height."""

    height: int
    block_id: bytes
    app_hash: bytes
    validator_updates: tuple[ValidatorUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockSynced:
    """A block for our current height with a commit certificate, fetched from a peer."""

    block: Block
    commit: Commit


Input = (
    Start
    | RestoreLastSigned
    | ProposalReceived
    | VoteReceived
    | EvidenceReceived
    | TimeoutFired
    | ProposalContent
    | BlockValidated
    | BlockExecuted
    | BlockSynced
)
