"""Peer scoring of gossipsub v1.1 (P1-P7), fed events and the current time as inputs.

score(p) = min(cap, sum over topics of topic_weight * (w1 P1 + w2 P2 + w3 P3 + w3b P3b + w4 P4))
           + w5 P5 + w6 P6 + w7 P7
P1 time in mesh (quanta, capped), P2 first deliveries (decaying, capped), P3 squared deficit of
mesh deliveries under the threshold once the activation time has passed, P3b mesh failure
penalty (the P3 deficit carried over at prune), P4 squared invalid deliveries, P5 application
score, P6 squared surplus of peers sharing an IP, P7 squared behaviour penalty over threshold.
Counters decay once per `decay_interval_ms` in `refresh()` and snap to zero below
`decay_to_zero`.  A disconnected peer's score is retained for `retain_score_ms` so it cannot
reset a bad score by reconnecting.

Delivery records tie a message id to the peers that sent it, so a duplicate that arrives within
the mesh delivery window still counts (P3) and the sender of an invalid message is penalised
along with those who forwarded the same message before validation finished.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from node.p2p.gossipsub.config import ScoreParams, TopicScoreParams

DELIVERY_RECORD_TTL_MS = 120_000


@dataclass(slots=True)
class TopicStats:
    in_mesh: bool = False
    graft_time_ms: int = 0
    mesh_time_ms: int = 0
    first_message_deliveries: float = 0.0
    mesh_message_deliveries: float = 0.0
    mesh_message_deliveries_active: bool = False
    mesh_failure_penalty: float = 0.0
    invalid_message_deliveries: float = 0.0


@dataclass(slots=True)
class PeerStats:
    connected: bool = True
    expire_ms: int = 0
    ip: str = ""
    behaviour_penalty: float = 0.0
    topics: dict[str, TopicStats] = field(default_factory=dict)


@dataclass(slots=True)
class DeliveryRecord:
    status: str  # "pending" | "valid" | "invalid" | "ignored"
    first_seen_ms: int
    validated_ms: int = 0
    peers: dict[bytes, None] = field(default_factory=dict)


class PeerScore:
    def __init__(
        self,
        params: ScoreParams,
        app_score: Callable[[bytes], float] | None = None,
    ) -> None:
        self.params = params
        self._app_score = app_score
        self.peers: dict[bytes, PeerStats] = {}
        self._ips: dict[str, dict[bytes, None]] = {}
        self._deliveries: dict[bytes, DeliveryRecord] = {}
        self._topic_params: dict[str, TopicScoreParams] = {}
        self._last_decay_ms = 0

    def set_topic_params(self, topic: str, params: TopicScoreParams) -> None:
        self._topic_params[topic] = params

    def _tp(self, topic: str) -> TopicScoreParams:
        return self._topic_params.get(topic, self.params.default_topic)

    def _topic(self, peer: bytes, topic: str) -> TopicStats | None:
        stats = self.peers.get(peer)
        if stats is None:
            return None
        ts = stats.topics.get(topic)
        if ts is None:
            ts = TopicStats()
            stats.topics[topic] = ts
        return ts

    # -- the score ----------------------------------------------------------------------------
    def score(self, peer: bytes, now_ms: int) -> float:
        stats = self.peers.get(peer)
        if stats is None:
            return 0.0
        p = self.params
        total = 0.0
        for topic, ts in stats.topics.items():
            tp = self._tp(topic)
            topic_score = 0.0
            if ts.in_mesh:
                quanta = (now_ms - ts.graft_time_ms) / tp.time_in_mesh_quantum_ms
                topic_score += tp.time_in_mesh_weight * min(quanta, tp.time_in_mesh_cap)
            topic_score += tp.first_message_deliveries_weight * ts.first_message_deliveries
            if ts.mesh_message_deliveries_active:
                deficit = tp.mesh_message_deliveries_threshold - ts.mesh_message_deliveries
                if deficit > 0:
                    topic_score += tp.mesh_message_deliveries_weight * deficit * deficit
            topic_score += tp.mesh_failure_penalty_weight * ts.mesh_failure_penalty
            invalid = ts.invalid_message_deliveries
            topic_score += tp.invalid_message_deliveries_weight * invalid * invalid
            total += tp.topic_weight * topic_score
        if p.topic_score_cap > 0 and total > p.topic_score_cap:
            total = p.topic_score_cap
        if self._app_score is not None:
            total += p.app_specific_weight * self._app_score(peer)
        if stats.ip and stats.ip not in p.ip_colocation_whitelist:
            surplus = len(self._ips.get(stats.ip, {})) - p.ip_colocation_factor_threshold
            if surplus > 0:
                total += p.ip_colocation_factor_weight * surplus * surplus
        excess = stats.behaviour_penalty - p.behaviour_penalty_threshold
        if excess > 0:
            total += p.behaviour_penalty_weight * excess * excess
        return total

    # -- peer lifecycle -----------------------------------------------------------------------
    def add_peer(self, peer: bytes, ip: str) -> None:
        stats = self.peers.get(peer)
        if stats is None:
            stats = PeerStats()
            self.peers[peer] = stats
        stats.connected = True
        stats.expire_ms = 0
        stats.ip = ip
        if ip:
            self._ips.setdefault(ip, {})[peer] = None

    def remove_peer(self, peer: bytes, now_ms: int) -> None:
        stats = self.peers.get(peer)
        if stats is None:
            return
        if stats.ip:
            peers_at_ip = self._ips.get(stats.ip, {})
            peers_at_ip.pop(peer, None)
            if not peers_at_ip:
                self._ips.pop(stats.ip, None)
        if self.score(peer, now_ms) > 0:
            del self.peers[peer]
            return
        # Keep a non-positive score so reconnecting does not launder it.
        for topic, ts in stats.topics.items():
            ts.first_message_deliveries = 0.0
            if ts.in_mesh:
                self._carry_mesh_failure(topic, ts)
            ts.in_mesh = False
            ts.mesh_message_deliveries_active = False
        stats.connected = False
        stats.expire_ms = now_ms + self.params.retain_score_ms

    def graft(self, peer: bytes, topic: str, now_ms: int) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        ts.in_mesh = True
        ts.graft_time_ms = now_ms
        ts.mesh_message_deliveries_active = False

    def prune(self, peer: bytes, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        self._carry_mesh_failure(topic, ts)
        ts.in_mesh = False

    def _carry_mesh_failure(self, topic: str, ts: TopicStats) -> None:
        tp = self._tp(topic)
        if ts.mesh_message_deliveries_active:
            deficit = tp.mesh_message_deliveries_threshold - ts.mesh_message_deliveries
            if deficit > 0:
                ts.mesh_failure_penalty += deficit * deficit
        ts.mesh_message_deliveries_active = False

    def add_penalty(self, peer: bytes, count: float = 1.0) -> None:
        stats = self.peers.get(peer)
        if stats is not None:
            stats.behaviour_penalty += count

    # -- message events -----------------------------------------------------------------------
    def validate_message(self, peer: bytes, msg_id: bytes, now_ms: int) -> None:
        """A new message entered validation; `peer` delivered it first."""
        record = self._deliveries.get(msg_id)
        if record is None:
            record = DeliveryRecord("pending", now_ms)
            self._deliveries[msg_id] = record
        record.peers[peer] = None

    def deliver_message(self, peer: bytes, msg_id: bytes, topic: str, now_ms: int) -> None:
        """Validation accepted the message that `peer` delivered first."""
        self._mark_first(peer, topic)
        record = self._deliveries.setdefault(msg_id, DeliveryRecord("pending", now_ms))
        record.status = "valid"
        record.validated_ms = now_ms
        for other in record.peers:
            if other != peer:
                self._mark_mesh_delivery(other, topic)

    def reject_message(self, peer: bytes, msg_id: bytes | None, topic: str) -> None:
        """An invalid message (bad signature, rejected by the validator)."""
        self._mark_invalid(peer, topic)
        if msg_id is None:
            return
        record = self._deliveries.get(msg_id)
        if record is None:
            return
        record.status = "invalid"
        for other in record.peers:
            if other != peer:
                self._mark_invalid(other, topic)

    def ignore_message(self, msg_id: bytes) -> None:
        record = self._deliveries.get(msg_id)
        if record is not None:
            record.status = "ignored"

    def duplicate_message(self, peer: bytes, msg_id: bytes, topic: str, now_ms: int) -> None:
        record = self._deliveries.get(msg_id)
        if record is None or peer in record.peers:
            return
        match record.status:
            case "pending":
                record.peers[peer] = None
            case "valid":
                record.peers[peer] = None
                window = self._tp(topic).mesh_message_deliveries_window_ms
                if now_ms - record.validated_ms <= window:
                    self._mark_mesh_delivery(peer, topic)
            case "invalid":
                self._mark_invalid(peer, topic)
            case _:
                pass

    def _mark_first(self, peer: bytes, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        tp = self._tp(topic)
        ts.first_message_deliveries = min(
            ts.first_message_deliveries + 1, tp.first_message_deliveries_cap
        )
        if ts.in_mesh:
            ts.mesh_message_deliveries = min(
                ts.mesh_message_deliveries + 1, tp.mesh_message_deliveries_cap
            )

    def _mark_mesh_delivery(self, peer: bytes, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is not None and ts.in_mesh:
            ts.mesh_message_deliveries = min(
                ts.mesh_message_deliveries + 1, self._tp(topic).mesh_message_deliveries_cap
            )

    def _mark_invalid(self, peer: bytes, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is not None:
            ts.invalid_message_deliveries += 1

    # -- time ---------------------------------------------------------------------------------
    def refresh(self, now_ms: int) -> None:
        """Decay counters (once per decay interval), expire retained scores and records."""
        if now_ms - self._last_decay_ms < self.params.decay_interval_ms:
            return
        self._last_decay_ms = now_ms
        zero = self.params.decay_to_zero
        for peer in list(self.peers):
            stats = self.peers[peer]
            if not stats.connected and now_ms >= stats.expire_ms:
                del self.peers[peer]
                continue
            for topic, ts in stats.topics.items():
                tp = self._tp(topic)
                ts.first_message_deliveries = _decay(
                    ts.first_message_deliveries, tp.first_message_deliveries_decay, zero
                )
                ts.mesh_message_deliveries = _decay(
                    ts.mesh_message_deliveries, tp.mesh_message_deliveries_decay, zero
                )
                ts.mesh_failure_penalty = _decay(
                    ts.mesh_failure_penalty, tp.mesh_failure_penalty_decay, zero
                )
                ts.invalid_message_deliveries = _decay(
                    ts.invalid_message_deliveries, tp.invalid_message_deliveries_decay, zero
                )
                if ts.in_mesh:
                    ts.mesh_time_ms = now_ms - ts.graft_time_ms
                    if ts.mesh_time_ms > tp.mesh_message_deliveries_activation_ms:
                        ts.mesh_message_deliveries_active = True
            stats.behaviour_penalty = _decay(
                stats.behaviour_penalty, self.params.behaviour_penalty_decay, zero
            )
        deliveries = self._deliveries
        while deliveries:
            first = next(iter(deliveries))
            if now_ms - deliveries[first].first_seen_ms < DELIVERY_RECORD_TTL_MS:
                break
            del deliveries[first]


def _decay(value: float, factor: float, zero: float) -> float:
    value *= factor
    return 0.0 if abs(value) < zero else value
