"""Who pays for a bad message, and what a failed or slow peer costs: the router core, no sockets.

An attacker can turn any honest StrictSign message into one whose (unsigned) `key` field names
another key; py-libp2p verifies with the key inlined in `from`, accepts and relays it.  Such a
message is dropped here, but only its author is penalised, so relaying it three or thirty times
cannot graylist an honest forwarder; a peer that originates garbage is still cut off.
"""

import hashlib
from dataclasses import replace

import pytest

from node.p2p.gossipsub.router import STRICT_SIGN
from node.p2p.gossipsub.rpc import PubMessage, Rpc, RpcLimits
from node.p2p.peer_id import Identity, marshal_public_key
from tests.p2p.test_router import CONFIG, Net, T

ATTACKER = Identity.from_seed(hashlib.sha256(b"attacker").digest())


def triangle() -> Net:
    """0 = us, 1 = an honest forwarder, 2 = a third peer whose messages get mangled."""
    net = Net(3)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1)
    net.connect(1, 2)
    net.run()
    net.tick()
    return net


def signed(author: Identity, seq: int, data: bytes) -> PubMessage:
    unsigned = PubMessage(T, data, author.peer_id.raw, seq.to_bytes(8, "big"))
    return replace(unsigned, signature=author.sign(unsigned.signable()))


def wrong_key(message: PubMessage) -> PubMessage:
    """What an attacker makes of an honest message: same signature, another key attached."""
    return replace(message, key=marshal_public_key(ATTACKER.public_key))


@pytest.mark.parametrize("count", [3, 30])
def test_relayed_key_mismatch_is_dropped_without_penalising_the_forwarder(count: int) -> None:
    net = triangle()
    us, forwarder = net.routers[0], net.peer(1)
    for seq in range(count):
        mangled = wrong_key(signed(net.ids[2], seq + 1, b"m%d" % seq))
        us.handle_rpc(forwarder, Rpc(messages=(mangled,)), net.now_ms)
        net.run()
        net.tick()
    assert us.counters.get("gossip_msg_bad_key_relayed") == count
    assert us.counters.get("gossip_msg_bad_signature") == 0
    assert us.counters.get("gossip_peer_graylisted") == 0
    assert us.peer_score(forwarder, net.now_ms) >= 0
    assert forwarder in us.mesh[T]
    assert net.delivered[0] == []


def test_the_authentic_copy_still_gets_through_after_a_mangled_one() -> None:
    net = triangle()
    us, forwarder = net.routers[0], net.peer(1)
    authentic = signed(net.ids[2], 7, b"real")
    us.handle_rpc(forwarder, Rpc(messages=(wrong_key(authentic),)), net.now_ms)
    us.handle_rpc(forwarder, Rpc(messages=(authentic,)), net.now_ms)
    net.run()
    assert [r.message.data for r in net.delivered[0]] == [b"real"]


def test_an_author_that_attaches_a_wrong_key_is_graylisted() -> None:
    net = triangle()
    us, liar = net.routers[0], net.peer(1)
    for seq in range(3):
        garbage = wrong_key(signed(net.ids[1], seq + 1, b"g%d" % seq))
        us.handle_rpc(liar, Rpc(messages=(garbage,)), net.now_ms)
    assert us.counters.get("gossip_msg_bad_signature") == 3
    assert us.peer_score(liar, net.now_ms) < CONFIG.thresholds.graylist_threshold
    assert us.counters.get("gossip_peer_graylisted") == 1


def test_a_relayed_invalid_signature_still_costs_the_forwarder() -> None:
    # Every StrictSign implementation verifies under the inlined key, so a forwarder of a
    # signature that does not hold (whatever the key field says) did not validate.
    net = triangle()
    us, forwarder = net.routers[0], net.peer(1)
    for seq in range(3):
        forged = replace(signed(net.ids[2], seq + 1, b"f"), signature=b"\x01" * 64)
        us.handle_rpc(forwarder, Rpc(messages=(wrong_key(forged),)), net.now_ms)
    assert us.counters.get("gossip_msg_bad_signature") == 3
    assert us.counters.get("gossip_msg_bad_key_relayed") == 0
    assert us.counters.get("gossip_peer_graylisted") == 1


def test_a_failed_stream_leaves_the_mesh_and_the_new_one_resubscribes() -> None:
    net = triangle()
    us, peer = net.routers[0], net.peer(1)
    us._promises[b"wanted"] = (peer, net.now_ms + 1)
    assert peer in us.mesh[T]
    us.stream_failed(peer)
    assert peer not in us.mesh[T]
    assert b"wanted" not in us._promises  # what we asked over the dead stream is void
    us.stream_reopened(peer)
    (sent,) = [s for s in us.take_effects().send if s[0] == peer]
    wire = b"".join(f if isinstance(f, bytes) else b"".join(f) for f in sent[1])
    assert Rpc.decode(wire, RpcLimits()).subscriptions == ((True, T),)
    net.tick()
    assert peer in us.mesh[T]  # grafted again once it is reachable


def test_a_peer_that_does_not_read_is_pruned_then_graylisted() -> None:
    net = triangle()
    us, slow = net.routers[0], net.peer(1)
    us.peer_slow(slow, net.now_ms)
    assert slow not in us.mesh[T]
    assert us.counters.get("gossip_peer_graylisted") == 0
    heartbeats = 1
    while us.counters.get("gossip_peer_graylisted") == 0:
        net.now_ms += CONFIG.heartbeat_interval_ms
        us.heartbeat(net.now_ms)
        us.peer_slow(slow, net.now_ms)
        heartbeats += 1
        assert heartbeats < 30, "a peer that never reads must be cut off"
    assert slow in us.take_effects().disconnect
