"""Outgoing RPC framing under the peer's inbound limit, and the per-peer queue's drop policy."""

from node.p2p.gossipsub.outqueue import BULK, MAIN, Frame, PeerQueue, is_message, pack
from node.p2p.gossipsub.rpc import (
    Control,
    IHave,
    PubMessage,
    Rpc,
    RpcLimits,
    encode_control_fields,
    encode_message_field,
    encode_subscription_field,
)
from node.p2p.varint import decode_uvarint

MiB = 1024 * 1024


def rpcs(frames: list[Frame]) -> list[Rpc]:
    out = []
    for frame in frames:
        wire = b"".join(frame.parts)
        decoded = decode_uvarint(wire, 0, len(wire))
        assert decoded is not None
        length, start = decoded
        assert len(wire) - start == length
        out.append(Rpc.decode(wire[start:], RpcLimits()))
    return out


def test_three_iwant_answers_of_900kb_become_three_rpcs_under_1mib() -> None:
    messages = [PubMessage("t", bytes([i]) * 900_000) for i in range(3)]
    packed = pack([encode_message_field(m) for m in messages], MiB)
    assert packed.oversize == 0
    assert len(packed.frames) == 3
    assert all(f.size <= MiB + 8 for f in packed.frames)
    assert [m for rpc in rpcs(packed.frames) for m in rpc.messages] == messages


def test_small_fields_share_an_rpc_and_a_message_over_the_limit_travels_alone() -> None:
    small = [encode_message_field(PubMessage("t", b"s%d" % i)) for i in range(5)]
    huge = encode_message_field(PubMessage("t", b"h" * (MiB + 10)))
    packed = pack([*small, huge, encode_subscription_field(True, "t")], MiB)
    assert [len(rpc.messages) for rpc in rpcs(packed.frames)] == [5, 1, 0]
    assert packed.oversize == 1
    assert [f.droppable for f in packed.frames] == [True, True, False]


def test_a_huge_control_message_is_split_into_fields_under_the_limit() -> None:
    control = Control(ihave=tuple(IHave(f"topic-{i}", (b"x" * 40,) * 5000) for i in range(8)))
    fields = encode_control_fields(control, MiB)
    assert len(fields) > 1
    assert all(len(f) <= MiB for f in fields)
    assert not any(is_message(f) for f in fields)
    limits = RpcLimits(message_ids_max=100_000)
    merged = [i for f in fields for i in (Rpc.decode(f, limits).control or Control()).ihave]
    assert merged == list(control.ihave)


def frame(size: int, droppable: bool) -> Frame:
    return Frame((b"\x00" * size,), size, droppable)


def test_a_full_queue_drops_its_oldest_messages_in_either_lane_never_control() -> None:
    queue = PeerQueue(100)
    assert queue.push(BULK, frame(40, True)) == 0  # oldest message
    assert queue.push(MAIN, frame(20, False)) == 0  # control
    assert queue.push(MAIN, frame(30, True)) == 0
    assert queue.push(MAIN, frame(40, True)) == 1  # evicts the bulk message, the oldest
    assert [f.size for f in queue.lanes[BULK]] == []
    assert [f.size for f in queue.lanes[MAIN]] == [20, 30, 40]
    assert queue.push(MAIN, frame(90, False)) == 3  # both messages go, then it still cannot fit
    assert [f.size for f in queue.lanes[MAIN]] == [20]
    assert queue.total_bytes == 20


def test_bytes_in_flight_count_against_the_budget_until_written() -> None:
    queue = PeerQueue(100)
    queue.push(MAIN, frame(60, True))
    taken = queue.take(MAIN, 1000)
    assert [f.size for f in taken] == [60]
    assert queue.push(MAIN, frame(60, True)) == 1  # nothing queued to evict: itself dropped
    queue.written(60)
    assert queue.push(MAIN, frame(60, True)) == 0
    assert queue.release(MAIN) == 1
    assert queue.total_bytes == 0
