"""The root exception of the consensus package and its two families.

`RemoteError` subclasses describe something a peer or client sent us that is wrong: the shell
logs it, drops the input and may penalize the sender, but never crashes.  `InvariantError` means
our own state is broken: it is raised, never swallowed.
"""


class ConsensusError(Exception):
    """Root of every error raised by the consensus package."""


class RemoteError(ConsensusError):
    """Input from outside (peer, client, disk written by someone else) is invalid."""


class CodecError(RemoteError):
    """Bytes do not decode to a canonical, in-bounds value."""


class InvariantError(ConsensusError):
    """One of our own invariants does not hold: a bug, never a peer's fault."""


class ValidatorUpdateError(InvariantError):
    """The application returned validator updates that break a voting power bound: the app's
    invariant is broken (the chain cannot apply them), never a peer's doing."""


class GenesisError(ConsensusError):
    """The genesis (operator configuration) is invalid: the node refuses to start."""


class InvalidMessage(RemoteError):
    """A signed consensus message (proposal, vote, evidence) or block is invalid."""


class CommitError(RemoteError):
    """A commit certificate does not prove its block with 2/3+ of the voting power."""
