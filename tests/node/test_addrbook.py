"""The address book (node/addrbook.py) and the peer-exchange codec (node/pex.py): bounded,
persisted atomically, scope-aware, and a peer's bad answer never poisons the book."""

import json
from pathlib import Path

import pytest

from consensus.codec import encode
from consensus.errors import CodecError
from node.addrbook import AddrBook, Entry, scope, shareable
from node.p2p.multiaddr import Multiaddr
from node.p2p.peer_id import Identity, PeerId
from node.pex import PEX_ADDRS_MAX, decode_addrs, encode_addrs


def peer(i: int) -> PeerId:
    return Identity.from_seed(bytes([i]) * 32).peer_id


def addr(host: str, port: int = 26656) -> Multiaddr:
    return Multiaddr.tcp(host, port)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.9", "private"),
        ("100.64.0.1", "private"),
        ("8.8.8.8", "public"),
        ("validator1.example", "public"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_scope(host: str, expected: str) -> None:
    assert scope(host) == expected


@pytest.mark.parametrize(
    ("addr_host", "requester", "strict", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", False, True),  # loopback testnet
        ("127.0.0.1", "10.0.0.2", False, False),  # our loopback means nothing to it
        ("10.0.0.5", "10.0.0.2", False, True),
        ("10.0.0.5", "8.8.4.4", False, False),  # a private address to the internet: wrong
        ("8.8.8.8", "127.0.0.1", False, True),
        ("127.0.0.1", "127.0.0.1", True, False),  # strict: public only
        ("8.8.8.8", "8.8.4.4", True, True),
        ("0.0.0.0", "127.0.0.1", False, False),
    ],
)
def test_only_usable_addresses_are_shared(
    addr_host: str, requester: str, strict: bool, expected: bool
) -> None:
    assert shareable(addr_host, requester, strict) is expected


def test_book_is_bounded_and_keeps_what_worked(tmp_path: Path) -> None:
    book = AddrBook(tmp_path / "addrbook.json", entries_max=3)
    book.mark_ok(peer(1), addr("127.0.0.1", 1), now_ms=100)
    for i in range(2, 6):
        assert book.add(peer(i), addr("127.0.0.1", i))
    assert len(book) == 3
    assert book.get(peer(1)) == Entry(str(peer(1)), "/ip4/127.0.0.1/tcp/1", 100, 0)
    # A gossiped address never replaces one we reached the peer at.
    book.add(peer(1), addr("127.0.0.1", 999))
    assert book.get(peer(1)) is not None
    assert book.get(peer(1)).addr == "/ip4/127.0.0.1/tcp/1"  # type: ignore[union-attr]
    assert [e.peer for e in book.good("127.0.0.1", 10, set())] == [str(peer(1))]
    assert book.good("127.0.0.1", 10, {str(peer(1))}) == []


def test_failing_unknown_addresses_are_forgotten(tmp_path: Path) -> None:
    book = AddrBook(None)
    book.add(peer(1), addr("127.0.0.1"))
    for _ in range(8):
        book.mark_failed(peer(1))
    assert book.get(peer(1)) is None


def test_book_persists_atomically_and_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "addrbook.json"
    book = AddrBook(path)
    book.mark_ok(peer(1), addr("127.0.0.1", 7), now_ms=5)
    book.save()
    assert not (tmp_path / "addrbook.json.tmp").exists()
    again = AddrBook(path)
    again.load()
    assert again.entries() == book.entries()
    path.write_text('{"peers": [{"peer": "nope", "addr": "x"}]}')
    damaged = AddrBook(path)
    damaged.load()
    assert len(damaged) == 0
    assert (tmp_path / "addrbook.json.bad").exists()
    assert json.loads((tmp_path / "addrbook.json.bad").read_text())["peers"][0]["peer"] == "nope"


def test_strict_book_refuses_private_addresses() -> None:
    book = AddrBook(None, strict=True)
    assert not book.add(peer(1), addr("127.0.0.1"))
    assert book.add(peer(2), addr("8.8.8.8"))


def test_pex_answer_round_trips_and_skips_bad_entries() -> None:
    entries = [Entry(str(peer(i)), f"/ip4/127.0.0.1/tcp/{i}") for i in range(1, 4)]
    decoded = decode_addrs(encode_addrs(entries))
    assert [(str(p), str(a)) for p, a in decoded] == [(e.peer, e.addr) for e in entries]
    mixed = encode([["garbage", "/ip4/127.0.0.1/tcp/1"], [str(peer(1)), "/ip4/127.0.0.1/tcp/2"]])
    assert [str(p) for p, _ in decode_addrs(mixed)] == [str(peer(1))]
    with pytest.raises(CodecError):
        decode_addrs(encode([[str(peer(1)), "/ip4/127.0.0.1/tcp/1"]] * (PEX_ADDRS_MAX + 1)))
