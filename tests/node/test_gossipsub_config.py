"""[p2p.gossipsub]: the gossip limits an operator can set, refused with the field named when
they make no sense, and what a started node's router really runs with."""

import asyncio
import dataclasses
from pathlib import Path

import pytest

from node.config import GossipsubSettings, NodeConfig, load_config, render_config
from node.errors import ConfigError
from node.genesis import read_genesis_file
from node.localnet import LocalNet
from node.p2p.gossipsub.config import GossipsubConfig
from node.service import Node

REPO = Path(__file__).resolve().parents[2]


def test_the_defaults_are_what_the_node_ran_with_before() -> None:
    # The library's defaults, with the node's 700 ms heartbeat (service.py's until now).
    assert GossipsubSettings().router_config() == GossipsubConfig(heartbeat_interval_ms=700)
    # The documented file says the same as the code.
    assert load_config(REPO / "config" / "node.toml").p2p.gossipsub == GossipsubSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dd = 3", "p2p.gossipsub.dd: unknown setting"),
        ("d = 'six'", "p2p.gossipsub.d: expected an integer"),
        ("heartbeat_interval_ms = 0", "p2p.gossipsub.heartbeat_interval_ms: must be positive"),
        ("rpc_bytes_max = -1", "p2p.gossipsub.rpc_bytes_max: must be positive"),
        ("d_out = -1", "p2p.gossipsub.d_out: must not be negative"),
        ("d = 3", r"p2p.gossipsub.d: must lie between d_lo \(4\) and d_hi \(12\)"),
        ("d = 13", r"p2p.gossipsub.d: must lie between d_lo \(4\) and d_hi \(12\)"),
        ("d_score = 7", r"p2p.gossipsub.d_score: must not exceed d \(6\)"),
        ("d_out = 4", "p2p.gossipsub.d_out: must be below d_lo"),
        (
            "rpc_send_bytes_max = 20000000",
            "p2p.gossipsub.rpc_send_bytes_max: must not exceed p2p.gossipsub.rpc_bytes_max",
        ),
        (
            "peer_queue_bytes_max = 268435456",
            "p2p.gossipsub.publish_backlog_bytes_max: must exceed p2p.gossipsub.peer_queue",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[p2p.gossipsub]\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


CUSTOM = GossipsubSettings(
    heartbeat_interval_ms=250,
    d=5,
    d_lo=3,
    d_hi=9,
    d_score=2,
    d_out=1,
    rpc_send_bytes_max=512 * 1024,
    peer_queue_bytes_max=8 * 1024 * 1024,
    peer_messages_per_s_max=1_000,
    max_ihave_messages=4,
    graylist_ban_ms=5_000,
)


def test_a_section_round_trips_through_the_rendered_file(tmp_path: Path) -> None:
    cfg = NodeConfig(p2p=dataclasses.replace(NodeConfig().p2p, gossipsub=CUSTOM))
    text = render_config(cfg)
    assert "[p2p.gossipsub]" in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert load_config(path) == cfg


async def test_a_started_node_s_router_runs_with_the_configured_values(tmp_path: Path) -> None:
    net = LocalNet(tmp_path, validators=1, app="kv")
    net.generate(commit_timeout_ms=100)
    home = net.home(0)
    cfg = load_config(home.config_file)
    cfg = dataclasses.replace(cfg, p2p=dataclasses.replace(cfg.p2p, gossipsub=CUSTOM))
    home.config_file.write_text(render_config(cfg))

    node = Node(home, load_config(home.config_file), read_genesis_file(home.genesis_file))
    running = asyncio.create_task(node.run())
    try:
        for _ in range(200):
            if node.pubsub is not None or running.done():
                break
            await asyncio.sleep(0.05)
        assert node.pubsub is not None, "the node did not start its gossipsub router"
        expected = CUSTOM.router_config()
        assert (expected.heartbeat_interval_ms, expected.d, expected.d_out) == (250, 5, 1)
        assert expected.rpc_send_bytes_max == 512 * 1024
        assert expected.mcache_len == GossipsubConfig().mcache_len  # not a setting: the default
        assert node.pubsub.config == expected
        assert node.pubsub.router.config == expected
    finally:
        node.stop()
        await asyncio.wait_for(running, 30)
