"""The root exception of the fl package and its two families.

`RejectedError` means input from outside (a transaction, a genesis file, a query) is wrong: it
carries a reason a person can read, the caller turns it into a non-zero result code, and the
state is left exactly as it was.  `FLInvariantError` means our own state is broken and is raised.
"""


class FLError(Exception):
    """Root of every error raised by the fl package."""


class RejectedError(FLError):
    """A transaction or other outside input is invalid; `str(err)` is the reason."""


class FLInvariantError(FLError):
    """One of the state machine's own invariants does not hold: a bug, never a client's fault."""
