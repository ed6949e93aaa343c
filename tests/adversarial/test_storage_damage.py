"""Issue 13, attack 7 (block bodies): a validator whose last block body is damaged on disk (one
flipped byte, or the file's tail cut off) still starts, says so in its log, never serves the
damaged block, and gets the block back from its peers through block sync.

Before the fix the flipped byte was served as the block, and a cut tail refused to start.
"""

import asyncio
import json
from collections.abc import Iterator

import pytest

from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.timeout(300)]

VALIDATORS = 4
VICTIM = 3
WAIT_S = 60.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("damage")
    cluster = LocalNet(root, validators=VALIDATORS, app="kv")
    cluster.generate(commit_timeout_ms=50)
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


async def status(net: LocalNet, i: int) -> dict[str, object]:
    async with RpcClient(net.rpc_url(i), timeout_ms=3_000) as client:
        return await client.status()


async def wait_height(net: LocalNet, i: int, height: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        try:
            if int(str((await status(net, i))["height"])) >= height:
                return
        except RpcError:
            pass
        assert net.running(i), f"node{i} exited; see {net.log_file(i)}"
        assert loop.time() < deadline, f"node{i} did not reach height {height}"
        await asyncio.sleep(0.2)


def log_events(net: LocalNet, i: int) -> list[dict[str, object]]:
    out = []
    for line in net.log_file(i).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_a_damaged_last_body_is_fetched_back_not_served(net: LocalNet, damage: str) -> None:
    await wait_height(net, VICTIM, 3)
    assert net.stop(VICTIM) == 0
    bodies = net.home(VICTIM).data_dir / "blocks.dat"
    raw = bytearray(bodies.read_bytes())
    match damage:
        case "flip":
            raw[-1] ^= 0x01  # the last byte belongs to the newest body (clean stop: no torn tail)
        case "truncate":
            del raw[-5:]
    bodies.write_bytes(bytes(raw))
    events_before = len(log_events(net, VICTIM))
    net.start(VICTIM)
    await wait_height(net, VICTIM, 1)
    events = log_events(net, VICTIM)[events_before:]
    damaged = [e for e in events if e.get("event") == "block_body_damaged"]
    rolled = [e for e in events if e.get("event") == "block_store_rolled_back"]
    assert damaged, "the damage was not logged"
    assert rolled, "the store was not rolled back"
    height = int(str(damaged[0]["height"]))
    # The node catches up past the damaged height and serves the block everyone else has.
    top = int(str((await status(net, 0))["height"]))
    await wait_height(net, VICTIM, max(top, height + 1))
    async with RpcClient(net.rpc_url(0)) as good, RpcClient(net.rpc_url(VICTIM)) as fixed:
        expected = await good.get_binary(f"/blocks/{height}/raw")
        served = await fixed.get_binary(f"/blocks/{height}/raw")
    assert served.data == expected.data
    assert served.headers["X-Block-Hash"] == expected.headers["X-Block-Hash"]
    assert all(net.running(i) for i in range(VALIDATORS))
