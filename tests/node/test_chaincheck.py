"""The chain handshake (node/chaincheck.py): what a hello says, how two hellos are judged, and
two real Hosts on loopback: equal hellos open the chain links, different ones refuse and ban on
both sides, and a peer that does not speak it (a plain libp2p host) keeps its connection but
never gets a chain link."""

import asyncio
from collections.abc import Callable

import pytest

from consensus.errors import CodecError
from node.chaincheck import HELLO_PROTOCOL, ChainGate, Hello, Mismatch, judge
from node.network import Network
from node.p2p.errors import P2PError
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.wire import ConsensusMsg, GetStatus, Message, Status

OURS = Hello(1, "chain-a", b"\x11" * 32)


def test_hello_round_trips_and_bounds_its_fields() -> None:
    assert Hello.decode(OURS.encode()) == OURS
    with pytest.raises(CodecError):
        Hello.decode(Hello(1, "chain-a", b"\x11" * 31).encode())
    with pytest.raises(CodecError):
        Hello.decode(Hello(1, "c" * 65, b"\x11" * 32).encode())
    with pytest.raises(CodecError):
        Hello.decode(b"\x93\x01")


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (OURS, None),
        (Hello(1, "chain-b", b"\x22" * 32), Mismatch("chain_id", "chain-b", "chain-a")),
        (Hello(1, "chain-a", b"\x22" * 32), Mismatch("genesis_hash", "22" * 8, "11" * 8)),
        (Hello(2, "chain-a", b"\x11" * 32), Mismatch("version", "2", "1")),
    ],
)
def test_judge_names_the_first_difference(theirs: Hello, expected: Mismatch | None) -> None:
    assert judge(OURS, theirs) == expected


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


class ChainNode:
    def __init__(self, host: Host, hello: Hello) -> None:
        self.gate = ChainGate(host, hello, ban_ms=60_000)
        self.gate.start()
        self.received: list[Message] = []
        self.net = Network(
            host,
            hello.chain_id,
            on_message=lambda _p, m: self.received.append(m),
            on_request=self.answer,
            on_invalid=lambda _p, _r: None,
            frame_bytes_max=1 << 20,
            queue_bytes_max=1 << 20,
        )
        self.net.gate = self.gate
        self.net.start()

    async def answer(self, _peer: PeerId, _msg: Message) -> Message:
        return Status(7, 1)


async def test_matching_peers_link_and_exchange_chain_messages() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"b" * 32)) as host_b,
    ):
        a, b = ChainNode(host_a, OURS), ChainNode(host_b, OURS)
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        async with asyncio.timeout(10):
            await eventually(lambda: bool(a.net.peers() and b.net.peers()))
            assert a.net.send(host_b.peer_id, ConsensusMsg(b"vote"))
            await eventually(lambda: b.received == [ConsensusMsg(b"vote")])
            assert await a.net.request(host_b.peer_id, GetStatus(), 5000) == Status(7, 1)


async def test_other_genesis_is_refused_and_banned_on_both_sides() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"b" * 32)) as host_b,
    ):
        a = ChainNode(host_a, OURS)
        b = ChainNode(host_b, Hello(1, "chain-a", b"\x22" * 32))
        refused: list[PeerId] = []
        a.gate.on_refused(refused.append)
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        async with asyncio.timeout(10):
            await eventually(lambda: a.gate.refused == 1 and b.gate.refused == 1)
            await eventually(lambda: not host_a.connected_peers())
            # Each side bans REFUSE_GRACE_S after its refusal (so the other can read why); the
            # first ban may close the link before the second side's timer fires.
            await eventually(
                lambda: host_a.is_banned(host_b.peer_id) and host_b.is_banned(host_a.peer_id)
            )
        assert refused == [host_b.peer_id]
        assert a.net.peers() == []
        assert b.net.peers() == []
        # Its chain protocols never answered, whatever it tried before the ban.
        assert a.received == []
        assert b.received == []


