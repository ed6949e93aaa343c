"""The evaluation committee on a real 4-validator loopback testnet with 4 FL clients.

Governance turns the committee on (`committee_blocks` = 6, proposed and voted with
`fedchain gov`); each validator then runs `fedchain committee run` on its own quarter of the
held-out data while the clients train.  Every scorer's eval_scores transactions must land in
blocks with result code 0, and every scored round must be settled (nothing left waiting).
"""

import functools
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from consensus.codec import decode
from node.localnet import LocalNet
from node.rpc.transport import RpcTransport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 150.0


def cli(net: LocalNet, node: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *argv, "--rpc", net.rpc_url(node)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def wait_until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {TIMEOUT_S} s")


def height(net: LocalNet) -> int:
    transport = RpcTransport(net.rpc_url(0))
    try:
        return transport.height()
    except Exception:  # the node is still starting: its RPC port is not open yet
        return 0
    finally:
        transport.close()


def test_validators_score_rounds_and_the_chain_settles_them(tmp_path: Path) -> None:
    root = tmp_path / "net"
    net = LocalNet(root, validators=4, clients=4, attackers=1, app="fl")
    net.generate(propose_timeout_ms=500, attack="sign_flip")
    net.start_all()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: height(net) >= 2, "the chain starts")
        keys = [str(net.home(i).validator_key_file) for i in range(4)]
        made = cli(net, 0, "gov", "propose", "--key", keys[0], "--param", "committee_blocks=6")
        assert made.returncode == 0, made.stderr
        wait_until(lambda: "proposal 1: voting" in cli(net, 0, "gov", "show", "1").stdout, "p1")
        for i in range(4):
            voted = cli(net, i, "gov", "vote", "1", "yes", "--key", keys[i], "--wait")
            assert voted.returncode == 0, voted.stderr
        wait_until(lambda: "proposal 1: passed" in cli(net, 0, "gov", "show", "1").stdout, "pass")
        logs = [root / f"committee{i}.log" for i in range(4)]
        for i in range(4):
            with logs[i].open("wb") as log:
                argv = ["committee", "run", "--key", keys[i], "--rpc", net.rpc_url(i)]
                argv += ["--part", str(i), "--parts", "4", "--rounds", "2", "--timeout-s", "120"]
                procs.append(
                    subprocess.Popen([sys.executable, "-m", "node.cli", *argv], stdout=log)
                )
        for j in range(4):
            home = root / f"client{j}"
            with (home / "client.log").open("wb") as log:
                argv = ["client", "run", "--home", str(home), "--rounds", "4", "--timeout-s", "120"]
                procs.append(
                    subprocess.Popen([sys.executable, "-m", "node.cli", *argv], stdout=log)
                )
        for scorer in procs[:4]:
            assert scorer.wait(TIMEOUT_S) == 0
        sent = [re.findall(r"sent tx ([0-9a-f]{64})", log.read_text()) for log in logs]
        assert all(len(hashes) == 2 for hashes in sent), sent
        for tx_hash in [h for hashes in sent for h in hashes]:
            wait_until(functools.partial(_committed, net, tx_hash), f"eval_scores {tx_hash[:8]}")
            with urllib.request.urlopen(f"{net.rpc_url(0)}/txs/{tx_hash}") as resp:
                assert json.loads(resp.read())["code"] == 0
        transport = RpcTransport(net.rpc_url(1))
        try:
            wait_until(lambda: decode(transport.query("econ/unsettled")) == [], "settlement")
        finally:
            transport.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        net.stop_all()


def _committed(net: LocalNet, tx_hash: str) -> bool:
    try:
        with urllib.request.urlopen(f"{net.rpc_url(0)}/txs/{tx_hash}") as resp:
            return bool(json.loads(resp.read()).get("status") == "committed")
    except OSError:
        return False
