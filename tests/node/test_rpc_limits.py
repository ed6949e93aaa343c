"""The RPC server's budgets (issue 13, attack 6) and its answers to malformed parameters.

A real aiohttp server on 127.0.0.1 in front of a fake node: raw sockets play the slow and the
greedy clients, aiohttp's client the ordinary ones.
"""

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.app import QueryResult
from node.config import RpcConfig
from node.errors import MempoolError
from node.events import EventBus
from node.rpc.server import RELEASE_AFTER_BODY_BYTES, RpcServer
from node.store.sqlite import BlockStore, StoredBlock


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close and wait: a socket left to the garbage collector is a ResourceWarning (an error)."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class FakeNode:
    def __init__(self, store: BlockStore, ws_max: int) -> None:
        self._store = store
        self._events = EventBus(ws_max, 100)
        self.submitted: list[bytes] = []

    @property
    def store(self) -> BlockStore:
        return self._store

    @property
    def events(self) -> EventBus:
        return self._events

    def status(self) -> dict[str, Any]:
        return {"height": self._store.height}

    def healthy(self) -> bool:
        return True

    async def submit_tx(self, tx: bytes) -> bytes:
        if tx.startswith(b"bad"):
            raise MempoolError("bad tx", "check_tx")
        self.submitted.append(tx)
        return b"\x01" * 32

    def tx_pending(self, tx_hash: bytes) -> bool:
        return False

    def query(self, path: str, data: bytes) -> QueryResult:
        if path == "model":
            return QueryResult(value=b"\x92\x00\xc4\x01\x00", height=1)
        return QueryResult(code=1, reason=f"unknown query path {path!r}")

    def block_json(self, block: StoredBlock) -> dict[str, Any]:
        return {"height": block.height, "hash": block.hash.hex()}

    def validators_json(self) -> dict[str, Any]:
        return {"validators": []}

    def tx_bytes(self, height: int, index: int) -> bytes | None:
        return None


class Served:
    def __init__(self, node: FakeNode, rpc: RpcServer, url: str, port: int) -> None:
        self.node = node
        self.rpc = rpc
        self.url = url
        self.port = port


async def serve(tmp_path: Path, **cfg: Any) -> AsyncIterator[Served]:
    store = BlockStore(tmp_path / "blocks.sqlite", fsync=False)
    for h in (1, 2, 3):
        store.save_block(h, bytes([h]) * 32, b"block%d" % h, b"c", b"r", b"a" * 32, h, [])
    rpc_cfg = RpcConfig(**cfg)
    node = FakeNode(store, rpc_cfg.ws_clients_max)
    rpc = RpcServer(node, rpc_cfg.body_bytes_max, rpc_cfg)
    runner = await rpc.start("127.0.0.1", 0)
    port = int(runner.addresses[0][1])
    try:
        yield Served(node, rpc, f"http://127.0.0.1:{port}", port)
    finally:
        await runner.cleanup()
        store.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Served]:
    async for served in serve(
        tmp_path,
        body_bytes_max=1024 * 1024,
        bodies_in_flight_bytes_max=2 * 1024 * 1024,
        connections_max=8,
        connections_per_ip_max=8,
        header_timeout_ms=300,
        body_timeout_ms=400,
        keepalive_timeout_ms=5_000,
        ws_clients_max=4,
        ws_clients_per_ip_max=2,
    ):
        yield served


