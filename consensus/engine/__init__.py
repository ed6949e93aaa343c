"""The Tendermint engine: pure `Engine.apply(state, input) -> (state, effects)`.

Import the API from here: inputs, effects, EngineState/ChainState/LastSigned, EngineConfig,
Signer/KeySigner and Engine.
"""

from consensus.engine.chain import EVIDENCE_AGE_HEIGHTS, ChainState, LastSigned
from consensus.engine.config import MUTANTS, EngineConfig, KeySigner, Signer
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
from consensus.engine.engine import Engine
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

__all__ = [
    "EVIDENCE_AGE_HEIGHTS",
    "MUTANTS",
    "STEP_COMMIT",
    "STEP_PRECOMMIT",
    "STEP_PREVOTE",
    "STEP_PROPOSE",
    "BlockExecuted",
    "BlockNeeded",
    "BlockSynced",
    "BlockValidated",
    "Broadcast",
    "ChainState",
    "Decide",
    "Effect",
    "Engine",
    "EngineConfig",
    "EngineState",
    "EvidenceFound",
    "EvidenceReceived",
    "Input",
    "KeySigner",
    "LastSigned",
    "PeerAhead",
    "PeerMisbehaved",
    "PersistLastSigned",
    "ProposalContent",
    "ProposalReceived",
    "RequestProposal",
    "RestoreLastSigned",
    "RoundStarted",
    "ScheduleTimeout",
    "SignRefused",
    "Signer",
    "Start",
    "TimeoutFired",
    "ValidateBlock",
    "VoteReceived",
    "VoteSet",
]
