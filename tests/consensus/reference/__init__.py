"""An executable reference of Tendermint (arXiv 1807.04938, Algorithm 1) for model-based tests.

It is written from the paper's pseudo-code, not from `consensus/engine`: see algorithm1.py.
"""

from tests.consensus.reference.algorithm1 import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    PROPOSE,
    Message,
    Process,
    Proposal,
    Timeouts,
    Timer,
    Vote,
)

__all__ = [
    "NIL",
    "PRECOMMIT",
    "PREVOTE",
    "PROPOSE",
    "Message",
    "Process",
    "Proposal",
    "Timeouts",
    "Timer",
    "Vote",
]
