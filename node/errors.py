"""The root exception of the node package.

Like consensus/errors.py, errors split into what the outside did wrong (a client's bad request,
a peer's bad message: answered, logged, penalized, never a crash) and our own broken state (a
corrupted WAL in the middle, a store that disagrees with itself: the node halts with a clear
message rather than guessing).
"""


class NodeError(Exception):
    """Root of every error raised by the node package."""


class ConfigError(NodeError):
    """A config, key or genesis file is missing or invalid; the message names the field."""


class StorageError(NodeError):
    """The block store or a state file is inconsistent or could not be written."""


class WalCorruptError(StorageError):
    """A record in the middle of the consensus WAL fails its checksum: the node must not start."""


class CorruptBlockError(StorageError):
    """A stored block body is cut short or fails its sha256 check: never serve it; fetch it
    again from peers (node/store/sqlite.py)."""

    def __init__(self, height: int, detail: str) -> None:
        super().__init__(f"block {height}: {detail}")
        self.height = height
        self.detail = detail


class MempoolError(NodeError):
    """A transaction was refused by the mempool; `reason` says why in words a person can read."""

    def __init__(self, reason: str, code: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SyncError(NodeError):
    """A peer served blocks or commits that do not verify."""
