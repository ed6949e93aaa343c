"""Attack routines shared by the adversarial tests (tests/adversarial/test_*.py) and the
benchmark that runs them longer (scripts/bench_adversarial.py).

Every routine is an attacker in this process on the node's own p2p stack (fresh identities,
the real handshake), bounded in count and in time, against loopback only.  A target is
anything with the node's p2p address, chain, genesis and RSS (`AttackTarget`): a solo node of
conftest.py or one node of a LocalNet (`net_target`).
"""

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Protocol

from consensus.app import Genesis
from consensus.crypto import PrivateKey
from consensus.driver.driver import compact_data_hash
from consensus.engine.inputs import STEP_COMMIT
from consensus.types import (
    PRECOMMIT,
    PREVOTE,
    Block,
    Header,
    Proposal,
    Vote,
    encode_message,
    vote_sign_bytes,
)
from fl.txs import sign_tx
from node.chaincheck import open_gate
from node.commands.testnet import node_ports
from node.genesis import read_genesis_file
from node.keys import generate_key, read_key
from node.localnet import LocalNet
from node.p2p.config import HostConfig
from node.p2p.errors import P2PError
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import Validation
from node.p2p.gossipsub.service import GossipSub
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.p2p.session import Stream
from node.p2p.varint import encode_uvarint
from node.p2p.yamux import Flag, FrameType, encode_header
from node.rpc.client import RpcClient, RpcError
from node.wire import CompactProposal, ConsensusMsg, TxPush
from node.wire import encode_message as encode_wire
from tests.adversarial.conftest import MiB, rss_bytes

ATTACK_S = 5.0


class AttackTarget(Protocol):
    @property
    def p2p_addr(self) -> str: ...

    @property
    def chain_id(self) -> str: ...

    @property
    def genesis(self) -> Genesis: ...

    @property
    def rss(self) -> int: ...


@dataclass(frozen=True, slots=True)
class NetTarget:
    """Node `index` of a running LocalNet, as an attacker sees it."""

    net: LocalNet
    index: int
    p2p_addr: str
    peer_id: PeerId
    genesis: Genesis

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def p2p_port(self) -> int:
        return node_ports(self.net.base_port, self.index)[0]

    @property
    def rss(self) -> int:
        return rss_bytes(self.net.procs[self.index].pid)


def net_target(net: LocalNet, index: int) -> NetTarget:
    peer = PeerId.from_public_key(read_key(net.home(index).node_key_file).public_key)
    port = node_ports(net.base_port, index)[0]
    genesis = read_genesis_file(net.home(index).genesis_file).genesis
    return NetTarget(net, index, f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}", peer, genesis)


@asynccontextmanager
async def stranger(
    node: AttackTarget, source: str, identity: Identity | None = None
) -> AsyncIterator[tuple[Host, PeerId]]:
    """An identity (fresh unless given) from `source`, connected and through the chain
    handshake (the genesis is public: an attacker knows it), so it reaches the node's chain
    protocols."""
    identity = identity if identity is not None else Identity.from_seed(os.urandom(32))
    async with Host(identity, HostConfig()) as host:
        gate = open_gate(host, node.genesis)
        peer = await host.dial(node.p2p_addr, local_host=source)
        assert await gate.wait_admitted(peer), "the node must admit a peer of its chain"
        yield host, peer


# ---- memory (issue 13, attacks 1 and 3) --------------------------------------------------------


async def _watch(
    node: AttackTarget, host: Host, peer: object, seconds: float
) -> tuple[int, float | None]:
    """Sample the node's RSS until the attacker is cut off or `seconds` pass."""
    start = time.monotonic()
    peak = node.rss
    while time.monotonic() - start < seconds:
        await asyncio.sleep(0.05)
        peak = max(peak, node.rss)
        if not host.is_connected(peer):  # type: ignore[arg-type]
            return peak, time.monotonic() - start
    return peak, None


