"""The pubsub RPC protobuf (libp2p pubsub rpc.proto), encoded and decoded by hand.

    RPC{subscriptions=1 SubOpts{subscribe=1 bool, topicid=2}, publish=2 Message,
        control=3 ControlMessage}
    Message{from=1, data=2, seqno=3, topic=4, signature=5, key=6}
    ControlMessage{ihave=1 {topicID=1, messageIDs=2*}, iwant=2 {messageIDs=1*},
                   graft=3 {topicID=1}, prune=4 {topicID=1, peers=2*, backoff=3},
                   idontwant=5 {messageIDs=1*}}

Decoding enforces `RpcLimits` on every repeated field while iterating, so a hostile RPC cannot
make us build large lists; the frame size itself is bounded by the stream reader.  Unknown
fields (py-libp2p's senderRecord, extensions) are skipped.
"""

from dataclasses import dataclass

from node.p2p.errors import DecodeError, LimitError
from node.p2p.protobuf import (
    as_bytes,
    as_int,
    as_str,
    field_bytes,
    field_header,
    field_str,
    field_varint,
    iter_fields,
)

SIGNING_PREFIX = b"libp2p-pubsub:"
TOPIC_BYTES_MAX = 256
MESSAGE_ID_BYTES_MAX = 256


@dataclass(frozen=True, slots=True)
class RpcLimits:
    subscriptions_max: int = 256
    messages_max: int = 4096
    ihave_max: int = 64
    message_ids_max: int = 5000
    iwant_max: int = 64
    graft_max: int = 64
    prune_max: int = 64
    prune_peers_max: int = 16
    idontwant_max: int = 64


@dataclass(frozen=True, slots=True)
class PubMessage:
    topic: str
    data: bytes
    from_peer: bytes = b""
    seqno: bytes = b""
    signature: bytes = b""
    key: bytes = b""

    def signable(self, empty_data_field: bool = True) -> bytes:
        """The bytes StrictSign signs: the message without signature and key, field order.

        proto2 encoders (py-libp2p, go) emit an explicitly set empty `data`; a verifier of an
        empty message tries both forms because presence is not visible on the wire.
        """
        return b"".join((SIGNING_PREFIX, *self._parts(False, empty_data_field)))

    def _parts(self, signed: bool, empty_data_field: bool = False) -> list[bytes]:
        parts: list[bytes] = []
        if self.from_peer:
            parts.append(field_bytes(1, self.from_peer))
        if self.data or empty_data_field:
            parts += (field_header(2, len(self.data)), self.data)
        if self.seqno:
            parts.append(field_bytes(3, self.seqno))
        parts.append(field_str(4, self.topic))
        if signed and self.signature:
            parts.append(field_bytes(5, self.signature))
        if signed and self.key:
            parts.append(field_bytes(6, self.key))
        return parts

    def encode(self) -> bytes:
        return b"".join(self._parts(True, bool(self.from_peer)))

    @classmethod
    def decode(cls, data: bytes | memoryview, view_bytes_min: int = 0) -> "PubMessage":
        """With a memoryview input, a `data` field of at least view_bytes_min bytes stays a
        view of the input; the shell turns it into bytes off the event loop."""
        from_peer = payload = seqno = signature = key = b""
        topic: str | None = None
        for number, value in iter_fields(data, fields_max=64, view_bytes_min=view_bytes_min):
            match number:
                case 1:
                    from_peer = bytes(as_bytes(value, "from"))
                case 2:
                    payload = as_bytes(value, "data")
                case 3:
                    seqno = as_bytes(value, "seqno")
                case 4:
                    if topic is not None:
                        raise DecodeError("message with more than one topic")
                    topic = as_str(value, "topic", TOPIC_BYTES_MAX)
                case 5:
                    signature = as_bytes(value, "signature")
                case 6:
                    key = as_bytes(value, "key")
                case _:
                    pass
        if topic is None:
            raise DecodeError("message without topic")
        return cls(topic, payload, from_peer, seqno, signature, key)


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    message_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Prune:
    topic: str
    backoff_s: int = 0
    peers: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Control:
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[bytes, ...] = ()
    graft: tuple[str, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[bytes, ...] = ()

    def is_empty(self) -> bool:
        return not (self.ihave or self.iwant or self.graft or self.prune or self.idontwant)


@dataclass(frozen=True, slots=True)
class Rpc:
    subscriptions: tuple[tuple[bool, str], ...] = ()
    messages: tuple[PubMessage, ...] = ()
    control: Control | None = None

    def encode(self) -> bytes:
        parts: list[bytes] = []
        for subscribe, topic in self.subscriptions:
            parts.append(field_bytes(1, field_varint(1, int(subscribe)) + field_str(2, topic)))
        for message in self.messages:
            parts.append(field_bytes(2, message.encode()))
        if self.control is not None and not self.control.is_empty():
            parts.append(field_bytes(3, _encode_control(self.control)))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | memoryview, limits: RpcLimits, view_bytes_min: int = 0) -> "Rpc":
        subs: list[tuple[bool, str]] = []
        messages: list[PubMessage] = []
        control: Control | None = None
        for number, value in iter_fields(data, view_bytes_min=view_bytes_min):
            match number:
                case 1:
                    if len(subs) >= limits.subscriptions_max:
                        raise LimitError("too many subscriptions in one RPC")
                    subs.append(_decode_subopts(as_bytes(value, "subscriptions")))
                case 2:
                    if len(messages) >= limits.messages_max:
                        raise LimitError("too many messages in one RPC")
                    raw = as_bytes(value, "publish")
                    messages.append(PubMessage.decode(raw, view_bytes_min))
                case 3:
                    # A repeated singular message field merges (protobuf semantics).
                    part = _decode_control(as_bytes(value, "control"), limits)
                    control = part if control is None else _merge(control, part, limits)
                case _:
                    pass
        return cls(tuple(subs), tuple(messages), control)


