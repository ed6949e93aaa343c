"""Tx pulls over two real Hosts: a batch larger than one answer's byte cap still arrives whole."""

import asyncio

import pytest

from consensus.app import CheckTxResult
from node.mempool import Mempool, tx_hash
from node.network import Network
from node.p2p.gossipsub.router import Validation
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.txgossip import TxGossip
from node.wire import GetTxs, Message, TxAnnounce, TxPush, Txs, encode_message

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


# -- scoring (issue 13, attack 5: bad-signature pushes were never penalized) ----------------------


class _NoNetwork:
    """validate_gossip and small pushes never touch the network."""

    def peers(self) -> list[PeerId]:
        return []


def _rules(tx: bytes) -> CheckTxResult:
    if tx.startswith(b"forged"):  # e.g. a bad signature: invalid in every state
        return CheckTxResult(code=1, reason="bad signature", malformed=True)
    if tx.startswith(b"stale"):  # e.g. a nonce already used: depends on the state
        return CheckTxResult(code=2, reason="nonce 3 already used")
    return CheckTxResult()


def _scored_gossip() -> tuple[Mempool, TxGossip, list[tuple[PeerId, str]]]:
    mempool = Mempool(_rules, txs_max=100, bytes_max=1 << 20, tx_bytes_max=1 << 16)
    penalties: list[tuple[PeerId, str]] = []
    gossip = TxGossip(
        mempool,
        _NoNetwork(),  # type: ignore[arg-type]
        1024,
        5_000,
        1 << 20,
        penalize=lambda peer, reason: penalties.append((peer, reason)),
    )
    return mempool, gossip, penalties


PEER = Identity.from_seed(b"\x07" * 32).peer_id


def test_a_gossiped_batch_with_an_invalid_tx_is_rejected_and_its_sender_penalized() -> None:
    mempool, gossip, penalties = _scored_gossip()
    verdict = gossip.validate_gossip(PEER, encode_message(Txs((b"good tx", b"forged tx"))))
    assert verdict is Validation.REJECT  # the router's P4 for the sender, and no relay
    assert penalties == [(PEER, "gossiped an invalid tx")]
    assert tx_hash(b"good tx") in mempool  # the valid part is still used
    assert gossip.invalid_from_peers == 1


def test_txs_refused_for_reasons_of_state_cost_the_sender_nothing() -> None:
    """Nodes differ by a block: a nonce one node saw used may still be open on another."""
    _, gossip, penalties = _scored_gossip()
    assert gossip.validate_gossip(PEER, encode_message(TxPush(b"stale tx"))) is Validation.IGNORE
    gossip.on_push(PEER, (b"stale tx 2",))
    assert gossip.validate_gossip(PEER, encode_message(TxPush(b"new tx"))) is Validation.ACCEPT
    assert gossip.validate_gossip(PEER, encode_message(TxPush(b"new tx"))) is Validation.IGNORE
    assert penalties == []


def test_a_direct_push_of_invalid_txs_is_penalized_once_per_message() -> None:
    _, gossip, penalties = _scored_gossip()
    gossip.on_push(PEER, (b"forged 1", b"forged 2", b"forged 3"))
    gossip.on_push(PEER, (b"forged 4",))
    assert penalties == [(PEER, "pushed an invalid tx")] * 2


def test_the_fl_app_marks_forged_and_undecodable_txs_malformed_but_not_stale_ones() -> None:
    import numpy as np

    from tests.fl.helpers import SIZE, key, new_app, update_tx

    app = new_app()
    good = update_tx(app, key(0), np.zeros(SIZE, dtype=np.int64))
    forged = bytearray(good)
    forged[-1] ^= 1  # the signature's last byte
    assert app.check_tx(good).ok
    assert app.check_tx(bytes(forged)).malformed
    assert app.check_tx(b"\x93\x01\x02\x03").malformed
    too_far = update_tx(app, key(0), np.zeros(SIZE, dtype=np.int64), nonce=40)
    stale_round = update_tx(app, key(1), np.zeros(SIZE, dtype=np.int64), round_number=7)
    for tx in (too_far, stale_round):
        result = app.check_tx(tx)
        assert not result.ok
        assert not result.malformed
