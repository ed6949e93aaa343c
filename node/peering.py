"""The node's p2p Host, built from the [p2p] config section (limits, protected peers).

Kept apart from service.py so that the connection limits and the protected-peer wiring are
read in one place: `open_host` returns an un-entered Host whose policy already knows the
validators' peer ids (persistent peers become protected when service.py adds them).
"""

from node.config import P2PConfig
from node.p2p.config import HostConfig
from node.p2p.host import Host
from node.p2p.peer_id import Identity, PeerId


def host_config(p2p: P2PConfig) -> HostConfig:
    subnet_max = max(p2p.peers_per_subnet_max, p2p.peers_per_ip_max)
    return HostConfig(
        inbound_peers_max=p2p.peers_max,
        outbound_peers_max=p2p.peers_max,
        pending_inbound_max=p2p.pending_peers_max,
        pending_inbound_per_ip_max=min(p2p.pending_peers_max, p2p.peers_per_ip_max),
        inbound_per_ip_max=p2p.peers_per_ip_max,
        inbound_per_subnet_max=subnet_max,
        handshake_timeout_ms=p2p.handshake_timeout_ms,
        dial_backoff_max_ms=p2p.dial_backoff_max_ms,
        dial_backoff_min_ms=min(200, p2p.dial_backoff_max_ms),
        request_bytes_max=p2p.request_bytes_max,
        response_bytes_max=p2p.request_bytes_max,
        request_timeout_ms=p2p.request_timeout_ms,
        memory_node_bytes_max=p2p.memory_bytes_max,
        memory_strangers_bytes_max=p2p.strangers_memory_bytes_max,
        memory_protected_connection_bytes_max=p2p.protected_connection_memory_bytes_max,
        memory_stranger_connection_bytes_max=p2p.stranger_connection_memory_bytes_max,
    )


def open_host(identity: Identity, p2p: P2PConfig) -> Host:
    host = Host(identity, host_config(p2p))
    host.set_validator_peers(PeerId.from_base58(text) for text in p2p.validator_peer_ids)
    return host