def _merge(a: Control, b: Control, limits: RpcLimits) -> Control:
    merged = Control(
        a.ihave + b.ihave,
        a.iwant + b.iwant,
        a.graft + b.graft,
        a.prune + b.prune,
        a.idontwant + b.idontwant,
    )
    ids = sum(len(i.message_ids) for i in merged.ihave) + len(merged.iwant) + len(merged.idontwant)
    if ids > limits.message_ids_max or len(merged.ihave) > limits.ihave_max:
        raise LimitError("too many control entries")
    if len(merged.graft) > limits.graft_max or len(merged.prune) > limits.prune_max:
        raise LimitError("too many control entries")
    return merged


def _decode_subopts(data: bytes) -> tuple[bool, str]:
    subscribe = False
    topic = ""
    for number, value in iter_fields(data, fields_max=16):
        if number == 1:
            subscribe = bool(as_int(value, "subscribe"))
        elif number == 2:
            topic = as_str(value, "topicid", TOPIC_BYTES_MAX)
    if not topic:
        raise DecodeError("subscription without topic")
    return subscribe, topic


def _message_id(value: int | bytes) -> bytes:
    raw = as_bytes(value, "messageIDs")
    if len(raw) > MESSAGE_ID_BYTES_MAX:
        raise LimitError("message id too long")
    return raw


def _decode_control(data: bytes, limits: RpcLimits) -> Control:
    ihave: list[IHave] = []
    iwant: list[bytes] = []
    graft: list[str] = []
    prune: list[Prune] = []
    idontwant: list[bytes] = []
    ids_total = 0
    for number, value in iter_fields(data):
        raw = as_bytes(value, "control entry") if number <= 5 else b""
        match number:
            case 1:
                if len(ihave) >= limits.ihave_max:
                    raise LimitError("too many IHAVE")
                topic = ""
                ids: list[bytes] = []
                for n, v in iter_fields(raw):
                    if n == 1:
                        topic = as_str(v, "ihave.topicID", TOPIC_BYTES_MAX)
                    elif n == 2:
                        ids_total += 1
                        if ids_total > limits.message_ids_max:
                            raise LimitError("too many message ids in control")
                        ids.append(_message_id(v))
                ihave.append(IHave(topic, tuple(ids)))
            case 2:
                if len(iwant) >= limits.message_ids_max:
                    raise LimitError("too many IWANT")
                for n, v in iter_fields(raw):
                    if n == 1:
                        ids_total += 1
                        if ids_total > limits.message_ids_max:
                            raise LimitError("too many message ids in control")
                        iwant.append(_message_id(v))
            case 3:
                if len(graft) >= limits.graft_max:
                    raise LimitError("too many GRAFT")
                topic = ""
                for n, v in iter_fields(raw, fields_max=16):
                    if n == 1:
                        topic = as_str(v, "graft.topicID", TOPIC_BYTES_MAX)
                graft.append(topic)
            case 4:
                if len(prune) >= limits.prune_max:
                    raise LimitError("too many PRUNE")
                prune.append(_decode_prune(raw, limits))
            case 5:
                for n, v in iter_fields(raw):
                    if n == 1:
                        ids_total += 1
                        if ids_total > limits.message_ids_max:
                            raise LimitError("too many message ids in control")
                        idontwant.append(_message_id(v))
            case _:
                pass
    return Control(tuple(ihave), tuple(iwant), tuple(graft), tuple(prune), tuple(idontwant))


