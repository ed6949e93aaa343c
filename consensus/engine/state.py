"""The engine's state for one height: Algorithm 1's variables plus the message log.

One task owns an EngineState; `Engine.apply` updates it in place and returns it.  Inputs are
fully checked before anything is written, so a rejected input leaves the state unchanged.
Dicts are only iterated in insertion order or through `sorted`, never sets.
"""

from dataclasses import dataclass, field

from consensus.engine.chain import ChainState, EvidenceKey, LastSigned
from consensus.engine.inputs import STEP_PROPOSE
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote


@dataclass(slots=True)
class VoteSet:
    """The votes of one (round, type), power tallied per block id.

    As in the paper, "2f+1 <PREVOTE, h, r, id(v)>" counts every validator that sent such a
    message: an equivocator's second vote (kept in `conflicting`, at most one) counts towards its
    own block id, so honest nodes that saw different halves of an equivocation still agree on a
    proof of lock.  `power` (the "*" quorums) counts each validator once.
    """

    votes: dict[int, Vote] = field(default_factory=dict)
    conflicting: dict[int, Vote] = field(default_factory=dict)
    power_by_block: dict[bytes, int] = field(default_factory=dict)
    power: int = 0


@dataclass(slots=True)
class EngineState:
    chain: ChainState
    last_signed: LastSigned | None = None
    round: int = 0
    step: int = STEP_PROPOSE
    started: bool = False
    locked_value: bytes | None = None  # block ids stand for values; blocks are in `blocks`
    locked_round: int = -1
    valid_value: bytes | None = None
    valid_round: int = -1
    blocks: dict[bytes, Block] = field(default_factory=dict)
    validity: dict[bytes, bool | None] = field(default_factory=dict)  # None: app asked
    proposals: dict[int, Proposal] = field(default_factory=dict)
    # Local clock when each round's proposal arrived (PBTS); absent or -1: unknown.
    proposal_received_ms: dict[int, int] = field(default_factory=dict)
    prevotes: dict[int, VoteSet] = field(default_factory=dict)
    precommits: dict[int, VoteSet] = field(default_factory=dict)
    # For L55: which validators sent anything in a round, and their power.
    round_senders: dict[int, dict[int, None]] = field(default_factory=dict)
    round_power: dict[int, int] = field(default_factory=dict)
    # "for the first time" flags of L34, L36, L47: the round they last fired in.
    prevote_timeout_round: int = -1
    l36_round: int = -1
    precommit_timeout_round: int = -1
    proposal_requested_round: int = -1
    block_needed: dict[bytes, None] = field(default_factory=dict)
    decided: Block | None = None
    decided_commit: Commit | None = None
    evidence_pool: dict[EvidenceKey, DuplicateVoteEvidence] = field(default_factory=dict)

    @staticmethod
    def for_height(
        chain: ChainState,
        last_signed: LastSigned | None = None,
        evidence_pool: dict[EvidenceKey, DuplicateVoteEvidence] | None = None,
    ) -> "EngineState":
        return EngineState(chain=chain, last_signed=last_signed, evidence_pool=evidence_pool or {})
