"""The gossipsub v1.1/v1.2 router as a pure state machine.

Theory of operation.  The shell feeds events - a peer came or went, an RPC arrived, the
application finished validating a message, the heartbeat ticked, the application published -
together with the current time in milliseconds.  The router updates its state (peers and their
topics, mesh and fanout per topic, backoffs, message and seen caches, peer scores, IWANT
promises) and leaves effects in buffers the shell drains with `take_effects()`: RPC fragments
to send per peer, messages awaiting application validation, messages accepted for delivery, and
peers to disconnect because their score fell below the graylist threshold.  Randomness comes
from an injected random.Random, so one seed reproduces the same mesh decisions.

Per topic a `TopicPolicy` fixes the signature policy and the message id:
- StrictSign (libp2p default, used for interop): from, seqno and an ed25519 signature over
  "libp2p-pubsub:" || the marshalled message are required; the id is from || seqno.
- StrictNoSign (the chain's topics): from, seqno, signature and key must be absent; the id is
  derived from the content by a pluggable function (default: first 20 bytes of sha256(data)).

A message enters the seen cache once its signature policy holds (a forged signature therefore
cannot poison an id) and is forwarded to the mesh only after the validator accepts it; a
rejection counts against the first sender (and those who sent the same message meanwhile) in
P4.  A signing defect that other v1.1 implementations accept (a `key` field that does not match
the key inlined in `from`: py-libp2p ignores that field) is dropped without P4 when a forwarder
relays it, and penalised only when the sender is the message's author (see `SigningProblem`).
Mesh maintenance, fanout expiry, gossip emission (IHAVE to D_lazy non-mesh peers), IWANT
promise checks and score decay happen in `heartbeat()`.

The shell reports what only it can see: a peer's stream failed (`stream_failed`: the peer
leaves every mesh and its IWANT promises are void, `stream_reopened` re-sends our
subscriptions on the new stream) and a peer that does not read (`peer_slow`: a P7 penalty
and a PRUNE, so a peer that keeps not reading is graylisted and disconnected).
"""

import enum
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from node.p2p.counters import Counters
from node.p2p.errors import DecodeError
from node.p2p.gossipsub.config import GossipsubConfig, TopicScoreParams
from node.p2p.gossipsub.mcache import CachedMessage, MessageCache, SeenCache
from node.p2p.gossipsub.rpc import (
    Control,
    Fragment,
    IHave,
    Prune,
    PubMessage,
    Rpc,
    encode_control_fields,
    encode_subscription_field,
)
from node.p2p.gossipsub.score import PeerScore
from node.p2p.peer_id import PeerId, unmarshal_public_key, verify_ed25519

MESHSUB_V11 = "/meshsub/1.1.0"
MESHSUB_V12 = "/meshsub/1.2.0"


class Validation(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


MessageIdFn = Callable[[PubMessage], bytes]


def peer_seqno_id(message: PubMessage) -> bytes:
    return message.from_peer + message.seqno


def content_id(message: PubMessage) -> bytes:
    return hashlib.sha256(message.data).digest()[:20]


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    strict_sign: bool = True
    message_id: MessageIdFn = peer_seqno_id
    score: TopicScoreParams | None = None


STRICT_SIGN = TopicPolicy()
STRICT_NO_SIGN = TopicPolicy(strict_sign=False, message_id=content_id)


@dataclass(frozen=True, slots=True)
class SigningProblem:
    """Why a message fails its topic's signature policy.

    `forwarder_excused`: implementations we interoperate with accept such a message, so an
    honest peer may relay it; only its author (`from` == the sender) is penalised (P4).
    An attacker can make such a message out of any honest one (the `key` field is not
    signed), so penalising relays would let it get honest py-libp2p neighbours graylisted.
    """

    reason: str
    forwarder_excused: bool = False


@dataclass(frozen=True, slots=True)
class Received:
    msg_id: bytes
    message: PubMessage
    source: PeerId


@dataclass(slots=True)
class PeerState:
    protocol: str
    outbound: bool
    ip: str
    topics: dict[str, None] = field(default_factory=dict)
    tokens: float = 0.0
    tokens_ms: int = 0
    idontwant: dict[bytes, int] = field(default_factory=dict)
    ihave_count: int = 0
    iasked: int = 0
    dropped_in_window: int = 0


@dataclass(slots=True)
class Outgoing:
    fragments: list[Fragment] = field(default_factory=list)
    bulk: list[Fragment] = field(default_factory=list)
    ihave: list[IHave] = field(default_factory=list)
    iwant: list[bytes] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)
    idontwant: list[bytes] = field(default_factory=list)

    def control(self) -> Control | None:
        if not (self.ihave or self.iwant or self.graft or self.prune or self.idontwant):
            return None
        return Control(
            tuple(self.ihave),
            tuple(self.iwant),
            tuple(self.graft),
            tuple(self.prune),
            tuple(self.idontwant),
        )


