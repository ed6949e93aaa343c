"""Real `fedchain start` processes on loopback: commit, crash, recover, sync, serve clients.

One cluster per module (4 validators running the FL app, plus a fifth full node started late),
exercised step by step in file order, like CometBFT's e2e runner: perturb, then assert that
every node holds identical block hashes and app hashes and that nobody equivocated.
Ports are scanned free at start; every node's JSON log is kept in the pytest tmp dir.
"""

import asyncio
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest

from consensus.crypto import sha256
from consensus.types import STEP_PROPOSAL, Proposal, Vote, decode_message
from fl.client.sdk import build_update, fetch_model, fetch_params, next_nonce
from node.keys import read_key
from node.localnet import LocalNet
from node.records import OwnMessage, decode_wal
from node.rpc.client import RpcClient, RpcError
from node.rpc.transport import RpcTransport
from node.store.sqlite import BlockStore
from node.wal import Wal, parse_end_height

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VALIDATORS = 4
LATE = VALIDATORS  # index of the full node that joins late
WAIT_S = 60.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("cluster")
    cluster = LocalNet(root, validators=VALIDATORS, clients=2, app="fl", extra_nodes=1)
    cluster.generate(commit_timeout_ms=50)
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


async def height_of(url: str) -> int:
    async with RpcClient(url, timeout_ms=3_000) as client:
        try:
            return int((await client.status())["height"])
        except RpcError:
            return -1


async def wait_height(net: LocalNet, nodes: list[int], height: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        heights = [await height_of(net.rpc_url(i)) for i in nodes]
        if min(heights) >= height:
            return
        for i in nodes:
            assert net.running(i), f"node{i} exited; see {net.log_file(i)}"
        assert loop.time() < deadline, f"heights {heights} did not reach {height}"
        await asyncio.sleep(0.2)


async def chain_view(url: str, up_to: int) -> list[tuple[str, str]]:
    """(block hash, result app hash) for heights 1..up_to."""
    out: list[tuple[str, str]] = []
    async with RpcClient(url, timeout_ms=10_000) as client:
        start = 1
        while start <= up_to:
            page = await client.get_json("/blocks", {"from": str(start), "limit": "100"})
            for block in page["blocks"]:
                if block["height"] <= up_to:
                    out.append((block["hash"], block["result_app_hash"]))
            start += 100
    return out


async def test_validators_commit(net: LocalNet) -> None:
    await wait_height(net, list(range(VALIDATORS)), 3)
    async with RpcClient(net.rpc_url(0)) as client:
        assert await client.health()
        # Three validators decide without the fourth's link, so height 3 can come first: a
        # chain handshake retried on a fresh stream (node/chaincheck.py) takes a few seconds.
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while (status := await client.status())["peers"] != VALIDATORS - 1:
            assert asyncio.get_running_loop().time() < deadline, status["peers"]
            await asyncio.sleep(0.2)
        assert status["is_validator"] is True
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(net.metrics_url(0)) as resp:
        text = await resp.text()
    heights = [line for line in text.splitlines() if line.startswith("fedchain_height ")]
    assert heights
    assert int(heights[0].split()[1]) >= 3
    assert "fedchain_block_interval_seconds_count" in text
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(net.rpc_url(2) + "/ws?events=block") as ws,
    ):
        event = json.loads((await ws.receive(timeout=30)).data)
    assert event["event"] == "block"
    assert event["height"] >= 3
    assert len(event["app_hash"]) == 64


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/txs", b"", 400, "empty_body"),
        ("POST", "/txs", b"\xc1\x00garbage", 400, "check_tx"),
        ("POST", "/txs", b"x" * (33 * 1024 * 1024), 413, "too_large"),
        ("POST", "/txs/batch", b"\xc1", 400, "bad_batch"),
        ("POST", "/txs/batch", b"\x91\x01", 400, "bad_batch"),
        ("GET", "/blocks/abc", None, 400, "bad_height"),
        ("GET", "/blocks/999999999", None, 404, "not_found"),
        ("GET", "/txs/zz", None, 400, "bad_hash"),
        ("GET", "/txs/" + "00" * 32, None, 404, "not_found"),
        ("GET", "/query/round?data=zz", None, 400, "bad_data"),
        ("GET", "/query/no_such_path", None, 404, "query_failed"),
        ("GET", "/accounts/nothex", None, 400, "query_failed"),
        ("GET", "/model/x1", None, 400, "bad_version"),
    ],
)
async def test_malformed_rpc_gets_a_reason_and_changes_nothing(
    net: LocalNet, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    import aiohttp

    url = net.rpc_url(1)
    async with RpcClient(url) as client:
        before = await client.status()
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, object] = {}
        if body is not None:
            kwargs = {
                "data": io.BytesIO(body),
                "headers": {"Content-Type": "application/octet-stream"},
            }
        async with session.request(method, url + path, **kwargs) as resp:  # type: ignore[arg-type]
            assert resp.status == status
            answer = json.loads(await resp.read())
    assert answer["error"] == code
    assert answer["reason"]
    async with RpcClient(url) as client:
        after = await client.status()
    assert after["mempool_txs"] == before["mempool_txs"] == 0
    assert after["fl_round"] == before["fl_round"]
    if body:
        async with RpcClient(url) as client:
            assert await client.tx(sha256(body).hex()) is None


