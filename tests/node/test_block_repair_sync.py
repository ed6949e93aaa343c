"""Block sync repairs a damaged body over real sockets, from the right peer only.

Four real Hosts on loopback.  The victim's real BlockStore holds blocks 1-3 and block 2's body
is then damaged in its blocks.dat; a read finds it.  A liar answers GetBlocks with block 2's
header over other txs, a second peer has no blocks at all, an honest one answers from its own
real store.  With only the liar and the empty peer around, the liar is penalized every time
it is asked, the empty one never, and nothing is rewritten; once the honest peer reports the
height, the victim's body is back byte for byte and served again.
"""

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from consensus.types import (
    Block,
    Commit,
    Header,
    commit_hash,
    encode_block,
    encode_commit,
    evidence_hash,
    txs_hash,
)
from node.config import SyncConfig
from node.errors import CorruptBlockError, SyncError
from node.network import Network
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.store.sqlite import BlockStore
from node.sync import BlockSync, repair_stored_body
from node.wire import Blocks, GetBlocks, Message, Status

HEIGHTS = 3
DAMAGED = 2


def chain() -> list[tuple[Block, bytes]]:
    """Blocks 1..HEIGHTS with consistent headers, each with a commit for its id."""
    out: list[tuple[Block, bytes]] = []
    last_id, last_commit = b"", None
    for height in range(1, HEIGHTS + 1):
        txs = tuple(f"tx-{height}-{i}".encode() * 50 for i in range(3))
        header = Header(
            chain_id="test-chain",
            height=height,
            time_ms=1_000 * height,
            last_block_id=last_id,
            last_commit_hash=commit_hash(last_commit),
            data_hash=txs_hash(txs),
            evidence_hash=evidence_hash(()),
            validators_hash=b"v" * 32,
            next_validators_hash=b"v" * 32,
            app_hash=bytes([height]) * 32,
            proposer=b"p" * 32,
        )
        block = Block(header, txs, (), last_commit)
        commit = Commit(height, 0, block.id(), ())
        out.append((block, encode_commit(commit)))
        last_id, last_commit = block.id(), commit
    return out


def filled_store(path: Path, blocks: list[tuple[Block, bytes]]) -> BlockStore:
    store = BlockStore(path)
    for block, commit in blocks:
        h = block.header.height
        store.save_block(h, block.id(), encode_block(block), commit, b"r", b"a" * 32, h, [])
    return store


class VictimPorts:
    """What service.py's _SyncPorts gives block sync, over a real store (never lagging)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self.penalties: list[tuple[PeerId, str]] = []

    def committed_height(self) -> int:
        return HEIGHTS

    async def apply_block(self, block: bytes, commit: bytes) -> bool:
        raise SyncError("the victim is not behind: nothing should be applied")

    def announce(self) -> None:
        pass

    def penalize(self, peer: PeerId, reason: str) -> None:
        self.penalties.append((peer, reason))

    def set_syncing(self, syncing: bool) -> None:
        pass

    def damaged_heights(self) -> list[int]:
        return self.store.damaged()

    async def repair_body(self, height: int, body: bytes) -> str | None:
        return await repair_stored_body(self.store, height, body)


def endpoint(
    host: Host,
    answer: Callable[[GetBlocks], Blocks],
    on_message: Callable[[PeerId, Message], None] = lambda _p, _m: None,
) -> Network:
    async def on_request(_peer: PeerId, msg: Message) -> Message:
        assert isinstance(msg, GetBlocks), msg
        return answer(msg)

    net = Network(
        host,
        "test-chain",
        on_message=on_message,
        on_request=on_request,
        on_invalid=lambda _p, reason: pytest.fail(f"invalid message: {reason}"),
        frame_bytes_max=1 << 20,
        queue_bytes_max=1 << 20,
    )
    net.start()
    return net


async def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_a_damaged_body_is_refetched_from_the_peer_that_has_it(tmp_path: Path) -> None:
    blocks = chain()
    good = encode_block(blocks[DAMAGED - 1][0])
    victim_store = filled_store(tmp_path / "victim" / "blocks.sqlite", blocks)
    honest_store = filled_store(tmp_path / "honest" / "blocks.sqlite", blocks)
    offset = len(encode_block(blocks[0][0]))
    bodies = tmp_path / "victim" / "blocks.dat"
    raw = bytearray(bodies.read_bytes())
    raw[offset + 10] ^= 0x01
    bodies.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError):
        victim_store.block(DAMAGED)  # the read that finds it (RPC, a peer's GetBlocks, ...)
    assert victim_store.damaged() == [DAMAGED]

    block = blocks[DAMAGED - 1][0]
    forged = encode_block(dataclasses.replace(block, txs=(b"forged",)))

    def honest_answer(req: GetBlocks) -> Blocks:
        stored = honest_store.blocks(req.start, req.count, 1 << 20)
        return Blocks(tuple((b.data, b.commit_data) for b in stored))

    ports = VictimPorts(victim_store)
    async with (
        Host(Identity.from_seed(b"v" * 32)) as victim_host,
        Host(Identity.from_seed(b"l" * 32)) as liar_host,
        Host(Identity.from_seed(b"e" * 32)) as empty_host,
        Host(Identity.from_seed(b"h" * 32)) as honest_host,
    ):
        sync: BlockSync | None = None

        def on_status(peer: PeerId, msg: Message) -> None:
            if isinstance(msg, Status) and sync is not None:
                sync.on_status(peer, msg.height, msg.base)

        victim = endpoint(victim_host, honest_answer, on_status)
        liar = endpoint(liar_host, lambda _req: Blocks(((forged, blocks[DAMAGED - 1][1]),)))
        empty = endpoint(empty_host, lambda _req: Blocks(()))
        honest = endpoint(honest_host, honest_answer)
        sync = BlockSync(ports, victim, SyncConfig(status_interval_ms=20), 5_000)
        addr = await victim_host.listen("127.0.0.1", 0)
        for host in (liar_host, empty_host, honest_host):
            await host.dial(addr)
        await eventually(lambda: len(victim.peers()) == 3, "all three peers connected")
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(sync.run())
            for net in (liar, empty):
                net.send(victim_host.peer_id, Status(HEIGHTS, 1))
            await eventually(lambda: len(ports.penalties) >= 2, "the liar penalized twice")
            assert {peer for peer, _ in ports.penalties} == {liar_host.peer_id}
            assert "does not match the transactions" in ports.penalties[0][1]
            assert victim_store.damaged() == [DAMAGED]  # the forgery was not written

            honest.send(victim_host.peer_id, Status(HEIGHTS, 1))
            await eventually(lambda: victim_store.damaged() == [], "the body repaired")
            running.cancel()
        assert empty_host.peer_id not in {peer for peer, _ in ports.penalties}
        assert honest_host.peer_id not in {peer for peer, _ in ports.penalties}

    repaired = victim_store.block(DAMAGED)
    assert repaired is not None
    assert repaired.data == good
    assert victim_store.verify_tail() == []
    victim_store.close()
    honest_store.close()
