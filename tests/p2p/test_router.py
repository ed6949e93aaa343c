"""The gossipsub router core, driven without sockets: routers exchange encoded RPCs through a
synchronous fake link, time is an explicit integer, randomness a seeded random.Random."""

import hashlib
import random
from dataclasses import replace

import pytest

from node.p2p.counters import Counters
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import (
    MESHSUB_V11,
    MESHSUB_V12,
    STRICT_NO_SIGN,
    STRICT_SIGN,
    Received,
    Router,
    Validation,
)
from node.p2p.gossipsub.rpc import Control, IHave, PubMessage, Rpc, RpcLimits
from node.p2p.peer_id import Identity, PeerId

T = "topic"
CONFIG = GossipsubConfig(d=3, d_lo=2, d_hi=4, d_score=1, d_lazy=2, d_out=1, prune_backoff_ms=5000)


class Net:
    """Routers joined by in-memory links; `run()` moves effects until the network is quiet."""

    def __init__(self, count: int, config: GossipsubConfig = CONFIG, seed: int = 7) -> None:
        self.now_ms = 1_000
        self.ids = [Identity.from_seed(hashlib.sha256(b"r%d" % i).digest()) for i in range(count)]
        self.routers = [
            Router(
                ident.peer_id,
                ident.sign,
                config,
                random.Random(seed + i),
                Counters(),
                seqno_start=0,
            )
            for i, ident in enumerate(self.ids)
        ]
        self.delivered: list[list[Received]] = [[] for _ in range(count)]
        self.validator = lambda r: Validation.ACCEPT
        self.wire_rpcs = 0
        self.cut: set[tuple[int, int]] = set()

    def peer(self, i: int) -> PeerId:
        return self.ids[i].peer_id

    def index(self, peer: PeerId) -> int:
        return [r.local for r in self.routers].index(peer)

    def connect(self, a: int, b: int, protocol: str = MESHSUB_V12) -> None:
        self.routers[a].add_peer(self.peer(b), protocol, True, f"10.0.0.{b}", self.now_ms)
        self.routers[b].add_peer(self.peer(a), protocol, False, f"10.0.0.{a}", self.now_ms)

    def run(self) -> list[int]:
        """Deliver until quiet; returns how many peers each router asked to disconnect."""
        disconnects = [0] * len(self.routers)
        for _ in range(100):
            busy = False
            for i, router in enumerate(self.routers):
                effects = router.take_effects()
                for received in effects.validate:
                    router.validation_result(received, self.validator(received), self.now_ms)
                    busy = True
                self.delivered[i].extend(effects.deliver)
                disconnects[i] += len(effects.disconnect)
                for peer, fragments, bulk in effects.send:
                    j = self.index(peer)
                    if (i, j) in self.cut:
                        continue
                    wire = b"".join(
                        part
                        for f in fragments + bulk
                        for part in ((f,) if isinstance(f, bytes) else f)
                    )
                    self.wire_rpcs += 1
                    self.routers[j].handle_rpc(
                        self.peer(i), Rpc.decode(wire, RpcLimits()), self.now_ms
                    )
                    busy = True
            if not busy:
                return disconnects
        raise AssertionError("network did not settle")

    def tick(self, ms: int | None = None) -> None:
        self.now_ms += ms or CONFIG.heartbeat_interval_ms
        for router in self.routers:
            router.heartbeat(self.now_ms)
        self.run()


def meshed_pair(protocol: str = MESHSUB_V12) -> Net:
    net = Net(2)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1, protocol)
    net.run()
    net.tick()
    return net


def test_subscribe_exchange_and_mesh_formation() -> None:
    net = meshed_pair()
    assert list(net.routers[0].mesh[T]) == [net.peer(1)]
    assert list(net.routers[1].mesh[T]) == [net.peer(0)]


def test_publish_delivers_once_with_identical_ids_and_counts_duplicates() -> None:
    net = Net(3)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1)
    net.connect(1, 2)
    net.connect(0, 2)
    net.run()
    net.tick()
    msg_id = net.routers[0].publish(T, b"hello", net.now_ms)
    net.run()
    assert msg_id == net.peer(0).raw + (1).to_bytes(8, "big")
    for i in (1, 2):
        assert [r.msg_id for r in net.delivered[i]] == [msg_id]
    assert net.delivered[0] == []
    assert sum(r.counters.get("gossip_msg_duplicate") for r in net.routers) >= 1


