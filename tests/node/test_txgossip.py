"""Tx pulls over two real Hosts: a batch larger than one answer's byte cap still arrives whole."""

import asyncio

import pytest

from consensus.app import CheckTxResult
from node.mempool import Mempool, tx_hash
from node.network import Network
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.txgossip import TxGossip
from node.wire import GetTxs, Message, TxAnnounce, TxPush, Txs

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


@pytest.mark.parametrize("urgent", [False, True])
async def test_fetch_collects_a_batch_larger_than_one_answer(urgent: bool) -> None:
    """Also on the urgent protocol (answers in the high class), which reassembly uses."""
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
            found = await gossip_a.fetch(host_b.peer_id, [tx_hash(tx) for tx in txs], urgent)
        assert found == {tx_hash(tx): tx for tx in txs}
        assert sum(map(len, txs)) > RESPONSE_BYTES_MAX


async def test_a_large_submitted_tx_is_pushed_to_peers_without_a_pull() -> None:
    """The origin pushes an FL-sized tx straight to its peers; a peer that admits it announces
    it to its other peers (here: none but the origin, which already holds it)."""
    async with (
        Host(Identity.from_seed(b"c" * 32)) as host_a,
        Host(Identity.from_seed(b"d" * 32)) as host_b,
    ):
        txs = [f"u{i}=".encode() + bytes([65 + i]) * TX_BYTES for i in range(3)]
        (mempool_a, gossip_a, _), (mempool_b, gossip_b, all_in_b) = [
            _pushing_node(host, len(txs)) for host in (host_a, host_b)
        ]
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        for tx in txs:
            gossip_a.submit(tx)
        async with asyncio.timeout(20):
            await all_in_b.wait()
        assert all(tx_hash(tx) in mempool_b for tx in txs)
        assert gossip_b.pulled_bytes == gossip_a.pulled_bytes == 0
        assert len(mempool_a) == len(txs)


def _pushing_node(host: Host, expect: int) -> tuple[Mempool, TxGossip, asyncio.Event]:
    """A node wired like the real one; the event is set once `expect` txs are in its mempool."""
    full = asyncio.Event()
    mempool = Mempool(
        lambda _tx: CheckTxResult(), txs_max=100, bytes_max=1 << 22, tx_bytes_max=1 << 20
    )
    gossips: list[TxGossip] = []

    def on_message(peer: PeerId, msg: Message) -> None:
        match msg:
            case TxPush(tx):
                gossips[0].on_push(peer, (tx,))
            case Txs(txs):
                gossips[0].on_push(peer, txs)
            case TxAnnounce(hashes):
                assert not gossips[0].on_announce(peer, hashes), "announced a tx it lacks"

    async def answer(_peer: PeerId, msg: Message) -> Message:
        assert isinstance(msg, GetTxs)
        return gossips[0].serve_get_txs(msg)

    network = Network(
        host,
        "test-chain",
        on_message=on_message,
        on_request=answer,
        on_invalid=lambda _p, _r: None,
        frame_bytes_max=1 << 20,
        queue_bytes_max=1 << 22,
    )
    network.start()
    gossip = TxGossip(
        mempool,
        network,
        1024,
        5_000,
        RESPONSE_BYTES_MAX,
        on_admitted=lambda _tx: full.set() if len(mempool) >= expect else None,
        lookup=mempool.get,
    )
    gossips.append(gossip)
    return mempool, gossip, full
