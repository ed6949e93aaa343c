"""Every limit and timing of the p2p stack in one frozen value, passed down explicitly."""

from dataclasses import dataclass, field, fields

from node.p2p.errors import InvariantError

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Connection-level limits (transport, handshake, muxer, host)."""

    # Connection management (connmgr.py).  Validators and persistent peers are protected: they
    # have reserved slots that none of these stranger limits count, and are never evicted.
    # Inbound and outbound stranger slots (handshaken connections).
    inbound_peers_max: int = 64
    outbound_peers_max: int = 32
    # Inbound connections still in their handshake (peer unknown), in all and per source IP;
    # when full, a pending handshake older than pending_evict_after_ms makes room.
    pending_inbound_max: int = 32
    pending_inbound_per_ip_max: int = 8
    pending_evict_after_ms: int = 2_000
    # Handshaken inbound strangers per source IP and per subnet (IPv4 /24, IPv6 /48 by default;
    # go-libp2p's resource manager also limits per IP and per prefix).  A loopback testnet's
    # validators are protected, so these bind only strangers (full nodes, tools, attackers).
    inbound_per_ip_max: int = 8
    inbound_per_subnet_max: int = 16
    subnet_ipv4_prefix_bits: int = 24
    subnet_ipv6_prefix_bits: int = 48
    # A new stranger cannot be evicted for this long; then it can be when the stranger slots
    # are full and it has a negative score or has sent nothing for peer_idle_ms.
    eviction_grace_ms: int = 10_000
    peer_idle_ms: int = 30_000
    # A banned stranger's address is banned too, twice as long for each repeat offence, at most
    # this long; each ban table holds at most ban_entries_max entries.
    address_ban_max_ms: int = 3_600_000
    ban_entries_max: int = 4_096
    handshake_timeout_ms: int = 10_000
    dial_timeout_ms: int = 10_000
    # Persistent peers are redialled with exponential backoff between these bounds.
    dial_backoff_min_ms: int = 500
    dial_backoff_max_ms: int = 30_000
    streams_per_connection_max: int = 256
    # yamux: streams start at the spec's 256 KiB window and grow to this.
    stream_window_bytes_max: int = 16 * MiB
    # Bulk (low priority) bytes queued per connection before bulk writers wait.
    bulk_queue_bytes_max: int = 4 * MiB
    # High-priority bytes queued per connection; beyond this the peer is not reading and the
    # connection is closed.
    high_queue_bytes_max: int = 64 * MiB
    # SO_SNDBUF/SO_RCVBUF per connection: what the kernel queues is first-in-first-out and
    # beyond our priority scheduling, so it is kept small (Linux doubles the value).
    socket_buffer_bytes: int = 64 * 1024
    # Raw bytes read but not yet consumed during the handshake.
    handshake_buffer_bytes_max: int = 256 * 1024
    request_bytes_max: int = 4 * MiB
    response_bytes_max: int = 64 * MiB
    request_timeout_ms: int = 10_000
    identify_bytes_max: int = 64 * 1024
    agent_version: str = "fedchain/0.1.0"
    negotiation_attempts_max: int = 16
    # Memory budget (budget.py): what peers can make us hold, counted as yamux credit granted
    # plus bytes received and not yet read.  All peers together; strangers together (the rest
    # is reserved for validators and persistent peers); one connection of each class.
    memory_node_bytes_max: int = 1024 * MiB
    memory_strangers_bytes_max: int = 256 * MiB
    memory_protected_connection_bytes_max: int = 160 * MiB
    memory_stranger_connection_bytes_max: int = 40 * MiB
    # yamux control frames (ping replies, window updates, ...) owed to a peer and not yet
    # written because it does not read: beyond this the connection is closed.
    control_frames_max: int = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value <= 0:
                raise InvariantError(f"HostConfig.{f.name} must be positive, got {value}")
        if self.dial_backoff_min_ms > self.dial_backoff_max_ms:
            raise InvariantError("HostConfig.dial_backoff_min_ms exceeds dial_backoff_max_ms")
        if self.subnet_ipv4_prefix_bits > 32:
            raise InvariantError("HostConfig.subnet_ipv4_prefix_bits must be at most 32")
        if self.subnet_ipv6_prefix_bits > 128:
            raise InvariantError("HostConfig.subnet_ipv6_prefix_bits must be at most 128")
        if self.inbound_per_ip_max > self.inbound_per_subnet_max:
            raise InvariantError("HostConfig.inbound_per_ip_max exceeds inbound_per_subnet_max")
        if not (
            self.memory_stranger_connection_bytes_max
            <= self.memory_strangers_bytes_max
            <= self.memory_node_bytes_max
        ):
            raise InvariantError(
                "HostConfig.memory_stranger_connection_bytes_max <= memory_strangers_bytes_max"
                " <= memory_node_bytes_max must hold"
            )
        if self.memory_protected_connection_bytes_max > self.memory_node_bytes_max:
            raise InvariantError(
                "HostConfig.memory_protected_connection_bytes_max exceeds memory_node_bytes_max"
            )
        if self.stream_window_bytes_max < 256 * 1024:
            raise InvariantError("HostConfig.stream_window_bytes_max below yamux's 256 KiB")


@dataclass(frozen=True, slots=True)
class P2PConfig:
    host: HostConfig = field(default_factory=HostConfig)
