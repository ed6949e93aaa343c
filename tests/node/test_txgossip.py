"""Tx pulls over two real Hosts: a batch larger than one answer's byte cap still arrives whole."""

import asyncio

from consensus.app import CheckTxResult
from node.mempool import Mempool, tx_hash
from node.network import Network
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.txgossip import TxGossip
from node.wire import GetTxs, Message

RESPONSE_BYTES_MAX = 64 * 1024
TX_BYTES = 20 * 1024  # three fit in one answer, so ten need several requests


def _node(host: Host) -> tuple[Mempool, TxGossip]:
    # Any app will do: the pull path is what is under test, so every tx is admissible.
    mempool = Mempool(
        lambda _tx: CheckTxResult(), txs_max=100, bytes_max=1 << 22, tx_bytes_max=1 << 20
    )
    gossips: list[TxGossip] = []

    async def answer(_peer: PeerId, msg: Message) -> Message:
        assert isinstance(msg, GetTxs)
        return gossips[0].serve_get_txs(msg)

    network = Network(
        host,
        "test-chain",
        on_message=lambda _p, _m: None,
        on_request=answer,
        on_invalid=lambda _p, _r: None,
        frame_bytes_max=1 << 20,
        queue_bytes_max=1 << 22,
    )
    network.start()
    gossip = TxGossip(mempool, network, 1024, 5_000, RESPONSE_BYTES_MAX, lookup=mempool.get)
    gossips.append(gossip)
    return mempool, gossip


async def test_fetch_collects_a_batch_larger_than_one_answer() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"b" * 32)) as host_b,
    ):
        _, gossip_a = _node(host_a)
        mempool_b, _ = _node(host_b)
        txs = [f"k{i}=".encode() + bytes([97 + i]) * TX_BYTES for i in range(10)]
        for tx in txs:
            mempool_b.add(tx)
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        assert host_a.is_connected(host_b.peer_id)
        async with asyncio.timeout(20):
            found = await gossip_a.fetch(host_b.peer_id, [tx_hash(tx) for tx in txs])
        assert found == {tx_hash(tx): tx for tx in txs}
        assert sum(map(len, txs)) > RESPONSE_BYTES_MAX
