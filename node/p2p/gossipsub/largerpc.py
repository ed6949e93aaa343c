"""Decoding an RPC that carries one large message without copying its payload twice.

A large RPC is almost always RPC{publish=[Message{from, data, seqno, topic, ...}], ...} with the
payload near the front.  `locate_payload(head)` finds, from the first few hundred bytes alone,
where the first message's `data` field starts and how long it is; the shell then reads the small
prefix, the payload as one buffer (assembled off the event loop), and the small rest, and
`assemble()` rebuilds the Rpc from those three pieces.  Any other layout returns None and the
shell decodes the frame the ordinary way.  Pure: no I/O.
"""

from dataclasses import dataclass

from node.p2p.errors import DecodeError
from node.p2p.gossipsub.rpc import PubMessage, Rpc, RpcLimits
from node.p2p.varint import PROTOBUF_BYTES_MAX, decode_uvarint

HEAD_BYTES = 1024
_PUBLISH_KEY = 2 << 3 | 2
_DATA_FIELD = 2


@dataclass(frozen=True, slots=True)
class Layout:
    message_start: int  # first byte of the message's fields
    message_end: int  # one past its last byte
    data_field_start: int  # where the data field's key starts
    data_start: int  # first payload byte
    data_length: int

    @property
    def data_end(self) -> int:
        return self.data_start + self.data_length


def locate_payload(head: bytes, frame_length: int) -> Layout | None:
    """The layout of the first message's payload, if `head` (the frame's first bytes) shows
    the frame starts with a publish entry whose data field begins within `head`."""
    if not head or head[0] != _PUBLISH_KEY:
        return None
    decoded = decode_uvarint(head, 1, PROTOBUF_BYTES_MAX)
    if decoded is None:
        return None
    message_length, pos = decoded
    message_start = pos
    message_end = message_start + message_length
    if message_end > frame_length:
        raise DecodeError("publish entry overruns the RPC")
    while pos < len(head) and pos < message_end:
        field_start = pos
        key = decode_uvarint(head, pos, PROTOBUF_BYTES_MAX)
        if key is None:
            return None
        number_wire, pos = key
        number, wire = number_wire >> 3, number_wire & 7
        if wire == 0:
            value = decode_uvarint(head, pos, PROTOBUF_BYTES_MAX)
            if value is None:
                return None
            pos = value[1]
            continue
        if wire != 2:
            return None
        length_decoded = decode_uvarint(head, pos, PROTOBUF_BYTES_MAX)
        if length_decoded is None:
            return None
        length, pos = length_decoded
        if number == _DATA_FIELD:
            if pos + length > message_end:
                raise DecodeError("data field overruns its message")
            return Layout(message_start, message_end, field_start, pos, length)
        pos += length
    return None


def assemble(layout: Layout, prefix: bytes, payload: bytes, rest: bytes, limits: RpcLimits) -> Rpc:
    """The Rpc of frame = prefix + payload + rest (prefix ends where the payload starts)."""
    tail = layout.message_end - layout.data_end
    fields = prefix[layout.message_start : layout.data_field_start] + rest[:tail]
    other = PubMessage.decode(fields)
    if other.data:
        raise DecodeError("message with two data fields")
    message = PubMessage(
        other.topic, payload, other.from_peer, other.seqno, other.signature, other.key
    )
    remainder = Rpc.decode(rest[tail:], limits)
    if len(remainder.messages) + 1 > limits.messages_max:
        raise DecodeError("too many messages in one RPC")
    return Rpc(remainder.subscriptions, (message, *remainder.messages), remainder.control)