def test_validator_reject_penalises_sender_until_graylisted() -> None:
    net = meshed_pair()
    net.validator = lambda r: Validation.REJECT
    receiver = net.routers[1]
    disconnects = 0
    for i in range(3):
        net.routers[0].publish(T, b"bad-%d" % i, net.now_ms)
        disconnects += net.run()[1]
    assert net.delivered[1] == []
    assert receiver.peer_score(net.peer(0), net.now_ms) < CONFIG.thresholds.graylist_threshold
    assert disconnects == 1
    # Graylisted: its RPCs are now ignored outright.
    net.routers[0].publish(T, b"bad-more", net.now_ms)
    net.run()
    assert receiver.counters.get("gossip_rpc_graylisted") >= 1


def test_ignore_does_not_penalise() -> None:
    net = meshed_pair()
    net.validator = lambda r: Validation.IGNORE
    for i in range(5):
        net.routers[0].publish(T, b"meh-%d" % i, net.now_ms)
        net.run()
    assert net.routers[1].peer_score(net.peer(0), net.now_ms) >= 0
    assert net.routers[1].counters.get("gossip_msg_ignored") == 5


def test_bad_signature_is_rejected_and_not_marked_seen() -> None:
    net = meshed_pair()
    sender = net.ids[0]
    unsigned = PubMessage(T, b"x", sender.peer_id.raw, (9).to_bytes(8, "big"))
    forged = replace(unsigned, signature=b"\x00" * 64)
    receiver = net.routers[1]
    receiver.handle_rpc(sender.peer_id, Rpc(messages=(forged,)), net.now_ms)
    assert receiver.counters.get("gossip_msg_bad_signature") == 1
    good = replace(unsigned, signature=sender.sign(unsigned.signable()))
    receiver.handle_rpc(sender.peer_id, Rpc(messages=(good,)), net.now_ms)
    net.run()
    assert [r.message.data for r in net.delivered[1]] == [b"x"]


def test_strict_no_sign_topics_refuse_author_fields_and_use_content_ids() -> None:
    net = Net(2)
    for r in net.routers:
        r.subscribe(T, STRICT_NO_SIGN, net.now_ms)
    net.connect(0, 1)
    net.run()
    net.tick()
    msg_id = net.routers[0].publish(T, b"tx-bytes", net.now_ms)
    net.run()
    assert msg_id == hashlib.sha256(b"tx-bytes").digest()[:20]
    assert [r.msg_id for r in net.delivered[1]] == [msg_id]
    signed = PubMessage(T, b"other", net.peer(0).raw, b"\x00" * 8, b"\x01" * 64)
    net.routers[1].handle_rpc(net.peer(0), Rpc(messages=(signed,)), net.now_ms)
    assert net.routers[1].counters.get("gossip_msg_bad_signature") == 1
    # Publishing the same content again is a duplicate, not a second message.
    assert net.routers[0].publish(T, b"tx-bytes", net.now_ms) is None


def test_graft_during_backoff_is_pruned_and_penalised() -> None:
    net = meshed_pair()
    a, b = net.routers
    # b leaves and rejoins: it PRUNEs a with a backoff, which a records.
    b.unsubscribe(T, net.now_ms)
    net.run()
    assert (T, net.peer(1)) in a._backoff
    b.subscribe(T, STRICT_SIGN, net.now_ms)
    net.run()
    assert net.peer(0) not in b.mesh[T]  # the pruner keeps the backoff too
    before = b.score.peers[net.peer(0).raw].behaviour_penalty
    # a misbehaves: GRAFT while b's backoff for a is running.
    b._set_backoff(T, net.peer(0), net.now_ms + 5000)
    b.handle_rpc(net.peer(0), Rpc(control=Control(graft=(T,))), net.now_ms)
    assert b.score.peers[net.peer(0).raw].behaviour_penalty > before
    assert net.peer(0) not in b.mesh[T]
    assert b.counters.get("gossip_graft_in_backoff") == 1
    assert [p.topic for p in b._outgoing(net.peer(0)).prune] == [T]


