"""Issue 13's "held, and must keep holding" list, against real `fedchain start` processes of the
FL app: a replayed tx is answered 409 even after the mempool's cache of committed hashes has
forgotten it, key files are private, no key's secret ever reaches a log, and a validator whose
consensus WAL (its double-sign guard) was truncated refuses to start.

Garbage and half-done handshakes on a validator's p2p port are closed (the silent ones at the
handshake deadline) while the validators keep their links and the chain keeps committing.

Every node runs with `mempool.cache_hashes_max = 1`, so the second committed update pushes the
first one's hash out of the cache; its replay then fails the app's nonce check, and the node
must still say what it is (409 duplicate, with the height), not a generic check_tx refusal.
"""

import asyncio
import dataclasses
import json
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from fl.client.sdk import build_update, fetch_model, fetch_params, next_nonce
from node.commands import testnet
from node.config import load_config, render_config
from node.keys import read_key
from node.localnet import LocalNet
from node.rpc.client import RpcClient
from node.rpc.transport import RpcTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VALIDATORS = 3
CLIENTS = 2
HANDSHAKE_TIMEOUT_MS = 2_000


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("held")
    cluster = LocalNet(root, validators=VALIDATORS, clients=CLIENTS, app="fl")
    cluster.generate(commit_timeout_ms=50)
    for i in range(VALIDATORS):
        home = cluster.home(i)
        cfg = load_config(home.config_file)
        mempool = dataclasses.replace(cfg.mempool, cache_hashes_max=1)
        p2p = dataclasses.replace(cfg.p2p, handshake_timeout_ms=HANDSHAKE_TIMEOUT_MS)
        home.config_file.write_text(
            render_config(dataclasses.replace(cfg, mempool=mempool, p2p=p2p))
        )
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


def _update(net: LocalNet, client: int) -> bytes:
    """Client `client`'s signed model update, built against node 0's current model."""
    transport = RpcTransport(net.rpc_url(0))
    try:
        key = read_key(net.root / f"client{client}" / "client_key.json")
        model = fetch_model(transport)
        rng = np.random.default_rng(client)
        delta = rng.normal(0.0, 0.01, model.weights.shape)
        params = fetch_params(transport)
        return build_update(
            key,
            transport.chain_id(),
            next_nonce(transport, key),
            model,
            delta,
            100,
            params,
            16,
            rng,
        )
    finally:
        transport.close()


async def _commit(client: RpcClient, tx: bytes) -> int:
    tx_hash = await client.submit_tx(tx)
    for _ in range(600):
        found = await client.tx(tx_hash)
        if found is not None and found.get("status") == "committed":
            return int(found["height"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"tx {tx_hash} was not committed")


async def _post(url: str, tx: bytes) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/octet-stream"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/txs", data=tx, headers=headers) as resp,
    ):
        return resp.status, json.loads(await resp.read())


async def test_a_replay_is_409_after_the_cache_forgot_it(net: LocalNet) -> None:
    async with RpcClient(net.rpc_url(0), timeout_ms=10_000) as client:
        await client.wait_for_height(2, timeout_ms=60_000)
        first = await asyncio.to_thread(_update, net, 0)
        height = await _commit(client, first)
        # Still in the cache: the mempool itself answers.
        status, answer = await _post(net.rpc_url(0), first)
        assert (status, answer["error"]) == (409, "duplicate"), answer
        # A second committed tx pushes the first out of every node's one-entry cache.
        await _commit(client, await asyncio.to_thread(_update, net, 1))
    for node in range(VALIDATORS):
        status, answer = await _post(net.rpc_url(node), first)
        assert (status, answer["error"]) == (409, "duplicate"), (node, answer)
        assert f"already committed at height {height}" in answer["reason"]


def _secrets(root: Path) -> dict[str, str]:
    """Every private key file under the testnet root: its path -> its seed, in hex."""
    found = {}
    for path in sorted(root.rglob("*.json")):
        try:
            body = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(body, dict) and "seed" in body:
            found[str(path)] = str(body["seed"])
    return found


def test_key_files_are_private_and_no_secret_reaches_a_log(net: LocalNet) -> None:
    secrets = _secrets(net.root)
    # Each validator has a node key and a validator key; each client its own key.
    assert len(secrets) >= 2 * VALIDATORS + CLIENTS, sorted(secrets)
    for path in secrets:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
        assert mode == 0o600, f"{path} has mode {oct(mode)}"
    logs = [net.log_file(i).read_text() for i in range(VALIDATORS)]
    assert all("block_committed" in text for text in logs)  # the logs are real
    for path, seed in secrets.items():
        needles = (seed.lower(), seed.upper(), bytes.fromhex(seed).hex(" "))
        for i, text in enumerate(logs):
            assert not any(n in text for n in needles), f"node{i}'s log holds {path}'s seed"


async def _closed_by_the_node(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65_536):
            pass
    except ConnectionError:
        pass  # reset rather than closed: gone all the same


async def test_garbage_and_half_done_handshakes_are_dropped_and_cost_nothing(
    net: LocalNet,
) -> None:
    port = testnet.node_ports(net.base_port, 0)[0]
    async with RpcClient(net.rpc_url(0), timeout_ms=10_000) as client:
        start = int((await client.status())["height"])
    rng = random.Random(13)
    openings = [
        *(rng.randbytes(rng.randrange(1, 4_096)) for _ in range(12)),  # garbage
        *(b"\x13/multistream/1.0.0\n" for _ in range(6)),  # then silence
        *(b"\x13/multistream/1.0.0\n\x07/noise\n" for _ in range(6)),  # then silence
    ]
    connections = []
    for opening in openings:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(opening)
        await writer.drain()
        connections.append((reader, writer))
    # Not a speed claim: a bound (10x the deadline) so a node that never closes them fails.
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_MS / 1000 * 10):
        for reader, writer in connections:
            await _closed_by_the_node(reader)
            writer.close()
    async with RpcClient(net.rpc_url(0), timeout_ms=10_000) as client:
        await client.wait_for_height(start + 3, timeout_ms=60_000)
        status = await client.status()
    assert status["peers"] == VALIDATORS - 1
    assert all(net.running(i) for i in range(VALIDATORS))


async def test_a_validator_whose_wal_was_truncated_refuses_to_start(tmp_path: Path) -> None:
    """Attack 7 of the issue: cs.wal cut to 0 bytes made the node start silently with its
    double-sign guard gone.  It must refuse, say why, and change nothing."""
    solo = LocalNet(tmp_path, validators=1, app="kv")
    solo.generate(commit_timeout_ms=50)
    solo.start(0)
    try:
        async with RpcClient(solo.rpc_url(0), timeout_ms=5_000) as client:
            await client.wait_for_height(3, timeout_ms=60_000)
    finally:
        assert solo.stop(0) == 0
    home = solo.home(0)
    home.wal_file.write_bytes(b"")
    store_before = home.store_file.read_bytes()
    solo.start(0)
    code = await asyncio.to_thread(solo.procs[0].wait, 60)
    assert code == 1
    log = solo.log_file(0).read_text()
    failed = [json.loads(line) for line in log.splitlines() if '"node_failed"' in line]
    assert failed, log[-2000:]
    assert "double-sign guard" in failed[-1]["error"]
    assert home.wal_file.read_bytes() == b""  # not silently recreated
    assert home.store_file.read_bytes() == store_before
