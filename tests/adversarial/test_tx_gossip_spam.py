"""Issue 13, attack 5: a stranger gossips txs with forged signatures on the tx topic.

Before the fix such pushes cut the commit rate by ~30% and the pusher was never penalized:
check_tx refused each one for a reason indistinguishable from "a block behind", so the topic
validator answered IGNORE.  Now a tx invalid in every state makes the message REJECTed and
costs its sender a severe offence: the node bans it at the second such message.

The attacker runs in this process on the node's own p2p stack (a fresh identity, the real
handshake, gossipsub), bounded in count and time.
"""

from collections.abc import Iterator

import pytest

from node.localnet import LocalNet
from node.rpc.client import RpcClient
from tests.adversarial.attacks import gossip_forged_txs, net_target

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.timeout(300)]

VALIDATORS = 4
TARGET = 0
FORGED_MAX = 10  # the bound: disconnected within 10 bad messages
CHAIN_ID = "fedchain-localnet"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("txspam")
    cluster = LocalNet(root, validators=VALIDATORS, app="fl")
    cluster.generate(commit_timeout_ms=50)
    cluster.start_all()
    try:
        yield cluster
    finally:
        codes = cluster.stop_all()
        print(f"exit codes {codes}; logs under {root}")


async def test_a_peer_gossiping_forged_txs_is_banned_within_a_few_messages(
    net: LocalNet,
) -> None:
    async with RpcClient(net.rpc_url(TARGET)) as client:
        await client.wait_for_height(2, 60_000)
    async with RpcClient(net.rpc_url(TARGET)) as client:
        height_before = int((await client.status())["height"])
    sent, cut = await gossip_forged_txs(net_target(net, TARGET), "127.0.0.1", FORGED_MAX, 0.2)
    assert cut is not None, f"still connected after {sent} forged txs"
    print(f"disconnected after {sent} forged txs")
    log = net.log_file(TARGET).read_text(errors="replace")
    assert '"peer_banned"' in log
    async with RpcClient(net.rpc_url(TARGET)) as client:
        await client.wait_for_height(height_before + 3, 30_000)  # the chain went on
        assert (await client.status())["mempool_txs"] == 0  # nothing forged was admitted
