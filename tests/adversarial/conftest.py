"""Shared fixtures for attacks against real nodes on loopback.

`solo_node` is one `fedchain start` process (a one-validator chain, so it commits on its own)
with its RSS readable from /proc; attack tests add their own helpers next to their tests.
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consensus.app import Genesis
from node.commands.testnet import fast_timing
from node.config import load_config, render_config
from node.genesis import read_genesis_file
from node.keys import read_key
from node.localnet import free_base_port
from node.p2p.peer_id import Identity, PeerId

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass(slots=True)
class SoloNode:
    home: Path
    proc: subprocess.Popen[bytes]
    p2p_addr: str  # /ip4/127.0.0.1/tcp/PORT/p2p/12D3KooW...
    peer_id: PeerId
    chain_id: str
    rpc_url: str
    genesis: Genesis

    @property
    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def height(self) -> int:
        """The last committed height, from the node's log (independent of the RPC server)."""
        with (self.home / "node.log").open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            tail = f.read().decode(errors="replace")
        heights = re.findall(r'"event":"block_committed"[^\n]*?"height":(\d+)', tail)
        return int(heights[-1]) if heights else 0

    def log_text(self) -> str:
        return (self.home / "node.log").read_text(errors="replace")


def start_solo_node(root: Path, **p2p: object) -> SoloNode:
    """Init and start a one-validator node; `p2p` overrides [p2p] settings."""
    home = root / "solo"
    subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--home", str(home), "--moniker", "solo"],
        check=True,
        capture_output=True,
    )
    base = free_base_port(1)
    cfg = load_config(home / "config.toml")
    cfg = dataclasses.replace(
        cfg,
        p2p=dataclasses.replace(cfg.p2p, listen_host="127.0.0.1", listen_port=base, **p2p),
        rpc=dataclasses.replace(cfg.rpc, listen_port=base + 1),
        metrics=dataclasses.replace(cfg.metrics, listen_port=base + 4),
        log=dataclasses.replace(cfg.log, level="info"),
    )
    cfg = fast_timing(cfg)  # `init` writes production pacing; the tests count blocks
    (home / "config.toml").write_text(render_config(cfg))
    peer = Identity.from_seed(read_key(home / "node_key.json").seed).peer_id
    genesis = read_genesis_file(home / "genesis.json").genesis
    with (home / "node.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
    node = SoloNode(
        home,
        proc,
        f"/ip4/127.0.0.1/tcp/{base}/p2p/{peer}",
        peer,
        genesis.chain_id,
        f"http://127.0.0.1:{base + 1}",
        genesis,
    )
    for _ in range(600):
        if node.height() >= 2:
            return node
        if not node.alive():
            raise AssertionError(f"node exited: {node.log_text()[-2000:]}")
        time.sleep(0.1)
    stop_node(node)
    raise AssertionError("solo node did not reach height 2")


def stop_node(node: SoloNode) -> None:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


@pytest.fixture
def solo_node(tmp_path: Path) -> Iterator[SoloNode]:
    node = start_solo_node(tmp_path)
    try:
        yield node
    finally:
        stop_node(node)
