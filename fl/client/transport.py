"""How a client reaches the chain: a small synchronous interface, and an in-process version.

`InProcessTransport` runs an `FLApp` directly and makes a block whenever asked (or when a
client waits for a round), going through the same prepare/process/finalize/commit calls a node
makes.  The node's RPC transport implements the same Protocol over the network.
"""

from dataclasses import dataclass, field
from typing import Protocol

from consensus.app import BlockInfo, Genesis
from fl.app import FLApp
from fl.client.errors import TransportError

MEMPOOL_TXS_MAX = 100_000
BLOCK_BYTES_MAX = 512 * 1024 * 1024
BLOCK_INTERVAL_MS = 1000


@dataclass(frozen=True, slots=True)
class SubmitResult:
    accepted: bool
    reason: str = ""


class Transport(Protocol):
    def chain_id(self) -> str: ...

    def query(self, path: str) -> bytes:
        """The value at `path` (see the app's query paths); raises TransportError on failure."""
        ...

    def submit(self, tx: bytes) -> SubmitResult: ...

    def wait_for_round(self, round_number: int, blocks_max: int) -> None:
        """Return once round `round_number` is open (or later); TransportError if it never is."""
        ...


@dataclass(slots=True)
class InProcessTransport:
    genesis: Genesis
    app: FLApp = field(default_factory=FLApp)
    mempool: list[bytes] = field(default_factory=list)
    height: int = 0

    def __post_init__(self) -> None:
        self.app.init_chain(self.genesis)
        self.height = self.genesis.initial_height - 1

    def chain_id(self) -> str:
        return self.genesis.chain_id

    def query(self, path: str) -> bytes:
        result = self.app.query(path, b"")
        if not result.ok:
            raise TransportError(f"query {path}: {result.reason}")
        return result.value

    def submit(self, tx: bytes) -> SubmitResult:
        if len(self.mempool) >= MEMPOOL_TXS_MAX:
            return SubmitResult(False, "mempool full")
        check = self.app.check_tx(tx)
        if not check.ok:
            return SubmitResult(False, check.reason)
        self.mempool.append(tx)
        return SubmitResult(True)

    def produce_block(self) -> int:
        """Decide one block from the mempool; returns how many transactions it executed."""
        height = self.height + 1
        block = BlockInfo(
            chain_id=self.genesis.chain_id,
            height=height,
            time_ms=self.genesis.genesis_time_ms + height * BLOCK_INTERVAL_MS,
            proposer=self.genesis.validators[0].public_key if self.genesis.validators else b"",
        )
        txs = self.app.prepare_proposal(self.mempool, block, BLOCK_BYTES_MAX)
        if not self.app.process_proposal(txs, block):
            raise TransportError("own proposal rejected")
        self.app.finalize_block(txs, block)
        self.app.commit()
        self.height = height
        included = set(txs)
        # Drop what ran and what can never run now (stale nonce or round): re-check the rest.
        self.mempool = [
            tx for tx in self.mempool if tx not in included and self.app.check_tx(tx).ok
        ]
        return len(txs)

    def wait_for_round(self, round_number: int, blocks_max: int) -> None:
        for _ in range(blocks_max):
            if self.app.state.round >= round_number:
                return
            self.produce_block()
        if self.app.state.round < round_number:
            raise TransportError(f"round {round_number} did not open within {blocks_max} blocks")
