"""The yamux state machine, driven as two instances joined by a fake link (no sockets, no loop).

Each test is a small specification: what one side does, what the other sees, and what the
memory budget (a `Ledger`) holds afterwards.
"""

from dataclasses import dataclass, field

import pytest

from node.p2p.budget import BudgetLimits, Ledger, MemoryBudget
from node.p2p.errors import InvariantError, LimitError, MuxerError
from node.p2p.yamux import (
    INITIAL_WINDOW_BYTES,
    DataReceived,
    Event,
    Flag,
    FrameType,
    GoAwayCode,
    GoneAway,
    Limits,
    PingAcked,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    WindowGrew,
    Yamux,
    encode_header,
)

MiB = 1024 * 1024
KiB = 1024


@dataclass
class Side:
    mux: Yamux
    events: list[Event] = field(default_factory=list)

    def data(self, stream_id: int) -> bytes:
        return b"".join(
            bytes(e.data)
            for e in self.events
            if isinstance(e, DataReceived) and e.stream_id == stream_id
        )


class Link:
    """Two machines; `pump()` moves every queued frame across until both are quiet.  Data
    frames are built here, as the session's writers build them."""

    def __init__(self, ledger_bytes: int = 64 * MiB, limits: Limits | None = None) -> None:
        self.a = Side(Yamux(True, Ledger("a", ledger_bytes), limits))
        self.b = Side(Yamux(False, Ledger("b", ledger_bytes), limits))
        self._wire: dict[int, list[bytes]] = {id(self.a): [], id(self.b): []}

    def peer(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def send_data(
        self, side: Side, stream_id: int, payload: bytes, flags: Flag = Flag.NONE
    ) -> None:
        side.mux.data_sent(stream_id, len(payload))
        self._wire[id(side)].append(
            encode_header(FrameType.DATA, flags, stream_id, len(payload)) + payload
        )

    def send_raw(self, side: Side, frame: bytes) -> None:
        self._wire[id(side)].append(frame)

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for side in (self.a, self.b):
                out = side.mux.take_output()
                side.mux.control_written(len(out))
                frames = out + self._wire[id(side)]
                self._wire[id(side)] = []
                if frames:
                    moved = True
                    self.peer(side).events.extend(self.peer(side).mux.receive(b"".join(frames)))
            if not moved:
                return
        raise AssertionError("link never went quiet")


def test_a_stream_opens_carries_data_both_ways_and_closes_cleanly() -> None:
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    assert link.b.events == [StreamOpened(sid)]
    link.send_data(link.a, sid, b"hello")
    link.send_data(link.b, sid, b"world")
    link.pump()
    assert link.b.data(sid) == b"hello"
    assert link.a.data(sid) == b"world"
    link.b.mux.consumed(sid, 5)
    link.a.mux.consumed(sid, 5)
    for side in (link.a, link.b):
        fin = side.mux.close_stream(sid)
        assert fin is not None
        link.send_raw(side, fin)
    link.pump()
    assert StreamEnded(sid) in link.a.events
    assert StreamEnded(sid) in link.b.events
    assert link.a.mux.streams == {}
    assert link.b.mux.streams == {}
    # Everything the streams held in the budget is back.
    assert link.a.mux.ledger.used_bytes == 0
    assert link.b.mux.ledger.used_bytes == 0


def test_stream_ids_have_the_dialers_parity() -> None:
    link = Link()
    assert [link.a.mux.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [link.b.mux.open_stream() for _ in range(3)] == [2, 4, 6]


def test_a_peer_opening_a_stream_with_our_parity_breaks_the_protocol() -> None:
    link = Link()
    with pytest.raises(MuxerError):
        link.a.mux.receive(encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0))


def test_reset_forgets_the_stream_on_both_sides() -> None:
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    link.b.mux.reset_stream(sid)
    link.pump()
    assert StreamReset(sid) in link.a.events
    assert link.a.mux.streams == {}
    assert link.b.mux.streams == {}
    assert link.a.mux.ledger.used_bytes == 0
    assert link.b.mux.ledger.used_bytes == 0


def test_data_after_fin_breaks_the_protocol() -> None:
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    fin = link.a.mux.close_stream(sid)
    assert fin is not None
    link.send_raw(link.a, fin)
    link.pump()
    assert link.b.mux.streams[sid].state == StreamState.REMOTE_CLOSED
    with pytest.raises(MuxerError, match="after FIN"):
        link.b.mux.receive(encode_header(FrameType.DATA, 0, sid, 1) + b"x")


def test_a_data_frame_over_the_window_is_refused_at_its_header() -> None:
    """Only the 12 header bytes are fed: the overrun is caught before any payload arrives."""
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    header = encode_header(FrameType.DATA, 0, sid, INITIAL_WINDOW_BYTES + 1)
    with pytest.raises(MuxerError, match="over window"):
        link.b.mux.receive(header)


def test_reading_tops_credit_up_and_the_window_doubles_to_its_maximum() -> None:
    link = Link(limits=Limits(window_bytes_max=1 * MiB))
    sid = link.a.mux.open_stream()
    link.pump()
    sent = 0
    for _ in range(40):
        n = link.a.mux.send_window(sid)
        assert n > 0, "the reader consumed everything, so credit must come back"
        link.send_data(link.a, sid, bytes(n))
        link.pump()
        link.b.mux.consumed(sid, n)
        link.pump()
        sent += n
    assert sent > 10 * MiB
    assert link.b.mux.streams[sid].window_target == 1 * MiB
    assert any(isinstance(e, WindowGrew) for e in link.a.events)


def test_credit_never_exceeds_the_budget_whatever_the_reader_demands() -> None:
    """A reader awaiting a 64 MiB message asks for credit ahead; a 4 MiB ledger caps it."""
    link = Link(ledger_bytes=4 * MiB)
    sid = link.a.mux.open_stream()
    link.pump()
    link.b.mux.demand(sid, 64 * MiB)
    link.pump()
    assert link.a.mux.send_window(sid) <= 4 * MiB
    assert link.b.mux.ledger.used_bytes <= 4 * MiB
    assert link.b.mux.credit_withheld >= 1
    # The peer sends all it may; unread, it stays charged and no more credit is given.
    link.send_data(link.a, sid, bytes(link.a.mux.send_window(sid)))
    link.pump()
    assert link.a.mux.send_window(sid) == 0
    assert link.b.mux.ledger.used_bytes <= 4 * MiB
    # Reading frees the budget and the starved stream gets credit again.
    link.b.mux.consumed(sid, 1 * MiB)
    link.pump()
    assert link.a.mux.send_window(sid) > 0


def test_streams_beyond_the_budget_are_refused_with_rst() -> None:
    link = Link(ledger_bytes=3 * INITIAL_WINDOW_BYTES)
    ids = [link.a.mux.open_stream() for _ in range(3)]  # a's own ledger is as large
    for stream_id in (7, 9):
        link.send_raw(link.a, encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, stream_id, 0))
    link.pump()
    assert sorted(e.stream_id for e in link.b.events if isinstance(e, StreamOpened)) == ids
    assert link.b.mux.refused_streams == 2
    assert link.b.mux.ledger.used_bytes == 3 * INITIAL_WINDOW_BYTES


