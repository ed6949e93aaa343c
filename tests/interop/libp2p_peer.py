"""A py-libp2p 0.8.1 peer driven over stdin/stdout, run as a separate process by the tests.

py-libp2p is trio-based, so it lives in its own process.  Commands arrive as JSON lines on
stdin, events leave as JSON lines on stdout; the first event is {"event": "ready", "addr": ...}.

Configuration (so the tests measure our stack, not py-libp2p's defaults):
- identity: ed25519 key from --seed (py-libp2p's examples default to RSA/secp256k1);
- security /noise, muxer /yamux/1.0.0 (new_host defaults);
- gossipsub /meshsub/1.1.0 (and 1.2.0 with --v12), D=6 D_lo=4 D_hi=12 (--degree,
  --degree-low, --degree-high; --fixed-degree turns off its adaptive bounds), heartbeat 1 s,
  StrictSign with peer+seqno message ids (the libp2p default);
- Pubsub max_inbound_rpc_size raised from 1 MiB to 64 MiB (--max-rpc-bytes; the sparse-mesh
  scenario keeps py-libp2p's real 1 MiB);
- GossipSub spam_protection_enabled=False (its default caps 10 messages/s per topic) and
  max_pending_messages_per_peer raised from 100 to 100_000;
- the per-peer outbound RpcQueue raised from 32 RPCs / 1 MiB to 100_000 RPCs / 64 MiB
  (py-libp2p constructs it with defaults, so `pubsub.RpcQueue` is replaced by a partial);
- the subscription channel is drained by a reader task as fast as messages arrive;
- writes of RPCs to one stream are serialised (py-libp2p 0.8.1 interleaves them; see main()).
"""

import argparse
import functools
import json
import os
import sys
import time
from typing import Any

import multiaddr
import trio
import trio.lowlevel
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.tools.anyio_service import background_trio_service


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def read_commands(send: trio.MemorySendChannel[dict[str, Any]]) -> None:
    stdin = trio.lowlevel.FdStream(0)
    buf = b""
    async with send:
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    await send.send(json.loads(line))