def test_ihave_iwant_recovers_a_message_outside_the_mesh() -> None:
    config = replace(CONFIG, flood_publish=False)
    net = Net(2, config)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1)
    net.run()
    # Keep them out of each other's mesh so only gossip can carry the message.
    for i, r in enumerate(net.routers):
        r.mesh[T].clear()
        r._backoff[(T, net.peer(1 - i))] = net.now_ms + 60_000
    msg_id = net.routers[0].publish(T, b"gossip me", net.now_ms)
    net.run()
    assert net.delivered[1] == []
    net.tick()  # heartbeat: IHAVE -> IWANT -> message
    assert [r.msg_id for r in net.delivered[1]] == [msg_id]
    assert net.routers[0].counters.get("gossip_iwant_served") == 1


def test_broken_iwant_promise_is_penalised() -> None:
    net = meshed_pair()
    a_peer = net.peer(0)
    b = net.routers[1]
    b.handle_rpc(a_peer, Rpc(control=Control(ihave=(IHave(T, (b"never-sent",)),))), net.now_ms)
    b.take_effects()
    before = b.score.peers[a_peer.raw].behaviour_penalty
    b.heartbeat(net.now_ms + CONFIG.iwant_followup_ms + 1)
    assert b.score.peers[a_peer.raw].behaviour_penalty > before
    assert b.counters.get("gossip_iwant_promise_broken") == 1


def test_idontwant_suppresses_forwarding_on_v12_only() -> None:
    net = Net(3, replace(CONFIG, flood_publish=False))
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1)
    net.connect(1, 2)
    net.run()
    net.tick()
    unsigned = PubMessage(T, b"big" * 600, net.peer(0).raw, (5).to_bytes(8, "big"))
    message = replace(unsigned, signature=net.ids[0].sign(unsigned.signable()))
    msg_id = message.from_peer + message.seqno
    relay = net.routers[1]
    relay.handle_rpc(net.peer(2), Rpc(control=Control(idontwant=(msg_id,))), net.now_ms)
    relay.handle_rpc(net.peer(0), Rpc(messages=(message,)), net.now_ms)
    net.run()
    assert net.delivered[2] == []
    assert relay.counters.get("gossip_forward_skipped_idontwant") == 1


def test_idontwant_from_v11_peer_is_counted_and_ignored() -> None:
    net = meshed_pair(MESHSUB_V11)
    b = net.routers[1]
    b.handle_rpc(net.peer(0), Rpc(control=Control(idontwant=(b"id",))), net.now_ms)
    assert b.counters.get("gossip_idontwant_v11") == 1


def test_oversized_mesh_is_pruned_to_d_and_undersized_mesh_grafted() -> None:
    net = Net(7)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    for j in range(1, 7):
        net.connect(0, j)
    net.run()
    hub = net.routers[0]
    for j in range(1, 7):
        hub.mesh[T][net.peer(j)] = None
    net.tick()
    assert CONFIG.d_lo <= len(hub.mesh[T]) <= CONFIG.d_hi
    assert len(hub.mesh[T]) == CONFIG.d


def test_message_rate_limit_drops_excess_and_penalises() -> None:
    config = replace(
        CONFIG, peer_messages_per_s_max=10, peer_messages_burst=5, flood_drops_per_heartbeat_max=10
    )
    net = Net(2, config)
    for r in net.routers:
        r.subscribe(T, STRICT_NO_SIGN, net.now_ms)
    net.connect(0, 1)
    net.run()
    flood = Rpc(messages=tuple(PubMessage(T, b"m%d" % i) for i in range(20)))
    net.routers[1].handle_rpc(net.peer(0), flood, net.now_ms)
    net.run()
    assert len(net.delivered[1]) == 5
    assert net.routers[1].counters.get("gossip_msg_rate_limited") == 15
    assert net.routers[1].score.peers[net.peer(0).raw].behaviour_penalty == 0
    net.tick()  # 15 drops in the window > flood_drops_per_heartbeat_max = 10
    assert net.routers[1].score.peers[net.peer(0).raw].behaviour_penalty == 1


def test_same_seed_same_mesh() -> None:
    def mesh_of(seed: int) -> list[list[int]]:
        net = Net(6, seed=seed)
        for r in net.routers:
            r.subscribe(T, STRICT_SIGN, net.now_ms)
        for a in range(6):
            for b in range(a + 1, 6):
                net.connect(a, b)
        net.run()
        net.tick()
        return [sorted(net.index(p) for p in r.mesh[T]) for r in net.routers]

    assert mesh_of(3) == mesh_of(3)