async def test_batch_answers_each_tx_on_its_own(net: LocalNet) -> None:
    import aiohttp

    from consensus.codec import encode

    batch = encode([b"not a tx", b"", b"\x93\x01\x02\x03"])
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            net.rpc_url(2) + "/txs/batch",
            data=batch,
            headers={"Content-Type": "application/octet-stream"},
        ) as resp,
    ):
        assert resp.status == 200
        answer = await resp.json()
    codes = [item.get("error") for item in answer["results"]]
    assert codes == ["check_tx", "malformed", "check_tx"]
    assert all(item["reason"] for item in answer["results"])
    async with RpcClient(net.rpc_url(2)) as client:
        assert (await client.status())["mempool_txs"] == 0


def _submit_update(net: LocalNet, client_index: int, node: int) -> tuple[int, str]:
    """One honest-looking update from client{j} through node{node}'s RPC (sync SDK)."""
    transport = RpcTransport(net.rpc_url(node))
    key = read_key(net.root / f"client{client_index}" / "client_key.json")
    model = fetch_model(transport)
    rng = np.random.default_rng(client_index)
    delta = rng.normal(0.0, 0.01, model.weights.shape)
    tx = build_update(
        key,
        transport.chain_id(),
        next_nonce(transport, key),
        model,
        delta,
        100,
        fetch_params(transport),
        16,
        rng,
    )
    result = transport.submit(tx)
    transport.close()
    assert result.accepted, result.reason
    return model.round, sha256(tx).hex()


