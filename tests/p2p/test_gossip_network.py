"""Many nodes of our own stack on loopback: delivery under churn, and misbehaving peers cut off.

Seeded: the topology and every router's randomness come from SEED, printed on failure.
"""

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from node.p2p.config import HostConfig
from node.p2p.errors import DialError
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import Validation
from node.p2p.gossipsub.rpc import PubMessage
from node.p2p.gossipsub.service import GossipSub, Message
from node.p2p.host import Host
from node.p2p.peer_id import PeerId
from tests.p2p.conftest import identity

SEED = 20261125
TOPIC = "chain/txs"
FAST = GossipsubConfig(heartbeat_interval_ms=100, prune_backoff_ms=1000, graylist_ban_ms=60_000)


@dataclass(eq=False)
class Node:
    name: str
    host: Host
    gossip: GossipSub
    received: dict[bytes, None] = field(default_factory=dict)

    def on_message(self, message: Message) -> None:
        self.received[message.msg_id] = None


def reject_bad(peer: PeerId, message: PubMessage) -> Validation:
    return Validation.REJECT if message.data.startswith(b"BAD") else Validation.ACCEPT


@asynccontextmanager
async def node(
    stack: AsyncExitStack, name: str, config: GossipsubConfig, seed: int
) -> AsyncIterator[Node]:
    host = await stack.enter_async_context(
        Host(identity(name), HostConfig(), rng=random.Random(seed))
    )
    await host.listen()
    gossip = GossipSub(host, config, rng=random.Random(seed))
    gossip.start()
    n = Node(name, host, gossip)
    gossip.subscribe(TOPIC, reject_bad, strict_sign=False, on_message=n.on_message)
    yield n


async def start_node(stack: AsyncExitStack, name: str, config: GossipsubConfig, seed: int) -> Node:
    return await stack.enter_async_context(node(stack, name, config, seed))


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling many nodes' state is the point
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_ten_nodes_deliver_10000_of_10000_while_two_churn() -> None:
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    async with AsyncExitStack() as stack:
        stable = [await start_node(stack, f"stable-{i}", FAST, SEED + i) for i in range(8)]
        # A random connected topology among the stable nodes: a random spanning tree plus extra
        # random edges, so delivery among them never depends on the churning nodes.
        order = stable[:]
        rng.shuffle(order)
        edges = {(order[i], order[rng.randrange(i)]) for i in range(1, len(order))}
        while len(edges) < 14:
            a, b = rng.sample(stable, 2)
            if (b, a) not in edges:
                edges.add((a, b))
        for a, b in sorted(edges, key=lambda e: (e[0].name, e[1].name)):
            await a.host.dial(b.host.addrs()[0])
        churn_links = {f"churn-{i}": rng.sample(stable, 3) for i in range(2)}

        churn_stop = asyncio.Event()
        churn_rounds = [0, 0]

        async def churn(index: int) -> None:
            name = f"churn-{index}"
            while not churn_stop.is_set():
                async with AsyncExitStack() as inner:
                    c = await start_node(inner, name, FAST, SEED + 100 + index)
                    for peer in churn_links[name]:
                        await c.host.dial(peer.host.addrs()[0])
                    await asyncio.sleep(0.4 + 0.2 * index)
                churn_rounds[index] += 1
                await asyncio.sleep(0.2)

        await wait_for(lambda: all(len(n.gossip.mesh_peers(TOPIC)) >= 1 for n in stable), 10)
        published: list[bytes] = []
        async with asyncio.TaskGroup() as tg:
            churners = [tg.create_task(churn(i)) for i in range(2)]
            for i in range(10_000):
                publisher = stable[i % len(stable)]
                msg_id = await publisher.gossip.publish(TOPIC, b"tx-%06d" % i + bytes(120))
                assert msg_id is not None
                published.append(msg_id)
                publisher.received[msg_id] = None  # a node has what it published
                if i % 50 == 49:
                    await asyncio.sleep(0.01)
            everyone = set(published)
            try:
                await wait_for(lambda: all(set(n.received) >= everyone for n in stable), 120)
            finally:
                churn_stop.set()
            for task in churners:
                await task
        assert all(rounds >= 2 for rounds in churn_rounds), churn_rounds
        for n in stable:
            assert len(set(n.received) & everyone) == 10_000, (n.name, len(n.received))


async def test_flooding_and_invalid_peers_are_graylisted_and_cut_off() -> None:
    strict = GossipsubConfig(
        heartbeat_interval_ms=100,
        peer_messages_per_s_max=500,
        peer_messages_burst=100,
        flood_drops_per_heartbeat_max=50,
        graylist_ban_ms=60_000,
    )
    async with AsyncExitStack() as stack:
        honest = [await start_node(stack, f"honest-{i}", strict, SEED + i) for i in range(4)]
        for i in range(1, 4):
            await honest[i].host.dial(honest[i - 1].host.addrs()[0])
        flooder = await start_node(stack, "flooder", FAST, SEED + 50)
        liar = await start_node(stack, "liar", FAST, SEED + 51)
        for attacker in (flooder, liar):
            for h in honest[:2]:
                await attacker.host.dial(h.host.addrs()[0])
        attackers = {flooder.host.peer_id, liar.host.peer_id}
        await wait_for(
            lambda: all(attackers <= set(h.gossip.topic_peers(TOPIC)) for h in honest[:2]), 10
        )

        # The liar publishes messages that every honest validator rejects.
        for i in range(20):
            liar.gossip.publish_nowait(TOPIC, b"BAD-%d" % i)
            await asyncio.sleep(0.01)
        victims = honest[:2]

        # The flooder keeps sending far more than the 500 msg/s budget, one RPC per message,
        # until its victims have cut it off.
        async def flood() -> None:
            i = 0
            while any(v.host.is_connected(flooder.host.peer_id) for v in victims):
                for _ in range(100):
                    i += 1
                    flooder.gossip.publish_nowait(TOPIC, b"flood-%d" % i)
                await asyncio.sleep(0.01)

        flooding = asyncio.create_task(flood())
        await wait_for(
            lambda: all(
                not v.host.is_connected(a.host.peer_id) for v in victims for a in (flooder, liar)
            ),
            20,
        )
        await flooding
        for v in victims:
            assert v.host.counters.get("gossip_msg_rejected") >= 1
            assert v.host.counters.get("gossip_msg_rate_limited") >= 1
            assert v.host.counters.get("gossip_flood_penalty") >= 1
            # Only the two attackers were graylisted, not the honest relays of the flood.
            assert v.host.counters.get("gossip_peer_graylisted") == 2
            assert not any(m.startswith(b"BAD") for m in v.received)
        for a, b in itertools.pairwise(honest):
            assert a.host.is_connected(b.host.peer_id)
        # Cut off means cut off: banned peers cannot come back.
        with pytest.raises(DialError):
            await flooder.host.dial(victims[0].host.addrs()[0])
        # Honest traffic still flows to everyone.
        msg_id = await honest[3].gossip.publish(TOPIC, b"honest")
        assert msg_id is not None
        await wait_for(lambda: all(msg_id in n.received for n in honest[:3]), 10)