def test_streams_beyond_streams_max_are_refused() -> None:
    link = Link(limits=Limits(streams_max=2))
    link.a.mux.open_stream()
    link.a.mux.open_stream()
    with pytest.raises(LimitError):
        link.a.mux.open_stream()
    link.send_raw(link.a, encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 5, 0))
    link.pump()
    assert link.b.mux.refused_streams == 1
    assert len(link.b.mux.streams) == 2


def test_ping_is_answered_and_acknowledged() -> None:
    link = Link()
    link.a.mux.ping(42)
    link.pump()
    assert link.a.events == [PingAcked(42)]


def test_a_peer_that_never_reads_its_ping_replies_is_cut_off() -> None:
    """Replies the shell could not write stay owed; past control_frames_max it is over."""
    mux = Yamux(False, Ledger("b", MiB), Limits(control_frames_max=100))
    pings = b"".join(encode_header(FrameType.PING, Flag.SYN, 0, i) for i in range(100))
    mux.receive(pings)
    assert mux.control_owed == 100
    with pytest.raises(MuxerError, match="unread"):
        mux.receive(encode_header(FrameType.PING, Flag.SYN, 0, 101))


def test_written_replies_no_longer_count() -> None:
    mux = Yamux(False, Ledger("b", MiB), Limits(control_frames_max=100))
    for _ in range(50):
        mux.receive(b"".join(encode_header(FrameType.PING, Flag.SYN, 0, i) for i in range(10)))
        mux.control_written(len(mux.take_output()))
    assert mux.control_owed == 0