def _decode_prune(data: bytes, limits: RpcLimits) -> Prune:
    topic = ""
    backoff = 0
    peers: list[bytes] = []
    for number, value in iter_fields(data, fields_max=limits.prune_peers_max + 8):
        match number:
            case 1:
                topic = as_str(value, "prune.topicID", TOPIC_BYTES_MAX)
            case 2:
                if len(peers) >= limits.prune_peers_max:
                    raise LimitError("too many PX peers")
                for n, v in iter_fields(as_bytes(value, "prune.peers"), fields_max=8):
                    if n == 1:
                        peers.append(as_bytes(v, "peerID"))
            case 3:
                backoff = as_int(value, "prune.backoff")
            case _:
                pass
    return Prune(topic, backoff, tuple(peers))


def encode_control_field(control: Control) -> bytes:
    """The RPC field 3 carrying `control` (concatenates with other RPC fields)."""
    return field_bytes(3, _encode_control(control))


def encode_control_fields(control: Control, bytes_max: int) -> list[bytes]:
    """`control` as RPC control fields of at most about `bytes_max` bytes each, so that the
    shell can pack them into RPCs under a peer's inbound limit.  Entries are never split
    (one IHAVE is at most max_ihave_length ids), so an entry alone over the limit still
    travels as one field."""
    whole = encode_control_field(control)
    if len(whole) <= bytes_max:
        return [whole]
    entries = [
        *(Control(ihave=(i,)) for i in control.ihave),
        *(Control(iwant=(i,)) for i in control.iwant),
        *(Control(graft=(t,)) for t in control.graft),
        *(Control(prune=(p,)) for p in control.prune),
        *(Control(idontwant=(i,)) for i in control.idontwant),
    ]
    fields: list[bytes] = []
    batch: list[Control] = []
    size = 0
    for entry in entries:
        entry_bytes = len(_encode_control(entry))
        if batch and size + entry_bytes + 8 > bytes_max:
            fields.append(encode_control_field(_concat(batch)))
            batch, size = [], 0
        batch.append(entry)
        size += entry_bytes
    if batch:
        fields.append(encode_control_field(_concat(batch)))
    return fields


# An encoded RPC field: bytes, or for large messages the parts whose concatenation it is (the
# payload is then never copied into an RPC buffer; the muxer slices it into frames directly).
Fragment = bytes | tuple[bytes, ...]
JOIN_BYTES_MAX = 64 * 1024


def encode_message_field(message: PubMessage) -> Fragment:
    """The RPC field 2 carrying one message, encoded once and reused for every peer."""
    parts = message._parts(True, bool(message.from_peer))
    size = sum(len(p) for p in parts)
    if size < JOIN_BYTES_MAX:
        return b"".join((field_header(2, size), *parts))
    return (field_header(2, size), *parts)


def fragment_size(fragment: Fragment) -> int:
    return len(fragment) if isinstance(fragment, bytes) else sum(len(p) for p in fragment)


def encode_subscription_field(subscribe: bool, topic: str) -> bytes:
    return field_bytes(1, field_varint(1, int(subscribe)) + field_str(2, topic))


def _concat(parts: list[Control]) -> Control:
    return Control(
        tuple(i for c in parts for i in c.ihave),
        tuple(i for c in parts for i in c.iwant),
        tuple(t for c in parts for t in c.graft),
        tuple(p for c in parts for p in c.prune),
        tuple(i for c in parts for i in c.idontwant),
    )


def _encode_control(control: Control) -> bytes:
    parts: list[bytes] = []
    for ihave in control.ihave:
        body = field_str(1, ihave.topic) + b"".join(field_bytes(2, i) for i in ihave.message_ids)
        parts.append(field_bytes(1, body))
    if control.iwant:
        parts.append(field_bytes(2, b"".join(field_bytes(1, i) for i in control.iwant)))
    for topic in control.graft:
        parts.append(field_bytes(3, field_str(1, topic)))
    for prune in control.prune:
        body = field_str(1, prune.topic)
        for peer in prune.peers:
            body += field_bytes(2, field_bytes(1, peer))
        if prune.backoff_s:
            body += field_varint(3, prune.backoff_s)
        parts.append(field_bytes(4, body))
    if control.idontwant:
        parts.append(field_bytes(5, b"".join(field_bytes(1, i) for i in control.idontwant)))
    return b"".join(parts)
