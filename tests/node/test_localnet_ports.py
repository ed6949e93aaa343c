"""Testnet ports come from below the kernel's ephemeral range and are free when picked."""

import socket

from node.commands import testnet
from node.localnet import ephemeral_port_low, free_base_port, port_free


def test_ports_lie_below_the_ephemeral_range_and_are_free() -> None:
    low = ephemeral_port_low()
    for nodes in (1, 5, 12):
        base = free_base_port(nodes)
        ports = [p for i in range(nodes) for p in testnet.node_ports(base, i)]
        assert max(ports) < low
        assert all(port_free(p) for p in ports)


def test_a_taken_port_is_never_picked() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not port_free(port)
        base = free_base_port(1, start=port - port % testnet.PORT_STRIDE, end=port + 200)
        assert port not in testnet.node_ports(base, 0)
