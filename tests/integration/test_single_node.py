"""`fedchain init` + `fedchain start`: a one-validator chain commits, stops on SIGTERM with exit
status 0, and continues from its stored height after a restart."""

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.commands.testnet import fast_timing
from node.config import load_config, render_config
from node.localnet import free_base_port
from node.rpc.client import RpcClient, RpcError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _start(home: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )


async def _height(url: str, at_least: int) -> int:
    async with RpcClient(url, timeout_ms=2_000) as client:
        for _ in range(300):
            try:
                height = int((await client.status())["height"])
                if height >= at_least:
                    return height
            except RpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"height {at_least} not reached")


def test_init_start_stop_restart(tmp_path: Path) -> None:
    home = tmp_path / "solo"
    subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--home", str(home), "--moniker", "solo"],
        check=True,
        capture_output=True,
    )
    base = free_base_port(1)
    cfg = load_config(home / "config.toml")
    cfg = dataclasses.replace(
        cfg,
        p2p=dataclasses.replace(cfg.p2p, listen_host="127.0.0.1", listen_port=base),
        rpc=dataclasses.replace(cfg.rpc, listen_port=base + 1),
        metrics=dataclasses.replace(cfg.metrics, listen_port=base + 4),
    )
    cfg = fast_timing(cfg)  # `init` writes production pacing (an idle chain waits 10 s)
    (home / "config.toml").write_text(render_config(cfg))
    url = f"http://127.0.0.1:{base + 1}"
    log = home / "node.log"

    proc = _start(home, log)
    try:
        first = asyncio.run(_height(url, 5))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    proc = _start(home, log)
    try:
        again = asyncio.run(_height(url, first + 3))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert again > first
    text = log.read_text()
    assert text.count('"event":"node_stopped"') == 2
    assert '"event":"node_recovered"' in text