async def test_client_updates_over_rpc_advance_the_model(net: LocalNet) -> None:
    round_before, tx_a = await asyncio.to_thread(_submit_update, net, 0, 1)
    _, tx_b = await asyncio.to_thread(_submit_update, net, 1, 2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    async with RpcClient(net.rpc_url(3)) as client:
        while True:
            status = await client.status()
            if status["fl_round"] > round_before:
                break
            assert loop.time() < deadline, "the FL round never closed"
            await asyncio.sleep(0.2)
        for tx in (tx_a, tx_b):
            found = await client.tx(tx)
            assert found is not None
            assert found["status"] == "committed"
            assert found["code"] == 0, found["reason"]
    hashes = set()
    for i in range(VALIDATORS):
        async with RpcClient(net.rpc_url(i)) as client:
            await client.wait_for_height(status["height"], 30_000)
            model = await client.get_binary("/model")
            hashes.add(model.headers["X-Model-Hash"])
            assert int(model.headers["X-Model-Version"]) >= 1
    assert len(hashes) == 1


async def test_sigkill_again_and_again_then_catch_up(net: LocalNet) -> None:
    victim = 3
    others = [0, 1, 2]
    for _ in range(3):
        net.kill(victim)
        start = await height_of(net.rpc_url(0))
        await wait_height(net, others, start + 3)  # the others keep committing
        net.start(victim)
        await wait_height(net, [victim], 1)  # recovered and serving (maybe still behind)
        await asyncio.sleep(0.3)  # then killed again, mid-sync or mid-height
    net.kill(victim)
    net.start(victim)
    target = await height_of(net.rpc_url(0))
    await wait_height(net, [victim], target + 2)
    log = net.log_file(victim).read_text()
    assert log.count('"event":"node_recovered"') >= 4
    assert '"event":"node_failed"' not in log


async def test_late_node_joins_through_block_sync(net: LocalNet) -> None:
    target = await height_of(net.rpc_url(0))
    net.start(LATE)
    await wait_height(net, [LATE], target + 3)
    async with RpcClient(net.rpc_url(LATE)) as client:
        status = await client.status()
    assert status["is_validator"] is False
    log = net.log_file(LATE).read_text()
    assert '"event":"blocksync_started"' in log


async def test_every_node_has_identical_blocks_and_app_hashes(net: LocalNet) -> None:
    nodes = [*range(VALIDATORS), LATE]
    top = min([await height_of(net.rpc_url(i)) for i in nodes])
    assert top > 10
    views = [await chain_view(net.rpc_url(i), top) for i in nodes]
    assert all(len(v) == top for v in views)
    assert all(v == views[0] for v in views[1:])
    for i in nodes:
        log = net.log_file(i).read_text()
        assert '"event":"evidence_found"' not in log, f"node{i} saw an equivocation"
    for i in range(VALIDATORS):
        assert signed_twice(net, i) == [], f"node{i} signed two things for one (H, R, step)"


def signed_twice(net: LocalNet, i: int) -> list[tuple[int, int, int]]:
    """Every message node i ever signed is an "own" record of its WAL (fsynced before it was
    sent, across every kill -9): no (height, round, step) may carry two different values."""
    signed: dict[tuple[int, int, int], set[bytes]] = {}
    for payload in Wal(net.home(i).wal_file).records():
        if parse_end_height(payload) is not None:
            continue
        record = decode_wal(payload)
        if not isinstance(record, OwnMessage):
            continue
        msg = decode_message(record.data)
        if isinstance(msg, Vote):
            signed.setdefault((msg.height, msg.round, msg.type), set()).add(msg.block_id)
        elif isinstance(msg, Proposal):
            key = (msg.height, msg.round, STEP_PROPOSAL)
            signed.setdefault(key, set()).add(msg.block.id())
    assert signed, f"node{i} has no signed messages in its WAL"
    return sorted(k for k, ids in signed.items() if len(ids) > 1)


def test_sigterm_stops_every_node_cleanly(net: LocalNet) -> None:
    codes = net.stop_all()
    # A node stuck on SIGTERM gets SIGUSR1 first: its log tail then holds every thread's stack.
    tails = {i: net.log_file(i).read_text().splitlines()[-60:] for i in codes if codes[i] != 0}
    assert codes == dict.fromkeys(range(VALIDATORS + 1), 0), tails
    for i in range(VALIDATORS + 1):
        assert '"event":"node_stopped"' in net.log_file(i).read_text()


def test_logs_are_json_lines_with_stable_keys(net: LocalNet) -> None:
    lines = net.log_file(0).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    committed = [e for e in events if e["event"] == "block_committed"]
    assert committed
    assert {"height", "txs", "app_hash", "ms"} <= committed[0].keys()
    closed = [e for e in events if e["event"] == "fl_round_closed"]
    assert closed
    assert {"fl_round", "rule", "accepted", "flagged", "model_hash"} <= closed[0].keys()


async def test_restart_after_clean_stop_recovers_from_disk(net: LocalNet) -> None:
    store = BlockStore(net.home(0).store_file)
    height, stored = store.height, store.block(store.height)
    store.close()
    assert stored is not None
    net.start(0)
    try:
        async with RpcClient(net.rpc_url(0)) as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_S
            while True:
                try:
                    status = await client.status()
                    break
                except RpcError:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.2)
        assert status["height"] == height  # alone it cannot commit, but it lost nothing
        assert status["latest_app_hash"] == stored.app_hash.hex()
    finally:
        assert net.stop(0) == 0
