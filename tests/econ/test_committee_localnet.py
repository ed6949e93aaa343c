"""The evaluation committee on a real 4-validator loopback testnet with 4 FL clients.

Governance turns the committee on (`committee_blocks` = 20, proposed and voted with
`fedchain gov`); each validator then runs `fedchain committee run` on its own quarter of the
held-out data while the clients train.  Every scored round must be settled (nothing left
waiting), every scorer must have eval_scores in blocks, and none of them rejected.
"""

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from consensus.codec import decode
from node.localnet import LocalNet, terminate_all
from node.rpc.transport import RpcTransport
from tests.econ.helpers import lengthen_votes

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


def height(net: LocalNet, node: int = 0) -> int:
    transport = RpcTransport(net.rpc_url(node))
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
    lengthen_votes(net, 40_000)
    net.start_all()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: min(height(net, i) for i in range(4)) >= 2, "every node is up")
        keys = [str(net.home(i).validator_key_file) for i in range(4)]
        made = cli(net, 0, "gov", "propose", "--key", keys[0], "--param", "committee_blocks=20")
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
        assert all(len(hashes) == 2 for hashes in sent), sent  # --rounds 2 each
        transport = RpcTransport(net.rpc_url(1))
        try:
            wait_until(lambda: decode(transport.query("econ/unsettled")) == [], "settlement")
        finally:
            transport.close()
        # A score sent as its round's window closes may miss it (the mempool drops it then);
        # every scorer must have landed some, and none that landed may have been rejected.
        for hashes in sent:
            codes = [_code(net, h) for h in hashes]
            assert any(code == 0 for code in codes), codes
            assert all(code in (0, None) for code in codes), codes
    finally:
        terminate_all(procs)
        net.stop_all()


def _code(net: LocalNet, tx_hash: str) -> int | None:
    """The committed result code of a transaction, or None if it is in no block."""
    try:
        with urllib.request.urlopen(f"{net.rpc_url(0)}/txs/{tx_hash}") as resp:
            body = json.loads(resp.read())
    except OSError:
        return None
    return int(body["code"]) if body.get("status") == "committed" else None
