"""The daemon's consensus shell, killed and restarted on its real files (cs.wal, the SQLite
store): it comes back with its lock, and a crash while a decided block was still being written
in the background loses nothing.  Driven only through the shell's public surface (recover, run,
on_peer_message, state), as a node's peers would."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from consensus.app import Application, CheckTxResult, Genesis
from consensus.crypto import PrivateKey
from consensus.engine import STEP_PRECOMMIT
from consensus.kvapp import KVApp
from consensus.types import PRECOMMIT, PREVOTE, Block, encode_message
from node.config import NodeConfig
from node.consensus_shell import ConsensusShell
from node.errors import StorageError
from node.events import EventBus
from node.mempool import Mempool
from node.metrics import NodeMetrics
from node.p2p.connmgr import PeerClass
from node.p2p.peer_id import Identity, PeerId
from node.store.sqlite import BlockStore
from node.txgossip import TxGossip
from node.wal import Wal
from node.wire import ConsensusMsg
from tests.consensus.harness import GENESIS, KEYS, make_block, proposal, proposer, vote

PEER = Identity.from_seed(b"\x07" * 32).peer_id


def _me() -> int:
    busy = {proposer(0).public_key, proposer(1).public_key}
    return next(i for i, k in enumerate(KEYS) if k.public_key not in busy)


class _Host:
    """The two questions the shell's message budget asks of the p2p host."""

    def peer_class(self, peer: PeerId) -> PeerClass:
        return PeerClass.VALIDATOR

    def is_banned(self, peer: PeerId) -> bool:
        return False


class _Network:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.host = _Host()

    def on_peer_change(self, callback: Callable[[PeerId, bool], None]) -> None:
        return

    def broadcast(self, msg: Any) -> None:
        self.sent.append(msg)

    def send(self, peer: PeerId, msg: Any) -> None:
        self.sent.append(msg)

    def peers(self) -> list[PeerId]:
        return []


class _FailingStore(BlockStore):
    """A store whose write of `fail_height` never becomes durable (the process dies first)."""

    fail_height = 0

    def save_block(self, height: int, *args: Any, **kwargs: Any) -> None:
        if height == self.fail_height:
            raise StorageError("killed before the block was durable")
        super().save_block(height, *args, **kwargs)


@dataclass
class _Node:
    """What the shell reads from the node that composes it."""

    home: Path
    validator_key: PrivateKey
    store_class: type[BlockStore] = BlockStore
    cfg: NodeConfig = field(default_factory=NodeConfig)
    genesis: Genesis = GENESIS
    metrics: NodeMetrics = field(default_factory=NodeMetrics)
    events: EventBus = field(default_factory=lambda: EventBus(4, 16))
    penalized: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = self.store_class(self.home / "store.db", fsync=False)
        self.app: Application = KVApp()
        self.mempool = Mempool(self._check, txs_max=100, bytes_max=1 << 20, tx_bytes_max=1 << 16)
        self.gossip: TxGossip | None = None

    @staticmethod
    def _check(tx: bytes) -> CheckTxResult:
        return CheckTxResult()

    def penalize(self, peer: PeerId, reason: str, severe: bool = False) -> None:
        self.penalized.append(reason)

    def sync_hint(self, height: int) -> None:
        return None


