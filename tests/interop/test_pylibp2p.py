"""Interoperability with the real py-libp2p 0.8.1, running in a separate (trio) process.

What was configured on py-libp2p (libp2p_peer.py): an ed25519 identity; Noise + yamux (its
defaults); gossipsub /meshsub/1.1.0 only, D=6/4/12, 1 s heartbeat, StrictSign with
from+seqno message ids (its default); max inbound RPC raised from 1 MiB to 64 MiB; outbound
per-peer RpcQueue raised from 32 RPCs to 100,000; its per-topic spam limit (10 msg/s) off.
Everything else is py-libp2p's default.
"""

import asyncio

import pytest

from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import MESHSUB_V11, MESHSUB_V12
from node.p2p.gossipsub.rpc import PubMessage, encode_message_field
from node.p2p.gossipsub.service import GossipSub
from node.p2p.host import Host
from node.p2p.peer_id import PeerId
from tests.interop.peer_process import LibP2PPeer
from tests.p2p.conftest import identity

pytestmark = pytest.mark.interop
TOPIC = "interop"


async def test_we_dial_py_libp2p_identify_and_ping_both_ways(pylibp2p: LibP2PPeer) -> None:
    async with Host(identity("dialer")) as host:
        await host.listen()
        peer = await host.dial(pylibp2p.addr)
        assert str(peer) == pylibp2p.peer
        conn = await host.identify(peer)
        assert conn.agent_version.startswith("py-libp2p/")
        assert {"/ipfs/ping/1.0.0", "/ipfs/id/1.0.0", MESHSUB_V11} <= conn.protocols
        assert conn.initiator
        assert await host.ping(peer) > 0
        # py-libp2p pings us and learns our protocols through identify.
        pylibp2p.send("ping", peer=str(host.peer_id))
        pong = await pylibp2p.expect("pong")
        assert len(pong["rtts"]) == 1
        pylibp2p.send("protocols", peer=str(host.peer_id))
        protocols = await pylibp2p.expect("protocols")
        assert "/ipfs/ping/1.0.0" in protocols["protocols"]


async def test_py_libp2p_dials_us_identify_and_ping_both_ways(pylibp2p: LibP2PPeer) -> None:
    async with Host(identity("listener")) as host:
        addr = await host.listen()
        pylibp2p.send("dial", addr=str(addr))
        await pylibp2p.expect("dialed", peer=str(host.peer_id))
        peer = PeerId.from_base58(pylibp2p.peer)
        conn = await host.identify(peer)
        assert not conn.initiator
        assert conn.agent_version.startswith("py-libp2p/")
        assert await host.ping(peer) > 0
        pylibp2p.send("ping", peer=str(host.peer_id))
        await pylibp2p.expect("pong")


async def _meshed(host: Host, gossip: GossipSub, py: LibP2PPeer) -> PeerId:
    py.send("subscribe", topic=TOPIC)
    await py.expect("subscribed")
    peer = await host.dial(py.addr)
    for _ in range(150):
        py.send("mesh", topic=TOPIC)
        theirs = (await py.expect("mesh"))["peers"]
        if peer in gossip.mesh_peers(TOPIC) and str(host.peer_id) in theirs:
            return peer
        await asyncio.sleep(0.1)
    raise AssertionError("mesh did not form")


async def test_gossipsub_mesh_and_1000_messages_each_way(pylibp2p: LibP2PPeer) -> None:
    async with Host(identity("gossiper")) as host:
        await host.listen()
        gossip = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
        gossip.start()
        subscription = gossip.subscribe(TOPIC)
        peer = await _meshed(host, gossip, pylibp2p)
        assert gossip.router.peers[peer].protocol == MESHSUB_V11

        # py-libp2p -> us
        pylibp2p.send("publish", topic=TOPIC, count=1000, size=100)
        received = [await asyncio.wait_for(subscription.get(), 30) for _ in range(1000)]
        assert {m.author for m in received} == {peer.raw}
        assert sorted(int.from_bytes(m.data[:8], "big") for m in received) == list(range(1000))
        published = await pylibp2p.expect("published", timeout_s=60)
        assert [m.msg_id.hex() for m in received] == published["ids"]

        # us -> py-libp2p
        ours = [await gossip.publish(TOPIC, i.to_bytes(8, "big") + b"z" * 92) for i in range(1000)]
        delivered = [e for e in await _messages(pylibp2p, 1000, sender=str(host.peer_id))]
        assert [e["msg_id"] for e in delivered] == [m.hex() for m in ours if m is not None]
        assert host.counters.get("gossip_msg_bad_signature") == 0