async def test_a_plain_libp2p_peer_keeps_ping_but_gets_no_chain_link() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"p" * 32)) as plain,
    ):
        a = ChainNode(host_a, OURS)
        await plain.dial(await host_a.listen("127.0.0.1", 0))
        async with asyncio.timeout(10):
            await eventually(lambda: host_a.is_connected(plain.peer_id))
            assert await a.gate.wait_admitted(plain.peer_id) is False
            assert await plain.ping(host_a.peer_id) >= 0
            assert a.net.peers() == []
            assert host_a.is_connected(plain.peer_id)
            assert not host_a.is_banned(plain.peer_id)
            # Asking for chain data without a hello gets nothing.
            with pytest.raises(P2PError):
                await plain.request(host_a.peer_id, a.net.req_protocol, b"\x91\x00", 2000)


async def test_a_peer_that_never_answers_its_hello_is_dropped_not_banned() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"s" * 32)) as silent,
    ):
        gate = ChainGate(host_a, OURS, timeout_ms=300)
        gate.start()

        async def never(_peer: PeerId, _request: bytes) -> bytes:
            await asyncio.sleep(3600)
            return b""

        silent.set_request_handler(HELLO_PROTOCOL, never)
        await silent.dial(await host_a.listen("127.0.0.1", 0))
        async with asyncio.timeout(10):
            await eventually(lambda: host_a.is_connected(silent.peer_id))
            await eventually(lambda: not host_a.is_connected(silent.peer_id))
        assert not gate.admits(silent.peer_id)
        assert not host_a.is_banned(silent.peer_id)


async def test_an_unanswered_first_hello_is_asked_again_on_a_fresh_stream() -> None:
    """CI saw both sides' first hellos hang on a connection made while a node started; the
    link stayed useless until the timeout.  A peer that never answers the first request (and
    never greets us) but answers the second is admitted well within the timeout."""
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"b" * 32)) as host_b,
    ):
        gate = ChainGate(host_a, OURS, timeout_ms=3_000)
        gate.start()
        asked: list[int] = []
        never = asyncio.Event()

        async def serve_second(_peer: PeerId, _request: bytes) -> bytes:
            asked.append(len(asked))
            if len(asked) == 1:
                await never.wait()
            return OURS.encode()

        host_b.set_request_handler(HELLO_PROTOCOL, serve_second, 1024)
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        assert await gate.wait_admitted(host_b.peer_id)
        assert len(asked) == 2


async def test_a_hello_lost_with_a_duplicate_connection_is_asked_again() -> None:
    """Two validators dialling each other at start open two connections; the duplicate rule
    closes one, with any hello under way on it.  If both sides' hellos were on the closed one,
    neither was asked again: each waited for the other's until the timeout and dropped the
    link (the CI 'peers 2 != 3').  Here the peer's first answer is lost that way (it dials
    back while answering, so its connection replaces ours) and it never greets us."""
    first, second = sorted(
        (Identity.from_seed(b"c" * 32), Identity.from_seed(b"d" * 32)),
        key=lambda identity: identity.peer_id,
    )
    # The connection the lower id dials survives: so the peer (lower) wins with its dial-back.
    async with Host(second) as host_a, Host(first) as host_b:
        gate = ChainGate(host_a, OURS, timeout_ms=3_000)
        gate.start()
        asked: list[int] = []
        a_addr = await host_a.listen("127.0.0.1", 0)
        host, port = a_addr.host_port()

        async def serve_after_dialling_back(_peer: PeerId, _request: bytes) -> bytes:
            asked.append(len(asked))
            if len(asked) == 1:
                await host_b.dial(f"/ip4/{host}/tcp/{port}")  # no /p2p: a second connection
            return OURS.encode()

        host_b.set_request_handler(HELLO_PROTOCOL, serve_after_dialling_back, 1024)
        await host_a.dial(await host_b.listen("127.0.0.1", 0))
        assert await gate.wait_admitted(host_b.peer_id)
        assert len(asked) == 2
        assert host_a.counters.get("conn_duplicate_closed") == 1