async def raw_request(port: int, data: bytes, read_s: float = 3.0) -> bytes:
    """Send bytes on a fresh connection; return all it answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), read_s)
    finally:
        await closed(writer)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), seconds):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


# -- malformed parameters: 4xx JSON, never 500 ----------------------------------------------------

ENDPOINTS = [
    "/blocks/{}",
    "/blocks/{}/raw",
    "/blocks?from={}",
    "/blocks?limit={}",
    "/blocks?from=1&limit={}",
    "/txs/{}",
    "/txs/{}?include=bytes",
    "/model/{}",
    "/accounts/{}",
    "/updates/{}",
    "/gov/{}",
    "/query/{}",
    "/query/model?data={}",
    "/ws?events={}",
]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/blocks?limit=" + "9" * 5000, 400, "bad_range"),  # was a 500 (int() of 5000 digits)
        ("/blocks?from=" + "1" * 19, 400, "bad_range"),
        ("/blocks/%C2%B2", 400, "bad_height"),  # '²'.isdigit() is True; int('²') raises
        ("/blocks/%D9%A1", 400, "bad_height"),  # Arabic-Indic digit one
        ("/model/%C2%B2", 400, "bad_version"),
        ("/blocks/0", 404, "not_found"),
        ("/blocks/4", 404, "not_found"),
        ("/txs/zz", 400, "bad_hash"),
        ("/query/model?data=zz", 400, "bad_data"),
        ("/query/nope", 404, "query_failed"),
        ("/ws?events=" + ",".join(str(i) for i in range(40)), 400, "bad_events"),
    ],
)
async def test_malformed_parameters_get_a_json_4xx(
    server: Served, path: str, status: int, code: str
) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + path) as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == code


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    value=st.one_of(
        st.text(max_size=60),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.text(alphabet="0123456789", min_size=18, max_size=6000),
    ),
)
async def test_fuzzed_parameters_never_get_a_500(server: Served, endpoint: str, value: str) -> None:
    from urllib.parse import quote

    url = server.url + endpoint.format(quote(value, safe=""))
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status < 500, (url[:200], resp.status, await resp.text())
        if resp.status >= 400:
            body = json.loads(await resp.text())
            assert set(body) == {"error", "reason"}


async def test_a_damaged_block_is_refused_with_a_json_error(server: Served) -> None:
    bodies = server.node.store._bodies
    import os

    os.pwrite(bodies._fd, b"X", bodies.end - 1)  # the last byte of block 3's body
    async with aiohttp.ClientSession() as session:
        for path in ("/blocks/3", "/blocks/3/raw", "/blocks/latest"):
            async with session.get(server.url + path) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "block_damaged"
        async with session.get(server.url + "/blocks?from=1") as resp:
            heights = [b["height"] for b in (await resp.json())["blocks"]]
            assert heights == [1, 2]


# -- bodies ---------------------------------------------------------------------------------------


async def test_bodies_over_the_limit_are_refused_before_they_are_read(server: Served) -> None:
    head = (
        b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    answer = await raw_request(server.port, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"too_large"' in answer


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_is_released(
    server: Served,
) -> None:
    head = (
        b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 500000\r\n\r\n" + b"x" * 100_000
    )
    answer = await raw_request(server.port, head)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"body_timeout"' in answer
    assert server.rpc.budget.used == 0
    assert server.node.submitted == []


async def test_stalled_uploads_share_one_budget_and_small_txs_still_pass(server: Served) -> None:
    """Three 900 KiB uploads stall after 800 KiB: together they may hold at most the 2 MiB
    in-flight budget (the third waits, its sender pushed back); a small tx goes through."""
    head = (
        b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 921600\r\n\r\n"
    )
    writers = []
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + b"y" * 800 * 1024)
        writers.append(writer)
    await asyncio.sleep(0.2)
    assert 0 < server.rpc.budget.used <= 2 * 1024 * 1024
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/txs", data=b"small tx") as resp,
    ):
        assert resp.status == 202
    for writer in writers:
        await closed(writer)
    await asyncio.sleep(0.6)  # past the body deadline: every stalled upload was released
    assert server.rpc.budget.used == 0
    assert server.node.submitted == [b"small tx"]


async def test_a_complete_upload_is_accepted_byte_for_byte(server: Served) -> None:
    body = bytes(range(256)) * 4000  # 1,024,000 bytes, just under the limit
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/txs", data=body) as resp,
    ):
        assert resp.status == 202
    assert server.node.submitted == [body]
    assert server.rpc.budget.used == 0


# -- connections ----------------------------------------------------------------------------------


async def test_a_slow_header_is_cut_off(server: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # the rest never comes
    for _ in range(3):  # a byte now and then does not keep it alive (deadline: 300 ms)
        await asyncio.sleep(0.05)
        writer.write(b"a")
    answer = await asyncio.wait_for(reader.read(), 2.0)
    assert answer == b""  # closed without an answer
    await closed(writer)
    assert server.rpc.guard.timed_out >= 1
    assert len(server.rpc.guard) == 0


async def test_connections_beyond_the_cap_are_closed_at_once(server: Served) -> None:
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(8)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await closed_within(reader, 0.2)
    assert server.rpc.guard.refused >= 1
    for _, w in held:
        await closed(w)
    await closed(writer)
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as session, session.get(server.url + "/health") as resp:
        assert resp.status == 200  # slots come back when the holders leave


# -- WebSockets -----------------------------------------------------------------------------------


async def test_a_newcomer_takes_the_oldest_websocket_slot_of_its_address(server: Served) -> None:
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(server.url + "/ws")
        second = await session.ws_connect(server.url + "/ws")
        third = await session.ws_connect(server.url + "/ws")  # per-address cap is 2
        msg = await asyncio.wait_for(first.receive(), 2.0)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert first.close_code == 1013
        assert not second.closed
        assert len(server.node.events) == 2
        assert server.rpc.ws_evicted == 1
        server.node.events.publish({"event": "block", "height": 4})
        for ws in (second, third):
            got = await asyncio.wait_for(ws.receive_json(), 2.0)
            assert got["height"] == 4
            await ws.close()


async def test_the_total_websocket_cap_evicts_from_the_busiest_address(tmp_path: Path) -> None:
    async for served in serve(tmp_path, ws_clients_max=3, ws_clients_per_ip_max=3):
        async with aiohttp.ClientSession() as session:
            clients = [await session.ws_connect(served.url + "/ws") for _ in range(3)]
            newcomer = await session.ws_connect(served.url + "/ws")
            await asyncio.wait_for(clients[0].receive(), 2.0)
            assert clients[0].close_code == 1013
            assert [c.closed for c in clients[1:]] == [False, False]
            assert len(served.node.events) == 3
            for ws in (*clients[1:], newcomer):
                await ws.close()


def test_the_guard_serves_under_uvloop(tmp_path: Path) -> None:
    """The node runs on uvloop, whose transports are not asyncio.Transport instances."""
    import uvloop

    async def main() -> int:
        async for served in serve(tmp_path):
            async with (
                aiohttp.ClientSession() as session,
                session.get(served.url + "/health") as resp,
            ):
                return resp.status
        raise AssertionError("not served")

    assert uvloop.run(main()) == 200


async def test_a_large_upload_is_followed_by_a_return_of_free_heap_pages(tmp_path: Path) -> None:
    """glibc keeps the heap copies of a large body (node/allocator.py); the server trims after
    one, and not after small requests (the soak: ~26 MiB kept per wave of 30 MiB uploads)."""
    async for served in serve(tmp_path, body_bytes_max=8 * 1024 * 1024):
        releaser = served.rpc.memory_releaser
        async with aiohttp.ClientSession() as session:
            async with session.post(served.url + "/txs", data=b"x" * 1000) as resp:
                assert resp.status == 202
            assert releaser.releases == 0
            big = b"y" * RELEASE_AFTER_BODY_BYTES
            async with session.post(served.url + "/txs", data=io.BytesIO(big)) as resp:
                assert resp.status == 202
        assert releaser.releases == 1
        assert releaser.pending is not None
        if isinstance(releaser.pending, asyncio.TimerHandle):
            releaser.pending.cancel()  # the trim itself is allocator.py's own test
