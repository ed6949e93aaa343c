"""A loopback testnet of real node processes: used by `fedchain demo`, the integration tests and
the node benchmark.

It runs `fedchain testnet` into a directory, starts each validator as its own OS process
(`python -m node.cli start --home DIR/node{i}`, JSON logs appended to DIR/node{i}/node.log),
and can SIGKILL, restart, SIGTERM and add nodes.  Ports come from a scan for a free block on
127.0.0.1, so parallel runs do not collide.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from node.apps import TESTNET_ROUND_DEADLINE_MS
from node.commands import testnet
from node.config import load_config, render_config
from node.errors import NodeError
from node.home import Home


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_port_low(default: int = 32_768) -> int:
    """The lowest port the kernel hands out as an outbound connection's source port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_base_port(nodes: int, start: int = 20_000, end: int | None = None) -> int:
    """A base port whose whole block of per-node ports is free right now.

    The block lies below the kernel's ephemeral range: ports are picked when the testnet is
    generated and bound when each node starts (a late joiner maybe minutes later), and a port
    inside the ephemeral range can meanwhile become the source port of any outbound connection,
    the nodes' own dials included ("address already in use" in 2 of ~40 cluster runs)."""
    span = testnet.PORT_STRIDE * nodes
    end = end if end is not None else max(ephemeral_port_low(), start + 2 * span)
    seed = (os.getpid() * 7919 + time.monotonic_ns()) % (end - start - span)
    base = start + seed - seed % testnet.PORT_STRIDE
    for _ in range(200):
        ports = [p for i in range(nodes) for p in testnet.node_ports(base, i)]
        if all(port_free(p) for p in ports):
            return base
        base = start + (base - start + span + testnet.PORT_STRIDE) % (end - start - span)
    raise NodeError("no free block of loopback ports found")


def terminate_all(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM every still-running process, then wait for each; SIGKILL one that outlives
    `timeout_s` (FL clients next to a LocalNet: they hold no state worth a clean stop)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(slots=True)
class LocalNet:
    root: Path
    validators: int = 4
    clients: int = 0
    attackers: int = 0
    app: str = "kv"
    extra_nodes: int = 0
    base_port: int = 0
    # Generated FL testnets bond their clients (bond mode); True writes an open chain instead.
    open_clients: bool = False
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def generate(
        self,
        propose_timeout_ms: int = 1_000,
        attack: str = "sign_flip",
        commit_timeout_ms: int = testnet.TESTNET_COMMIT_TIMEOUT_MS,
        create_empty_blocks: bool = True,
        empty_blocks_interval_ms: int = testnet.TESTNET_EMPTY_BLOCKS_INTERVAL_MS,
        round_deadline_ms: int = TESTNET_ROUND_DEADLINE_MS,
    ) -> None:
        """Homes for the net.  The timing is a testnet's, explicitly (fast blocks, an empty
        block after every block, seconds-long FL deadlines), not a production node's defaults."""
        total = self.validators + self.extra_nodes
        if not self.base_port:
            self.base_port = free_base_port(total)
        args = argparse.Namespace(
            validators=self.validators,
            clients=self.clients,
            attackers=self.attackers,
            attack=attack,
            out=self.root,
            docker=False,
            base_port=self.base_port,
            chain_id="fedchain-localnet",
            app=self.app,
            propose_timeout_ms=propose_timeout_ms,
            commit_timeout_ms=commit_timeout_ms,
            create_empty_blocks=create_empty_blocks,
            empty_blocks_interval_ms=empty_blocks_interval_ms,
            round_deadline_ms=round_deadline_ms,
            open_clients=self.open_clients,
        )
        testnet.generate(args)
        for k in range(self.extra_nodes):
            self._add_full_node(self.validators + k)

    def _add_full_node(self, index: int) -> None:
        """A non-validator home that joins through the validators (block sync, then follow)."""
        from node.keys import generate_key, write_key

        src, dst = Home(self.root / "node0"), Home(self.root / f"node{index}")
        dst.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = load_config(src.config_file)
        p2p, rpc, metrics = testnet.node_ports(self.base_port, index)
        peers = (
            *cfg.p2p.persistent_peers,
            _own_addr(src, cfg.p2p.listen_port),
        )
        peers = tuple(p for p in peers if f"/tcp/{p2p}/" not in p)
        import dataclasses

        cfg = dataclasses.replace(
            cfg,
            moniker=f"fullnode{index}",
            p2p=dataclasses.replace(cfg.p2p, listen_port=p2p, persistent_peers=peers),
            rpc=dataclasses.replace(cfg.rpc, listen_port=rpc),
            metrics=dataclasses.replace(cfg.metrics, listen_port=metrics),
        )
        dst.config_file.write_text(render_config(cfg))
        write_key(dst.node_key_file, generate_key())
        write_key(dst.validator_key_file, generate_key())  # not in genesis: it only follows
        dst.genesis_file.write_bytes(src.genesis_file.read_bytes())

    def home(self, i: int) -> Home:
        return Home(self.root / f"node{i}")

    def rpc_url(self, i: int) -> str:
        return f"http://127.0.0.1:{testnet.node_ports(self.base_port, i)[1]}"

    def metrics_url(self, i: int) -> str:
        return f"http://127.0.0.1:{testnet.node_ports(self.base_port, i)[2]}/metrics"

    def log_file(self, i: int) -> Path:
        return self.home(i).root / "node.log"

    def start(self, i: int) -> None:
        if i in self.procs and self.procs[i].poll() is None:
            raise NodeError(f"node{i} is already running")
        env = {**os.environ, **self.env}
        log = self.log_file(i).open("ab")
        try:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "start", "--home", str(self.home(i).root)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            log.close()

    def start_all(self) -> None:
        for i in range(self.validators):
            self.start(i)

    def kill(self, i: int) -> None:
        """SIGKILL: no shutdown hooks run, exactly like a power cut for the process."""
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self, i: int, timeout_s: float = 30.0, signal_sent: bool = False) -> int | None:
        proc = self.procs.get(i)
        if proc is None:
            return None
        if proc.poll() is None:
            if not signal_sent:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # Stuck on SIGTERM: have it print its threads' stacks into its log, then kill.
                proc.send_signal(signal.SIGUSR1)
                proc.send_signal(signal.SIGUSR2)
                time.sleep(1.0)
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> dict[int, int | None]:
        codes = {}
        for i in list(self.procs):
            proc = self.procs[i]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for i in list(self.procs):
            codes[i] = self.stop(i, signal_sent=True)
        return codes

    def running(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None


def _own_addr(home: Home, port: int) -> str:
    from node.keys import read_key
    from node.p2p.peer_id import PeerId

    key = read_key(home.node_key_file)
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{PeerId.from_public_key(key.public_key)}"
