"""Scrape /metrics of real `fedchain start` processes on loopback: the series an operator
alerts on exist and hold plausible values.

Four validators of the kv app, validator 3 never started: its missed signatures grow while
the others' stay at zero, every validator's power is exported, peers are counted by class, a
refused submission is counted by reason, and the process and build series are there.
"""

import asyncio
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest

from node.localnet import LocalNet
from node.rpc.client import RpcClient, RpcError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HEIGHT = 6


def series(text: str, name: str) -> dict[str, float]:
    """{label text: value} of every sample of `name` (label text "" for an unlabelled one)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            out[match.group(1) or ""] = float(match.group(2))
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("metrics")
    cluster = LocalNet(root, validators=4, app="kv")
    cluster.generate(commit_timeout_ms=100)
    for i in range(3):
        cluster.start(i)
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


async def test_metrics_an_operator_alerts_on(net: LocalNet) -> None:
    async with RpcClient(net.rpc_url(0), timeout_ms=3_000) as client:
        for _ in range(300):
            try:
                if int((await client.status())["height"]) >= HEIGHT:
                    break
            except (RpcError, OSError):
                pass
            await asyncio.sleep(0.2)
        await client.submit_tx(b"metrics=1")
        with pytest.raises(RpcError):
            await client.submit_tx(b"metrics=1")  # refused by the mempool: a duplicate
        status = await client.status()
    async with aiohttp.ClientSession() as session, session.get(net.metrics_url(0)) as resp:
        assert resp.status == 200
        text = await resp.text()

    missed = series(text, "fedchain_validator_missed_signatures_total")
    by_name = {re.search(r'name="(\w+)"', k).group(1): v for k, v in missed.items()}  # type: ignore[union-attr]
    assert by_name["validator3"] >= HEIGHT - 2, missed
    assert by_name["validator0"] <= 1, missed
    power = series(text, "fedchain_validator_power")
    assert sorted(power.values()) == [10, 10, 10, 10]
    assert series(text, "fedchain_validator_signing") == {"": 1}
    assert status["signing"] is True
    assert series(text, "fedchain_peers_by_class") == {
        'class="persistent"': 2,
        'class="stranger"': 0,
        'class="validator"': 0,
    }
    assert series(text, "fedchain_mempool_rejected_total") == {'reason="duplicate"': 1}
    assert series(text, "fedchain_height")[""] >= HEIGHT
    build = series(text, "fedchain_build_info")
    assert list(build)
    assert 'chain_id="fedchain-localnet"' in next(iter(build))
    assert series(text, "process_resident_memory_bytes")[""] > 10 * 1024 * 1024
    assert series(text, "process_open_fds")[""] > 5
    assert series(text, "process_cpu_seconds_total")[""] > 0
    started = series(text, "process_start_time_seconds")[""]
    assert time.time() - 600 < started <= time.time()
    assert series(text, "fedchain_peers_refused_total") == {"": 0}
