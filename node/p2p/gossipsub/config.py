"""gossipsub parameters: mesh degrees, timings, limits, peer-score weights and thresholds.

Defaults follow the gossipsub v1.1 spec and go-libp2p-pubsub, except where noted.
"""

from dataclasses import dataclass, field

from node.p2p.errors import InvariantError
from node.p2p.gossipsub.rpc import RpcLimits


@dataclass(frozen=True, slots=True)
class TopicScoreParams:
    topic_weight: float = 1.0
    # P1: time in mesh
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum_ms: int = 1000
    time_in_mesh_cap: float = 3600.0
    # P2: first message deliveries
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = 0.5
    first_message_deliveries_cap: float = 100.0
    # P3: mesh message delivery rate (weight <= 0; 0 disables, as on topics with bursty load)
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = 0.5
    mesh_message_deliveries_cap: float = 100.0
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_window_ms: int = 10
    mesh_message_deliveries_activation_ms: int = 5000
    # P3b: mesh failure penalty
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.5
    # P4: invalid messages
    invalid_message_deliveries_weight: float = -100.0
    invalid_message_deliveries_decay: float = 0.3


@dataclass(frozen=True, slots=True)
class ScoreParams:
    default_topic: TopicScoreParams = field(default_factory=TopicScoreParams)
    topic_score_cap: float = 100.0
    app_specific_weight: float = 1.0
    # P6: many peers behind one IP.  Loopback is exempt so local testnets are not penalised.
    ip_colocation_factor_weight: float = -10.0
    ip_colocation_factor_threshold: int = 10
    ip_colocation_whitelist: tuple[str, ...] = ("127.0.0.1", "::1")
    # P7: misbehaviour (broken IWANT promises, GRAFT in backoff, flooding)
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 0.0
    behaviour_penalty_decay: float = 0.9
    decay_interval_ms: int = 1000
    decay_to_zero: float = 0.01
    retain_score_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    gossip_threshold: float = -100.0
    publish_threshold: float = -200.0
    graylist_threshold: float = -400.0
    accept_px_threshold: float = 100.0
    opportunistic_graft_threshold: float = 5.0


@dataclass(frozen=True, slots=True)
class GossipsubConfig:
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_score: int = 4
    d_lazy: int = 6
    # At least this many mesh peers must be connections we dialled (eclipse resistance).
    d_out: int = 2
    gossip_factor_percent: int = 25
    heartbeat_interval_ms: int = 1000
    fanout_ttl_ms: int = 60_000
    mcache_len: int = 5
    mcache_gossip: int = 3
    seen_ttl_ms: int = 120_000
    seen_entries_max: int = 1_000_000
    prune_backoff_ms: int = 60_000
    unsubscribe_backoff_ms: int = 10_000
    graft_flood_threshold_ms: int = 10_000
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    max_ihave_length: int = 5000
    max_ihave_messages: int = 10
    iwant_followup_ms: int = 3000
    gossip_retransmission: int = 3
    flood_publish: bool = True
    # v1.2: announce IDONTWANT for messages at least this large.
    idontwant_message_bytes_min: int = 1024
    idontwant_entries_max: int = 10_000
    # Limits on what one peer may send us.
    rpc_bytes_max: int = 16 * 1024 * 1024 + 4096
    rpc_limits: RpcLimits = field(default_factory=RpcLimits)
    # Inbound rate budget per peer (token bucket, refilled continuously); excess is dropped
    # and each RPC over budget is a behaviour penalty.
    peer_messages_per_s_max: int = 50_000
    peer_messages_burst: int = 20_000
    # A heartbeat window in which a peer had more messages dropped than this costs it one
    # behaviour penalty (P7); seven such windows in a row graylist it with default weights.
    flood_drops_per_heartbeat_max: int = 1000
    # Every RPC we send on a gossipsub stream is split under this size: go-libp2p and
    # py-libp2p reset a stream that brings a larger one (their default inbound limit).  A
    # single message larger than this travels alone (counted: such a peer may drop it); the
    # bulk lane to peers running this stack uses rpc_bytes_max instead.
    rpc_send_bytes_max: int = 1024 * 1024
    # Outbound queue per peer (bytes).  When a frame does not fit, the oldest queued
    # message-only frames are dropped first (counted); control never is.
    peer_queue_bytes_max: int = 64 * 1024 * 1024
    # A large local publish() waits while more than half of the peers are backlogged (queue
    # at least half full: our own uplink is the bottleneck) or while all queues together
    # hold this much; never for one slow peer, whose queue drops its oldest messages.
    publish_backlog_bytes_max: int = 256 * 1024 * 1024
    # A peer whose frames were dropped in a heartbeat, or whose write has been in progress
    # for this many heartbeats, is slow: a P7 penalty and a PRUNE (repeatedly: graylisted).
    slow_peer_stall_heartbeats: int = 10
    # Reopening a failed stream to a peer at most this many times per `prune_backoff_ms`;
    # after that (or when reopening fails) the connection is closed.
    stream_reopens_max: int = 3
    # Messages of this size or more travel on a separate bulk-class stream to peers that run
    # this stack, so small (consensus) messages never queue behind them.
    bulk_message_bytes_min: int = 64 * 1024
    # Messages this large are hashed/verified in a worker thread, off the event loop.
    offload_message_bytes_min: int = 256 * 1024
    graylist_ban_ms: int = 60_000
    score: ScoreParams = field(default_factory=ScoreParams)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        if not 0 < self.d_lo <= self.d <= self.d_hi:
            raise InvariantError("GossipsubConfig: need 0 < d_lo <= d <= d_hi")
        if not 0 <= self.d_score <= self.d:
            raise InvariantError("GossipsubConfig.d_score must be within 0..d")
        if not (0 <= self.d_out < self.d_lo and self.d_out <= self.d // 2):
            raise InvariantError("GossipsubConfig.d_out must be < d_lo and <= d/2")
        if self.mcache_gossip > self.mcache_len:
            raise InvariantError("GossipsubConfig.mcache_gossip exceeds mcache_len")
        t = self.thresholds
        if not (t.graylist_threshold <= t.publish_threshold <= t.gossip_threshold <= 0):
            raise InvariantError(
                "GossipsubConfig.thresholds: need graylist <= publish <= gossip <= 0"
            )
        if self.heartbeat_interval_ms <= 0:
            raise InvariantError("GossipsubConfig.heartbeat_interval_ms must be positive")
        if not 0 < self.rpc_send_bytes_max <= self.rpc_bytes_max:
            raise InvariantError("GossipsubConfig.rpc_send_bytes_max must be in 1..rpc_bytes_max")
        if self.publish_backlog_bytes_max <= self.peer_queue_bytes_max:
            # Otherwise one peer's full queue alone would hold every publish.
            raise InvariantError(
                "GossipsubConfig.publish_backlog_bytes_max must exceed peer_queue_bytes_max"
            )
        if self.slow_peer_stall_heartbeats <= 0 or self.stream_reopens_max < 0:
            raise InvariantError(
                "GossipsubConfig: slow_peer_stall_heartbeats > 0, stream_reopens_max >= 0"
            )