async def main(args: argparse.Namespace) -> None:
    pubsub_module.RpcQueue = functools.partial(  # type: ignore[misc]
        RpcQueue, max_size=args.queue_rpcs, max_message_size=args.max_rpc_bytes
    )
    # py-libp2p 0.8.1 writes RPCs to a peer's stream from its queue task and, on (re)connect,
    # directly (pending and recent messages), concurrently; a large RPC's yamux write yields
    # mid-way, so two RPCs interleave and the receiver reads garbage.  One lock per stream
    # serialises those writes, so churn scenarios measure our stack, not that bug.
    write_locks: dict[int, trio.Lock] = {}
    unlocked_write = Pubsub.write_msg

    async def write_msg(self: Pubsub, stream: Any, rpc_msg: Any) -> bool:
        lock = write_locks.setdefault(id(stream), trio.Lock())
        async with lock:
            return await unlocked_write(self, stream, rpc_msg)

    Pubsub.write_msg = write_msg  # type: ignore[method-assign]
    key_pair = create_new_key_pair(bytes.fromhex(args.seed))
    host = new_host(key_pair=key_pair)
    protocols = [TProtocol("/meshsub/1.1.0")]
    if args.v12:
        protocols.insert(0, TProtocol("/meshsub/1.2.0"))
    gossipsub = GossipSub(
        protocols=protocols,
        degree=args.degree,
        degree_low=args.degree_low,
        degree_high=args.degree_high,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        spam_protection_enabled=False,
        max_pending_messages_per_peer=100_000,
        # Sparse-mesh scenarios fix the degree: the adaptive bounds would widen it.
        adaptive_gossip_enabled=not args.fixed_degree,
    )
    if args.no_sign:
        # The chain's configuration: StrictNoSign with content-derived message ids.
        from libp2p.pubsub.pubsub import ContentAddressedMessageIDGenerator

        pubsub = Pubsub(
            host,
            gossipsub,
            max_inbound_rpc_size=args.max_rpc_bytes,
            strict_signing=False,
            msg_id_constructor=ContentAddressedMessageIDGenerator(),
        )
    else:
        pubsub = Pubsub(host, gossipsub, max_inbound_rpc_size=args.max_rpc_bytes)
    send, receive = trio.open_memory_channel[dict[str, Any]](1000)
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    async with (
        host.run(listen_addrs=[listen]),
        trio.open_nursery() as nursery,
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        addr = f"{host.get_addrs()[0]}"
        if "/p2p/" not in addr:
            addr = f"{addr}/p2p/{host.get_id().to_string()}"
        emit(event="ready", addr=addr, peer=host.get_id().to_string())
        nursery.start_soon(read_commands, send)
        async for command in receive:
            await handle(command, host, pubsub, gossipsub, nursery)
        nursery.cancel_scope.cancel()


BENCH: dict[str, dict[str, Any]] = {}


async def bench_receive(subscription: Any, topic: str, latency: bool) -> None:
    state = BENCH[topic]
    while True:
        message = await subscription.get()
        now = time.monotonic()
        state["count"] += 1
        state["bytes"] += len(message.data)
        state["t_last"] = now
        if latency:
            sent_ns = int.from_bytes(message.data[:8], "big")
            state["lat"].append((time.monotonic_ns() - sent_ns) / 1e6)


async def receive_loop(subscription: Any, pubsub: Pubsub, topic: str, quiet: bool) -> None:
    count = 0
    while True:
        message = await subscription.get()
        count += 1
        if not quiet:
            emit(
                event="message",
                msg_id=pubsub._msg_id_constructor(message).hex(),
                topic=topic,
                data=message.data.hex() if len(message.data) <= 256 else "",
                size=len(message.data),
                sender=ID(message.from_id).to_string(),
                seqno=message.seqno.hex(),
                count=count,
            )
        elif count % 100 == 0:
            emit(event="count", topic=topic, count=count)


async def handle(
    command: dict[str, Any], host: Any, pubsub: Pubsub, gossipsub: GossipSub, nursery: Any
) -> None:
    op = command["op"]
    try:
        match op:
            case "dial":
                info = info_from_p2p_addr(multiaddr.Multiaddr(command["addr"]))
                await host.connect(info)
                emit(event="dialed", peer=info.peer_id.to_string())
            case "disconnect":
                await host.disconnect(ID.from_base58(command["peer"]))
                emit(event="disconnected", peer=command["peer"])
            case "ping":
                from libp2p.host.ping import PingService

                rtts = await PingService(host).ping(ID.from_base58(command["peer"]), 1)
                emit(event="pong", rtts=[float(r) for r in rtts])
            case "protocols":
                peer = ID.from_base58(command["peer"])
                protos = host.get_peerstore().get_protocols(peer)
                agent = None
                try:
                    agent = host.get_peerstore().get(peer, "AgentVersion")
                except Exception:
                    agent = None
                emit(event="protocols", protocols=list(protos), agent=agent)
            case "subscribe":
                sub = await pubsub.subscribe(command["topic"])
                nursery.start_soon(
                    receive_loop, sub, pubsub, command["topic"], command.get("quiet", False)
                )
                emit(event="subscribed", topic=command["topic"])
            case "mesh":
                topic = command["topic"]
                mesh = [p.to_string() for p in gossipsub.mesh.get(topic, set())]
                emit(event="mesh", peers=sorted(mesh))
            case "publish":
                from libp2p.pubsub.pb import rpc_pb2

                count = int(command.get("count", 1))
                size = int(command.get("size", 0))
                ids = []
                for i in range(count):
                    if "data" in command:
                        data = bytes.fromhex(command["data"])
                    else:
                        data = i.to_bytes(8, "big") + b"\x00" * max(0, size - 8)
                    await pubsub.publish(command["topic"], data)
                    if command.get("report_ids", True):
                        # The id py-libp2p itself gives the message it just published.
                        sent = rpc_pb2.Message(
                            from_id=host.get_id().to_bytes(),
                            seqno=pubsub.counter.to_bytes(8, "big"),
                            data=data,
                            topicIDs=[command["topic"]],
                        )
                        ids.append(pubsub._msg_id_constructor(sent).hex())
                emit(event="published", count=count, ids=ids)
            case "publish_raw":
                # A hand-built RPC, e.g. a message whose signature was tampered with.
                from libp2p.pubsub.pb import rpc_pb2

                msg = rpc_pb2.Message(
                    from_id=host.get_id().to_bytes(),
                    data=bytes.fromhex(command["data"]),
                    seqno=bytes.fromhex(command["seqno"]),
                    topicIDs=[command["topic"]],
                )
                payload = b"libp2p-pubsub:" + msg.SerializeToString()
                signature = bytearray(host.get_private_key().sign(payload))
                if command.get("tamper", False):
                    signature[0] ^= 0xFF
                msg.signature = bytes(signature)
                rpc = rpc_pb2.RPC(publish=[msg])
                for peer in list(pubsub.peers):
                    await pubsub.write_msg(pubsub.peers[peer], rpc)  # type: ignore[attr-defined]
                emit(event="published_raw")
            case "counters":
                emit(event="counters", seen=len(getattr(pubsub, "seen_messages", []) or []))
            case "bench_subscribe":
                # Count messages (and vote latencies) without printing each one.
                topic = command["topic"]
                sub = await pubsub.subscribe(topic)
                BENCH[topic] = {"count": 0, "bytes": 0, "t_last": 0.0, "lat": []}
                nursery.start_soon(bench_receive, sub, topic, command.get("latency", False))
                emit(event="subscribed", topic=topic)
            case "bench_cpu":
                emit(event="bench_cpu", cpu=time.process_time())
            case "bench_expect":
                state = BENCH[command["topic"]]
                while state["count"] < int(command["count"]):  # noqa: ASYNC110
                    await trio.sleep(0.001)
                emit(
                    event="bench_done",
                    count=state["count"],
                    bytes=state["bytes"],
                    t_last=state["t_last"],
                    cpu=time.process_time(),
                )
            case "bench_latency_report":
                lat = sorted(BENCH[command["topic"]]["lat"])
                emit(event="bench_latency", latencies_ms=lat)
            case "bench_publish":
                size = int(command["size"])
                payload = b"\x00" * size
                t0 = time.monotonic()
                cpu0 = time.process_time()
                for i in range(int(command["count"])):
                    await pubsub.publish(command["topic"], i.to_bytes(8, "big") + payload[8:])
                emit(
                    event="bench_published",
                    t0=t0,
                    t_end=time.monotonic(),
                    cpu0=cpu0,
                    cpu1=time.process_time(),
                )
            case "bench_stream":
                # Large messages stream on one topic while small "votes" go out periodically.
                stop = trio.Event()

                async def stream_big() -> None:
                    big = b"\x01" * int(command["big_size"])
                    i = 0
                    while not stop.is_set():
                        i += 1
                        await pubsub.publish(command["big_topic"], i.to_bytes(8, "big") + big[8:])
                        await (
                            trio.lowlevel.checkpoint()
                        )  # let the vote loop run between big messages

                nursery.start_soon(stream_big)
                deadline = time.monotonic() + float(command["duration_s"])
                votes = 0
                while time.monotonic() < deadline:
                    stamp = time.monotonic_ns().to_bytes(8, "big")
                    await pubsub.publish(
                        command["topic"], stamp + b"v" * (int(command["size"]) - 8)
                    )
                    votes += 1
                    await trio.sleep(float(command["interval_s"]))
                stop.set()
                emit(event="bench_streamed", votes=votes)
            case "quit":
                sys.stdout.flush()
                os._exit(0)
            case _:
                emit(event="error", op=op, error="unknown op")
    except SystemExit:
        raise
    except Exception as exc:  # report, keep serving
        emit(event="error", op=op, error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", default="11" * 32)
    parser.add_argument("--v12", action="store_true")
    parser.add_argument("--max-rpc-bytes", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--queue-rpcs", type=int, default=100_000)
    parser.add_argument("--no-sign", action="store_true")
    parser.add_argument("--degree", type=int, default=6)
    parser.add_argument("--degree-low", type=int, default=4)
    parser.add_argument("--degree-high", type=int, default=12)
    parser.add_argument("--fixed-degree", action="store_true")
    trio.run(main, parser.parse_args())