async def _messages(py: LibP2PPeer, count: int, sender: str | None = None) -> list[dict]:
    out = []
    while len(out) < count:
        if sender is None:
            out.append(await py.expect("message", timeout_s=60))
        else:
            out.append(await py.expect("message", timeout_s=60, sender=sender))
    return out


async def test_bad_signatures_are_rejected_on_both_sides(pylibp2p: LibP2PPeer) -> None:
    async with Host(identity("verifier")) as host:
        await host.listen()
        gossip = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
        gossip.start()
        subscription = gossip.subscribe(TOPIC)
        peer = await _meshed(host, gossip, pylibp2p)

        # py-libp2p sends a tampered signature, then a good message: we drop only the first.
        pylibp2p.send("publish_raw", topic=TOPIC, data="bad0", seqno="00" * 7 + "01", tamper=True)
        pylibp2p.send("publish_raw", topic=TOPIC, data="600d", seqno="00" * 7 + "02")
        good = await asyncio.wait_for(subscription.get(), 30)
        assert good.data == bytes.fromhex("600d")
        assert host.counters.get("gossip_msg_bad_signature") == 1
        assert len(subscription) == 0

        # We send a tampered message, then a good one: py-libp2p delivers only the second.
        sign = host.identity.sign
        for seq, data, tamper in ((1, b"bad-ours", True), (2, b"good-ours", False)):
            unsigned = PubMessage(TOPIC, data, host.peer_id.raw, seq.to_bytes(8, "big"))
            signature = bytearray(sign(unsigned.signable()))
            if tamper:
                signature[0] ^= 0xFF
            signed = PubMessage(TOPIC, data, unsigned.from_peer, unsigned.seqno, bytes(signature))
            gossip._senders[peer].enqueue([encode_message_field(signed)], [])
        got = await pylibp2p.expect("message", sender=str(host.peer_id))
        assert bytes.fromhex(got["data"]) == b"good-ours"
        await asyncio.sleep(0.5)
        assert not [e for e in pylibp2p.take("message") if e["sender"] == str(host.peer_id)]


async def test_gossipsub_v12_negotiated_with_py_libp2p() -> None:
    py = await LibP2PPeer.start("--v12", "--seed", "33" * 32)
    try:
        async with Host(identity("v12")) as host:
            await host.listen()
            gossip = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
            gossip.start()
            subscription = gossip.subscribe(TOPIC)
            peer = await _meshed(host, gossip, py)
            assert gossip.router.peers[peer].protocol == MESHSUB_V12
            py.send("publish", topic=TOPIC, count=20, size=4096)
            received = [await asyncio.wait_for(subscription.get(), 30) for _ in range(20)]
            published = await py.expect("published")
            assert [m.msg_id.hex() for m in received] == published["ids"]
            ours = [await gossip.publish(TOPIC, bytes([i]) * 4096) for i in range(20)]
            got = await _messages(py, 20, sender=str(host.peer_id))
            assert [e["msg_id"] for e in got] == [m.hex() for m in ours if m is not None]
    finally:
        await py.stop()


async def test_gossipsub_when_py_libp2p_dials_us(pylibp2p: LibP2PPeer) -> None:
    async with Host(identity("accepter")) as host:
        addr = await host.listen()
        gossip = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
        gossip.start()
        subscription = gossip.subscribe(TOPIC)
        pylibp2p.send("subscribe", topic=TOPIC)
        await pylibp2p.expect("subscribed")
        pylibp2p.send("dial", addr=str(addr))
        await pylibp2p.expect("dialed")
        peer = PeerId.from_base58(pylibp2p.peer)
        for _ in range(150):
            pylibp2p.send("mesh", topic=TOPIC)
            theirs = (await pylibp2p.expect("mesh"))["peers"]
            if peer in gossip.mesh_peers(TOPIC) and str(host.peer_id) in theirs:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("mesh did not form")
        assert not host.connection(peer).initiator  # type: ignore[union-attr]
        pylibp2p.send("publish", topic=TOPIC, count=100, size=64)
        received = [await asyncio.wait_for(subscription.get(), 30) for _ in range(100)]
        assert [m.msg_id.hex() for m in received] == (await pylibp2p.expect("published"))["ids"]
        ours = [await gossip.publish(TOPIC, i.to_bytes(4, "big") * 16) for i in range(100)]
        got = await _messages(pylibp2p, 100, sender=str(host.peer_id))
        assert [e["msg_id"] for e in got] == [m.hex() for m in ours if m is not None]
