"""A block body damaged while the node runs is never served and is fetched back from peers.

Three `fedchain start` processes of the kv app on loopback.  Once a block with a tx is
committed, one byte of that block's body is flipped in node 0's blocks.dat behind the running
node's back.  Node 0 must refuse to serve it (503 `block_damaged`, every response until the
repair either that or the true bytes), log the damage, fetch the body from a peer through block
sync, check it against the committed block and rewrite it, and then serve the block again,
byte for byte what the other validators serve, while the chain keeps committing.

Node 0 never scrubs (only a read finds its damage); nodes 1 and 2 read their bodies back every
50 ms, and damage in node 1's copy of a block that nobody requests is found and repaired too.

The body check itself (node/sync.py committed_body_problem) is driven with real committed
bytes taken from a validator, each altered in one way a peer could alter it.
"""

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from consensus.types import decode_block, encode_block
from node.config import load_config, render_config
from node.errors import CorruptBlockError
from node.localnet import LocalNet
from node.rpc.client import RpcClient
from node.store.sqlite import BlockStore
from node.sync import committed_body_problem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCRUB_MS = 50


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("repair")
    cluster = LocalNet(root, validators=3, app="kv")
    cluster.generate(commit_timeout_ms=100)
    # Node 0 never scrubs, so only a read can find its damage; nodes 1 and 2 scrub briskly.
    for i, scrub_ms in enumerate((0, SCRUB_MS, SCRUB_MS)):
        cfg = load_config(cluster.home(i).config_file)
        storage = dataclasses.replace(cfg.storage, scrub_interval_ms=scrub_ms)
        cluster.home(i).config_file.write_text(
            render_config(dataclasses.replace(cfg, storage=storage))
        )
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


def body_location(store_file: Path, height: int) -> tuple[int, int]:
    """(offset, length) of block `height`'s body in blocks.dat, read beside the running node."""
    db = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT data_offset, data_len FROM blocks WHERE height = ?", (height,)
        ).fetchone()
    finally:
        db.close()
    assert row is not None, f"block {height} is not stored in {store_file}"
    return int(row[0]), int(row[1])