@dataclass(frozen=True, slots=True)
class Effects:
    # (peer, fragments for the main stream, fragments for the bulk lane)
    send: list[tuple[PeerId, list[Fragment], list[Fragment]]]
    validate: list[Received]
    deliver: list[Received]
    disconnect: list[PeerId]


class Router:
    def __init__(
        self,
        local: PeerId,
        sign: Callable[[bytes], bytes],
        config: GossipsubConfig,
        rng: random.Random,
        counters: Counters,
        seqno_start: int,
        app_score: Callable[[bytes], float] | None = None,
    ) -> None:
        self.local = local
        self._sign = sign
        self.config = config
        self._rng = rng
        self.counters = counters
        self._seqno = seqno_start
        self.peers: dict[PeerId, PeerState] = {}
        self.subscriptions: dict[str, TopicPolicy] = {}
        self.publish_policies: dict[str, TopicPolicy] = {}
        self.mesh: dict[str, dict[PeerId, None]] = {}
        self.fanout: dict[str, dict[PeerId, None]] = {}
        self._fanout_last_pub: dict[str, int] = {}
        self._backoff: dict[tuple[str, PeerId], int] = {}
        self.mcache = MessageCache(config.mcache_len, config.mcache_gossip)
        self.seen = SeenCache(config.seen_ttl_ms, config.seen_entries_max)
        self.score = PeerScore(config.score, app_score)
        self._promises: dict[bytes, tuple[PeerId, int]] = {}
        self._out: dict[PeerId, Outgoing] = {}
        self._validate: list[Received] = []
        self._deliver: list[Received] = []
        self._disconnect: dict[PeerId, None] = {}
        self._graylisted: dict[PeerId, None] = {}
        # Direct peers (v1.1): always sent every message of their topics, never in the mesh,
        # never gossiped to, exempt from graylisting; the shell keeps them connected.
        self.direct: dict[PeerId, None] = {}
        self._penalised = False
        self._scores: dict[PeerId, float] = {}
        self.ticks = 0

    # -- effects ------------------------------------------------------------------------------
    def take_effects(self) -> Effects:
        send: list[tuple[PeerId, list[Fragment], list[Fragment]]] = []
        for peer, out in self._out.items():
            fragments = out.fragments
            control = out.control()
            if control is not None:
                fragments.extend(encode_control_fields(control, self.config.rpc_send_bytes_max))
            if fragments or out.bulk:
                send.append((peer, fragments, out.bulk))
        self._out = {}
        effects = Effects(send, self._validate, self._deliver, list(self._disconnect))
        self._validate = []
        self._deliver = []
        self._disconnect = {}
        return effects

    def _outgoing(self, peer: PeerId) -> Outgoing:
        out = self._out.get(peer)
        if out is None:
            out = Outgoing()
            self._out[peer] = out
        return out

    def _send_message(self, peer: PeerId, cached: CachedMessage) -> None:
        out = self._outgoing(peer)
        if len(cached.message.data) >= self.config.bulk_message_bytes_min:
            out.bulk.append(cached.fragment)
        else:
            out.fragments.append(cached.fragment)

    # -- peers --------------------------------------------------------------------------------
    def add_peer(self, peer: PeerId, protocol: str, outbound: bool, ip: str, now_ms: int) -> None:
        if peer in self.peers:
            return
        burst = float(self.config.peer_messages_burst)
        self.peers[peer] = PeerState(protocol, outbound, ip, tokens=burst, tokens_ms=now_ms)
        self.score.add_peer(peer.raw, ip)
        if self.subscriptions:
            out = self._outgoing(peer)
            for topic in self.subscriptions:
                out.fragments.append(encode_subscription_field(True, topic))

    def remove_peer(self, peer: PeerId, now_ms: int) -> None:
        if self.peers.pop(peer, None) is None:
            return
        for topic, mesh in self.mesh.items():
            if peer in mesh:
                del mesh[peer]
                self.score.prune(peer.raw, topic)
        for fanout in self.fanout.values():
            fanout.pop(peer, None)
        self.score.remove_peer(peer.raw, now_ms)
        self._out.pop(peer, None)
        self._graylisted.pop(peer, None)

    def stream_failed(self, peer: PeerId) -> None:
        """Our stream to `peer` died (the peer reset it, e.g. over its RPC size limit): what was
        queued is lost, so it leaves every mesh and fanout (no PRUNE can reach it) and the
        IWANTs we sent it are void.  It stays known; mesh maintenance may GRAFT it again once
        `stream_reopened` has re-sent our subscriptions."""
        if peer not in self.peers:
            return
        for topic, mesh in self.mesh.items():
            if peer in mesh:
                del mesh[peer]
                self.score.prune(peer.raw, topic)
        for fanout in self.fanout.values():
            fanout.pop(peer, None)
        for msg_id in [m for m, (p, _) in self._promises.items() if p == peer]:
            del self._promises[msg_id]
        self._out.pop(peer, None)
        self.counters.inc("gossip_stream_failed")

    def stream_reopened(self, peer: PeerId) -> None:
        """A new stream replaces a failed one (ours, or the peer's to us): the peer may have
        forgotten us (py-libp2p drops all it knew of a peer when either of their streams
        fails), so say again what we subscribe to."""
        if peer not in self.peers:
            return
        out = self._outgoing(peer)
        for topic in self.subscriptions:
            out.fragments.append(encode_subscription_field(True, topic))

    def peer_slow(self, peer: PeerId, now_ms: int) -> None:
        """`peer` did not read what we queued for it in the last heartbeat (frames dropped, or
        a write stalled): one behaviour penalty (P7) and a PRUNE from every mesh, so it gets
        only gossip; one that keeps not reading falls under the graylist and is cut off."""
        if peer not in self.peers:
            return
        self.score.add_penalty(peer.raw)
        self.counters.inc("gossip_peer_slow")
        for topic, mesh in self.mesh.items():
            if peer in mesh:
                del mesh[peer]
                self._prune(peer, topic, now_ms, self.config.prune_backoff_ms)
        self._check_graylist(peer, now_ms)

    def peer_score(self, peer: PeerId, now_ms: int) -> float:
        return self.score.score(peer.raw, now_ms)

    # -- subscriptions ------------------------------------------------------------------------
    def subscribe(self, topic: str, policy: TopicPolicy, now_ms: int) -> None:
        if policy.score is not None:
            self.score.set_topic_params(topic, policy.score)
        self.publish_policies[topic] = policy
        if topic in self.subscriptions:
            self.subscriptions[topic] = policy
            return
        self.subscriptions[topic] = policy
        for peer in self.peers:
            self._outgoing(peer).fragments.append(encode_subscription_field(True, topic))
        # Join: start from fanout peers, then fill up to D.
        mesh: dict[PeerId, None] = {}
        for peer in self.fanout.pop(topic, {}):
            if len(mesh) < self.config.d and self._score_ok(peer, now_ms, 0.0):
                mesh[peer] = None
        self._fanout_last_pub.pop(topic, None)
        self.mesh[topic] = mesh
        for peer in self._candidates(topic, now_ms, exclude=mesh, need=self.config.d - len(mesh)):
            mesh[peer] = None
        for peer in mesh:
            self._graft(peer, topic, now_ms)

    def unsubscribe(self, topic: str, now_ms: int) -> None:
        if self.subscriptions.pop(topic, None) is None:
            return
        for peer in self.peers:
            self._outgoing(peer).fragments.append(encode_subscription_field(False, topic))
        for peer in self.mesh.pop(topic, {}):
            self._prune(peer, topic, now_ms, self.config.unsubscribe_backoff_ms)

    def set_publish_policy(self, topic: str, policy: TopicPolicy) -> None:
        self.publish_policies[topic] = policy

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, topic: str, data: bytes, now_ms: int) -> bytes | None:
        """Publish `data`; returns the message id, or None if that id was already seen."""
        message = self.make_message(topic, data)
        if self.policy(topic).strict_sign:
            message = self.signed(message, self._sign(message.signable()))
        return self.publish_message(message, self.policy(topic).message_id(message), now_ms)

    def policy(self, topic: str) -> TopicPolicy:
        return self.publish_policies.get(topic, STRICT_SIGN)

    def make_message(self, topic: str, data: bytes) -> PubMessage:
        """The unsigned message to publish (with the next seqno under StrictSign).  The shell
        may sign it and derive its id off the event loop, then call publish_message()."""
        if not self.policy(topic).strict_sign:
            return PubMessage(topic, data)
        self._seqno += 1
        return PubMessage(topic, data, self.local.raw, self._seqno.to_bytes(8, "big"))

    @staticmethod
    def signed(message: PubMessage, signature: bytes) -> PubMessage:
        return PubMessage(message.topic, message.data, message.from_peer, message.seqno, signature)

    def publish_message(self, message: PubMessage, msg_id: bytes, now_ms: int) -> bytes | None:
        if not self.seen.add(msg_id, now_ms):
            self.counters.drop("gossip_publish_duplicate", "message id already seen")
            return None
        cached = CachedMessage(message)
        self.mcache.put(msg_id, cached)
        for peer in self._publish_targets(message.topic, now_ms):
            self._send_message(peer, cached)
        self.counters.inc("gossip_published")
        return msg_id

    def _publish_targets(self, topic: str, now_ms: int) -> list[PeerId]:
        targets = self._publish_targets_scored(topic, now_ms)
        for peer in self.direct:
            state = self.peers.get(peer)
            if state is not None and topic in state.topics and peer not in targets:
                targets.append(peer)
        return targets

    def _publish_targets_scored(self, topic: str, now_ms: int) -> list[PeerId]:
        threshold = self.config.thresholds.publish_threshold
        if self.config.flood_publish:
            # Scores as of the last heartbeat (graylisting is immediate and tracked apart).
            scores = self._scores
            graylisted = self._graylisted
            return [
                p
                for p, st in self.peers.items()
                if topic in st.topics and p not in graylisted and scores.get(p, 0.0) >= threshold
            ]
        if topic in self.mesh:
            return list(self.mesh[topic])
        fanout = self.fanout.get(topic)
        if fanout is None:
            fanout = {}
            self.fanout[topic] = fanout
        if len(fanout) < self.config.d:
            for peer in self._candidates(
                topic, now_ms, exclude=fanout, need=self.config.d - len(fanout), min_score=threshold
            ):
                fanout[peer] = None
        self._fanout_last_pub[topic] = now_ms
        return list(fanout)

    # -- inbound RPC --------------------------------------------------------------------------
    def precheck(self, message: PubMessage) -> tuple[bytes, SigningProblem | None] | None:
        """Message id and signature-policy problem of a message on a subscribed topic.  Pure
        and thread-safe, so the shell can run it for large messages off the event loop."""
        policy = self.subscriptions.get(message.topic)
        if policy is None:
            return None
        try:
            msg_id = policy.message_id(message)
        except (DecodeError, ValueError):
            return None
        return msg_id, self._signing_problem(message, policy)

    def handle_rpc(
        self,
        peer: PeerId,
        rpc: Rpc,
        now_ms: int,
        prechecked: dict[int, tuple[bytes, SigningProblem | None]] | None = None,
    ) -> None:
        state = self.peers.get(peer)
        if state is None:
            self.counters.drop("gossip_rpc_unknown_peer", "rpc before peer was added")
            return
        # Graylist membership is decided when a score drops (and re-checked every heartbeat),
        # so the per-RPC cost is a dict lookup rather than a score computation.
        if peer in self._graylisted:
            self.counters.drop("gossip_rpc_graylisted", "score below graylist", peer=peer.short())
            return
        self._penalised = False
        for subscribe, topic in rpc.subscriptions:
            self._peer_subscription(peer, state, subscribe, topic, now_ms)
        messages = rpc.messages
        if messages:
            allowed = self._take_tokens(state, len(messages), now_ms)
            if allowed < len(messages):
                self.counters.drop(
                    "gossip_msg_rate_limited",
                    "peer over its message budget",
                    len(messages) - allowed,
                    peer=peer.short(),
                )
                # Judged per heartbeat (see _penalise_floods): an honest relay that overshoots
                # a little is not punished, a flooder is, once per window it keeps flooding.
                state.dropped_in_window += len(messages) - allowed
                messages = messages[:allowed]
            for index, message in enumerate(messages):
                known = prechecked.get(index) if prechecked else None
                self._handle_message(peer, state, message, now_ms, known)
        if rpc.control is not None:
            self._handle_control(peer, state, rpc.control, now_ms)
        if self._penalised:
            self._check_graylist(peer, now_ms)

    def _take_tokens(self, state: PeerState, n: int, now_ms: int) -> int:
        rate = self.config.peer_messages_per_s_max
        elapsed = max(0, now_ms - state.tokens_ms)
        state.tokens = min(
            float(self.config.peer_messages_burst), state.tokens + elapsed * rate / 1000
        )
        state.tokens_ms = now_ms
        allowed = min(n, int(state.tokens))
        state.tokens -= allowed
        return allowed

    def _peer_subscription(
        self, peer: PeerId, state: PeerState, subscribe: bool, topic: str, now_ms: int
    ) -> None:
        if subscribe:
            if topic not in state.topics and len(state.topics) >= 1024:
                self.counters.drop("gossip_subscription_refused", "too many topics")
                return
            state.topics[topic] = None
            return
        state.topics.pop(topic, None)
        mesh = self.mesh.get(topic)
        if mesh is not None and peer in mesh:
            del mesh[peer]
            self.score.prune(peer.raw, topic)
        fanout = self.fanout.get(topic)
        if fanout is not None:
            fanout.pop(peer, None)

    def _handle_message(
        self,
        peer: PeerId,
        state: PeerState,
        message: PubMessage,
        now_ms: int,
        known: tuple[bytes, SigningProblem | None] | None = None,
    ) -> None:
        topic = message.topic
        policy = self.subscriptions.get(topic)
        if policy is None:
            self.counters.drop("gossip_msg_unsubscribed", "topic not subscribed")
            return
        if known is not None:
            msg_id = known[0]
        else:
            try:
                msg_id = policy.message_id(message)
            except (DecodeError, ValueError) as exc:
                self._penalised = True
                self.score.reject_message(peer.raw, None, topic)
                self.counters.drop("gossip_msg_bad_id", str(exc), peer=peer.short())
                return
        self._promises.pop(msg_id, None)
        if msg_id in self.seen:
            self.score.duplicate_message(peer.raw, msg_id, topic, now_ms)
            self.counters.inc("gossip_msg_duplicate")
            return
        problem = known[1] if known is not None else self._signing_problem(message, policy)
        if problem is not None:
            # Not marked seen either way: the authentic message with this id may still come.
            if problem.forwarder_excused and message.from_peer != peer.raw:
                self.counters.drop("gossip_msg_bad_key_relayed", problem.reason, peer=peer.short())
                return
            self._penalised = True
            self.score.reject_message(peer.raw, None, topic)
            self.counters.drop("gossip_msg_bad_signature", problem.reason, peer=peer.short())
            return
        if message.from_peer == self.local.raw:
            self.counters.drop("gossip_msg_own", "our own message came back")
            self.seen.add(msg_id, now_ms)
            return
        self.seen.add(msg_id, now_ms)
        self.score.validate_message(peer.raw, msg_id, now_ms)
        if len(message.data) >= self.config.idontwant_message_bytes_min:
            for other in self.mesh.get(topic, {}):
                if other != peer and self.peers[other].protocol == MESHSUB_V12:
                    self._outgoing(other).idontwant.append(msg_id)
        self._validate.append(Received(msg_id, message, peer))

    def _signing_problem(self, message: PubMessage, policy: TopicPolicy) -> SigningProblem | None:
        if not policy.strict_sign:
            if message.from_peer or message.seqno or message.signature or message.key:
                # py-libp2p without strict signing relays signed messages unchanged.
                return SigningProblem("StrictNoSign topic but message carries author fields", True)
            return None
        if not (message.from_peer and message.seqno and message.signature):
            return SigningProblem("StrictSign topic but message lacks from/seqno/signature")
        key_mismatch = False
        try:
            author = PeerId.from_bytes(message.from_peer)
            key = author.public_key()
            if message.key:
                if key is not None:
                    # py-libp2p verifies with the inlined key and ignores this field, so it
                    # relays such a message when the signature holds under the inlined key.
                    try:
                        key_mismatch = unmarshal_public_key(message.key) != key
                    except DecodeError:
                        key_mismatch = True
                else:
                    carried = unmarshal_public_key(message.key)
                    if PeerId.from_public_key(carried) != author:
                        return SigningProblem("key does not match from")
                    key = carried
        except DecodeError as exc:
            return SigningProblem(f"bad author: {exc}")
        if key is None:
            return SigningProblem("no public key for author")
        if not self._signature_holds(key, message):
            return SigningProblem("invalid signature")
        if key_mismatch:
            return SigningProblem("key does not match from", forwarder_excused=True)
        return None

    @staticmethod
    def _signature_holds(key: bytes, message: PubMessage) -> bool:
        if verify_ed25519(key, message.signable(True), message.signature):
            return True
        return not message.data and verify_ed25519(key, message.signable(False), message.signature)

    def validation_result(self, received: Received, result: Validation, now_ms: int) -> None:
        msg_id, message, source = received.msg_id, received.message, received.source
        match result:
            case Validation.ACCEPT:
                self.score.deliver_message(source.raw, msg_id, message.topic, now_ms)
                cached = CachedMessage(message)
                self.mcache.put(msg_id, cached)
                self._deliver.append(received)
                self._forward(msg_id, cached, source)
            case Validation.REJECT:
                self._penalised = True
                self.score.reject_message(source.raw, msg_id, message.topic)
                self.counters.drop("gossip_msg_rejected", "validator", peer=source.short())
                self._check_graylist(source, now_ms)
            case Validation.IGNORE:
                self.score.ignore_message(msg_id)
                self.counters.drop("gossip_msg_ignored", "validator", peer=source.short())

    def _forward(self, msg_id: bytes, cached: CachedMessage, source: PeerId) -> None:
        origin = cached.message.from_peer
        topic = cached.message.topic
        targets = list(self.mesh.get(topic, {}))
        for peer in self.direct:
            state = self.peers.get(peer)
            if state is not None and topic in state.topics and peer not in targets:
                targets.append(peer)
        for peer in targets:
            if peer == source or peer.raw == origin:
                continue
            if msg_id in self.peers[peer].idontwant:
                self.counters.inc("gossip_forward_skipped_idontwant")
                continue
            self._send_message(peer, cached)

    # -- control ------------------------------------------------------------------------------
    def _handle_control(
        self, peer: PeerId, state: PeerState, control: Control, now_ms: int
    ) -> None:
        score = self.peer_score(peer, now_ms)
        gossip_ok = score >= self.config.thresholds.gossip_threshold
        if control.ihave:
            if gossip_ok:
                self._handle_ihave(peer, state, control.ihave, now_ms)
            else:
                self.counters.drop("gossip_ihave_ignored", "score below gossip threshold")
        if control.iwant:
            if gossip_ok:
                self._handle_iwant(peer, control.iwant)
            else:
                self.counters.drop("gossip_iwant_ignored", "score below gossip threshold")
        for topic in control.graft:
            self._handle_graft(peer, state, topic, score, now_ms)
        for prune in control.prune:
            self._handle_prune(peer, prune, now_ms)
        if control.idontwant:
            if state.protocol != MESHSUB_V12:
                self.counters.drop("gossip_idontwant_v11", "IDONTWANT from a v1.1 peer")
            else:
                expiry = now_ms + self.config.mcache_len * self.config.heartbeat_interval_ms
                for msg_id in control.idontwant:
                    if len(state.idontwant) >= self.config.idontwant_entries_max:
                        self.counters.drop("gossip_idontwant_dropped", "idontwant_entries_max")
                        break
                    state.idontwant[msg_id] = expiry

    def _handle_ihave(
        self, peer: PeerId, state: PeerState, ihaves: tuple[IHave, ...], now_ms: int
    ) -> None:
        state.ihave_count += 1
        if state.ihave_count > self.config.max_ihave_messages:
            self.counters.drop("gossip_ihave_flood", "max_ihave_messages", peer=peer.short())
            return
        wanted: list[bytes] = []
        budget = self.config.max_ihave_length - state.iasked
        for ihave in ihaves:
            if ihave.topic not in self.subscriptions:
                continue
            for msg_id in ihave.message_ids:
                if len(wanted) >= budget:
                    break
                if msg_id not in self.seen and msg_id not in self._promises:
                    wanted.append(msg_id)
        if not wanted:
            return
        state.iasked += len(wanted)
        deadline = now_ms + self.config.iwant_followup_ms
        for msg_id in wanted:
            self._promises[msg_id] = (peer, deadline)
        self._outgoing(peer).iwant.extend(wanted)
        self.counters.inc("gossip_iwant_sent", len(wanted))

    def _handle_iwant(self, peer: PeerId, ids: tuple[bytes, ...]) -> None:
        for msg_id in ids:
            cached = self.mcache.get_for_peer(msg_id, peer.raw, self.config.gossip_retransmission)
            if cached is None:
                self.counters.inc("gossip_iwant_unknown")
                continue
            self._send_message(peer, cached)
            self.counters.inc("gossip_iwant_served")

    def _handle_graft(
        self, peer: PeerId, state: PeerState, topic: str, score: float, now_ms: int
    ) -> None:
        if topic not in self.subscriptions:
            self.counters.drop("gossip_graft_unknown_topic", "not subscribed")
            return
        mesh = self.mesh.setdefault(topic, {})
        if peer in mesh:
            return
        if peer in self.direct:
            # Direct peers must not GRAFT (spec): refuse, and count it as misbehaviour.
            self._penalised = True
            self.score.add_penalty(peer.raw)
            self.counters.drop("gossip_graft_from_direct", "direct peers do not graft")
            self._prune(peer, topic, now_ms, self.config.prune_backoff_ms, notify_score=False)
            return
        until = self._backoff.get((topic, peer))
        if until is not None and now_ms < until:
            # GRAFT during backoff is misbehaviour; a very early one counts twice.
            self._penalised = True
            self.score.add_penalty(peer.raw)
            flood_limit = (
                until - self.config.prune_backoff_ms + self.config.graft_flood_threshold_ms
            )
            if now_ms < flood_limit:
                self._penalised = True
                self.score.add_penalty(peer.raw)
            self.counters.drop("gossip_graft_in_backoff", "graft during backoff")
            self._prune(peer, topic, now_ms, self.config.prune_backoff_ms, notify_score=False)
            return
        if score < 0:
            self._prune(peer, topic, now_ms, self.config.prune_backoff_ms, notify_score=False)
            return
        if len(mesh) >= self.config.d_hi and not state.outbound:
            self._prune(peer, topic, now_ms, self.config.prune_backoff_ms, notify_score=False)
            return
        mesh[peer] = None
        self.score.graft(peer.raw, topic, now_ms)

    def _handle_prune(self, peer: PeerId, prune: Prune, now_ms: int) -> None:
        mesh = self.mesh.get(prune.topic)
        if mesh is not None and peer in mesh:
            del mesh[peer]
            self.score.prune(peer.raw, prune.topic)
        backoff_ms = prune.backoff_s * 1000 if prune.backoff_s else self.config.prune_backoff_ms
        self._set_backoff(prune.topic, peer, now_ms + min(backoff_ms, 3_600_000))
        if prune.peers:
            self.counters.drop("gossip_px_ignored", "peer exchange not used", len(prune.peers))

    def _graft(self, peer: PeerId, topic: str, now_ms: int) -> None:
        self.score.graft(peer.raw, topic, now_ms)
        self._outgoing(peer).graft.append(topic)

    def _prune(
        self, peer: PeerId, topic: str, now_ms: int, backoff_ms: int, notify_score: bool = True
    ) -> None:
        if notify_score:
            self.score.prune(peer.raw, topic)
        self._set_backoff(topic, peer, now_ms + backoff_ms)
        self._outgoing(peer).prune.append(Prune(topic, backoff_ms // 1000))

    def _set_backoff(self, topic: str, peer: PeerId, until_ms: int) -> None:
        key = (topic, peer)
        if self._backoff.get(key, 0) < until_ms:
            self._backoff[key] = until_ms

    # -- helpers ------------------------------------------------------------------------------
    def _score_ok(self, peer: PeerId, now_ms: int, minimum: float) -> bool:
        return self.peer_score(peer, now_ms) >= minimum

    def _candidates(
        self,
        topic: str,
        now_ms: int,
        exclude: dict[PeerId, None],
        need: int,
        min_score: float = 0.0,
    ) -> list[PeerId]:
        if need <= 0:
            return []
        eligible = [
            p
            for p, st in self.peers.items()
            if topic in st.topics
            and p not in exclude
            and p not in self.direct
            and self._backoff.get((topic, p), 0) <= now_ms
            and self._score_ok(p, now_ms, min_score)
        ]
        eligible.sort()
        self._rng.shuffle(eligible)
        return eligible[:need]

    def _check_graylist(self, peer: PeerId, now_ms: int) -> None:
        if peer in self._graylisted or peer in self.direct:
            return
        if self.peer_score(peer, now_ms) < self.config.thresholds.graylist_threshold:
            self._graylisted[peer] = None
            self._disconnect[peer] = None
            self.counters.inc("gossip_peer_graylisted")

    # -- heartbeat ----------------------------------------------------------------------------
    def heartbeat(self, now_ms: int) -> None:
        self.ticks += 1
        cfg = self.config
        self.score.refresh(now_ms)
        scores = {p: self.peer_score(p, now_ms) for p in self.peers}
        self._scores = scores
        for peer, score in scores.items():
            if score < cfg.thresholds.graylist_threshold:
                self._check_graylist(peer, now_ms)
            else:
                self._graylisted.pop(peer, None)
        self._apply_broken_promises(now_ms)
        self._penalise_floods(now_ms)
        for topic, mesh in self.mesh.items():
            self._maintain_mesh(topic, mesh, scores, now_ms)
        self._maintain_fanout(scores, now_ms)
        self._emit_gossip(scores)
        self.mcache.shift()
        self.seen.purge(now_ms)
        for key in [k for k, until in self._backoff.items() if until <= now_ms]:
            del self._backoff[key]
        for state in self.peers.values():
            state.ihave_count = 0
            state.iasked = 0
            if state.idontwant:
                for msg_id in [m for m, exp in state.idontwant.items() if exp <= now_ms]:
                    del state.idontwant[msg_id]

    def _penalise_floods(self, now_ms: int) -> None:
        limit = self.config.flood_drops_per_heartbeat_max
        for peer, state in self.peers.items():
            if state.dropped_in_window > limit:
                self.score.add_penalty(peer.raw)
                self.counters.inc("gossip_flood_penalty")
                self._check_graylist(peer, now_ms)
            state.dropped_in_window = 0

    def _apply_broken_promises(self, now_ms: int) -> None:
        broken = [msg_id for msg_id, (_, deadline) in self._promises.items() if deadline <= now_ms]
        for msg_id in broken:
            peer, _ = self._promises.pop(msg_id)
            if peer in self.peers:
                self._penalised = True
                self.score.add_penalty(peer.raw)
                self.counters.inc("gossip_iwant_promise_broken")

    def _maintain_mesh(
        self, topic: str, mesh: dict[PeerId, None], scores: dict[PeerId, float], now_ms: int
    ) -> None:
        cfg = self.config
        for peer in [p for p in mesh if scores.get(p, -1.0) < 0 or p not in self.peers]:
            del mesh[peer]
            if peer in self.peers:
                self._prune(peer, topic, now_ms, cfg.prune_backoff_ms)
        if len(mesh) < cfg.d_lo:
            for peer in self._candidates(topic, now_ms, exclude=mesh, need=cfg.d - len(mesh)):
                mesh[peer] = None
                self._graft(peer, topic, now_ms)
        if len(mesh) > cfg.d_hi:
            ranked = sorted(mesh)
            self._rng.shuffle(ranked)
            ranked.sort(key=lambda p: scores.get(p, 0.0), reverse=True)
            keep = ranked[: cfg.d_score]
            rest = ranked[cfg.d_score :]
            self._rng.shuffle(rest)
            keep += rest[: cfg.d - len(keep)]
            # Keep at least D_out outbound peers (connections we dialled), which an attacker
            # cannot fill by dialling us: swap them in for inbound ones at the tail.
            outbound_kept = [p for p in keep if self.peers[p].outbound]
            spare_outbound = [p for p in rest if p not in keep and self.peers[p].outbound]
            while len(outbound_kept) < cfg.d_out and spare_outbound:
                inbound = [p for p in keep[cfg.d_score :] if not self.peers[p].outbound]
                if not inbound:
                    break
                keep.remove(inbound[-1])
                swapped = spare_outbound.pop(0)
                keep.append(swapped)
                outbound_kept.append(swapped)
            for peer in ranked:
                if peer not in keep:
                    del mesh[peer]
                    self._prune(peer, topic, now_ms, cfg.prune_backoff_ms)
        outbound = sum(1 for p in mesh if self.peers[p].outbound)
        if outbound < cfg.d_out:
            candidates = [
                p
                for p in self._candidates(topic, now_ms, exclude=mesh, need=len(self.peers))
                if self.peers[p].outbound
            ]
            for peer in candidates[: cfg.d_out - outbound]:
                mesh[peer] = None
                self._graft(peer, topic, now_ms)
        if (
            cfg.opportunistic_graft_ticks
            and self.ticks % cfg.opportunistic_graft_ticks == 0
            and len(mesh) > 1
        ):
            ordered = sorted(scores.get(p, 0.0) for p in mesh)
            median = ordered[len(ordered) // 2]
            if median < cfg.thresholds.opportunistic_graft_threshold:
                better = [
                    p
                    for p in self._candidates(topic, now_ms, exclude=mesh, need=len(self.peers))
                    if scores.get(p, 0.0) > median
                ]
                for peer in better[: cfg.opportunistic_graft_peers]:
                    mesh[peer] = None
                    self._graft(peer, topic, now_ms)
                    self.counters.inc("gossip_opportunistic_graft")

    def _maintain_fanout(self, scores: dict[PeerId, float], now_ms: int) -> None:
        cfg = self.config
        for topic in list(self.fanout):
            if now_ms - self._fanout_last_pub.get(topic, 0) > cfg.fanout_ttl_ms:
                del self.fanout[topic]
                self._fanout_last_pub.pop(topic, None)
                continue
            fanout = self.fanout[topic]
            for peer in list(fanout):
                state = self.peers.get(peer)
                if (
                    state is None
                    or topic not in state.topics
                    or scores.get(peer, 0.0) < cfg.thresholds.publish_threshold
                ):
                    del fanout[peer]
            if len(fanout) < cfg.d:
                for peer in self._candidates(
                    topic,
                    now_ms,
                    exclude=fanout,
                    need=cfg.d - len(fanout),
                    min_score=cfg.thresholds.publish_threshold,
                ):
                    fanout[peer] = None

    def _emit_gossip(self, scores: dict[PeerId, float]) -> None:
        cfg = self.config
        topics = list(self.mesh) + [t for t in self.fanout if t not in self.mesh]
        for topic in topics:
            ids = self.mcache.gossip_ids(topic)
            if not ids:
                continue
            exclude = self.mesh.get(topic) or self.fanout.get(topic) or {}
            eligible = sorted(
                p
                for p, st in self.peers.items()
                if topic in st.topics
                and p not in exclude
                and p not in self.direct
                and scores.get(p, 0.0) >= cfg.thresholds.gossip_threshold
            )
            if not eligible:
                continue
            target = max(cfg.d_lazy, len(eligible) * cfg.gossip_factor_percent // 100)
            self._rng.shuffle(eligible)
            if len(ids) > cfg.max_ihave_length:
                ids = self._rng.sample(ids, cfg.max_ihave_length)
            for peer in eligible[:target]:
                self._outgoing(peer).ihave.append(IHave(topic, tuple(ids)))
