"""Memory budgets for what peers can make us hold: per connection, per peer class, per node.

Theory of operation.  What a peer can make us buffer is what we promise it: yamux credit
(every stream starts with 256 KiB the peer may send unasked, and grows only by the window
updates we send) plus the bytes it sent that the application has not read yet.  Each
connection has a `Ledger` that counts exactly that (promised + unread), chained to the ledger
of its peer class (strangers share one; validators and persistent peers, the protected
classes, share another) and to the node's.  Credit is granted only if every ledger up the
chain has room, so a peer can never hold more than the smallest budget on its chain, and
strangers together never more than theirs: the rest of the node budget is reserved for
protected peers.  When a ledger is full a stream simply gets no more credit (its sender
waits, as flow control intends); a frame that then cannot complete times out and costs the
peer (node/network.py), and a peer that sends beyond its credit breaks the protocol and is
disconnected (yamux.py).  Nothing here allocates: it is bookkeeping, pure and synchronous.
"""

from dataclasses import dataclass

from node.p2p.errors import InvariantError

MiB = 1024 * 1024


class Ledger:
    """Bytes held against a limit, charged to `parent` as well (if any)."""

    __slots__ = ("limit_bytes", "name", "parent", "peak_bytes", "used_bytes")

    def __init__(self, name: str, limit_bytes: int, parent: "Ledger | None" = None) -> None:
        if limit_bytes <= 0:
            raise InvariantError(f"budget {name}: limit must be positive, got {limit_bytes}")
        self.name = name
        self.limit_bytes = limit_bytes
        self.parent = parent
        self.used_bytes = 0
        self.peak_bytes = 0

    def available(self) -> int:
        """Bytes that can still be reserved here and in every ledger above."""
        room = self.limit_bytes - self.used_bytes
        ledger = self.parent
        while ledger is not None:
            room = min(room, ledger.limit_bytes - ledger.used_bytes)
            ledger = ledger.parent
        return max(room, 0)

    def reserve_up_to(self, n: int) -> int:
        """Reserve as much of `n` as fits everywhere up the chain; returns what was reserved."""
        granted = min(n, self.available())
        if granted > 0:
            self._add(granted)
        return max(granted, 0)

    def try_reserve(self, n: int) -> bool:
        """Reserve all of `n` or nothing."""
        if n > self.available():
            return False
        self._add(n)
        return True

    def release(self, n: int) -> None:
        if n < 0 or n > self.used_bytes:
            raise InvariantError(f"budget {self.name}: release {n} of {self.used_bytes} held")
        ledger: Ledger | None = self
        while ledger is not None:
            ledger.used_bytes -= n
            ledger = ledger.parent

    def _add(self, n: int) -> None:
        ledger: Ledger | None = self
        while ledger is not None:
            ledger.used_bytes += n
            ledger.peak_bytes = max(ledger.peak_bytes, ledger.used_bytes)
            ledger = ledger.parent


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Inbound bytes (yamux credit granted + received and unread) we let peers hold."""

    node_bytes_max: int = 1024 * MiB
    # All strangers together; the rest of node_bytes_max is reserved for protected peers.
    strangers_bytes_max: int = 256 * MiB
    # One connection: large enough for the biggest message the class may send us (a block
    # sync response from a validator; a pushed or pulled tx from a stranger) plus the windows
    # of the other streams meanwhile.
    protected_connection_bytes_max: int = 160 * MiB
    stranger_connection_bytes_max: int = 40 * MiB

    def __post_init__(self) -> None:
        for name in (
            "node_bytes_max",
            "strangers_bytes_max",
            "protected_connection_bytes_max",
            "stranger_connection_bytes_max",
        ):
            if getattr(self, name) <= 0:
                raise InvariantError(f"BudgetLimits.{name} must be positive")
        if self.strangers_bytes_max > self.node_bytes_max:
            raise InvariantError("strangers_bytes_max exceeds node_bytes_max")
        if self.stranger_connection_bytes_max > self.strangers_bytes_max:
            raise InvariantError("stranger_connection_bytes_max exceeds strangers_bytes_max")
        if self.protected_connection_bytes_max > self.node_bytes_max:
            raise InvariantError("protected_connection_bytes_max exceeds node_bytes_max")


class MemoryBudget:
    """The node's ledgers; `connection(protected)` makes the ledger of one new connection."""

    __slots__ = ("limits", "node", "protected", "strangers")

    def __init__(self, limits: BudgetLimits) -> None:
        self.limits = limits
        self.node = Ledger("node", limits.node_bytes_max)
        self.strangers = Ledger("strangers", limits.strangers_bytes_max, self.node)
        self.protected = Ledger("protected", limits.node_bytes_max, self.node)

    def connection(self, protected: bool, name: str = "connection") -> Ledger:
        if protected:
            return Ledger(name, self.limits.protected_connection_bytes_max, self.protected)
        return Ledger(name, self.limits.stranger_connection_bytes_max, self.strangers)