def flip_a_byte(store_file: Path, at: int) -> None:
    """Damage blocks.dat behind the running node's back."""
    with store_file.with_name(store_file.stem + ".dat").open("r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x40]))


async def raw_block(session: aiohttp.ClientSession, url: str, height: int) -> tuple[int, bytes]:
    async with session.get(f"{url}/blocks/{height}/raw") as resp:
        return resp.status, await resp.read()


async def committed_tx_height(client: RpcClient, tx: bytes) -> int:
    tx_hash = await client.submit_tx(tx)
    for _ in range(300):
        found = await client.tx(tx_hash)
        if found is not None and int(found.get("height", 0)) > 0:
            return int(found["height"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"tx {tx!r} was not committed")


async def test_a_body_damaged_at_runtime_is_refused_refetched_and_served_again(
    net: LocalNet,
) -> None:
    async with RpcClient(net.rpc_url(0), timeout_ms=5_000) as client:
        await client.wait_for_height(3, timeout_ms=60_000)
        height = await committed_tx_height(client, b"repair=1")
        await client.wait_for_height(height + 1, timeout_ms=30_000)
    store_file = net.home(0).store_file
    offset, length = body_location(store_file, height)
    async with aiohttp.ClientSession() as session:
        status, good = await raw_block(session, net.rpc_url(1), height)
        assert status == 200
        assert len(good) == length
        flip_a_byte(store_file, offset + length // 2)

        status, first = await raw_block(session, net.rpc_url(0), height)
        assert status == 503, "the damaged body was served"
        assert b"block_damaged" in first
        answers = [status]
        for _ in range(300):
            status, data = await raw_block(session, net.rpc_url(0), height)
            answers.append(status)
            if status == 200:
                assert data == good, "node 0 served bytes other than the committed block"
                break
            assert status == 503, data[:200]
            await asyncio.sleep(0.1)
        assert answers[-1] == 200, f"never repaired: {answers[-5:]}"

        async with session.get(f"{net.rpc_url(0)}/blocks/{height}") as resp:
            assert resp.status == 200
            repaired_json = await resp.json()
        async with session.get(f"{net.rpc_url(1)}/blocks/{height}") as resp:
            reference = await resp.json()
        # Each node keeps the commit it saw (signers may differ); the block itself may not.
        repaired_json.pop("commit")
        reference.pop("commit")
        assert repaired_json == reference

    new_offset, new_length = body_location(store_file, height)
    assert (new_offset, new_length) != (offset, length)  # the copy went to a new place
    assert new_length == length
    log = net.log_file(0).read_text()
    assert "block_body_damaged" in log
    assert "block_body_repaired" in log
    assert "block_body_refetched" in log
    async with RpcClient(net.rpc_url(0), timeout_ms=5_000) as client:
        await client.wait_for_height(height + 3, timeout_ms=30_000)  # still committing
    assert net.running(0)


async def test_damage_nobody_reads_is_found_by_the_scrub_and_repaired(net: LocalNet) -> None:
    async with RpcClient(net.rpc_url(1), timeout_ms=5_000) as client:
        await client.wait_for_height(3, timeout_ms=60_000)
        height = await committed_tx_height(client, b"scrub=1")
        await client.wait_for_height(height + 1, timeout_ms=30_000)
    async with aiohttp.ClientSession() as session:
        status, good = await raw_block(session, net.rpc_url(2), height)
        assert status == 200
        store_file = net.home(1).store_file
        offset, length = body_location(store_file, height)
        flip_a_byte(store_file, offset + length // 3)
        # No request for the block: the scrub must find the damage and block sync repair it.
        for _ in range(600):
            if body_location(store_file, height) != (offset, length):
                break
            await asyncio.sleep(0.1)
        assert body_location(store_file, height) != (offset, length), "never repaired"
        status, data = await raw_block(session, net.rpc_url(1), height)
        assert (status, data) == (200, good)
    events = [json.loads(line) for line in net.log_file(1).read_text().splitlines()]
    damaged = [e for e in events if e["event"] == "block_body_damaged" and e["height"] == height]
    repaired = [e for e in events if e["event"] == "block_body_repaired" and e["height"] == height]
    assert damaged, "the scrub did not log the damage"
    assert repaired


def test_the_scrub_walks_every_body_round_and_round(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "blocks.sqlite")
    assert store.scrub_next(0) == 0  # empty
    for h in range(1, 5):
        store.save_block(h, bytes([h]) * 32, b"body%d" % h, b"c", b"r", b"a" * 32, h, [])
    flip_a_byte(tmp_path / "blocks.sqlite", len(b"body1") + 2)  # inside block 2's body
    walked = [store.scrub_next(0)]
    for _ in range(5):
        walked.append(store.scrub_next(walked[-1]))
    assert walked == [1, 2, 3, 4, 1, 2]
    assert store.damaged() == [2]
    assert store.repair_body(2, b"body2")
    assert store.scrub_next(1) == 2
    assert store.damaged() == []
    store.close()
    assert store.scrub_next(0) == 0  # closed: nothing read


async def test_only_the_committed_body_passes_the_check(net: LocalNet) -> None:
    async with RpcClient(net.rpc_url(1), timeout_ms=5_000) as client:
        await client.wait_for_height(3, timeout_ms=60_000)
        height = await committed_tx_height(client, b"check=1")
        block_id = bytes.fromhex((await client.block(height))["hash"])
        body = (await client.get_binary(f"/blocks/{height}/raw")).data
        other = (await client.get_binary(f"/blocks/{height - 1}/raw")).data
    block = decode_block(body)
    assert block.txs, "the block should carry the tx"
    header = block.header
    tampered = {
        "undecodable": body[: len(body) // 2],
        "another height": other,
        "txs dropped": encode_block(dataclasses.replace(block, txs=())),
        "a tx changed": encode_block(
            dataclasses.replace(block, txs=(block.txs[0] + b"x", *block.txs[1:]))
        ),
        "another header": encode_block(
            dataclasses.replace(
                block, header=dataclasses.replace(header, time_ms=header.time_ms + 1)
            )
        ),
        "last commit dropped": encode_block(dataclasses.replace(block, last_commit=None)),
    }
    assert committed_body_problem(body, height, block_id) is None
    problems = {
        name: committed_body_problem(data, height, block_id) for name, data in tampered.items()
    }
    assert all(problems.values()), problems
    assert "undecodable" in str(problems["undecodable"])
    assert f"not {height}" in str(problems["another height"])
    assert "transactions" in str(problems["txs dropped"])
    assert "transactions" in str(problems["a tx changed"])
    assert "id" in str(problems["another header"])
    assert "last commit" in str(problems["last commit dropped"])


def test_a_verified_body_replaces_a_damaged_checksum(tmp_path: Path) -> None:
    """When the stored sha256 is what broke, the body verified against the committed block
    wins (no honest peer is blamed for it); an unverified one still needs the sha256."""
    store = BlockStore(tmp_path / "blocks.sqlite")
    store.save_block(1, b"\x01" * 32, b"body1", b"c1", b"r1", b"a" * 32, 1000, [])
    store._db.execute("UPDATE blocks SET data_sha256 = ? WHERE height = 1", (b"\x00" * 32,))
    with pytest.raises(CorruptBlockError, match="sha256"):
        store.block(1)
    assert store.damaged() == [1]
    assert not store.repair_body(1, b"body1")
    assert store.repair_body(1, b"body1", verified=True)
    assert store.damaged() == []
    repaired = store.block(1)
    assert repaired is not None
    assert repaired.data == b"body1"
    assert store.commit_data(1) == b"c1"
    store.close()
