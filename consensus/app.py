"""The Application protocol the engine and the node call (ABCI-like), and its value types.

The engine decides an ordered list of transactions per height; the application gives them
meaning.  Every method is deterministic in its arguments and the application's own state:
two applications fed the same calls return byte-identical results and app hashes.

Call order on a running node, per height H:
    check_tx*            (mempool admission, any time; never changes committed state)
    prepare_proposal     (only on the proposer)
    process_proposal     (every validator, before it prevotes)
    finalize_block(H)    (once the block is decided; returns the app hash that header H+1 carries)
    commit()             (the node has stored block H; the app may now persist/expose state H)

Recovery: `info()` reports the last committed height; the node replays stored blocks above it
through finalize_block + commit.  `snapshot()`/`restore()` move whole committed states.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consensus.types import (
    CHAIN_ID_CHARS_MAX,
    HEIGHT_MAX,
    TIME_MS_MAX,
    power_problem,
)

CODE_OK = 0


@dataclass(frozen=True, slots=True)
class Event:
    """Something the app wants logged, indexed and streamed (e.g. "fl_round_closed")."""

    kind: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CheckTxResult:
    code: int = CODE_OK
    reason: str = ""
    # Who sent it and in what order, so the mempool can keep per-sender nonces in sequence.
    sender: bytes = b""
    nonce: int = 0
    # How many nonces lie between the sender's next nonce and this one (0: it can run in the
    # next block).  The mempool ranks gapped txs below executable ones and caps the gap.
    nonce_gap: int = 0
    # The tx is invalid whatever the state (undecodable, bad signature): no honest node relays
    # it, so a peer that sends one is penalized (node/txgossip.py).
    malformed: bool = False

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK


@dataclass(frozen=True, slots=True)
class TxResult:
    code: int = CODE_OK
    reason: str = ""
    events: tuple[Event, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK


@dataclass(frozen=True, slots=True)
class ValidatorUpdate:
    """Set `public_key`'s voting power; power 0 removes it.  Takes effect at H+2."""

    public_key: bytes
    power: int


@dataclass(frozen=True, slots=True)
class VoteInfo:
    """Whether a validator of the previous height's set signed the commit that decided it."""

    public_key: bytes
    power: int
    signed: bool


@dataclass(frozen=True, slots=True)
class Misbehavior:
    """Evidence committed in this block, already verified by the engine."""

    kind: str  # "duplicate_vote"
    public_key: bytes
    height: int
    power: int


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What the application learns about a block besides its transactions."""

    chain_id: str
    height: int
    time_ms: int
    proposer: bytes
    block_hash: bytes = b""
    last_commit: tuple[VoteInfo, ...] = ()
    misbehavior: tuple[Misbehavior, ...] = ()


@dataclass(frozen=True, slots=True)
class FinalizeResult:
    tx_results: tuple[TxResult, ...]
    app_hash: bytes
    validator_updates: tuple[ValidatorUpdate, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class AppInfo:
    """Where the app stands: its last height and hash (recovery), and its own unit of work (an
    FL round) with the items that unit holds so far, which the node shows and paces snapshots
    by.  Typed, so the node never parses an app-specific query answer by position."""

    last_height: int
    last_app_hash: bytes
    work_round: int = 0
    work_pending: int = 0


@dataclass(frozen=True, slots=True)
class QueryResult:
    code: int = CODE_OK
    value: bytes = b""
    reason: str = ""
    height: int = 0

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    public_key: bytes
    power: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    validators: tuple[GenesisValidator, ...]
    # Application-specific genesis state (canonical msgpack bytes, schema owned by the app).
    app_state: bytes = b""
    initial_height: int = 1
    genesis_time_ms: int = 0
    consensus_params: tuple[tuple[str, int], ...] = field(default=())

    def problem(self) -> str | None:
        """Why this genesis cannot start a chain (naming the field, and the validator and bound
        for voting powers), or None.  A bad genesis is the operator's configuration error."""
        if not 0 < len(self.chain_id) <= CHAIN_ID_CHARS_MAX:
            return f"chain_id: expected 1 to {CHAIN_ID_CHARS_MAX} characters"
        if not 1 <= self.initial_height <= HEIGHT_MAX:
            return f"initial_height: expected 1 to {HEIGHT_MAX}"
        if not 0 <= self.genesis_time_ms < TIME_MS_MAX:
            return f"genesis_time_ms: expected 0 to {TIME_MS_MAX - 1}"
        keys = [v.public_key for v in self.validators]
        if len(set(keys)) != len(keys):
            return "validators: a public key appears twice"
        problem = power_problem([(v.public_key, v.power) for v in self.validators])
        return None if problem is None else f"validators: {problem}"


class Application(Protocol):
    def init_chain(self, genesis: Genesis) -> tuple[bytes, tuple[ValidatorUpdate, ...]]:
        """Load genesis state; return the initial app hash and optional validator overrides."""
        ...

    def info(self) -> AppInfo: ...

    def check_tx(self, tx: bytes) -> CheckTxResult: ...

    def release_tx(self, tx: bytes) -> None:
        """The node's mempool refused `tx` or no longer holds it: drop anything remembered
        about it (a memo of its signature check).  Never changes state or any answer."""
        ...

    def prepare_proposal(
        self, txs: Sequence[bytes], block: BlockInfo, block_bytes_max: int
    ) -> list[bytes]: ...

    def process_proposal(self, txs: Sequence[bytes], block: BlockInfo) -> bool: ...

    def finalize_block(self, txs: Sequence[bytes], block: BlockInfo) -> FinalizeResult: ...

    def commit(self) -> None: ...

    def query(self, path: str, data: bytes) -> QueryResult: ...

    def snapshot(self) -> bytes:
        """Canonical bytes of the last committed state (restore(snapshot()) is the identity)."""
        ...

    def restore(self, snapshot: bytes) -> None: ...