def test_our_own_frames_do_not_count_as_owed() -> None:
    mux = Yamux(True, Ledger("a", 64 * MiB), Limits(control_frames_max=10))
    for _ in range(20):
        mux.open_stream()
        mux.ping(1)
    assert mux.control_owed == 0


def test_go_away_is_reported() -> None:
    link = Link()
    link.a.mux.go_away(GoAwayCode.PROTOCOL_ERROR)
    link.pump()
    assert link.b.events == [GoneAway(GoAwayCode.PROTOCOL_ERROR)]
    assert link.b.mux.went_away


def test_a_small_payload_does_not_pin_the_chunk_it_came_in() -> None:
    """3 bytes inside a 60 KiB chunk are copied out; a payload that is most of its chunk is
    passed on as a view (no copy)."""
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    filler = encode_header(FrameType.WINDOW_UPDATE, 0, sid, 0) * 5000
    small = link.b.mux.receive(encode_header(FrameType.DATA, 0, sid, 3) + b"abc" + filler)
    big = link.b.mux.receive(encode_header(FrameType.DATA, 0, sid, 200 * KiB) + bytes(200 * KiB))
    (small_piece,) = [e.data for e in small if isinstance(e, DataReceived)]
    (big_piece,) = [e.data for e in big if isinstance(e, DataReceived)]
    assert type(small_piece) is bytes
    assert small_piece == b"abc"
    assert isinstance(big_piece, memoryview)
    assert len(big_piece) == 200 * KiB


def test_frames_split_at_every_byte_boundary_decode_the_same() -> None:
    link = Link()
    sid = link.a.mux.open_stream()
    link.pump()
    stream = encode_header(FrameType.DATA, 0, sid, 5) + b"12345"
    stream += encode_header(FrameType.DATA, Flag.FIN, sid, 3) + b"678"
    for cut in range(len(stream) + 1):
        other = Link()
        s2 = other.a.mux.open_stream()
        other.pump()
        events = other.b.mux.receive(stream[:cut]) + other.b.mux.receive(stream[cut:])
        data = b"".join(bytes(e.data) for e in events if isinstance(e, DataReceived))
        assert data == b"12345678"
        assert s2 == sid
        assert events[-1] == StreamEnded(sid), cut


def test_closing_the_connection_returns_every_byte_to_the_budget() -> None:
    budget = MemoryBudget(
        BudgetLimits(
            node_bytes_max=64 * MiB,
            strangers_bytes_max=16 * MiB,
            protected_connection_bytes_max=32 * MiB,
            stranger_connection_bytes_max=8 * MiB,
        )
    )
    mux = Yamux(False, budget.connection(protected=False))
    for stream_id in (1, 3, 5):
        mux.receive(encode_header(FrameType.DATA, Flag.SYN, stream_id, 100) + bytes(100))
    assert budget.strangers.used_bytes == 3 * INITIAL_WINDOW_BYTES
    mux.close()
    assert budget.node.used_bytes == 0
    assert budget.strangers.used_bytes == 0


def test_strangers_together_cannot_take_the_protected_reserve() -> None:
    budget = MemoryBudget(
        BudgetLimits(
            node_bytes_max=8 * MiB,
            strangers_bytes_max=2 * MiB,
            protected_connection_bytes_max=8 * MiB,
            stranger_connection_bytes_max=1 * MiB,
        )
    )
    strangers = [budget.connection(protected=False) for _ in range(5)]
    granted = sum(ledger.reserve_up_to(1 * MiB) for ledger in strangers)
    assert granted == 2 * MiB
    assert budget.connection(protected=True).reserve_up_to(6 * MiB) == 6 * MiB


def test_the_shell_misusing_a_stream_is_our_bug() -> None:
    mux = Yamux(True, Ledger("a", MiB))
    with pytest.raises(InvariantError):
        mux.data_sent(99, 1)
    sid = mux.open_stream()
    with pytest.raises(InvariantError):
        mux.data_sent(sid, INITIAL_WINDOW_BYTES + 1)
    with pytest.raises(InvariantError):
        Ledger("x", MiB).release(1)


def test_credit_ahead_never_overflows_the_u32_window() -> None:
    link = Link(ledger_bytes=2**33)
    sid = link.a.mux.open_stream()
    link.pump()
    link.b.mux.demand(sid, 2**33)
    link.pump()
    assert link.a.mux.send_window(sid) == 2**32 - 1