@pytest.mark.parametrize("protocol", [MESHSUB_V11, MESHSUB_V12])
def test_unsubscribe_prunes_mesh_peers(protocol: str) -> None:
    net = meshed_pair(protocol)
    net.routers[1].unsubscribe(T, net.now_ms)
    net.run()
    assert net.peer(1) not in net.routers[0].mesh[T]
    assert T not in net.routers[0].peers[net.peer(1)].topics


def test_app_specific_score_p5_can_graylist_a_peer() -> None:
    net = meshed_pair()
    distrusted = net.peer(0).raw
    router = net.routers[1]
    router.score._app_score = lambda raw: -1000.0 if raw == distrusted else 0.0
    net.now_ms += CONFIG.heartbeat_interval_ms
    router.heartbeat(net.now_ms)
    effects = router.take_effects()
    assert effects.disconnect == [net.peer(0)]
    assert net.peer(0) not in router.mesh[T]


def test_publishing_to_an_unjoined_topic_uses_fanout_which_expires() -> None:
    config = replace(CONFIG, flood_publish=False, fanout_ttl_ms=3000)
    net = Net(5, config)
    for r in net.routers[1:]:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    for j in range(1, 5):
        net.connect(0, j)
    net.run()
    publisher = net.routers[0]
    msg_id = publisher.publish(T, b"to the fanout", net.now_ms)
    net.run()
    fanout = publisher.fanout[T]
    assert len(fanout) == config.d
    assert T not in publisher.mesh
    receivers = [i for i in range(1, 5) if any(r.msg_id == msg_id for r in net.delivered[i])]
    assert len(receivers) >= config.d  # fanout peers, plus whoever they forwarded to
    net.tick(config.fanout_ttl_ms + 1)
    assert T not in publisher.fanout


def test_mesh_keeps_d_out_outbound_peers() -> None:
    net = Net(9)
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    for j in range(1, 7):
        net.connect(j, 0)  # they dialled the hub: inbound for it
    for j in (7, 8):
        net.connect(0, j)  # the hub dialled these: outbound
    net.run()
    hub = net.routers[0]
    hub.mesh[T] = {net.peer(j): None for j in range(1, 9)}
    net.tick()
    assert len(hub.mesh[T]) == CONFIG.d
    assert sum(hub.peers[p].outbound for p in hub.mesh[T]) >= CONFIG.d_out
    # A mesh of inbound peers only gets an outbound peer grafted at the next heartbeat.
    hub.mesh[T] = {net.peer(j): None for j in range(1, 4)}
    for j in (7, 8):
        hub._backoff.pop((T, net.peer(j)), None)
    net.tick()
    assert sum(hub.peers[p].outbound for p in hub.mesh[T]) >= CONFIG.d_out


def test_unread_subscription_queue_is_bounded_by_bytes() -> None:
    from node.p2p.gossipsub.service import Message, Subscription

    drops: list[int] = []
    sub = Subscription(T, queue_max=1000, queue_bytes_max=250, on_drop=lambda: drops.append(1))
    for i in range(10):
        sub._put(Message(T, bytes([i]) * 100, b"id%d" % i, PeerId(b"\x00\x01x"), b""))
    assert len(sub) == 2
    assert len(drops) == 8
    first = sub.get_nowait()
    assert first is not None
    assert first.data == bytes([8]) * 100


def test_direct_peers_get_every_message_but_never_join_the_mesh() -> None:
    net = Net(3, replace(CONFIG, flood_publish=False))
    hub = net.routers[0]
    hub.direct[net.peer(2)] = None
    for r in net.routers:
        r.subscribe(T, STRICT_SIGN, net.now_ms)
    net.connect(0, 1)
    net.connect(0, 2)
    net.run()
    net.tick()
    assert net.peer(2) not in hub.mesh[T]  # the direct peer's own GRAFT was refused
    assert hub.counters.get("gossip_graft_from_direct") >= 1
    assert net.peer(0) not in net.routers[2].mesh[T]  # ... with a PRUNE
    msg_id = hub.publish(T, b"to everyone", net.now_ms)
    net.run()
    assert [r.msg_id for r in net.delivered[2]] == [msg_id]
    # Operator-configured trust: a direct peer is never graylisted.
    hub.score.add_penalty(net.peer(2).raw, 100)
    hub.heartbeat(net.now_ms + 1000)
    assert net.peer(2) not in hub.take_effects().disconnect
