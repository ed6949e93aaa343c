"""The asyncio shell under peers that limit, reset or ignore what we send (real hosts, loopback).

A peer like py-libp2p or go-libp2p reads RPCs of at most 1 MiB and resets the stream on a larger
one; here that peer is our own stack with `rpc_bytes_max` set to 1 MiB and an agent string that
keeps the bulk lane out of the way.  Time is counted in heartbeats (router.ticks); wall-clock
timeouts only detect hangs.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from node.p2p.config import HostConfig
from node.p2p.errors import StreamClosed
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import MESHSUB_V11, MESHSUB_V12
from node.p2p.gossipsub.rpc import Rpc
from node.p2p.gossipsub.service import GossipSub, Message
from node.p2p.host import Host
from node.p2p.peer_id import PeerId
from node.p2p.session import Stream
from tests.p2p.conftest import identity

T = "recovery"
MiB = 1024 * 1024
FAST = GossipsubConfig(heartbeat_interval_ms=100)
# A peer with go-libp2p's and py-libp2p's default inbound RPC limit.
LIMITED = GossipsubConfig(heartbeat_interval_ms=100, rpc_bytes_max=MiB + 64, rpc_send_bytes_max=MiB)


@asynccontextmanager
async def gossip_node(
    stack: AsyncExitStack, name: str, config: GossipsubConfig, agent: str = "fedchain/0.1.0"
) -> AsyncIterator[tuple[GossipSub, list[Message]]]:
    host = await stack.enter_async_context(Host(identity(name), HostConfig(agent_version=agent)))
    await host.listen()
    gossip = GossipSub(host, config)
    gossip.start()
    received: list[Message] = []
    gossip.subscribe(T, on_message=received.append)
    yield gossip, received


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling the nodes' state is the point
            await asyncio.sleep(0.02)


async def linked(a: GossipSub, b: GossipSub) -> None:
    await a.host.dial(b.host.addrs()[0])
    await wait_for(lambda: b.host.peer_id in a.mesh_peers(T) and a.host.peer_id in b.mesh_peers(T))


async def test_several_iwant_answers_reach_a_1mib_peer_as_separate_rpcs() -> None:
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "answerer", FAST))
        b, got = await stack.enter_async_context(gossip_node(stack, "asker", LIMITED, "go/1"))
        await linked(a, b)
        ids = [await a.publish(T, bytes([i]) * 900_000) for i in range(3)]
        await wait_for(lambda: len(got) == 3)
        # B asks for all three at once (as after an IHAVE): one answer of 2.7 MB before.
        a.router._handle_iwant(b.host.peer_id, tuple(i for i in ids if i is not None))
        a._drain()
        await wait_for(lambda: b.counters.get("gossip_msg_duplicate") == 3)
        assert b.counters.get("gossip_rpc_unreadable") == 0
        assert a.counters.get("gossip_send_stream_closed") == 0


async def test_a_reset_stream_is_reopened_and_the_peer_hears_from_us_again() -> None:
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "sender", FAST))
        b, got = await stack.enter_async_context(gossip_node(stack, "strict", LIMITED, "go/1"))
        await linked(a, b)
        # One message over B's limit travels alone (counted); B resets the stream.
        await a.publish(T, b"x" * (MiB + 100_000))
        await wait_for(lambda: a.counters.get("gossip_stream_reopened") >= 1)
        assert a.counters.get("gossip_rpc_over_send_limit") >= 1
        assert a.counters.get("gossip_stream_failed") >= 1
        assert b.counters.get("gossip_rpc_unreadable") >= 1
        # (B may ask for the big message again by IWANT and reset the next stream too: it
        # cannot take it, and we keep reopening within stream_reopens_max.)
        after = await a.publish(T, b"after the reset")
        await wait_for(lambda: any(m.msg_id == after for m in got))
        assert a.host.is_connected(b.host.peer_id)


async def test_publish_never_waits_for_a_peer_that_does_not_read() -> None:
    config = GossipsubConfig(
        heartbeat_interval_ms=100,
        peer_queue_bytes_max=8 * MiB,
        publish_backlog_bytes_max=32 * MiB,
        slow_peer_stall_heartbeats=3,
    )
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "publisher", config))
        c, got = await stack.enter_async_context(gossip_node(stack, "reader", FAST))
        await linked(a, c)
        # B subscribes, then never reads a byte of what A sends.
        b = await stack.enter_async_context(Host(identity("sleeper")))
        await b.listen()

        async def never_read(stream: Stream) -> None:
            await asyncio.Event().wait()

        for protocol in (MESHSUB_V12, MESHSUB_V11):
            b.set_stream_handler(protocol, never_read)
        await b.dial(a.host.addrs()[0])
        hello = await b.new_stream(a.host.peer_id, [MESHSUB_V11])
        await hello.write_frame(Rpc(subscriptions=((True, T),)).encode())
        await wait_for(lambda: b.peer_id in a.topic_peers(T))

        spans = []
        for i in range(30):
            before = a.router.ticks
            await asyncio.wait_for(a.publish(T, bytes([i]) * 900_000), 60)
            spans.append(a.router.ticks - before)
        # Waiting for B to be cut off would take slow_peer_stall_heartbeats plus ten slow
        # heartbeats; a publish must not come near that (the slack is for a loaded machine).
        assert max(spans) <= 5, spans
        await wait_for(lambda: len(got) == 30)
        assert a.counters.get("gossip_send_queue_full") >= 1
        await wait_for(lambda: not a.host.is_connected(b.peer_id))
        assert a.counters.get("gossip_peer_slow") >= 1
        assert a.counters.get("gossip_peer_graylisted") == 1
        assert a.queued_bytes() < config.peer_queue_bytes_max


async def test_a_peer_that_opens_a_new_stream_hears_our_subscriptions_again() -> None:
    # py-libp2p forgets a peer's subscriptions when either of their streams fails, then opens
    # a new stream to it; we answer a new stream from a known peer by subscribing again.
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "subscriber", FAST))
        b = await stack.enter_async_context(Host(identity("forgetful")))
        await b.listen()
        heard: list[Rpc] = []

        async def record(stream: Stream) -> None:
            while (frame := await stream.read_frame(MiB)) is not None:
                heard.append(Rpc.decode(frame, LIMITED.rpc_limits))

        b.set_stream_handler(MESHSUB_V11, record)
        await b.dial(a.host.addrs()[0])

        def announcements() -> int:
            return sum(1 for rpc in heard if (True, T) in rpc.subscriptions)

        first = await b.new_stream(a.host.peer_id, [MESHSUB_V11])
        await first.write_frame(Rpc(subscriptions=((True, T),)).encode())
        await wait_for(lambda: announcements() == 1)
        first.reset()
        second = await b.new_stream(a.host.peer_id, [MESHSUB_V11])
        await second.write_frame(Rpc(subscriptions=((True, T),)).encode())
        await wait_for(lambda: announcements() == 2)


async def test_a_garbled_stream_costs_one_penalty_and_is_reset() -> None:
    # After a frame that does not decode, the framing itself is suspect: every later "frame"
    # of a desynchronised stream would otherwise cost the peer a penalty until graylisted.
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "reader", FAST))
        b = await stack.enter_async_context(Host(identity("garbler")))
        await b.listen()
        await b.dial(a.host.addrs()[0])
        stream = await b.new_stream(a.host.peer_id, [MESHSUB_V11])
        await stream.write_frame(Rpc(subscriptions=((True, T),)).encode())
        garbage = bytes([0x1F]) * 50  # wire type 7: no protobuf decodes this
        for _ in range(20):
            await stream.write_frame(garbage)
        await wait_for(lambda: a.counters.get("stream_handler_remote_error") >= 1)
        assert a.counters.get("gossip_rpc_invalid") == 1
        assert a.score(b.peer_id) > FAST.thresholds.gossip_threshold
        assert a.host.is_connected(b.peer_id)


async def test_our_stream_opens_again_when_its_connection_closed_under_it() -> None:
    """Two hosts dialling each other open two connections and the host closes one
    (node/p2p/host.py); a stream being negotiated on it fails with StreamClosed while the
    peer stays connected on the other.  That was taken for a peer without gossipsub: no
    stream of ours was opened and nothing we published reached it (seen at a LocalNet's
    start: `gossip_peer_unsupported ... connection closed`).  Here the first open fails so."""
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(gossip_node(stack, "opener", FAST))
        b, got = await stack.enter_async_context(gossip_node(stack, "other", FAST))
        real_new_stream = a.host.new_stream
        failed: list[PeerId] = []

        async def first_one_lost(
            peer: PeerId, protocols: Sequence[str], high: bool = True
        ) -> Stream:
            if not failed:
                failed.append(peer)
                raise StreamClosed("connection closed")
            return await real_new_stream(peer, protocols, high)

        a.host.new_stream = first_one_lost  # type: ignore[method-assign]
        await linked(a, b)
        await a.publish(T, b"after a lost first stream")
        await wait_for(lambda: len(got) == 1)
        assert failed == [b.host.peer_id]
