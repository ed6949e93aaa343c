"""`fedchain gov` against a real 4-validator loopback testnet (separate node processes).

Validator 0 proposes FedAvg's successor rule with its validator key, all four vote yes, and
every node reports the proposal passed and the new rule, read over each node's own RPC.  A vote
after the period and a proposal without deposit are refused with the chain's reason.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.codec import decode
from fl.params import decode_params
from node.localnet import LocalNet
from node.rpc.transport import RpcTransport
from tests.econ.helpers import lengthen_votes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 120.0


def gov(net: LocalNet, node: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "gov", *argv, "--rpc", net.rpc_url(node)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def wait_for_height(transport: RpcTransport, height: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if transport.height() >= height:
                return
        except Exception:  # the node is still starting: its RPC port is not open yet
            pass
        time.sleep(0.25)
    raise AssertionError(f"height {height} not reached in {TIMEOUT_S} s")


def test_propose_vote_list_show_on_a_live_testnet(tmp_path: Path) -> None:
    net = LocalNet(tmp_path / "net", validators=4, app="fl")
    net.generate(propose_timeout_ms=500)
    lengthen_votes(net, 40_000)
    net.start_all()
    try:
        for i in range(4):  # every node's RPC answers (votes go through each node)
            rpc = RpcTransport(net.rpc_url(i))
            wait_for_height(rpc, 2)
            rpc.close()
        key = [str(net.home(i).validator_key_file) for i in range(4)]
        refused = gov(net, 0, "propose", "--key", key[0], "--text", "t", "--deposit", "0")
        assert refused.returncode == 1
        assert "below the minimum" in refused.stderr
        made = gov(net, 0, "propose", "--key", key[0], "--param", "rule=multi_krum", "--wait")
        assert made.returncode == 0, made.stderr
        assert "proposal id 1" in made.stdout  # ids are assigned on chain; the command says it
        for i in range(4):
            voted = gov(net, i, "vote", "1", "yes", "--key", key[i], "--wait")
            assert voted.returncode == 0, voted.stderr
        listing = gov(net, 1, "list")
        assert "param rule = 'multi_krum'" in listing.stdout
        deadline = time.monotonic() + TIMEOUT_S
        shown = gov(net, 2, "show", "1")
        while "proposal 1: voting" in shown.stdout and time.monotonic() < deadline:
            time.sleep(1.0)
            shown = gov(net, 2, "show", "1")
        assert "proposal 1: passed" in shown.stdout, shown.stdout + shown.stderr
        assert "yes 40000" in shown.stdout
        for i in range(4):
            node = RpcTransport(net.rpc_url(i))
            try:
                assert decode_params(decode(node.query("params"))).rule == "multi_krum"
            finally:
                node.close()
            assert "proposal 1: passed" in gov(net, i, "show", "1").stdout
        late = gov(net, 3, "vote", "1", "no", "--key", key[3])
        assert late.returncode == 1
        assert "ended at chain time" in late.stderr
    finally:
        net.stop_all()
