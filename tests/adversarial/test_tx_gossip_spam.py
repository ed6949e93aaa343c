"""Issue 13, attack 5: a stranger gossips txs with forged signatures on the tx topic.

Before the fix such pushes cut the commit rate by ~30% and the pusher was never penalized:
check_tx refused each one for a reason indistinguishable from "a block behind", so the topic
validator answered IGNORE.  Now a tx invalid in every state makes the message REJECTed and
costs its sender a severe offence: the node bans it at the second such message.

The attacker runs in this process on the node's own p2p stack (a fresh identity, the real
handshake, gossipsub), bounded in count and time.
"""

import asyncio
import os
from collections.abc import Iterator

import pytest

from fl.txs import sign_tx
from node.commands.testnet import node_ports
from node.keys import generate_key, read_key
from node.localnet import LocalNet
from node.p2p.config import HostConfig
from node.p2p.gossipsub.config import GossipsubConfig
from node.p2p.gossipsub.router import Validation
from node.p2p.gossipsub.service import GossipSub
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId
from node.rpc.client import RpcClient
from node.wire import TxPush, encode_message

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


def forged_tx(nonce: int) -> bytes:
    wire = bytearray(
        sign_tx(generate_key(), CHAIN_ID, "transfer", nonce, [b"\x01" * 32, 1]).to_wire()
    )
    wire[-1] ^= 0x01  # the signature's last byte
    return bytes(wire)


async def test_a_peer_gossiping_forged_txs_is_banned_within_a_few_messages(
    net: LocalNet,
) -> None:
    async with RpcClient(net.rpc_url(TARGET)) as client:
        await client.wait_for_height(2, 60_000)
    target = PeerId.from_public_key(read_key(net.home(TARGET).node_key_file).public_key)
    port = node_ports(net.base_port, TARGET)[0]
    topic = f"/fedchain/{CHAIN_ID}/txs/1"
    async with Host(Identity.from_seed(os.urandom(32)), HostConfig()) as host:
        pubsub = GossipSub(host, GossipsubConfig(heartbeat_interval_ms=200))
        pubsub.start()
        pubsub.subscribe(
            topic,
            lambda _peer, _message: Validation.ACCEPT,
            strict_sign=False,
            on_message=lambda _message: None,
        )
        assert await host.dial(f"/ip4/127.0.0.1/tcp/{port}/p2p/{target}") == target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while target not in pubsub.topic_peers(topic):
            assert loop.time() < deadline, "the node never announced its tx topic"
            await asyncio.sleep(0.05)
        async with RpcClient(net.rpc_url(TARGET)) as client:
            height_before = int((await client.status())["height"])
        sent = 0
        while host.is_connected(target) and sent < FORGED_MAX:
            pubsub.publish_nowait(topic, encode_message(TxPush(forged_tx(sent))))
            sent += 1
            await asyncio.sleep(0.2)
        for _ in range(40):  # up to 2 s for the ban to close the connection
            if not host.is_connected(target):
                break
            await asyncio.sleep(0.05)
        assert not host.is_connected(target), f"still connected after {sent} forged txs"
        print(f"disconnected after {sent} forged txs")
    log = net.log_file(TARGET).read_text(errors="replace")
    assert '"peer_banned"' in log
    async with RpcClient(net.rpc_url(TARGET)) as client:
        await client.wait_for_height(height_before + 3, 30_000)  # the chain went on
        assert (await client.status())["mempool_txs"] == 0  # nothing forged was admitted
