"""The driver's ports: the narrow interfaces through which the one consensus driver touches the
world.  The daemon implements them with a file, SQLite, sockets, loop timers and the wall clock
(node/consensus_shell.py); the simulator with bytes in memory and virtual time
(consensus/sim/node.py).  Every call is synchronous: a port that does slow work in the
background (the daemon's block writer) says so in its contract below.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.app import BlockInfo, FinalizeResult
from consensus.engine import ChainState, Input
from consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote

# Whoever sent an input: opaque to the driver (a PeerId in the daemon, a node index in the sim).
Peer = Hashable
Message = Proposal | Vote | DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class Decided:
    """One decided and executed height, as the store keeps it."""

    height: int
    block: Block
    commit: Commit
    info: BlockInfo
    result: FinalizeResult
    chain_after: ChainState
    snapshot: bytes | None  # the app's snapshot at this height, if the policy took one


class Wal(Protocol):
    def append(self, payload: bytes) -> None:
        """Append one record (not yet durable)."""

    def sync(self) -> None:
        """Make every appended record durable."""

    def end_height(self, height: int, carry: Sequence[bytes], may_rotate: bool) -> None:
        """Mark block `height` durably stored; if `may_rotate` (nothing of a later height is in
        the log) the log may be rewritten to `carry` + the marker."""

    def rotation_due(self) -> bool:
        """The log has outgrown its budget (the driver then rotates at the next height)."""


class Store(Protocol):
    def save_block(self, decided: Decided) -> None:
        """Store block, commit, results and `chain_after` atomically, then the snapshot.  May
        finish in the background; heights arrive strictly in order."""

    def wait_stored(self) -> None:
        """Return once every save_block so far is durable (raise if the store failed)."""

    def durable_height(self) -> int:
        """The highest height whose save_block is durable."""


class App(Protocol):
    """The application (and, in the daemon, the mempool) as the driver uses it."""

    def prepare(self, info: BlockInfo) -> tuple[bytes, ...]:
        """Txs for our proposal (`info.time_ms` is our clock reading)."""

    def validate(self, block: Block, info: BlockInfo) -> bool: ...

    def finalize(self, block: Block, info: BlockInfo) -> FinalizeResult: ...

    def commit(self, block: Block) -> None:
        """Commit the finalized block in memory (the store's snapshot is its durable form)."""

    def pending_updates(self) -> int:
        """Updates an open FL round holds (0 for other apps): the snapshot policy's input."""

    def snapshot(self) -> bytes: ...


class Net(Protocol):
    def broadcast(self, message: Message) -> None: ...

    def send(self, peer: Peer, message: Message) -> None: ...

    def behind(self, height: int) -> None:
        """A peer is at `height` or a decided block is missing: wake block sync."""


class Timers(Protocol):
    def schedule(self, delay_ms: int, inp: Input) -> None:
        """Feed `inp` back to the driver (Driver.feed) after `delay_ms`."""


class Clock(Protocol):
    def now_ms(self) -> int: ...


class Telemetry(Protocol):
    def signed(self, message: Proposal | Vote, replayed: bool) -> None:
        """A message we signed leaves the process (durable first); `replayed`: re-signed by
        replay after a restart."""

    def sign_refused(self, height: int, round_: int, step: int) -> None: ...

    def round_started(self, height: int, round_: int, proposer: bytes) -> None: ...

    def evidence_found(self, evidence: DuplicateVoteEvidence) -> None: ...

    def proposal_rejected(self, height: int) -> None: ...

    def committed(self, decided: Decided) -> None: ...

    def replayed(self, height: int, records: int) -> None: ...


class Penalizer(Protocol):
    def penalize(self, peer: Peer | None, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Ports:
    wal: Wal
    store: Store
    app: App
    net: Net
    timers: Timers
    clock: Clock
    telemetry: Telemetry
    penalizer: Penalizer
