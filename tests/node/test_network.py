"""Two real Hosts on loopback: pushed messages arrive in order per class, requests answer,
garbage is reported as the sender's fault and the receiver carries on."""

import asyncio
from collections.abc import Callable

from node.network import Network
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.wire import ConsensusMsg, GetStatus, Message, Status, TxPush


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


class Endpoint:
    def __init__(self, host: Host) -> None:
        self.received: asyncio.Queue[tuple[PeerId, Message]] = asyncio.Queue()
        self.invalid: list[tuple[PeerId, str]] = []
        self.net = Network(
            host,
            "test-chain",
            on_message=lambda p, m: self.received.put_nowait((p, m)),
            on_request=self.answer,
            on_invalid=lambda p, r: self.invalid.append((p, r)),
            frame_bytes_max=1 << 20,
            queue_bytes_max=1 << 20,
        )
        self.net.start()

    async def answer(self, _peer: PeerId, msg: Message) -> Message:
        assert isinstance(msg, GetStatus)
        return Status(42, 1)


async def test_push_request_and_garbage() -> None:
    async with (
        Host(Identity.from_seed(b"a" * 32)) as host_a,
        Host(Identity.from_seed(b"b" * 32)) as host_b,
    ):
        a, b = Endpoint(host_a), Endpoint(host_b)
        addr = await host_b.listen("127.0.0.1", 0)
        await host_a.dial(addr)
        async with asyncio.timeout(10):
            await eventually(lambda: bool(a.net.peers() and b.net.peers()))
            for i in range(50):
                assert a.net.send(host_b.peer_id, ConsensusMsg(bytes([i])))
            assert a.net.send(host_b.peer_id, TxPush(b"t" * 1000), bulk=True)
            got = [await b.received.get() for _ in range(51)]
            votes = [m for _, m in got if isinstance(m, ConsensusMsg)]
            assert votes == [ConsensusMsg(bytes([i])) for i in range(50)]
            assert (host_a.peer_id, TxPush(b"t" * 1000)) in got
            assert await a.net.request(host_b.peer_id, GetStatus(), 5000) == Status(42, 1)

            stream = await host_a.new_stream(host_b.peer_id, [b.net.msg_protocol])
            await stream.write_frame(b"\xc1 not msgpack")
            await eventually(lambda: bool(b.invalid))
            assert b.invalid[0][0] == host_a.peer_id
            assert a.net.send(host_b.peer_id, ConsensusMsg(b"still fine"))
            assert await b.received.get() == (host_a.peer_id, ConsensusMsg(b"still fine"))
