"""Real `fedchain start` processes on loopback: a node whose genesis differs (same chain id) is
refused by the chain handshake on both sides and never syncs; a node with the same genesis does.

One validator (node0) and two full nodes that list it as their persistent peer: node1's genesis
differs only in its time, so chain id and validators are equal and only the genesis hash tells
them apart (issue 15: such a node used to connect and silently build its own fork).
"""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 60.0
HEIGHT = 5


def events(log_file: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log_file.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            body = json.loads(line)
            if body.get("event") == name:
                found.append(body)
    return found


async def status(url: str) -> dict[str, Any]:
    async with RpcClient(url, timeout_ms=3_000) as client:
        try:
            return await client.status()
        except RpcError:
            return {}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("handshake")
    cluster = LocalNet(root, validators=1, app="kv", extra_nodes=2)
    cluster.generate(commit_timeout_ms=50)
    forked = cluster.home(1).genesis_file
    doc = json.loads(forked.read_text())
    doc["genesis_time_ms"] += 1
    forked.write_text(json.dumps(doc, indent=2))
    for i in range(3):
        cluster.start(i)
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


async def test_same_genesis_syncs_and_other_genesis_is_refused_on_both_sides(
    net: LocalNet,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        good = await status(net.rpc_url(2))
        refused_0 = events(net.log_file(0), "peer_refused")
        refused_1 = events(net.log_file(1), "peer_refused")
        if good.get("height", 0) >= HEIGHT and refused_0 and refused_1:
            break
        for i in range(3):
            assert net.running(i), f"node{i} exited; see {net.log_file(i)}"
        assert loop.time() < deadline, (
            f"node2 at {good.get('height')}, refusals {len(refused_0)}/{len(refused_1)}"
        )
        await asyncio.sleep(0.3)

    forked = await status(net.rpc_url(1))
    genesis_of = {i: (await status(net.rpc_url(i))) for i in (0, 1)}
    assert forked["height"] == 0, "a node on another genesis must not take blocks from node0"
    assert forked["peers"] == 0
    for log_owner, other in ((0, 1), (1, 0)):
        refusal = events(net.log_file(log_owner), "peer_refused")[0]
        assert refusal["level"] == "warning"
        assert refusal["field"] == "genesis_hash"
        assert refusal["peer"] == genesis_of[other]["node_id"]
        assert refusal["theirs"] != refusal["ours"]
    # node0's own hash is what node1 reports as "theirs", and the other way round.
    ours_0 = events(net.log_file(0), "peer_refused")[0]["ours"]
    assert events(net.log_file(1), "peer_refused")[0]["theirs"] == ours_0
    # Neither side opened a chain link to the other; node0 did to node2.
    node1_id = genesis_of[1]["node_id"]
    assert not [e for e in events(net.log_file(0), "peer_connected") if e["peer"] == node1_id]
    assert not events(net.log_file(1), "peer_connected")
    assert [e for e in events(net.log_file(0), "peer_connected") if e["peer"] != node1_id]
