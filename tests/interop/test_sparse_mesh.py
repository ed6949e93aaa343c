"""A sparse mixed mesh: our nodes and py-libp2p 0.8.1 peers alternate in a ring, mesh degree 1,
no flood publishing, 900 KB messages, py-libp2p's real 1 MiB inbound RPC limit, and churn (links
drop and come back).  With D=1 some ring links are outside every mesh, and a message crosses them
only through IHAVE/IWANT: several IWANT answers at once are several 900 KB messages, which must
reach py-libp2p as RPCs under 1 MiB each or it resets the stream (issue 13, attack 8).  The
py-libp2p peers serialise their own stream writes (libp2p_peer.py): unpatched, py-libp2p 0.8.1
garbles its streams to us on every reconnect, which says nothing about our stack.

Time is counted in our heartbeats (router.ticks); wall-clock timeouts only detect a hang.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.service import GossipSub, Message
from node.p2p.host import Host
from node.p2p.peer_id import PeerId
from tests.interop.peer_process import LibP2PPeer
from tests.p2p.conftest import identity

pytestmark = pytest.mark.interop
TOPIC = "sparse"
MESSAGE_BYTES = 900_000
PY_RPC_BYTES_MAX = 1024 * 1024  # py-libp2p's (and go-libp2p's) default inbound RPC limit
ROUNDS = 6
# D=1 on both sides and a high D_hi, so nobody PRUNEs: py-libp2p 0.8.1 sends no IHAVE to a peer in
# PRUNE backoff (the spec only forbids GRAFT), which would leave links with gossip one way only.
# Each node GRAFTs one ring neighbour, so some links stay outside every mesh and messages cross
# them only by IHAVE/IWANT.  1 s heartbeats like py-libp2p's; no flood publishing.
SPARSE = GossipsubConfig(
    d=1, d_lo=1, d_hi=12, d_score=1, d_out=0, flood_publish=False, heartbeat_interval_ms=1000
)
PY_ARGS = ("--degree", "1", "--degree-low", "1", "--degree-high", "12", "--fixed-degree")


@dataclass(eq=False)
class Ours:
    host: Host
    gossip: GossipSub
    received: dict[bytes, None] = field(default_factory=dict)
    publish_ticks: list[int] = field(default_factory=list)

    def on_message(self, message: Message) -> None:
        self.received[message.msg_id] = None


@dataclass(frozen=True)
class Outcome:
    delivery: float  # fraction of (message, receiver) pairs delivered, all publishers
    delivery_ours: float  # the same for the messages our nodes published
    missing: int
    publish_ticks_max: int
    publishes_blocked: int
    lost_links: dict[str, int]  # "publisher->receiver": messages that never arrived
    iwant_served: int  # by our nodes: the IHAVE/IWANT path was taken


@asynccontextmanager
async def our_node(stack: AsyncExitStack, name: str) -> AsyncIterator[Ours]:
    host = await stack.enter_async_context(Host(identity(name)))
    await host.listen()
    gossip = GossipSub(host, SPARSE)
    gossip.start()
    node = Ours(host, gossip)
    gossip.subscribe(TOPIC, on_message=node.on_message)
    yield node


async def start_py(seed: int) -> LibP2PPeer:
    py = await LibP2PPeer.start(
        "--seed", f"{seed:02x}" * 32, "--max-rpc-bytes", str(PY_RPC_BYTES_MAX), *PY_ARGS
    )
    py.send("subscribe", topic=TOPIC)
    await py.expect("subscribed")
    return py


async def heartbeats(clock: GossipSub, n: int) -> None:
    """Wait n of our heartbeats (the generous timeout only catches a stopped loop)."""
    target = clock.router.ticks + n
    async with asyncio.timeout(10 + 5 * n):
        while clock.router.ticks < target:  # noqa: ASYNC110 - the heartbeat is the clock
            await asyncio.sleep(0.05)


async def publish_ours(node: Ours, data: bytes) -> bytes | None:
    """Publish, recording how many heartbeats the call spanned; None if it hung (failure)."""
    before = node.gossip.router.ticks
    try:
        msg_id = await asyncio.wait_for(node.gossip.publish(TOPIC, data), 30)
    except TimeoutError:
        node.publish_ticks.append(10**6)
        return None
    node.publish_ticks.append(node.gossip.router.ticks - before)
    return msg_id


async def run_sparse_ring(settle_heartbeats: int = 12) -> Outcome:
    async with AsyncExitStack() as stack:
        ours = [await stack.enter_async_context(our_node(stack, f"sparse-{i}")) for i in range(3)]
        pys: list[LibP2PPeer] = []
        try:
            for i in range(3):
                pys.append(await start_py(0x50 + i))
            # Ring O0-P0-O1-P1-O2-P2-O0: every link joins one of ours and one py-libp2p peer.
            for i, node in enumerate(ours):
                for py in (pys[i], pys[i - 1]):
                    await node.host.dial(py.addr)
            clock = ours[0].gossip
            async with asyncio.timeout(60):
                while not all(len(n.gossip.topic_peers(TOPIC)) == 2 for n in ours):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            await heartbeats(clock, 3)

            expected: dict[str, set[str]] = {}  # msg id (hex) -> names that must receive it
            author: dict[str, str] = {}
            names = [f"O{i}" for i in range(3)] + [f"P{i}" for i in range(3)]
            blocked = 0
            for r in range(ROUNDS):
                # Churn: a link drops and comes back (py-libp2p side, then ours).
                if r == 1:
                    pys[2].send("disconnect", peer=str(ours[0].host.peer_id))
                    await pys[2].expect("disconnected")
                if r == 2:
                    pys[2].send("dial", addr=str(ours[0].host.addrs()[0]))
                    await pys[2].expect("dialed")
                if r == 3:
                    ours[1].host.disconnect(PeerId.from_base58(pys[1].peer))
                if r == 4:
                    await ours[1].host.dial(pys[1].addr)
                for i, py in enumerate(pys):
                    py.send("publish", topic=TOPIC, count=1, size=MESSAGE_BYTES)
                    for msg_id in (await py.expect("published", timeout_s=60))["ids"]:
                        expected[msg_id] = set(names) - {f"P{i}"}
                        author[msg_id] = f"P{i}"
                for i, node in enumerate(ours):
                    data = bytes([r, i]) + hashlib.sha256(b"%d-%d" % (r, i)).digest()
                    msg_id = await publish_ours(node, data * (MESSAGE_BYTES // len(data)))
                    if msg_id is None:
                        blocked += 1
                    else:
                        expected[msg_id.hex()] = set(names) - {f"O{i}"}
                        author[msg_id.hex()] = f"O{i}"
                await heartbeats(clock, 1)

            def received() -> dict[str, set[str]]:
                got: dict[str, set[str]] = {m: set() for m in expected}
                for i, node in enumerate(ours):
                    for raw in node.received:
                        got.setdefault(raw.hex(), set()).add(f"O{i}")
                for i, py in enumerate(pys):
                    for event in [e for e in py.events if e.get("event") == "message"]:
                        got.setdefault(event["msg_id"], set()).add(f"P{i}")
                return got

            def missing() -> int:
                got = received()
                return sum(len(want - got[m]) for m, want in expected.items())

            for _ in range(settle_heartbeats):
                if missing() == 0:
                    break
                await heartbeats(clock, 1)
            lost = missing()
            got = received()
            lost_links: dict[str, int] = {}
            for m, want in expected.items():
                for name in sorted(want - got[m]):
                    link = f"{author[m]}->{name}"
                    lost_links[link] = lost_links.get(link, 0) + 1
            total = sum(len(want) for want in expected.values())
            ours_total = sum(len(w) for m, w in expected.items() if author[m].startswith("O"))
            ours_lost = sum(n for link, n in lost_links.items() if link.startswith("O"))
            ticks = [t for n in ours for t in n.publish_ticks]
            return Outcome(
                (total - lost) / total if total else 0.0,
                (ours_total - ours_lost) / ours_total if ours_total else 0.0,
                lost,
                max(ticks, default=0),
                blocked,
                lost_links,
                sum(n.host.counters.get("gossip_iwant_served") for n in ours),
            )
        finally:
            for py in pys:
                await py.stop()


async def test_sparse_ring_delivers_900kb_messages_through_ihave_iwant_under_churn() -> None:
    outcome = await run_sparse_ring()
    print(f"sparse ring: {outcome}")
    assert outcome.publishes_blocked == 0
    # publish() waits at most on the aggregate of our queues, never on one peer.
    assert outcome.publish_ticks_max <= 2, outcome
    # Whether IWANT was needed depends on which links ended up outside every mesh (py-libp2p
    # also GRAFTs, and often every link ends up meshed); the split of IWANT answers itself is
    # pinned down in tests/p2p/test_gossip_recovery.py.  The figure is printed for the record.
    # 100% in 8 of 8 runs after the fix; 63-88% in 3 of 4 runs before it (98% once).
    assert outcome.delivery >= 0.95, outcome


async def test_iwant_answers_reach_py_libp2p_outside_the_mesh_under_its_1mib_limit() -> None:
    """The recovery path of attack 8 pinned down: py-libp2p is outside our (full) mesh, so our
    three 900 KB messages reach it only as one IHAVE and the answers to its one IWANT."""
    full = GossipsubConfig(
        d=1,
        d_lo=1,
        d_hi=1,
        d_score=1,
        d_out=0,
        flood_publish=False,
        heartbeat_interval_ms=500,
        prune_backoff_ms=60_000,
    )
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("answerer", "mesh-mate"):
            host = await stack.enter_async_context(Host(identity(name)))
            await host.listen()
            gossip = GossipSub(host, full)
            gossip.start()
            gossip.subscribe(TOPIC)
            nodes.append(gossip)
        ours, mate = nodes
        await ours.host.dial(mate.host.addrs()[0])
        async with asyncio.timeout(30):
            while mate.host.peer_id not in ours.mesh_peers(TOPIC):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        py = await start_py(0x60)
        try:
            # py-libp2p dials us and GRAFTs; our mesh is full (D_hi=1), so we PRUNE it.
            py.send("dial", addr=str(ours.host.addrs()[0]))
            await py.expect("dialed")
            py_peer = PeerId.from_base58(py.peer)
            async with asyncio.timeout(30):
                while py_peer not in ours.topic_peers(TOPIC):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await heartbeats(ours, 2)
            assert ours.mesh_peers(TOPIC) == [mate.host.peer_id]
            ids = [await ours.publish(TOPIC, bytes([i]) * MESSAGE_BYTES) for i in range(3)]
            got = [await py.expect("message", timeout_s=60) for _ in ids]
            assert sorted(e["msg_id"] for e in got) == sorted(i.hex() for i in ids if i)
            assert ours.counters.get("gossip_iwant_served") >= 3
            assert ours.counters.get("gossip_send_stream_closed") == 0
            assert py_peer not in ours.mesh_peers(TOPIC)
        finally:
            await py.stop()