async def _frame_streams(
    node: AttackTarget,
    source: str,
    streams: int,
    seconds: float,
    declared: int,
    payload: bytes,
    hold: bool,
) -> tuple[int, float | None]:
    """`streams` streams on the msg protocol, each declaring a `declared`-byte message and
    sending `payload` of it (then holding the stream open if `hold`), while the node's RSS is
    watched until it cuts the attacker off or `seconds` pass."""
    async with stranger(node, source) as (host, peer):
        protocol = f"/fedchain/{node.chain_id}/msg/1.0.0"

        async def one() -> None:
            stream = await host.new_stream(peer, [protocol], high=False)
            await stream.write(encode_uvarint(declared))
            await stream.write(payload)
            if hold:
                await asyncio.sleep(3600)

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        try:
            return await _watch(node, host, peer, seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def big_frames(
    node: AttackTarget, source: str, streams: int = 16, seconds: float = ATTACK_S
) -> tuple[int, float | None]:
    """Attack 1: streams on the msg protocol, each declaring a 64 MiB message and sending
    60 MiB of it."""
    return await _frame_streams(
        node, source, streams, seconds, 64 * MiB, bytes(60 * MiB), hold=False
    )


async def stalled_frames(
    node: AttackTarget, source: str, streams: int = 64, seconds: float = 4 * ATTACK_S
) -> tuple[int, float | None]:
    """Attack 1 under the cap: many streams each declaring a 2 MiB message (under the stranger cap)
    and never finishing it.  Only the memory budget bounds this one."""
    return await _frame_streams(
        node, source, streams, seconds, 2 * MiB, bytes(2 * MiB - 1), hold=True
    )


async def ping_flood(
    node: AttackTarget, source: str, seconds: float = ATTACK_S
) -> tuple[int, float | None]:
    """Attack 3: yamux pings, never reading the replies."""
    async with stranger(node, source) as (host, peer):
        conn = host.connection(peer)
        assert conn is not None
        channel = conn.session.channel
        transport = channel.tcp.transport
        assert transport is not None
        transport.pause_reading()
        pings = b"".join(encode_header(FrameType.PING, Flag.SYN, 0, i) for i in range(5000))
        start = time.monotonic()
        peak = node.rss
        while time.monotonic() - start < seconds and host.is_connected(peer):
            for offset in range(0, len(pings), 60_000):
                channel.send(pings[offset : offset + 60_000])
            await asyncio.sleep(0.01)
            peak = max(peak, node.rss)
        if host.is_connected(peer):
            return peak, None
        return max(peak, node.rss), time.monotonic() - start


# ---- tx gossip spam (attack 5) and the RPC (attack 6) ------------------------------------------


def forged_tx(chain_id: str, nonce: int) -> bytes:
    """A transfer whose signature's last byte is flipped: invalid in every state."""
    wire = bytearray(
        sign_tx(generate_key(), chain_id, "transfer", nonce, [b"\x01" * 32, 1]).to_wire()
    )
    wire[-1] ^= 0x01
    return bytes(wire)


async def gossip_forged_txs(
    node: AttackTarget, source: str, count_max: int, interval_s: float
) -> tuple[int, float | None]:
    """A fresh identity joins the tx topic and gossips forged txs, one per `interval_s`, until
    the node cuts it off or `count_max` are out (then up to 2 s for the ban to land):
    (txs sent, seconds from the first to the disconnect)."""
    topic = f"/fedchain/{node.chain_id}/txs/1"
    async with Host(Identity.from_seed(os.urandom(32)), HostConfig()) as host:
        # Subscribed before it dials: the node learns the topic in the first exchange.
        pubsub = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
        pubsub.start()
        pubsub.subscribe(
            topic,
            lambda _peer, _message: Validation.ACCEPT,
            strict_sign=False,
            on_message=lambda _message: None,
        )
        gate = open_gate(host, node.genesis)
        peer = await host.dial(node.p2p_addr, local_host=source)
        assert await gate.wait_admitted(peer), "the node must admit a peer of its chain"
        deadline = time.monotonic() + 10.0
        while peer not in pubsub.topic_peers(topic):
            assert time.monotonic() < deadline, "the node never announced its tx topic"
            await asyncio.sleep(0.05)
        start = time.monotonic()
        sent = 0
        while host.is_connected(peer) and sent < count_max:
            pubsub.publish_nowait(topic, encode_wire(TxPush(forged_tx(node.chain_id, sent))))
            sent += 1
            await asyncio.sleep(interval_s)
        for _ in range(40):
            if not host.is_connected(peer):
                break
            await asyncio.sleep(0.05)
        if host.is_connected(peer):
            return sent, None
        return sent, time.monotonic() - start


async def slow_headers(host: str, port: int, conns: int, stop: asyncio.Event) -> list[float]:
    """`conns` connections sending a request's headers one byte every 0.5 s: the seconds until
    the node closed each (those it had not closed when `stop` was set or after 60 s count not)."""
    start = time.monotonic()
    opened = [await asyncio.open_connection(host, port) for _ in range(conns)]
    for _, writer in opened:
        writer.write(b"GET /status HTTP/1.1\r\nHost: node\r\nX-Slow: ")
    cut: dict[int, float] = {}
    while len(cut) < conns and not stop.is_set() and time.monotonic() - start < 60.0:
        await asyncio.sleep(0.5)
        for n, (reader, writer) in enumerate(opened):
            if n in cut:
                continue
            if reader.at_eof() or writer.is_closing():
                cut[n] = time.monotonic() - start
            else:
                with suppress(ConnectionError):
                    writer.write(b"a")
    for _, writer in opened:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    return sorted(cut.values())


# ---- the high-round flood (consensus messages on the msg protocol) -----------------------------

# Rounds the decoder refuses (consensus.types.ROUND_MAX is 2^20) and the one it takes at the
# edge: the engine refuses that one (beyond peer_round_max) before any signature check.
HUGE_ROUNDS = (1 << 20, (1 << 20) + 1, 1 << 24, 1 << 32, 1 << 40)
# Rounds that decode but that no honest node reaches (peer_round_max is 10,000 by default).
PEER_ROUND_MAX = 10_000
ROUND_DECODE_MAX = 1 << 20


def _block(chain_id: str, height: int, proposer: bytes, rng: random.Random) -> Block:
    header = Header(
        chain_id=chain_id,
        height=height,
        time_ms=int(time.time() * 1000),
        last_block_id=rng.randbytes(32),
        last_commit_hash=rng.randbytes(32),
        data_hash=compact_data_hash(()),
        evidence_hash=rng.randbytes(32),
        validators_hash=rng.randbytes(32),
        next_validators_hash=rng.randbytes(32),
        app_hash=rng.randbytes(32),
        proposer=proposer,
    )
    return Block(header, (), (), None)


def forged_frame(
    chain_id: str, height: int, round_: int, validator: bytes, rng: random.Random
) -> bytes:
    """One msg-protocol frame: a proposal (full or compact) or a vote at (`height`, `round_`)
    claiming to come from `validator`, with a random signature.  Encoded by hand at the value
    level: the typed encoders would refuse nothing, but a round past 2^20 must still go out."""
    signature = rng.randbytes(64)
    match rng.randrange(3):
        case 0:
            vote = Vote(rng.choice((PREVOTE, PRECOMMIT)), height, round_, rng.randbytes(32),
                        validator, signature)  # fmt: skip
            return encode_wire(ConsensusMsg(encode_message(vote)))
        case 1:
            block = _block(chain_id, height, validator, rng)
            proposal = Proposal(height, round_, -1, block, validator, signature)
            return encode_wire(ConsensusMsg(encode_message(proposal)))
        case _:
            block = _block(chain_id, height, validator, rng)
            proposal = Proposal(height, round_, -1, block, validator, signature)
            return encode_wire(CompactProposal(encode_message(proposal), ()))


def garbage_frame(rng: random.Random) -> bytes:
    """Undecodable: either the frame itself is not msgpack, or it is a `cons` message whose
    engine bytes are not."""
    if rng.randrange(2):
        return b"\xc1" * rng.randrange(1, 256)  # 0xc1 is never valid msgpack
    return encode_wire(ConsensusMsg(b"\xc1" + rng.randbytes(rng.randrange(0, 200))))


def signed_vote_frame(
    key: PrivateKey, chain_id: str, height: int, round_: int, rng: random.Random
) -> bytes:
    """A correctly signed vote by `key` (a real validator's: the byzantine one)."""
    vote_type = rng.choice((PREVOTE, PRECOMMIT))
    block_id = rng.randbytes(32)
    signature = key.sign(vote_sign_bytes(chain_id, vote_type, height, round_, block_id))
    vote = Vote(vote_type, height, round_, block_id, key.public_key, signature)
    return encode_wire(ConsensusMsg(encode_message(vote)))


def forger_frames(
    chain_id: str,
    height: Callable[[], int],
    validators: list[bytes],
    mode: str,
    rng: random.Random,
) -> Iterator[bytes]:
    """What one forging peer sends, forever, at the chain's current `height()` (a stale height
    is dropped before any other check): `huge` (rounds 2^20 .. 2^40, most undecodable), `far`
    (rounds that decode but exceed peer_round_max) or `garbage` (undecodable frames)."""
    while True:
        match mode:
            case "huge":
                round_ = rng.choice(HUGE_ROUNDS) + rng.randrange(1000)
                yield forged_frame(chain_id, height(), round_, rng.choice(validators), rng)
            case "far":
                round_ = rng.randrange(PEER_ROUND_MAX + 1, ROUND_DECODE_MAX + 1)
                yield forged_frame(chain_id, height(), round_, rng.choice(validators), rng)
            case _:
                yield garbage_frame(rng)


@dataclass(slots=True)
class Offender:
    """One attacking connection: who, in which mode, and how the node dealt with it."""

    mode: str
    peer_id: str
    target: int
    sent: int = 0
    disconnected_after_s: float | None = None


async def flood_frames(
    host: Host,
    peer: PeerId,
    chain_id: str,
    frames: Iterator[bytes],
    stop: asyncio.Event,
    frames_max: int,
    batch: int = 50,
) -> tuple[int, float | None]:
    """Write `frames` on msg streams as fast as the node takes them (a new stream whenever the
    node resets one), until the node cuts us off, `stop` is set or `frames_max` are out:
    (frames sent, seconds until cut off)."""
    start = time.monotonic()
    sent = 0
    protocol = f"/fedchain/{chain_id}/msg/1.0.0"
    while not stop.is_set() and sent < frames_max and host.is_connected(peer):
        with suppress(P2PError, OSError):
            stream = await host.new_stream(peer, [protocol], high=True)
            while not stop.is_set() and sent < frames_max:
                for _ in range(batch):
                    await stream.write_frame(next(frames))
                    sent += 1
                await asyncio.sleep(0)
        await asyncio.sleep(0.01)
    # The node may have cut us off mid-write; give its close a moment to arrive.
    for _ in range(40):
        if not host.is_connected(peer) or stop.is_set():
            break
        await asyncio.sleep(0.05)
    if host.is_connected(peer):
        return sent, None
    return sent, time.monotonic() - start


@dataclass(frozen=True, slots=True)
class Cut:
    """The byzantine validator's link to one target, ended by the node."""

    target: int
    after_s: float  # from the link's first frame to the disconnect
    sent: int  # frames written on that link


@dataclass(slots=True)
class RoundFlood:
    """The state of a running high-round flood, read by the test and the benchmark."""

    offenders: list[Offender] = field(default_factory=list)
    byzantine_sent: int = 0
    byzantine_connected: bool = False
    byzantine_cuts: list[Cut] = field(default_factory=list)
    byzantine_peer_id: str = ""
    errors: list[str] = field(default_factory=list)


async def consensus_height(target: NetTarget) -> int:
    """The height `target` decides next, from its /status (0 if it does not answer).  A node
    spends most of a block in STEP_COMMIT of the height it just decided (messages for that
    height are then dropped unchecked): its next height is the one to aim at."""
    try:
        async with RpcClient(target.net.rpc_url(target.index), timeout_ms=2_000) as client:
            status = await client.status()
    except (RpcError, OSError, TimeoutError):
        return 0
    height = int(status["consensus_height"])
    return height + 1 if int(status["step"]) == STEP_COMMIT else height


def _reader(cell: list[int]) -> Callable[[], int]:
    return lambda: cell[0]


async def _track(target: NetTarget, aim: list[int], done: asyncio.Event) -> None:
    while not done.is_set():
        aim[0] = max(aim[0], await consensus_height(target))
        await asyncio.sleep(0.1)


async def forgers(
    targets: list[NetTarget],
    flood: RoundFlood,
    stop: asyncio.Event,
    identities_max: int = 24,
    frames_max: int = 6_000,
) -> None:
    """Fresh stranger identities, each from its own loopback address, flooding the targets in
    turn with forged high-round messages or garbage until each is cut off; bounded by
    `identities_max` identities and `frames_max` frames each.  Each aims at the height its
    target is deciding (polled: a message for a past height is dropped before any check)."""
    validators = [v.public_key for v in targets[0].genesis.validators]
    modes = ("huge", "garbage", "far")
    rng = random.Random(13)
    for n in range(identities_max):
        if stop.is_set():
            return
        target = targets[n % len(targets)]
        mode = modes[n % len(modes)]
        source = f"127.13.{n // 200}.{2 + n % 200}"
        aim = [await consensus_height(target)]
        done = asyncio.Event()
        tracker = asyncio.create_task(_track(target, aim, done))
        try:
            async with stranger(target, source) as (host, peer):
                offender = Offender(mode, str(host.peer_id), target.index)
                flood.offenders.append(offender)
                frames = forger_frames(target.chain_id, _reader(aim), validators, mode, rng)
                offender.sent, offender.disconnected_after_s = await flood_frames(
                    host, peer, target.chain_id, frames, stop, frames_max
                )
        except (P2PError, OSError, AssertionError) as exc:
            flood.errors.append(f"forger {n} ({mode}) at node{target.index}: {exc!r}")
        finally:
            done.set()
            await tracker
        await asyncio.sleep(0.05)


@dataclass(slots=True)
class _Link:
    peer: PeerId
    stream: Stream
    since: float
    sent: int = 0


async def byzantine(
    targets: list[NetTarget],
    node_key: PrivateKey,
    validator_key: PrivateKey,
    height: Callable[[], int],
    round_: Callable[[], int],
    flood: RoundFlood,
    stop: asyncio.Event,
    frames_max: int = 200_000,
    near_share: float = 0.25,
    votes_per_s: float | None = None,
    redial: bool = False,
) -> None:
    """A byzantine validator (its own node key and validator key; its process is stopped):
    correctly signed votes for rounds ahead of the honest ones, near (within rounds_ahead_max,
    recorded; `near_share` of them) and far (up to peer_round_max, ignored), to every target,
    until `stop`; at most `votes_per_s` (None: as fast as the targets take them).  A target
    that cuts it off is recorded in `flood.byzantine_cuts`; with `redial` it dials that target
    again every 0.5 s (refused while the ban lasts), as a persistent attacker would."""
    rng = random.Random(31)
    identity = Identity.from_seed(node_key.seed)
    chain_id = targets[0].chain_id
    protocol = f"/fedchain/{chain_id}/msg/1.0.0"
    flood.byzantine_peer_id = str(identity.peer_id)
    async with Host(identity, HostConfig()) as host:
        gate = open_gate(host, targets[0].genesis)
        links: dict[int, _Link | None] = {}

        async def connect(i: int) -> bool:
            try:
                async with asyncio.timeout(2.0):
                    peer = await host.dial(targets[i].p2p_addr, local_host="127.0.0.1")
                    if not await gate.wait_admitted(peer):
                        return False
                    stream = await host.new_stream(peer, [protocol], high=True)
            except (P2PError, OSError, TimeoutError):
                return False
            links[i] = _Link(peer, stream, time.monotonic())
            return True

        async def reconnect(i: int) -> None:
            while not await connect(i):
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                    return

        for i in range(len(targets)):
            assert await connect(i), "the node must admit its own validator"
        flood.byzantine_connected = True
        redials: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        while not stop.is_set() and flood.byzantine_sent < frames_max:
            h, r = height(), round_()
            for _ in range(20):
                if rng.random() >= near_share:
                    ahead = rng.randrange(r + 65, PEER_ROUND_MAX + 1)  # ignored
                else:
                    ahead = r + rng.randrange(1, 65)  # recorded
                frame = signed_vote_frame(validator_key, chain_id, h + rng.randrange(2), ahead, rng)
                for link in links.values():
                    if link is None:
                        continue
                    with suppress(P2PError, OSError):
                        await link.stream.write_frame(frame)
                        link.sent += 1
                flood.byzantine_sent += 1
            for i, link in list(links.items()):
                if link is not None and not host.is_connected(link.peer):
                    flood.byzantine_cuts.append(Cut(i, time.monotonic() - link.since, link.sent))
                    links[i] = None
                    if redial:
                        task = asyncio.create_task(reconnect(i))
                        redials.add(task)
                        task.add_done_callback(redials.discard)
            due = 0.0 if votes_per_s is None else flood.byzantine_sent / votes_per_s
            await asyncio.sleep(max(0.0, start + due - time.monotonic()))
        for task in list(redials):
            task.cancel()
        await asyncio.gather(*redials, return_exceptions=True)
        flood.byzantine_connected = all(
            link is not None and host.is_connected(link.peer) for link in links.values()
        )
