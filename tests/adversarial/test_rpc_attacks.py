"""Issue 13, attack 6, against a real `fedchain start` process: the RPC's budgets hold.

Before the fix: 24 concurrent 30 MiB uploads that never finished held 914 MiB, still held after
they closed; slow-header connections were never timed out; 64 well-behaved WebSocket clients
held every slot forever; `/blocks?limit=<5000 digits>` answered 500.  Each attack here is
bounded in count and time; the node's RSS is read from /proc.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from node.config import load_config, render_config
from node.localnet import LocalNet
from node.rpc.client import RpcClient

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024
UPLOADS = 24
UPLOAD_DECLARED = 30 * MiB
UPLOAD_SENT = 28 * MiB
IN_FLIGHT_MAX = 128 * MiB
WS_MAX = 16


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close and wait: a socket left to the garbage collector is a ResourceWarning (an error)."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("rpc_attacks")
    cluster = LocalNet(root, validators=1, app="kv")
    cluster.generate(commit_timeout_ms=200)
    path = cluster.home(0).config_file
    cfg = load_config(path)
    rpc = dataclasses.replace(
        cfg.rpc,
        bodies_in_flight_bytes_max=IN_FLIGHT_MAX,
        header_timeout_ms=1_000,
        body_timeout_ms=5_000,
        ws_clients_max=WS_MAX,
        ws_clients_per_ip_max=WS_MAX,  # every client here is 127.0.0.1
    )
    path.write_text(render_config(dataclasses.replace(cfg, rpc=rpc)))
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


@pytest.fixture
async def node(net: LocalNet) -> LocalNet:
    async with RpcClient(net.rpc_url(0)) as client:
        await client.wait_for_height(2, 60_000)
    return net


def host_port(net: LocalNet) -> tuple[str, int]:
    _, hostport = net.rpc_url(0).split("//")
    host, port = hostport.split(":")
    return host, int(port)


async def stalled_upload(host: str, port: int, stop: asyncio.Event) -> None:
    """Declare 30 MiB, send up to 28 MiB as fast as the node takes it, then hold on."""
    _, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /txs HTTP/1.1\r\nHost: node\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % UPLOAD_DECLARED
    )

    async def send() -> None:
        chunk = b"\xaa" * MiB
        for _ in range(UPLOAD_SENT // MiB):
            writer.write(chunk)
            await writer.drain()  # blocks while the node's budget pushes back

    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(send(), 3.0)
    await stop.wait()
    await closed(writer)


async def test_stalled_uploads_are_bounded_and_released(node: LocalNet) -> None:
    pid = node.procs[0].pid
    host, port = host_port(node)
    before = rss(pid)
    stop = asyncio.Event()
    uploads = [asyncio.create_task(stalled_upload(host, port, stop)) for _ in range(UPLOADS)]
    peak = before
    for _ in range(35):  # 3.5 s of attack: the node takes what its budget allows
        await asyncio.sleep(0.1)
        peak = max(peak, rss(pid))
    async with RpcClient(node.rpc_url(0), timeout_ms=10_000) as client:
        status = await client.status()  # the node still answers during the attack
    stop.set()
    await asyncio.gather(*uploads)
    await asyncio.sleep(1.0)
    after = rss(pid)
    print(
        f"RSS before {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, "
        f"after close {after / MiB:.0f} MiB; height {status['height']}"
    )
    # Without the budget the node took 24 x 28 MiB = 672 MiB here.
    assert peak - before < IN_FLIGHT_MAX + 64 * MiB
    assert after - before < 48 * MiB
    assert node.running(0)


async def test_slow_headers_are_timed_out(node: LocalNet) -> None:
    host, port = host_port(node)
    conns = [await asyncio.open_connection(host, port) for _ in range(40)]
    for _, writer in conns:
        writer.write(b"GET /status HTTP/1.1\r\nHost: node\r\nX-Slow: ")
    for _ in range(5):  # one byte every 0.5 s does not extend the 1 s header deadline
        await asyncio.sleep(0.5)
        for _, writer in conns:
            if not writer.is_closing():
                writer.write(b"a")
    cut = 0
    for reader, writer in conns:
        try:
            cut += await asyncio.wait_for(reader.read(), 5.0) == b""
        except ConnectionError:
            cut += 1
        await closed(writer)
    assert cut == len(conns)
    async with RpcClient(node.rpc_url(0)) as client:
        await client.status()


async def test_websocket_newcomers_get_a_slot_when_all_are_taken(node: LocalNet) -> None:
    url = node.rpc_url(0) + "/ws?events=block"
    async with aiohttp.ClientSession() as session:
        holders = [await session.ws_connect(url) for _ in range(WS_MAX)]
        newcomer = await session.ws_connect(url)
        event = await asyncio.wait_for(newcomer.receive_json(), 10.0)
        assert event["event"] == "block"
        while True:  # block events it was sent before, then the close
            msg = await asyncio.wait_for(holders[0].receive(), 5.0)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1013), msg
        assert sum(not ws.closed for ws in holders) == WS_MAX - 1
        for ws in (*holders, newcomer):
            await ws.close()


async def test_a_limit_of_5000_digits_is_a_400(node: LocalNet) -> None:
    async with aiohttp.ClientSession() as session:
        url = node.rpc_url(0) + "/blocks?limit=" + "9" * 5000
        async with session.get(url) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "bad_range"
