"""`create_empty_blocks = false` on real `fedchain start` processes on loopback.

An idle chain stops after the block that changed nothing and moves again when a tx arrives; the
tx's block is followed by the one block that seals its app hash.  With an interval, an idle FL
chain still closes its rounds on their chain-time deadlines, and every block that follows a
quiet one (no txs, no app event) comes at least the interval of chain time after it.  The
assertions are on heights, block times (chain data) and logged events, never on how long the
machine took.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from node.config import ConsensusConfig, NodeConfig
from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError
from node.signing import STALL_NEVER_MS, stall_ms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

QUIET_S = 3.0  # 15 commit pauses of the testnet: an empty-block chain would be 15 blocks on


async def until(check: Callable[[], Awaitable[bool]], attempts: int = 600) -> None:
    for _ in range(attempts):
        try:
            if await check():
                return
        except (RpcError, OSError):
            pass  # the node is still starting
        await asyncio.sleep(0.2)
    raise AssertionError("condition never held")


async def height(client: RpcClient) -> int:
    return int((await client.status())["height"])


async def test_an_idle_chain_waits_for_a_tx(tmp_path: Path) -> None:
    net = LocalNet(tmp_path / "net", validators=2, app="kv")
    net.generate(create_empty_blocks=False, empty_blocks_interval_ms=0)
    net.start_all()
    try:
        async with RpcClient(net.rpc_url(0), timeout_ms=3_000) as client:

            async def started() -> bool:
                return await height(client) >= 1

            await until(started)
            await asyncio.sleep(QUIET_S)
            idle = await height(client)
            await asyncio.sleep(QUIET_S)
            assert await height(client) == idle  # nothing to do: no block

            tx_hash = await client.submit_tx(b"wake=1")

            async def committed() -> bool:
                answer = await client.get_json(f"/txs/{tx_hash}")
                return bool(answer["status"] == "committed")

            await until(committed)
            tx_height = int((await client.get_json(f"/txs/{tx_hash}"))["height"])
            assert tx_height > idle
            await asyncio.sleep(QUIET_S)
            settled = await height(client)
            # The tx's block, then the block sealing its app hash (one more if a validator
            # admitted the tx from gossip only after its block: it skips one wait), then quiet.
            assert tx_height + 1 <= settled <= tx_height + 2
            await asyncio.sleep(QUIET_S)
            assert await height(client) == settled
    finally:
        net.stop_all()


async def test_an_idle_fl_chain_meets_its_deadlines_at_the_interval(
    tmp_path: Path,
) -> None:
    interval_ms = 1_000
    net = LocalNet(tmp_path / "net", validators=2, app="fl")
    net.generate(
        create_empty_blocks=False, empty_blocks_interval_ms=interval_ms, round_deadline_ms=2_500
    )
    net.start_all()
    try:
        async with RpcClient(net.rpc_url(0), timeout_ms=3_000) as client:

            async def rounds_closed() -> bool:
                return int((await client.status())["fl_round"]) >= 3

            await until(rounds_closed, attempts=1_500)  # no client, no tx: deadlines only
            top = await height(client)
            blocks = [await client.block(h) for h in range(1, top + 1)]
    finally:
        net.stop_all()
    closed: set[int] = set()
    for line in net.log_file(0).read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "fl_round_closed":
                closed.add(int(entry["height"]))
    assert len(closed) >= 3
    assert all(not b["txs"] for b in blocks)
    quiet_gaps = 0
    for before, after in pairwise(blocks):
        if before["height"] in closed:
            continue  # a round closed: the block that seals it follows at once
        # A quiet block: the next one waited for the interval (chain time, from the headers).
        assert after["time_ms"] - before["time_ms"] >= interval_ms, (before, after)
        quiet_gaps += 1
    assert quiet_gaps >= 2


def test_an_idle_chain_is_not_a_stall() -> None:
    """validator_not_signing (no_quorum) waits for the empty-block interval on top of the
    rounds' timeouts, and never fires on a chain that waits for txs only."""
    quiet = ConsensusConfig(create_empty_blocks=False, create_empty_blocks_interval_ms=10_000)
    busy = replace(quiet, create_empty_blocks=True)
    assert stall_ms(NodeConfig(consensus=quiet)) == stall_ms(NodeConfig(consensus=busy)) + 10_000
    waits = replace(quiet, create_empty_blocks_interval_ms=0)
    assert stall_ms(NodeConfig(consensus=waits)) == STALL_NEVER_MS