class _Life:
    """One run of the shell on the node's files, until it is killed."""

    def __init__(self, home: Path, store_class: type[BlockStore] = BlockStore) -> None:
        self.node = _Node(home, KEYS[_me()], store_class)
        self.wal = Wal(home / "cs.wal")
        self.shell = ConsensusShell(self.node, self.wal, self.wal.open())
        self.shell.recover()
        self.task = asyncio.get_running_loop().create_task(self.shell.run(_Network()))  # type: ignore[arg-type]

    def hear(self, *messages: Any) -> None:
        for m in messages:
            self.shell.on_peer_message(PEER, ConsensusMsg(encode_message(m)))

    async def until(self, done: Callable[[], bool]) -> None:
        for _ in range(300):
            if done() or self.task.done():
                return
            await asyncio.sleep(0.01)

    async def kill(self) -> None:
        """kill -9: nothing is flushed or closed (what the OS already has stays)."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _timely(block: Block) -> Block:
    # Proposer-based timestamps: a block the node receives now must carry about now's time.
    return replace(block, header=replace(block.header, time_ms=time.time_ns() // 1_000_000))


def _others() -> list[PrivateKey]:
    return [k for i, k in enumerate(KEYS) if i != _me()]


async def test_a_killed_validator_restarts_locked_on_its_block(tmp_path: Path) -> None:
    first = _Life(tmp_path)
    block = _timely(make_block(proposer(0)))
    first.hear(proposal(0, block), *(vote(k, PREVOTE, 0, block.id()) for k in _others()[:2]))
    await first.until(lambda: first.shell.state.step == STEP_PRECOMMIT)
    assert first.shell.state.locked_value == block.id()
    await first.kill()

    second = _Life(tmp_path)
    await second.until(lambda: second.shell.state.locked_round == 0)
    state = second.shell.state
    assert (state.locked_round, state.locked_value) == (0, block.id())
    me = state.chain.validators.index(KEYS[_me()].public_key)
    assert me in state.prevotes[0].votes  # our own prevote counts towards the quorum again
    assert second.shell.double_sign_refusals == 0
    await second.kill()


async def test_a_crash_while_the_decided_block_is_written_loses_nothing(tmp_path: Path) -> None:
    # Height 1 decides and is stored; height 2 decides but its block never reaches the disk.
    _FailingStore.fail_height = 2
    first = _Life(tmp_path, _FailingStore)
    others = _others()
    chain = first.shell.state.chain
    block1 = _timely(make_block(proposer(0), chain=chain))
    first.hear(proposal(0, block1))
    first.hear(*(vote(k, PREVOTE, 0, block1.id()) for k in others[:2]))
    first.hear(*(vote(k, PRECOMMIT, 0, block1.id()) for k in others[:2]))
    await first.until(lambda: first.shell.state.chain.height == 2)
    assert first.shell.state.chain.height == 2
    chain2 = first.shell.state.chain
    block2 = _timely(make_block(proposer(0, chain2), txs=(b"two=2",), chain=chain2))
    first.hear(replace(proposal(0, block2, key=proposer(0, chain2), height=2)))
    first.hear(*(vote(k, PREVOTE, 0, block2.id(), height=2) for k in others[:2]))
    first.hear(*(vote(k, PRECOMMIT, 0, block2.id(), height=2) for k in others[:2]))
    await first.until(lambda: first.shell.state.chain.height == 3)
    await first.kill()
    assert first.node.store.height == 1

    second = _Life(tmp_path)
    await second.until(lambda: second.shell.state.chain.height == 3)
    # Height 2 was decided again from the WAL and stored; nothing had to be refused.
    assert second.shell.state.chain.height == 3
    assert second.shell.double_sign_refusals == 0
    await second.kill()
    second.shell.close()
    assert second.node.store.height == 2


@pytest.fixture(autouse=True)
def _reset_failing_store() -> None:
    _FailingStore.fail_height = 0


def test_every_consensus_setting_of_the_node_config_reaches_the_engine() -> None:
    from dataclasses import fields as dataclass_fields

    from node.config import ConsensusConfig
    from node.consensus_shell import engine_config

    # Distinct values per field, so a setting mapped to the wrong engine field shows too.
    # The driver's, and the peer message budget's (node/msgbudget.py), not the engine's.
    node_only = {
        "commit_timeout_ms",
        "create_empty_blocks",
        "create_empty_blocks_interval_ms",
        "peer_budget_margin",
        "peer_abusive_messages_max",
    }
    names = [f.name for f in dataclass_fields(ConsensusConfig) if f.name not in node_only]
    cfg = ConsensusConfig(**{name: 1_000 + 7 * i for i, name in enumerate(names)})
    engine = engine_config(cfg)
    assert {name: getattr(engine, name) for name in names} == {
        name: getattr(cfg, name) for name in names
    }
